/**
 * Starts a real nats-server with JetStream on a free loopback port and a temp store, for
 * integration tests. No mocks. Stops by pid.
 *
 * @module
 */

/** A running (or stopped) test server. */
export interface TestNats {
  url: string;
  port: number;
  storeDir: string;
  /** The server's log (with `log: true`), else "". */
  log(): Promise<string>;
  /** Stops the server (SIGTERM, then SIGKILL); safe to call twice. */
  stop(): Promise<void>;
  /** Starts it again on the same port and store. */
  start(): Promise<void>;
  /** Stops it and removes the store. */
  cleanup(): Promise<void>;
}

/** Options of {@link startNats}. */
export interface StartNatsOptions {
  /** Start without JetStream (to test the error). Default false. */
  noJetStream?: boolean;
  /**
   * Text of a nats-server configuration file (authorization, accounts, tls, …). The harness
   * still sets the address, the port and (unless `noJetStream`) JetStream with its temp store
   * on the command line, which takes precedence over the file. Default: no file.
   */
  config?: string;
  /** Keep the server's log (read it with `log()`), e.g. to see permission violations. */
  log?: boolean;
}

/** Sends `signal` to a child we started, SIGKILL after 5 s if it is still there; waits for it. */
export async function endProcess(child: Deno.ChildProcess, signal: Deno.Signal): Promise<void> {
  try {
    child.kill(signal);
  } catch { /* already gone */ }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 5000);
  await child.status;
  clearTimeout(timer);
}

/** Picks a free loopback TCP port. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * Starts nats-server -js on 127.0.0.1 with a temp store dir.
 *
 * @throws {Error} when nats-server is missing (install with apt-get install nats-server).
 */
export async function startNats(options: StartNatsOptions = {}): Promise<TestNats> {
  const port = freePort();
  const storeDir = await Deno.makeTempDir({ prefix: "cnm-nats-" });
  // The config and the log live beside the store (removed with it by cleanup()).
  const configFile = `${storeDir}.conf`;
  const logFile = `${storeDir}.log`;
  if (options.config !== undefined) await Deno.writeTextFile(configFile, options.config);
  let child: Deno.ChildProcess | undefined;
  const start = async () => {
    const args = options.config !== undefined ? ["-c", configFile] : [];
    args.push("-a", "127.0.0.1", "-p", String(port));
    if (!options.noJetStream) args.push("-js", "-sd", storeDir);
    if (options.log) args.push("-l", logFile);
    try {
      child = new Deno.Command("nats-server", { args, stdout: "null", stderr: "null" }).spawn();
    } catch (err) {
      throw new Error("nats-server not found: install it with `apt-get install nats-server`", {
        cause: err,
      });
    }
    const exited = child.status.then((s) => {
      throw new Error(`nats-server exited with code ${s.code} before listening (bad config?)`);
    });
    await Promise.race([waitForPort(port, 10_000), exited]);
    exited.catch(() => {}); // it may still exit later: stop() is how tests see that
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (c) await endProcess(c, "SIGTERM");
  };
  await start();
  return {
    url: `127.0.0.1:${port}`,
    port,
    storeDir,
    log: () => options.log ? Deno.readTextFile(logFile).catch(() => "") : Promise.resolve(""),
    stop,
    start,
    async cleanup() {
      await stop();
      await Deno.remove(storeDir, { recursive: true }).catch(() => {});
      await Deno.remove(configFile).catch(() => {});
      await Deno.remove(logFile).catch(() => {});
    },
  };
}

async function waitForPort(port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`nats-server did not listen on 127.0.0.1:${port} within ${ms} ms`);
}
