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
  let child: Deno.ChildProcess | undefined;
  const start = async () => {
    const args = ["-a", "127.0.0.1", "-p", String(port)];
    if (!options.noJetStream) args.push("-js", "-sd", storeDir);
    try {
      child = new Deno.Command("nats-server", { args, stdout: "null", stderr: "null" }).spawn();
    } catch (err) {
      throw new Error("nats-server not found: install it with `apt-get install nats-server`", {
        cause: err,
      });
    }
    await waitForPort(port, 10_000);
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
    stop,
    start,
    async cleanup() {
      await stop();
      await Deno.remove(storeDir, { recursive: true }).catch(() => {});
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
