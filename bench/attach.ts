/**
 * `deno task bench`: attach and detach through cnm against the raw floor, in one run.
 *
 * - cnm attach = createEndpoint + join of a fresh sandbox on one bridge network, journal
 *   appends included (4 durable appends); cnm detach = leave + deleteEndpoint.
 * - cnm core = the same through a second controller with embedded DNS and snapshots off:
 *   the event-sourced path alone, apart from the features every attach now also pays for.
 * - floor = the same kernel work from one long-lived process (src/kernel's rtnetlink: veth
 *   with the peer born in the namespace, bridge port, MAC, address, default route) and
 *   `ip -batch` (one host batch line + one `ip -n NS -batch` per container).
 * Samples alternate between methods so machine noise hits all of them alike. Sandboxes
 * (namespaces) are made beforehand and not timed, as in ../shared/bench.
 *
 * Usage (root): `deno task bench [N=200]`. Everything runs in a throwaway host namespace
 * and a throwaway nats-server, removed at the end.
 *
 * @module
 */

import { createController } from "../mod.ts";
import { createKernel } from "../src/kernel/mod.ts";
import { startNats } from "../tests/_harness/nats.ts";
import { createTestHost } from "../tests/_harness/netns.ts";
import { sh } from "../tests/_harness/env.ts";
import { formatSummary, median, summarize } from "./_stats.ts";

const N = Number(Deno.args[0] ?? 200);
if (!Number.isInteger(N) || N < 1 || N > 4000) throw new Error(`bad N ${Deno.args[0]}`);

const ip = (args: string[], stdin?: string) => sh(["ip", ...args], stdin);

const time = async (f: () => Promise<unknown>) => {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
};

async function main() {
  const host = await createTestHost("bn");
  const nats = await startNats();
  const stateDir = await Deno.makeTempDir({ prefix: "cnm-bench-" });
  const kernel = await createKernel({ hostNamespace: host.path });
  try {
    const cnm = await createController({
      nats: { servers: nats.url },
      stream: "BENCH",
      prefix: "bench",
      hostId: "bench",
      kernel: { hostNamespace: host.path },
      namePrefix: `${host.prefix}-`,
      stateDir,
      defaultBridge: false,
    });
    await cnm.createNetwork({ name: "bench", ipam: { config: [{ subnet: "10.90.0.0/16" }] } });
    // The core path alone, as it was before embedded DNS and snapshots: what the controller
    // itself costs, apart from the features every attach now also pays for.
    const core = await createController({
      nats: { servers: nats.url },
      stream: "BENCHCORE",
      prefix: "benchcore",
      hostId: "core",
      kernel: { hostNamespace: host.path },
      namePrefix: `${host.prefix}-`,
      stateDir: `${stateDir}/core`,
      defaultBridge: false,
      embeddedDns: false,
      snapshots: false,
    });
    await core.createNetwork({ name: "core", ipam: { config: [{ subnet: "10.93.0.0/16" }] } });
    // Floor networks: plain bridges made the same way, in the same host namespace.
    await kernel.ensureBridge({ name: "flr0", addresses: ["10.91.0.1/16"] });
    await kernel.ensureBridge({ name: "ipb0", addresses: ["10.92.0.1/16"] });
    const sandboxes: { id: string }[] = [];
    for (let i = 0; i < N; i++) sandboxes.push(await cnm.createSandbox({ name: `c${i}` }));
    const coreSandboxes: { id: string }[] = [];
    for (let i = 0; i < N; i++) coreSandboxes.push(await core.createSandbox({ name: `k${i}` }));
    const floorNs: string[] = [];
    const batchNs: string[] = [];
    for (let i = 0; i < N; i++) {
      floorNs.push(await kernel.ensureNetns(`${host.prefix}-f${i}`));
      batchNs.push(await kernel.ensureNetns(`${host.prefix}-b${i}`));
    }
    const addr = (net: number, i: number) => `10.${net}.${(i + 2) >> 8}.${(i + 2) & 0xff}`;
    const samples = {
      cnm: [] as number[],
      core: [] as number[],
      floor: [] as number[],
      batch: [] as number[],
    };
    const detach = {
      cnm: [] as number[],
      core: [] as number[],
      floor: [] as number[],
      batch: [] as number[],
    };
    const endpoints: string[] = [];
    const coreEndpoints: string[] = [];

    for (let i = 0; i < N; i++) {
      samples.cnm.push(
        await time(async () => {
          const ep = await cnm.createEndpoint("bench", { name: `c${i}` });
          await cnm.join(ep.id, sandboxes[i].id);
          endpoints.push(ep.id);
        }),
      );
      samples.core.push(
        await time(async () => {
          const ep = await core.createEndpoint("core", { name: `k${i}` });
          await core.join(ep.id, coreSandboxes[i].id);
          coreEndpoints.push(ep.id);
        }),
      );
      samples.floor.push(
        await time(() =>
          kernel.ensureVeth({
            hostName: `fv${i}`,
            master: "flr0",
            netns: floorNs[i],
            peerName: "eth0",
            peerMac: "02:42:0a:5b:00:02",
            addresses: [`${addr(91, i)}/16`],
            routes: [{ dst: "default", via: "10.91.0.1" }],
          })
        ),
      );
      samples.batch.push(
        await time(async () => {
          await ip(
            ["-n", host.name, "-batch", "-"],
            `link add bv${i} type veth peer name eth0 netns ${batchNs[i].split("/").pop()}\n` +
              `link set bv${i} master ipb0 up\n`,
          );
          await ip(
            ["-n", batchNs[i].split("/").pop()!, "-batch", "-"],
            `addr add ${
              addr(92, i)
            }/16 dev eth0\nlink set eth0 up\nroute add default via 10.92.0.1\n`,
          );
        }),
      );
    }
    for (let i = 0; i < N; i++) {
      detach.cnm.push(
        await time(async () => {
          await cnm.leave(endpoints[i], sandboxes[i].id);
          await cnm.deleteEndpoint(endpoints[i]);
        }),
      );
      detach.core.push(
        await time(async () => {
          await core.leave(coreEndpoints[i], coreSandboxes[i].id);
          await core.deleteEndpoint(coreEndpoints[i]);
        }),
      );
      detach.floor.push(await time(() => kernel.deleteLink(`fv${i}`)));
      detach.batch.push(await time(() => ip(["-n", host.name, "link", "del", `bv${i}`])));
    }
    await cnm.close();
    await core.close();

    const rows: [string, number[], number[]][] = [
      ["cnm (createEndpoint + join, 4 journal appends)", samples.cnm, detach.cnm],
      ["cnm core: embedded DNS and snapshots off", samples.core, detach.core],
      ["floor: one rtnetlink process (src/kernel)", samples.floor, detach.floor],
      ["ip -batch (host batch + netns batch)", samples.batch, detach.batch],
    ];
    const floorA = median(samples.floor), floorD = median(detach.floor);
    console.log(
      `\nattach/detach, N = ${N}, ms per container (median, p95); ratio = median / floor median\n`,
    );
    console.log(
      "| method | attach median | attach p95 | ratio | detach median | detach p95 | ratio |",
    );
    console.log("|---|---:|---:|---:|---:|---:|---:|");
    for (const [name, a, d] of rows) {
      const sa = summarize(a), sd = summarize(d);
      console.log(
        `| ${name} | ${sa.median.toFixed(2)} | ${sa.p95.toFixed(2)} | ${
          (sa.median / floorA).toFixed(2)
        }× | ` +
          `${sd.median.toFixed(2)} | ${sd.p95.toFixed(2)} | ${(sd.median / floorD).toFixed(2)}× |`,
      );
    }
    console.log(`\ncnm attach: ${formatSummary(summarize(samples.cnm))}`);
    console.log(
      `target: cnm attach median ≤ 8 ms → ${median(samples.cnm) <= 8 ? "met" : "NOT met"}; ` +
        `detach within 1.3× of the floor → ${
          median(detach.cnm) / floorD <= 1.3 ? "met" : "NOT met"
        }`,
    );
  } finally {
    await kernel.close().catch(() => {});
    await nats.cleanup();
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    await host.cleanup();
  }
}

if (import.meta.main) await main();
