/**
 * Connecting the CLI to NATS with {@link NatsSettings}, and what a failed connect means: NATS
 * refused the credentials or TLS failed ({@link NatsAuthError}, exit 5), or no server answers
 * (`NatsUnreachableError`, exit 3). Messages name the servers as `host:port` and how we
 * authenticated, never a secret.
 *
 * @module
 */

import { connect, type NatsConnection } from "@nats-io/transport-node";
import { NatsUnreachableError } from "../journal/watch.ts";
import { causes, isAuthFailure, NatsAuthError } from "../journal/nats_errors.ts";
import { type NatsSettings, redact } from "./_nats.ts";
import { guardTlsAlerts, probeServer } from "./_nats_probe.ts";

export { isAuthFailure, NatsAuthError } from "../journal/nats_errors.ts";

const AUTH_HINT = "give credentials with --user/--password, --token, --nkey or --creds " +
  "(or $NATS_USER/$NATS_PASSWORD, $NATS_TOKEN, $NATS_NKEY, $NATS_CREDS)";

const TLS_FAILURE =
  /certificate|altnames|self[- ]signed|fatal alert|handshake|ssl|tls|PEM|ERR_TLS|ERR_SSL/i;

/**
 * Turns a failed connect into the CLI's errors: credentials refused or TLS failed
 * ({@link NatsAuthError}), else unreachable.
 */
export async function connectError(
  err: unknown,
  settings: NatsSettings,
  alert?: Error,
): Promise<Error> {
  if (err instanceof NatsAuthError) return err;
  const at = settings.servers.join(",");
  const text = (e: unknown) => redact(String((e as Error)?.message ?? e), settings.secrets);
  if (isAuthFailure(err)) {
    return new NatsAuthError(
      `NATS at ${at} refused the credentials: ${text(err)} (credentials: ${settings.auth}${
        settings.auth === "none" ? `; ${AUTH_HINT}` : ""
      })`,
      { cause: err },
    );
  }
  if (alert) {
    return new NatsAuthError(
      `TLS with NATS at ${at} failed: the server rejected ${
        settings.clientCert ? "our client certificate" : "the connection"
      } (${text(alert)})${
        settings.clientCert ? "" : "; it may require one: give --tlscert and --tlskey"
      }`,
      { cause: alert },
    );
  }
  for (const e of causes(err)) {
    if (TLS_FAILURE.test(`${e.message} ${(e as { code?: string }).code ?? ""}`)) {
      return new NatsAuthError(
        `TLS with NATS at ${at} failed: ${text(e)}${
          /verify|issuer|self[- ]signed/i.test(e.message)
            ? " (give the server's CA with --tlsca or $NATS_CA)"
            : ""
        }`,
        { cause: err },
      );
    }
  }
  // A timeout or a dropped connection: ask the server what it wants, for a better message.
  const info = await probeServer(settings.servers).catch(() => undefined);
  if (info?.tls_verify && !settings.clientCert) return needsCert(settings, err);
  if (info?.tls_verify) {
    // nats.js misses the server closing the connection after refusing a certificate.
    return new NatsAuthError(
      `TLS with NATS at ${at} failed: the server requires a client certificate and did not ` +
        `accept ours (${text(err)} after the handshake): is it signed by a CA the server trusts?`,
      { cause: err },
    );
  }
  return new NatsUnreachableError(`cannot connect to NATS at ${at}: ${text(err)}`, { cause: err });
}

const never = new Promise<never>(() => {});

function needsCert(settings: NatsSettings, cause?: unknown): NatsAuthError {
  return new NatsAuthError(
    `NATS at ${settings.servers.join(",")} requires a client certificate: give --tlscert and ` +
      "--tlskey (or $NATS_CERT and $NATS_KEY)",
    cause === undefined ? undefined : { cause },
  );
}

/** Options of {@link connectNats}. */
export interface ConnectNatsOptions {
  /** Reconnect for ever after a disconnect (servers, followers). Default false: fail fast. */
  reconnect?: boolean;
  /** Connection name shown by the server's monitoring. */
  name?: string;
}

/**
 * Connects with the settings; failures are typed and never carry a secret.
 *
 * @throws {NatsAuthError} when NATS refuses the credentials or TLS fails.
 * @throws {NatsUnreachableError} when no server answers.
 */
export async function connectNats(
  settings: NatsSettings,
  options: ConnectNatsOptions = {},
): Promise<NatsConnection> {
  const alert = guardTlsAlerts();
  const attempt = connect({
    timeout: 5000,
    ...settings.options,
    maxReconnectAttempts: options.reconnect ? -1 : 0,
    ...(options.name ? { name: options.name } : {}),
  });
  // With TLS but no client certificate, ask the server at once whether it wants one: nats.js
  // would only time out.
  const wantsCert = settings.options.tls && !settings.clientCert
    ? probeServer(settings.servers).then((info) =>
      info?.tls_verify ? Promise.reject(needsCert(settings)) : never
    )
    : never;
  try {
    return await Promise.race([attempt, alert.promise.then((e) => Promise.reject(e)), wantsCert]);
  } catch (err) {
    attempt.then((nc) => nc.close()).catch(() => {});
    throw await connectError(err, settings, alert.seen());
  } finally {
    alert.done();
  }
}
