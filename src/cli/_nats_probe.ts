/**
 * Two helpers for clear NATS connection errors. {@link guardTlsAlerts}: when a server rejects
 * the client's certificate (or wants one), the TLS alert surfaces in nats.js's node transport
 * as an exception thrown from a socket callback, which would crash the process with a stack
 * trace; the guard catches exactly those, and hands them to whoever is connecting.
 * {@link probeServer}: reads a server's plaintext `INFO` greeting, to say what it requires
 * (TLS, a client certificate, credentials) after a connect timed out.
 *
 * @module
 */

const watchers = new Set<(e: Error) => void>();
let installed = false;

const TLS_ALERT = /fatal alert|BadCertificate|CertificateRequired|UnknownCA|handshake/i;

/** A watch on TLS alerts during one connect. */
export interface AlertWatch {
  /** Resolves with the first alert seen. */
  promise: Promise<Error>;
  /** The first alert seen, if any. */
  seen(): Error | undefined;
  /** Stops watching (the process stays guarded). */
  done(): void;
}

/** Guards the process against uncaught TLS alerts (once) and watches for them until `done()`. */
export function guardTlsAlerts(): AlertWatch {
  if (!installed) {
    installed = true;
    globalThis.addEventListener("error", (ev) => {
      const err = ev.error;
      if (!(err instanceof Error) || !TLS_ALERT.test(err.message)) return;
      ev.preventDefault(); // the connection fails (or reconnects); the process lives
      for (const w of watchers) w(err);
    });
  }
  let seen: Error | undefined;
  let resolve!: (e: Error) => void;
  const promise = new Promise<Error>((r) => (resolve = r));
  const watcher = (e: Error) => {
    seen ??= e;
    resolve(e);
  };
  watchers.add(watcher);
  return { promise, seen: () => seen, done: () => void watchers.delete(watcher) };
}

/** The fields of a server's INFO that explain a refused connection. */
export interface ServerInfo {
  tls_required?: boolean;
  tls_verify?: boolean;
  auth_required?: boolean;
}

/**
 * Reads the INFO greeting of the first server (`host:port`) that answers within `ms`.
 *
 * @returns undefined when none answers with an INFO line.
 */
export async function probeServer(servers: string[], ms = 2000): Promise<ServerInfo | undefined> {
  for (const s of servers) {
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(s);
    if (!m) continue;
    let conn: Deno.Conn | undefined;
    const timer = setTimeout(() => conn?.close(), ms);
    try {
      conn = await Deno.connect({ hostname: m[1], port: Number(m[2]) });
      const buf = new Uint8Array(8192);
      let text = "";
      while (!text.includes("\r\n")) {
        const n = await conn.read(buf);
        if (n === null) break;
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
      const info = /^INFO\s+(\{.*\})/.exec(text);
      if (info) return JSON.parse(info[1]) as ServerInfo;
    } catch {
      /* try the next one */
    } finally {
      clearTimeout(timer);
      try {
        conn?.close();
      } catch { /* closed by the timer */ }
    }
  }
  return undefined;
}
