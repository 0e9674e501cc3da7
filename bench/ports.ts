/**
 * `deno task bench:ports`: what publishing one port costs, against the floor, in one run.
 *
 * - attach = the bridge driver's createEndpoint + join of a fresh sandbox; attach + publish
 *   adds `programExternalConnectivity` with one TCP mapping (held socket, hairpin and
 *   route_localnet over rtnetlink, one `nft -f`). Detach = leave + deleteEndpoint, with
 *   `revokeExternalConnectivity` first when published. The driver is driven directly (the
 *   controller's journal appends are measured by bench/attach.ts).
 * - floor = the same nftables work (the endpoint's chain, its DNAT rule and map element, then
 *   their removal) written by one `nft -f` process each, in the same host namespace.
 * - CNI portmap (Debian `containernetworking-plugins`, iptables backend): ADD and DEL of the
 *   same mapping for a sandbox of another bridge in the same host namespace.
 * Samples alternate between methods so machine noise hits all of them alike. Goals: publish
 * adds ≤ 1.5× the floor, and is ≥ 5× faster than portmap for add and for remove.
 *
 * Usage (root): `deno task bench:ports [N=100]`. Everything runs in a throwaway host
 * namespace, removed at the end.
 *
 * @module
 */

import { createBridgeDriver } from "../drivers/bridge/mod.ts";
import { portSpec, publishCommands, unpublishCommands } from "../drivers/bridge/_portmap.ts";
import type { DriverEndpoint, DriverNetwork, EffectContext } from "../drivers/driver.ts";
import { createKernel } from "../src/kernel/mod.ts";
import { output, sh } from "../tests/_harness/command.ts";
import { createTestHost } from "../tests/_harness/netns.ts";
import { median, summarize } from "./_stats.ts";

const N = Number(Deno.args[0] ?? 100);
if (!Number.isInteger(N) || N < 1 || N > 2000) throw new Error(`bad N ${Deno.args[0]}`);
const PORTMAP = "/usr/lib/cni/portmap";

const time = async (f: () => Promise<unknown>) => {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
};
const hex = (n: number) =>
  Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, "0"))
    .join("");

async function main() {
  try {
    await Deno.stat(PORTMAP);
  } catch {
    throw new Error(`${PORTMAP} is missing: apt-get install containernetworking-plugins`);
  }
  const host = await createTestHost("bp");
  const kernel = await createKernel({ hostNamespace: host.path });
  try {
    const inHost = (argv: string[], stdin?: string) =>
      sh(["nsenter", `--net=${host.path}`, "--", ...argv], stdin);
    await inHost(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    const driver = createBridgeDriver();
    const ctx: EffectContext = { effectId: hex(8), kernel, prefix: `${host.prefix}-` };
    const net: DriverNetwork = {
      id: hex(32),
      internal: false,
      enableIPv6: false,
      options: { "com.docker.network.bridge.name": `${host.prefix}br` },
      labels: {},
      ipv4: [{
        addressSpace: "LocalDefault",
        pool: "10.90.0.0/16",
        gateway: "10.90.0.1/16",
        auxAddresses: {},
      }],
      ipv6: [],
      facts: {},
    };
    net.facts = (await driver.createNetwork(net, ctx)) ?? {};
    // The CNI plugin's sandboxes sit on a plain bridge of their own.
    await kernel.ensureBridge({ name: `${host.prefix}cni`, addresses: ["10.91.0.1/16"] });

    const addr = (net: number, i: number) => `10.${net}.${(i + 2) >> 8}.${(i + 2) & 0xff}`;
    const sandboxes = { plain: [] as string[], pub: [] as string[], cni: [] as string[] };
    for (let i = 0; i < N + 1; i++) {
      for (const k of ["plain", "pub"] as const) {
        sandboxes[k].push(await kernel.ensureNetns(`${host.prefix}-${k}${i}`));
      }
      const ns = await kernel.ensureNetns(`${host.prefix}-c${i}`);
      await kernel.ensureVeth({
        hostName: `${host.prefix}c${i}`,
        master: `${host.prefix}cni`,
        netns: ns,
        peerName: "eth0",
        addresses: [`${addr(91, i)}/16`],
      });
      sandboxes.cni.push(ns);
    }
    let next = 2;
    const endpoint = (): DriverEndpoint => {
      const n = next++;
      return {
        id: hex(32),
        networkId: net.id,
        options: {},
        ipv4Address: `10.90.${n >> 8}.${n & 0xff}/16`,
        facts: {},
      };
    };
    const attach = async (key: string) => {
      const ep = endpoint();
      ep.facts = (await driver.createEndpoint(net, ep, ctx)) ?? {};
      await driver.join(net, ep, { id: key, key, ifname: "eth0", labels: {} }, ctx);
      return ep;
    };
    const detach = async (ep: DriverEndpoint, key: string) => {
      await driver.leave(net, ep, { id: key, key, ifname: "eth0", labels: {} }, ctx);
      await driver.deleteEndpoint(net, ep, ctx);
    };
    const mappingOf = (i: number) => [
      { proto: "tcp" as const, hostIp: "0.0.0.0", hostPort: 20000 + i, containerPort: 80 },
    ];
    const floorSpec = (i: number) =>
      portSpec({
        networkId: net.id,
        endpointId: hex(32),
        bridge: `${host.prefix}br`,
        ipv4Address: `10.92.0.${(i % 250) + 2}`,
        mappings: [{ proto: "tcp", hostIp: "0.0.0.0", hostPort: 30000 + i, containerPort: 80 }],
      });
    const portmap = async (cmd: "ADD" | "DEL", i: number) => {
      const config = {
        cniVersion: "0.4.0",
        name: "bench",
        type: "portmap",
        capabilities: { portMappings: true },
        snat: true,
        runtimeConfig: {
          portMappings: [{ hostPort: 40000 + i, containerPort: 80, protocol: "tcp" }],
        },
        prevResult: {
          cniVersion: "0.4.0",
          interfaces: [{ name: `${host.prefix}cni` }, { name: "eth0", sandbox: sandboxes.cni[i] }],
          ips: [{ version: "4", address: `${addr(91, i)}/16`, gateway: "10.91.0.1", interface: 1 }],
        },
      };
      const out = await output(["nsenter", `--net=${host.path}`, "--", PORTMAP], {
        stdin: JSON.stringify(config),
        env: {
          CNI_COMMAND: cmd,
          CNI_CONTAINERID: `bench${i}`,
          CNI_NETNS: sandboxes.cni[i],
          CNI_IFNAME: "eth0",
          CNI_PATH: "/usr/lib/cni",
        },
      });
      if (out.code !== 0) throw new Error(`portmap ${cmd}: ${out.stdout}${out.stderr}`);
    };

    // Warm-up (not measured): the first publish of a process checks the base once; portmap's
    // first ADD creates its chains.
    const warm = await attach(sandboxes.pub[N]);
    await driver.programExternalConnectivity!(net, warm, mappingOf(N), ctx);
    await driver.revokeExternalConnectivity!(net, warm, mappingOf(N), ctx);
    await detach(warm, sandboxes.pub[N]);
    await portmap("ADD", N);
    await portmap("DEL", N);

    const s = {
      attach: [] as number[],
      attachPub: [] as number[],
      program: [] as number[],
      floorAdd: [] as number[],
      cniAdd: [] as number[],
      detach: [] as number[],
      detachPub: [] as number[],
      revoke: [] as number[],
      floorDel: [] as number[],
      cniDel: [] as number[],
    };
    const eps: { plain: DriverEndpoint[]; pub: DriverEndpoint[] } = { plain: [], pub: [] };
    const floors = Array.from({ length: N }, (_, i) => floorSpec(i));
    const t = "inet cnm";
    for (let i = 0; i < N; i++) {
      s.attach.push(await time(async () => eps.plain.push(await attach(sandboxes.plain[i]))));
      let pt = 0;
      s.attachPub.push(
        await time(async () => {
          const ep = await attach(sandboxes.pub[i]);
          pt = await time(() => driver.programExternalConnectivity!(net, ep, mappingOf(i), ctx));
          eps.pub.push(ep);
        }),
      );
      s.program.push(pt);
      s.floorAdd.push(
        await time(() => inHost(["nft", "-f", "-"], publishCommands(t, floors[i]).join("\n"))),
      );
      s.cniAdd.push(await time(() => portmap("ADD", i)));
    }
    for (let i = 0; i < N; i++) {
      s.detach.push(await time(() => detach(eps.plain[i], sandboxes.plain[i])));
      let rt = 0;
      s.detachPub.push(
        await time(async () => {
          rt = await time(() =>
            driver.revokeExternalConnectivity!(net, eps.pub[i], mappingOf(i), ctx)
          );
          await detach(eps.pub[i], sandboxes.pub[i]);
        }),
      );
      s.revoke.push(rt);
      const f = floors[i];
      const refs = f.mappings.map(() => ({
        set: "cnm_dnat4_any",
        key: `tcp . ${f.mappings[0].hostPort}`,
        target: f.chain,
      }));
      // The floor removes what it knows is there: delete element, flush and delete chain.
      const del = unpublishCommands(t, f.chain, refs).filter((c) => !c.startsWith("add "));
      s.floorDel.push(await time(() => inHost(["nft", "-f", "-"], del.join("\n"))));
      s.cniDel.push(await time(() => portmap("DEL", i)));
    }

    const m = (k: keyof typeof s) => median(s[k]);
    const row = (name: string, k: keyof typeof s) => {
      const x = summarize(s[k]);
      return `| ${name} | ${x.median.toFixed(2)} | ${x.p95.toFixed(2)} |`;
    };
    console.log(`\nport publishing, N = ${N}, ms (median, p95)\n`);
    console.log("| add | median | p95 |\n|---|---:|---:|");
    console.log(row("attach (createEndpoint + join)", "attach"));
    console.log(row("attach + publish one port", "attachPub"));
    console.log(row("  of which programExternalConnectivity", "program"));
    console.log(row("floor: the same nftables work, one nft -f", "floorAdd"));
    console.log(row("CNI portmap ADD", "cniAdd"));
    console.log("\n| remove | median | p95 |\n|---|---:|---:|");
    console.log(row("detach (leave + deleteEndpoint)", "detach"));
    console.log(row("revoke + detach", "detachPub"));
    console.log(row("  of which revokeExternalConnectivity", "revoke"));
    console.log(row("floor: the same nftables removal, one nft -f", "floorDel"));
    console.log(row("CNI portmap DEL", "cniDel"));
    const addedA = m("attachPub") - m("attach"), addedD = m("detachPub") - m("detach");
    const r = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
    console.log(
      `\npublish adds ${addedA.toFixed(2)} ms to attach (${r(addedA, m("floorAdd"))} the floor;` +
        ` program alone ${r(m("program"), m("floorAdd"))}); portmap ADD is ` +
        `${r(m("cniAdd"), m("program"))} slower than program`,
    );
    console.log(
      `unpublish adds ${addedD.toFixed(2)} ms to detach (${r(addedD, m("floorDel"))} the floor;` +
        ` revoke alone ${r(m("revoke"), m("floorDel"))}); portmap DEL is ` +
        `${r(m("cniDel"), m("revoke"))} slower than revoke`,
    );
    const met = (ok: boolean) => ok ? "met" : "NOT met";
    console.log(
      `goals: program ≤ 1.5× floor → ${met(m("program") <= 1.5 * m("floorAdd"))}; ` +
        `revoke ≤ 1.5× floor → ${met(m("revoke") <= 1.5 * m("floorDel"))}; ` +
        `≥ 5× faster than portmap ADD → ${met(m("cniAdd") >= 5 * m("program"))}, ` +
        `DEL → ${met(m("cniDel") >= 5 * m("revoke"))}`,
    );
  } finally {
    await kernel.close().catch(() => {});
    await host.cleanup();
  }
}

if (import.meta.main) await main();
