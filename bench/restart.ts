/**
 * `deno task bench:restart [N=10]`: how long a host is without a controller when `cnm serve`
 * is killed with SIGKILL and started again — from starting the new process to its first
 * accepted mutation (a createSandbox over the NATS API) — against the floor measured in the
 * same run: the same restart after a clean stop (SIGTERM: the lease is released, so nothing
 * is waited for; what is left is process start, connect, recovery and the first command).
 * Kills and clean stops alternate so machine noise hits both alike. At the end it starts a
 * second controller for the host while the first is alive, to show the lease still refuses a
 * live one (it waits `leaseWaitMs`, saying for what, then fails), and a second `cnm serve`
 * (refused at once: something already answers for the host).
 *
 * Everything runs in a throwaway host namespace and a throwaway nats-server (as root); only
 * processes this benchmark started are killed, by pid.
 *
 * @module
 */

import { createController } from "../mod.ts";
import { createApiClient, type NoControllerError } from "../src/api/client.ts";
import { startNats } from "../tests/_harness/nats.ts";
import { createTestHost } from "../tests/_harness/netns.ts";
import { formatSummary, median, summarize } from "./_stats.ts";

const N = Number(Deno.args[0] ?? 10);
if (!Number.isInteger(N) || N < 1 || N > 100) throw new Error(`bad N ${Deno.args[0]}`);

const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;
const where = { stream: "RESTART", prefix: "restart", hostId: "bench" };

/** A running `cnm serve` child, with what it printed on stderr. */
interface Serve {
  child: Deno.ChildProcess;
  stderr: () => string;
  exited: Promise<Deno.CommandStatus>;
}

function startServe(url: string, nsPath: string, namePrefix: string, stateDir: string): Serve {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      MAIN,
      "--nats",
      url,
      "--stream",
      where.stream,
      "--prefix",
      where.prefix,
      "--host",
      where.hostId,
      "serve",
      "-q",
      "--namespace",
      nsPath,
      "--name-prefix",
      namePrefix,
      "--state-dir",
      stateDir,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let text = "";
  const pump = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) text += chunk;
  })();
  const exited = child.status.then(async (s) => (await pump, s));
  return { child, stderr: () => text, exited };
}

async function main() {
  const host = await createTestHost("rs");
  const nats = await startNats();
  const stateDir = await Deno.makeTempDir({ prefix: "cnm-bench-restart-" });
  const api = await createApiClient({ nats: { servers: nats.url }, ...where, timeoutMs: 2000 });
  const start = () => startServe(nats.url, host.path, `${host.prefix}-`, stateDir);
  let serve: Serve | undefined;
  let mutations = 0;
  /** Milliseconds from now until the host's controller accepts a mutation. */
  const untilAccepted = async (t0: number): Promise<number> => {
    for (;;) {
      try {
        await api.createSandbox({ name: `s${mutations}` });
        mutations++;
        return performance.now() - t0;
      } catch (err) {
        // Nobody answers yet; or (rarely) the request went to the killed server's subscription
        // before nats-server noticed it was gone, and timed out: both count as not accepted.
        const e = err as NoControllerError;
        if (e.name !== "NoControllerError" && !/got no reply: timeout/.test(e.message)) {
          console.error(`cnm serve said:\n${serve?.stderr()}`);
          throw err;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  };
  try {
    serve = start();
    await untilAccepted(performance.now());
    await api.createNetwork({ name: "bench", ipam: { config: [{ subnet: "10.93.0.0/16" }] } });
    const killed: number[] = [];
    const stopped: number[] = [];
    const lines: string[] = [];
    for (let i = 0; i < 2 * N; i++) {
      const kill = i % 2 === 0;
      serve.child.kill(kill ? "SIGKILL" : "SIGTERM");
      await serve.exited;
      const t0 = performance.now();
      serve = start();
      (kill ? killed : stopped).push(await untilAccepted(t0));
      if (kill && lines.length === 0) {
        await new Promise((r) => setTimeout(r, 100));
        lines.push(...serve.stderr().trim().split("\n"));
      }
    }
    console.log(`cnm serve restart, start of the new process → first accepted mutation (N = ${N})`);
    console.log(`  after kill -9:            ${formatSummary(summarize(killed))}`);
    console.log(`  after a clean stop (floor): ${formatSummary(summarize(stopped))}`);
    console.log(
      `  ratio of medians: ${(median(killed) / median(stopped)).toFixed(2)}× ` +
        `(target: kill -9 median < 1000 ms)`,
    );
    console.log(`  the new controller said, after the first kill:`);
    for (const l of lines) console.log(`    ${l}`);

    // A live second controller is still refused: by the lease (a controller through the
    // library: it waits, says so, and gives up), and `cnm serve` already by its responder probe.
    const lines2: string[] = [];
    const t0 = performance.now();
    const err = await createController({
      nats: { servers: nats.url },
      ...where,
      kernel: { hostNamespace: host.path },
      namePrefix: `${host.prefix}-`,
      stateDir,
      leaseWaitMs: 2000,
      log: (l) => lines2.push(l),
    }).then(async (c) => (await c.close(), undefined), (e: Error) => e);
    console.log(
      `a second controller while the first is alive: ${err?.name ?? "NOT REFUSED"} after ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s (leaseWaitMs 2000); it said:`,
    );
    for (const l of [...lines2, err?.message ?? ""]) console.log(`    ${l}`);
    const second = start();
    const status = await second.exited;
    console.log(`a second cnm serve: exit ${status.code}; it said:`);
    for (const l of second.stderr().trim().split("\n")) console.log(`    ${l}`);
    await api.createSandbox({ name: "still-served" });
    console.log("  the first one still accepts mutations");
  } finally {
    await api.close();
    if (serve) {
      try {
        serve.child.kill("SIGTERM");
      } catch { /* gone */ }
      await serve.exited;
    }
    await nats.cleanup();
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    await host.cleanup();
  }
}

await main();
