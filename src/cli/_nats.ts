/**
 * How the CLI (every verb, and `cnm serve`) reaches NATS: servers, credentials and TLS from the
 * NATS CLI's flags and environment, in one place. Credentials in server URLs are taken out of
 * the URLs (nats.js ignores them) and become an authenticator; the CA, client certificate and
 * key are read here and handed to nats.js's node transport (no `DENO_CERT` needed). Secrets
 * never reach a message: servers are printed as `host:port`, and {@link redact} masks URLs'
 * user info and every secret value in whatever the CLI prints.
 *
 * Connecting with the settings, and the errors of a failed connect: `_nats_connect.ts`.
 *
 * Precedence: each setting from its flag, else its environment variable. Across ways to
 * authenticate, the command line beats the environment (`--creds` wins over `NATS_USER`), and
 * two ways on the same level are a usage error.
 *
 * @module
 */

import {
  credsAuthenticator,
  nkeyAuthenticator,
  nkeys,
  type NodeConnectionOptions,
  tokenAuthenticator,
  usernamePasswordAuthenticator,
} from "@nats-io/transport-node";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import { type Flags, UsageError } from "./_args.ts";

/** Where a setting came from: `--flag` or `$ENV`. */
export type Sources = Map<string, string>;

/** What the CLI connects with. */
export interface NatsSettings {
  /** nats.js options: servers without credentials, the authenticator, TLS. */
  options: NodeConnectionOptions;
  /** The servers as `host:port`, safe to print. */
  servers: string[];
  /** How we authenticate, safe to print: `user alice (--user, $NATS_PASSWORD)`, `none`, … */
  auth: string;
  /** Whether a client certificate is given. */
  clientCert: boolean;
  /** Secret values to mask in anything printed. */
  secrets: string[];
  /** Secrets given on the command line, where `ps` shows them. */
  warnings: string[];
}

/** Parsed server URL. */
interface Server {
  hostPort: string;
  hostname: string;
  tls: boolean;
  user?: string;
  pass?: string;
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

function parseServer(raw: string, flag: string): Server {
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `nats://${raw}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`${flag}: invalid server URL ${JSON.stringify(redact(raw))}`);
  }
  const scheme = url.protocol.replace(/:$/, "").toLowerCase();
  if (scheme !== "nats" && scheme !== "tls") {
    throw new UsageError(`${flag}: unsupported scheme ${scheme}:// (use nats:// or tls://)`);
  }
  if (!url.hostname) throw new UsageError(`${flag}: no host in ${JSON.stringify(redact(raw))}`);
  const port = url.port || "4222";
  const decode = (s: string) => (s ? decodeURIComponent(s) : undefined);
  return {
    hostPort: `${url.hostname}:${port}`,
    hostname: url.hostname.replace(/^\[|\]$/g, ""),
    tls: scheme === "tls",
    user: decode(url.username),
    pass: decode(url.password),
  };
}

/** One way to authenticate, found on one level. */
interface Method {
  what: string;
  level: "command line" | "environment";
  make(): NodeConnectionOptions["authenticator"];
  secrets: string[];
}

/** Reads a file named by a flag, or a usage error naming the flag (never its contents). */
function readFlagFile(path: string, source: string): Uint8Array {
  try {
    return Deno.readFileSync(path);
  } catch (err) {
    throw new UsageError(`${source} ${path}: cannot read: ${(err as Error).message}`);
  }
}

/**
 * Builds the connection settings from parsed flags.
 *
 * @param sources where each flag's value came from (`--user` or `$NATS_USER`).
 * @throws {UsageError} naming the flag for a bad URL, an unreadable file, a bad NKey seed or
 *   credentials file, a password without a user, two ways to authenticate, half a client
 *   certificate.
 */
export function natsSettings(flags: Flags, sources: Sources): NatsSettings {
  const src = (name: string) => sources.get(name) ?? `--${name}`;
  const level = (name: string): Method["level"] =>
    src(name).startsWith("$") ? "environment" : "command line";
  const serverFlag = flags.nats !== undefined && !sources.get("server")?.startsWith("--")
    ? "nats"
    : "server";
  const rawServers = (flags[serverFlag] as string | undefined) ?? "127.0.0.1:4222";
  const servers = rawServers.split(",").map((s) => s.trim()).filter(Boolean)
    .map((s) => parseServer(s, src(serverFlag)));
  if (servers.length === 0) throw new UsageError(`${src(serverFlag)}: no server given`);

  const methods: Method[] = [];
  const warnings: string[] = [];
  const withCreds = servers.filter((s) => s.user !== undefined);
  if (withCreds.length) {
    const first = withCreds[0];
    if (withCreds.some((s) => s.user !== first.user || s.pass !== first.pass)) {
      throw new UsageError(
        `${src(serverFlag)}: the server URLs carry different credentials (one set is used for all)`,
      );
    }
    const { user, pass } = first;
    methods.push({
      what: pass === undefined
        ? `token (URL in ${src(serverFlag)})`
        : `user ${user} (URL in ${src(serverFlag)})`,
      level: level(serverFlag),
      make: () =>
        pass === undefined ? tokenAuthenticator(user!) : usernamePasswordAuthenticator(user!, pass),
      secrets: pass === undefined ? [user!] : [pass],
    });
    if (level(serverFlag) === "command line") {
      warnings.push(`credentials in ${src(serverFlag)}`);
    }
  }
  const user = flags.user as string | undefined;
  const password = flags.password as string | undefined;
  if (password !== undefined && user === undefined) {
    throw new UsageError(`${src("password")} needs a user (--user or $NATS_USER)`);
  }
  if (password !== undefined && level("password") === "command line") {
    warnings.push("--password");
  }
  if (user !== undefined) {
    // As in the nats CLI, a user without a password is a token.
    methods.push(
      password === undefined
        ? {
          what: `token (${src("user")})`,
          level: level("user"),
          make: () => tokenAuthenticator(user),
          secrets: [user],
        }
        : {
          what: `user ${user} (${src("user")}, ${src("password")})`,
          level: level("user"),
          make: () => usernamePasswordAuthenticator(user, password),
          secrets: [password],
        },
    );
    if (password === undefined && level("user") === "command line") warnings.push("--user TOKEN");
  }
  const token = flags.token as string | undefined;
  if (token !== undefined) {
    methods.push({
      what: `token (${src("token")})`,
      level: level("token"),
      make: () => tokenAuthenticator(token),
      secrets: [token],
    });
    if (level("token") === "command line") warnings.push("--token");
  }
  const nkeyFile = flags.nkey as string | undefined;
  if (nkeyFile !== undefined) {
    methods.push({
      what: `nkey (${src("nkey")} ${nkeyFile})`,
      level: level("nkey"),
      make: () => nkeyAuthenticator(readSeed(nkeyFile, src("nkey"))),
      secrets: [],
    });
  }
  const credsFile = flags.creds as string | undefined;
  if (credsFile !== undefined) {
    methods.push({
      what: `credentials (${src("creds")} ${credsFile})`,
      level: level("creds"),
      make: () => readCreds(credsFile, src("creds")),
      secrets: [],
    });
  }
  const cmdline = methods.filter((m) => m.level === "command line");
  const chosen = cmdline.length ? cmdline : methods;
  if (chosen.length > 1) {
    throw new UsageError(
      `give one way to authenticate to NATS, got ${chosen.map((m) => m.what).join(" and ")}`,
    );
  }
  const method = chosen[0];

  const tlsca = flags.tlsca as string | undefined;
  const tlscert = flags.tlscert as string | undefined;
  const tlskey = flags.tlskey as string | undefined;
  if ((tlscert === undefined) !== (tlskey === undefined)) {
    throw new UsageError(
      `a client certificate needs both --tlscert and --tlskey (or $NATS_CERT and $NATS_KEY), got ${
        tlscert !== undefined ? src("tlscert") : src("tlskey")
      } only`,
    );
  }
  const dec = new TextDecoder();
  const wantTls = servers.some((s) => s.tls) || tlsca !== undefined || tlscert !== undefined;
  const ips = servers.map((s) => s.hostname).filter((h) => IPV4.test(h) || h.includes(":"));
  const tls = wantTls
    ? {
      ...(tlsca !== undefined ? { ca: dec.decode(readFlagFile(tlsca, src("tlsca"))) } : {}),
      ...(tlscert !== undefined
        ? {
          cert: dec.decode(readFlagFile(tlscert, src("tlscert"))),
          key: dec.decode(readFlagFile(tlskey!, src("tlskey"))),
        }
        : {}),
      checkServerIdentity: identityCheck(ips),
    }
    : undefined;

  return {
    options: {
      servers: servers.map((s) => s.hostPort),
      ...(method ? { authenticator: method.make() } : {}),
      ...(tls ? { tls } : {}),
    },
    servers: servers.map((s) => s.hostPort),
    auth: method?.what ?? "none",
    clientCert: tlscert !== undefined,
    secrets: methods.flatMap((m) => m.secrets),
    warnings,
  };
}

/**
 * nats.js gives the TLS layer no server name for a server given by IP address, so node's check
 * runs against "localhost". Accept a certificate for one of the configured IP addresses then,
 * as the nats CLI (Go) does; names are checked as usual.
 */
function identityCheck(ips: string[]) {
  return (name: string, cert: PeerCertificate): Error | undefined => {
    const first = checkServerIdentity(name, cert);
    if (!first || name !== "localhost") return first;
    for (const ip of ips) if (!checkServerIdentity(ip, cert)) return undefined;
    return ips.length ? checkServerIdentity(ips[0], cert) : first;
  };
}

function readSeed(file: string, source: string): Uint8Array {
  const seed = new TextDecoder().decode(readFlagFile(file, source)).trim();
  try {
    const kp = nkeys.fromSeed(new TextEncoder().encode(seed));
    if (!kp.getPublicKey().startsWith("U")) throw new Error("not a user key");
  } catch {
    throw new UsageError(`${source} ${file}: not a user NKey seed (SU…)`);
  }
  return new TextEncoder().encode(seed);
}

function readCreds(file: string, source: string) {
  const creds = readFlagFile(file, source);
  const auth = credsAuthenticator(creds);
  try {
    auth("probe"); // parses the JWT and the seed now, not at connect time
  } catch {
    throw new UsageError(`${source} ${file}: not a NATS credentials file (JWT and NKey seed)`);
  }
  return auth;
}

/**
 * Masks secrets: the user info of any URL (`nats://***@host`) and every given secret value.
 *
 * @example
 * ```ts
 * import { redact } from "./_nats.ts";
 * redact("nats://alice:s3cret@h:4222 said s3cret", ["s3cret"]); // "nats://***@h:4222 said ***"
 * ```
 */
export function redact(text: string, secrets: string[] = []): string {
  let out = text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/@]*@/gi, "$1***@");
  for (const s of secrets) if (s.length >= 3) out = out.split(s).join("***");
  return out;
}
