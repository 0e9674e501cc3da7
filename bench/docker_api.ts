/**
 * `deno task bench:docker`: the Docker API socket against cnm's native CLI, in one run,
 * both in front of the same controller (one `cnm serve --docker-socket` process):
 *
 * - `docker network ls` vs `./cnm network ls` (the native one replays the stream), wall time
 *   of the whole command as a user runs it;
 * - `docker network connect NET CTR` vs `./cnm connect NET SB` (the native one goes over
 *   NATS request/reply), and the matching disconnects, alternating so noise hits both;
 * - requests/s of `GET /v1.41/networks` with 100 networks, next to `GET /_ping` on the same
 *   socket (the HTTP floor), over 4 keep-alive connections.
 *
 * Usage (root): `deno task bench:docker [N=20]`. Everything runs in a throwaway host
 * namespace with a throwaway nats-server, removed at the end. Never a Docker daemon.
 *
 * @module
 */

import { startNats } from "../tests/_harness/nats.ts";
import { createTestHost } from "../tests/_harness/netns.ts";
import { output } from "../tests/_harness/command.ts";
import { dockerCli } from "../tests/_harness/docker.ts";
import { CNM, type ServeProcess, startServe } from "../tests/_harness/cnm_serve.ts";
import { median, percentile } from "./_stats.ts";

const N = Number(Deno.args[0] ?? 20);
if (!Number.isInteger(N) || N < 1 || N > 500) throw new Error(`bad N ${Deno.args[0]}`);
const enc = new TextEncoder();
const dec = new TextDecoder();

async function timed(argv: string[], env: Record<string, string>): Promise<number> {
  const t0 = performance.now();
  const r = await output(argv, { env });
  const ms = performance.now() - t0;
  if (r.code !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
  return ms;
}

/** Sends `request` repeatedly on one keep-alive connection until `deadline`; counts answers. */
async function hammer(path: string, request: string, deadline: number, max: number) {
  const conn = await Deno.connect({ transport: "unix", path });
  const buf = new Uint8Array(1 << 20);
  let pending = new Uint8Array(0);
  let count = 0;
  try {
    while (performance.now() < deadline && count < max) {
      await conn.write(enc.encode(request));
      // Read one answer: headers, then Content-Length bytes.
      for (;;) {
        const text = dec.decode(pending);
        const end = text.indexOf("\r\n\r\n");
        if (end >= 0) {
          const len = Number(/content-length: (\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
          const head = enc.encode(text.slice(0, end + 4)).length;
          if (pending.length >= head + len) {
            if (!text.startsWith("HTTP/1.1 200")) throw new Error(text.slice(0, 200));
            pending = pending.slice(head + len);
            break;
          }
        }
        const n = await conn.read(buf);
        if (n === null) throw new Error("connection closed");
        const next = new Uint8Array(pending.length + n);
        next.set(pending);
        next.set(buf.subarray(0, n), pending.length);
        pending = next;
      }
      count++;
    }
  } finally {
    conn.close();
  }
  return count;
}

async function rate(path: string, target: string, seconds: number): Promise<number> {
  const request = `GET ${target} HTTP/1.1\r\nHost: api.moby.localhost\r\n\r\n`;
  const t0 = performance.now();
  const counts = await Promise.all(
    [0, 1, 2, 3].map(() => hammer(path, request, t0 + seconds * 1000, 200_000)),
  );
  return counts.reduce((a, b) => a + b, 0) / ((performance.now() - t0) / 1000);
}

async function main() {
  const cli = await dockerCli();
  const host = await createTestHost("bd");
  const nats = await startNats();
  const dir = await Deno.makeTempDir({ prefix: "cnm-bench-docker-" });
  const sock = `${dir}/docker.sock`;
  const env = {
    CNM_NATS_URL: nats.url,
    CNM_STREAM: "BENCHD",
    CNM_PREFIX: "benchd",
    CNM_HOST_ID: "bench",
    DOCKER_HOST: `unix://${sock}`,
    DOCKER_CONFIG: dir,
  };
  let server: ServeProcess | undefined;
  try {
    server = await startServe({
      env,
      hostNamespace: host.path,
      namePrefix: `${host.prefix}-`,
      stateDir: dir,
      args: ["-q", "--docker-socket", sock],
    });
    const cnm = (...args: string[]) => timed([CNM, ...args], env);
    const docker = (...args: string[]) => timed([cli, ...args], env);
    await cnm("network", "create", "--subnet", "10.90.0.0/16", "bench");
    for (let i = 0; i < N; i++) {
      await cnm("sandbox", "create", `d${i}`);
      await cnm("sandbox", "create", `n${i}`);
    }
    const t: Record<string, number[]> = {
      dls: [],
      nls: [],
      dcon: [],
      ncon: [],
      ddis: [],
      ndis: [],
    };
    for (let i = 0; i < N; i++) {
      t.dls.push(await docker("network", "ls"));
      t.nls.push(await cnm("network", "ls"));
      t.dcon.push(await docker("network", "connect", "bench", `d${i}`));
      t.ncon.push(await cnm("connect", "bench", `n${i}`));
      t.ddis.push(await docker("network", "disconnect", "bench", `d${i}`));
      t.ndis.push(await cnm("disconnect", "bench", `n${i}`));
    }
    // 100 networks for the list rate (the predefined three and `bench` included).
    for (let i = 0; i < 96; i++) {
      await docker("network", "create", "--subnet", `10.100.${i}.0/24`, `r${i}`);
    }
    const listed = (await output([cli, "network", "ls", "-q"], { env })).stdout.trim().split("\n")
      .length;
    await rate(sock, "/v1.41/networks", 1); // warm up
    const netsRate = await rate(sock, "/v1.41/networks", 5);
    const pingRate = await rate(sock, "/_ping", 5);
    const row = (name: string, a: number[], b: number[]) => {
      const ma = median(a), mb = median(b);
      return `| ${name} | ${ma.toFixed(1)} (p95 ${percentile(a, 95).toFixed(1)}) | ${
        mb.toFixed(1)
      } (p95 ${percentile(b, 95).toFixed(1)}) | ${(ma / mb).toFixed(2)}× |`;
    };
    console.log(`\nDocker API vs native CLI, same controller, N = ${N} (median ms, wall time)\n`);
    console.log("| command | docker CLI → cnm socket | ./cnm (native) | ratio |");
    console.log("|---|---:|---:|---:|");
    console.log(row("network ls", t.dls, t.nls));
    console.log(row("network connect", t.dcon, t.ncon));
    console.log(row("network disconnect", t.ddis, t.ndis));
    console.log(
      `\nGET /v1.41/networks with ${listed} networks: ${netsRate.toFixed(0)} req/s ` +
        `(GET /_ping on the same socket, the HTTP floor: ${pingRate.toFixed(0)} req/s; ` +
        `4 keep-alive connections, 5 s each)`,
    );
    await server.stop();
  } finally {
    await server?.cleanup();
    await nats.cleanup().catch(() => {});
    await host.cleanup().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

await main();
