/**
 * The floor of the bridge driver's hot path: per-container attach (veth pair with the peer
 * born in the sandbox as eth0, host end on the bridge and up, address, default route) and
 * detach, through src/kernel (rtnetlink over FFI) versus iproute2 in batch mode.
 *
 * Usage (root): `deno run -A bench/kernel_floor.ts [N=200]`
 *
 * Everything happens in a throwaway host namespace and N sandbox namespaces with a per-run
 * prefix; all of them are deleted in `finally`, also after failures.
 *
 * @module
 */

import { createKernel, type Kernel } from "../src/kernel/mod.ts";
import { createTestHost, listPrefixed, type TestHost } from "../tests/_harness/netns.ts";
import { formatSummary, median, summarize, timeMs } from "./_stats.ts";

const N = Number(Deno.args[0] ?? 200);
if (!Number.isInteger(N) || N < 1 || N > 60000) throw new Error(`bad N ${Deno.args[0]}`);

const ipOf = (i: number) => `10.89.${(i + 2) >> 8}.${(i + 2) & 0xff}`;
const GW = "10.89.0.1";

async function ipBatch(ns: string, lines: string[]): Promise<void> {
  const child = new Deno.Command("ip", {
    args: ["-n", ns, "-batch", "-"],
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(lines.join("\n") + "\n"));
  await w.close();
  const out = await child.output();
  if (!out.success) {
    throw new Error(`ip -n ${ns} -batch: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

async function ip(args: string[]): Promise<void> {
  const out = await new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`ip ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

function report(label: string, samples: number[]): number {
  console.log(`  ${label.padEnd(44)} ${formatSummary(summarize(samples))}`);
  return median(samples);
}

async function bench(k: Kernel, host: TestHost, sandboxes: string[]): Promise<void> {
  const { prefix } = host;
  const attach = (i: number) =>
    k.ensureVeth({
      hostName: `${prefix}a${i}`,
      master: "br0",
      netns: `/var/run/netns/${sandboxes[i]}`,
      peerName: "eth0",
      addresses: [`${ipOf(i)}/16`],
      routes: [{ dst: "default", via: GW }],
    });
  // Warm-up on the last sandbox (JIT, socket), then detach: not counted.
  await attach(N);
  await k.deleteLink(`${prefix}a${N}`);

  const modAttach: number[] = [];
  for (let i = 0; i < N; i++) modAttach.push(await timeMs(() => attach(i)));
  const modDetach: number[] = [];
  for (let i = 0; i < N; i++) {
    modDetach.push(await timeMs(() => k.deleteLink(`${prefix}a${i}`)));
  }

  // Detach throughput with 8 deletes in flight: each waits for RCU on a pool thread, so
  // the waits overlap (sequential detach is bound by one RCU grace period per link).
  for (let i = 0; i < N; i++) await attach(i);
  let next = 0;
  const worker = async () => {
    while (next < N) await k.deleteLink(`${prefix}a${next++}`);
  };
  const concurrentShare = (await timeMs(() => Promise.all(Array.from({ length: 8 }, worker)))) /
    N;

  // iproute2, "ip-batch-direct" as in shared/bench/peers.sh: ONE host `ip -batch` holding
  // every container's host line (its time spread evenly over N) + one `ip -n NS -batch`
  // per container.
  const hostLines = sandboxes.slice(0, N).map((ns, i) =>
    `link add ${prefix}b${i} master br0 up type veth peer name eth0 netns ${ns}`
  );
  const hostShare = (await timeMs(() => ipBatch(host.name, hostLines))) / N;
  const batchAttach: number[] = [];
  for (let i = 0; i < N; i++) {
    const lines = [
      `addr add ${ipOf(i)}/16 dev eth0`,
      "link set eth0 up",
      `route add default via ${GW}`,
    ];
    batchAttach.push(hostShare + await timeMs(() => ipBatch(sandboxes[i], lines)));
  }
  const delLines = sandboxes.slice(0, N).map((_, i) => `link del ${prefix}b${i}`);
  const batchDetach = new Array(N).fill((await timeMs(() => ipBatch(host.name, delLines))) / N);

  // iproute2 one container at a time (what a controller serving requests would do): one
  // `ip -n HOST -batch` with the container's host line + one `ip -n NS -batch`.
  const oneAttach: number[] = [];
  for (let i = 0; i < N; i++) {
    const lines = [
      `addr add ${ipOf(i)}/16 dev eth0`,
      "link set eth0 up",
      `route add default via ${GW}`,
    ];
    oneAttach.push(
      await timeMs(async () => {
        await ipBatch(host.name, [hostLines[i].replace(`${prefix}b`, `${prefix}c`)]);
        await ipBatch(sandboxes[i], lines);
      }),
    );
  }
  const oneDetach: number[] = [];
  for (let i = 0; i < N; i++) {
    oneDetach.push(await timeMs(() => ip(["-n", host.name, "link", "del", `${prefix}c${i}`])));
  }

  console.log(`\nper-container attach (N=${N}):`);
  const m = report("src/kernel (rtnetlink over FFI)", modAttach);
  const b = report("ip-batch-direct (host batch amortised)", batchAttach);
  const o = report("ip -batch, one container at a time", oneAttach);
  console.log(`  ratio ip-batch-direct / src/kernel: ${(b / m).toFixed(1)}x (medians)`);
  console.log(`  ratio ip one-at-a-time / src/kernel: ${(o / m).toFixed(1)}x (medians)`);
  console.log(`\nper-container detach (deleteLink of the host end):`);
  const md = report("src/kernel (rtnetlink over FFI)", modDetach);
  report("src/kernel, 8 in flight (total / N)", [concurrentShare]);
  const bd = report("ip -batch (one batch of N dels, amortised)", batchDetach);
  const od = report("ip link del, one process per container", oneDetach);
  console.log(`  ratio ip-batch / src/kernel: ${(bd / md).toFixed(1)}x (medians)`);
  console.log(`  ratio ip one-at-a-time / src/kernel: ${(od / md).toFixed(1)}x (medians)`);
}

const host = await createTestHost("kf");
let kernel: Kernel | undefined;
try {
  kernel = await createKernel({ hostNamespace: host.path });
  await kernel.ensureBridge({ name: "br0", addresses: [`${GW}/16`] });
  const sandboxes: string[] = [];
  const t0 = performance.now();
  for (let i = 0; i <= N; i++) {
    const name = `${host.prefix}-c${i}`;
    await kernel.ensureNetns(name);
    sandboxes.push(name);
  }
  console.log(
    `kernel floor: host ${host.name}, ${N} sandboxes (+1 warm-up) created in ` +
      `${((performance.now() - t0) / 1000).toFixed(1)} s (not timed)`,
  );
  await bench(kernel, host, sandboxes);
} finally {
  await kernel?.close();
  await host.cleanup();
  const left = await listPrefixed(host.prefix);
  if (left.length) console.error(`left behind: ${left.join(" ")}`);
}
