/**
 * Cost per remote peer programmed by the overlay driver (one permanent neighbour + one
 * permanent `self` FDB entry on the VXLAN device), against the same netlink work sent by one
 * process through src/kernel in one batch (the floor), one datagram per entry, and iproute2 in
 * batch mode (the exec floor of reference/networking.md §1.8).
 *
 * Usage (root): `deno run -A bench/overlay_peers.ts [N=1000] [runs=5]` (each method also gets
 * one uncounted warm-up run)
 *
 * Everything happens in a throwaway host namespace, one sandbox and the network's overlay
 * namespace, all carrying a per-run prefix and deleted in `finally`. Every run is verified
 * against the kernel's own listing (N neighbours, N FDB entries with the right VTEP).
 *
 * @module
 */

import { createOverlayDriver, type OverlayPeer } from "../drivers/overlay/mod.ts";
import type { DriverNetwork, EffectContext } from "../drivers/driver.ts";
import { createKernel, type Kernel, type NeighborChange } from "../src/kernel/mod.ts";
import { sh } from "../tests/_harness/command.ts";
import { createTestHost, listPrefixed } from "../tests/_harness/netns.ts";
import { median, timeMs } from "./_stats.ts";

const N = Number(Deno.args[0] ?? 1000);
const RUNS = Number(Deno.args[1] ?? 5);
if (!Number.isInteger(N) || N < 1 || N > 60000) throw new Error(`bad N ${Deno.args[0]}`);
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`bad runs ${Deno.args[1]}`);

const hex2 = (n: number) => n.toString(16).padStart(2, "0");
const peer = (i: number): OverlayPeer => {
  const n = i + 10; // .0.1 is the gateway, .0.2 the local endpoint
  const ip = `10.0.${n >> 8}.${n & 0xff}`;
  const nets = ["192.0.2", "198.51.100", "203.0.113"];
  return {
    ip,
    mac: `02:42:0a:00:${hex2(n >> 8)}:${hex2(n & 0xff)}`,
    vtep: `${nets[i % 3]}.${(Math.floor(i / 3) % 250) + 2}`,
  };
};
const peers = Array.from({ length: N }, (_, i) => peer(i));

const network: DriverNetwork = {
  id: "be0c".padEnd(64, "9"),
  internal: false,
  enableIPv6: false,
  options: { "com.docker.network.driver.overlay.vxlanid_list": "4096" },
  labels: {},
  ipv4: [{
    addressSpace: "GlobalDefault",
    pool: "10.0.0.0/16",
    gateway: "10.0.0.1/16",
    auxAddresses: {},
  }],
  ipv6: [],
  facts: {},
};
const VX = "vx-001000-be0c9";

const adds = (list: OverlayPeer[]): NeighborChange[] =>
  list.flatMap((p) => [
    { op: "add" as const, neighbor: { dev: VX, ip: p.ip, mac: p.mac } },
    { op: "add" as const, fdb: { dev: VX, mac: p.mac, dst: p.vtep } },
  ]);
const dels = (list: OverlayPeer[]): NeighborChange[] =>
  list.flatMap((p) => [
    { op: "delete" as const, fdb: { dev: VX, mac: p.mac } },
    { op: "delete" as const, neighbor: { dev: VX, ip: p.ip } },
  ]);

async function pipe(argv: string[], lines: string[]): Promise<void> {
  await sh(argv, lines.join("\n") + "\n");
}

async function main(kernel: Kernel, ctx: EffectContext, ovPath: string, ovName: string) {
  const driver = createOverlayDriver({ advertiseAddress: "192.0.2.1", owner: "bench0" });
  const sbPath = await kernel.ensureNetns(`${ctx.prefix}sb`);
  const ep = {
    id: "e0".padEnd(64, "1"),
    networkId: network.id,
    options: {},
    ipv4Address: "10.0.0.2/16",
    facts: {},
  };
  await driver.join(network, ep, { id: "sb", key: sbPath, ifname: "eth0", labels: {} }, ctx);
  if (!(await kernel.netnsExists(ovPath))) throw new Error(`overlay namespace ${ovPath} missing`);

  const verify = async (what: string, expected: number) => {
    const neigh = (await kernel.listNeighbors(ovPath, VX)).filter((n) => n.permanent).length;
    const fdb = (await kernel.listFdb(ovPath, VX)).filter((f) => f.self && f.dst);
    const right = expected === 0 ||
      fdb.find((f) => f.mac === peers[N - 1].mac)?.dst === peers[N - 1].vtep;
    if (neigh !== expected || fdb.length !== expected || !right) {
      throw new Error(
        `${what}: kernel holds ${neigh} neighbours / ${fdb.length} FDB entries, expected ${expected}`,
      );
    }
  };
  const clear = async () => {
    await kernel.applyNeighbors(dels(peers), ovPath);
    await driver.setPeers(network, [], ctx);
    await verify("clear", 0);
  };
  const rows: [string, number[]][] = [];
  const measure = async (
    label: string,
    run: () => Promise<unknown>,
    expected = N,
    prepare = clear,
  ) => {
    const samples: number[] = [];
    for (let r = -1; r < RUNS; r++) { // r = -1: a warm-up run, not counted
      await prepare();
      const ms = await timeMs(run);
      if (r >= 0) samples.push(ms);
      await verify(label, expected);
    }
    rows.push([label, samples]);
  };
  const fill = async () => {
    await clear();
    await driver.setPeers(network, peers, ctx);
  };
  // Warm-up (JIT, sockets): not counted.
  await driver.setPeers(network, peers, ctx);
  await clear();

  await measure(
    "kernel applyNeighbors, one call (floor)",
    () => kernel.applyNeighbors(adds(peers), ovPath),
  );
  await measure("driver addPeers, one call for all N", () => driver.addPeers(network, peers, ctx));
  await measure(
    "driver setPeers into an empty table (dump+diff+batch)",
    () => driver.setPeers(network, peers, ctx),
  );
  await measure(
    "driver setPeers, nothing to change (dump+diff)",
    () => driver.setPeers(network, peers, ctx),
    N,
    fill,
  );
  await measure("driver addPeers, one call per peer", async () => {
    for (const p of peers) await driver.addPeers(network, [p], ctx);
  });
  await measure("kernel ensureNeighbor + ensureFdb, one datagram each", async () => {
    for (const p of peers) {
      await kernel.ensureNeighbor({ dev: VX, ip: p.ip, mac: p.mac }, ovPath);
      await kernel.ensureFdb({ dev: VX, mac: p.mac, dst: p.vtep }, ovPath);
    }
  });
  await measure("iproute2 ip -batch + bridge -batch (2 execs)", async () => {
    await pipe(
      ["ip", "-n", ovName, "-batch", "-"],
      peers.map((p) => `neigh replace ${p.ip} lladdr ${p.mac} dev ${VX} nud permanent`),
    );
    await pipe(
      ["bridge", "-n", ovName, "-batch", "-"],
      peers.map((p) => `fdb replace ${p.mac} dev ${VX} dst ${p.vtep} self permanent`),
    );
  });
  await measure(
    "kernel applyNeighbors deletes, one call (floor)",
    () => kernel.applyNeighbors(dels(peers), ovPath),
    0,
    fill,
  );
  await measure(
    "driver removePeers, one call for all N",
    () => driver.removePeers(network, peers, ctx),
    0,
    fill,
  );

  const floor = median(rows[0][1]);
  console.log(
    `\noverlay peer programming: N=${N} remote peers (1 neighbour + 1 FDB entry each), median of ${RUNS} runs`,
  );
  console.log(
    `  ${"method".padEnd(56)} ${"total ms".padStart(9)} ${"ms/peer".padStart(9)} ${
      "x floor".padStart(8)
    }`,
  );
  for (const [label, samples] of rows) {
    const m = median(samples);
    const ref = label.includes("deletes") || label.includes("removePeers")
      ? median(rows[7][1])
      : floor;
    console.log(
      `  ${label.padEnd(56)} ${m.toFixed(1).padStart(9)} ${(m / N).toFixed(4).padStart(9)} ${
        (m / ref).toFixed(1).padStart(8)
      }`,
    );
  }
}

const host = await createTestHost("obp");
let kernel: Kernel | undefined;
try {
  kernel = await createKernel({ hostNamespace: host.path });
  const ctx: EffectContext = { effectId: "bench", kernel, prefix: `${host.prefix}-` };
  const ovName = `${host.prefix}-ov-bench0-${network.id.slice(0, 12)}`;
  await main(kernel, ctx, `/var/run/netns/${ovName}`, ovName);
} finally {
  await kernel?.close();
  await host.cleanup();
  const left = await listPrefixed(host.prefix);
  if (left.length) console.error(`left behind: ${left.join(" ")}`);
}
