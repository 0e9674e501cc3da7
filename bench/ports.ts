/**
 * `deno task bench:ports`: what publishing one port costs through the controller, against the
 * floor and CNI's portmap, in one run.
 *
 * - attach = the controller's createEndpoint + join of a fresh sandbox on a bridge network
 *   (journal appends included); attach + publish gives createEndpoint one port binding
 *   (`-p 20000+i:80`): the host port is decided and journaled in the intent, and the join
 *   publishes it on the sandbox's gateway endpoint (held socket, hairpin and route_localnet over
 *   rtnetlink, one `nft -f`). detach = leave + deleteEndpoint; a published endpoint's leave
 *   revokes first. "of which" rows time the bridge driver's programExternalConnectivity /
 *   revokeExternalConnectivity inside those commands.
 * - floor = the same nftables work (the endpoint's chain, its DNAT rule and map element, then
 *   their removal) written by one `nft -f` process each, in the same host namespace.
 * - CNI portmap (Debian `containernetworking-plugins`, iptables backend): ADD and DEL of the
 *   same mapping for a sandbox of another bridge in the same host namespace.
 * Samples alternate between methods so machine noise hits all of them alike. Goals: publishing
 * adds ≤ 1.5× the floor's cost to an attach (and to a detach), and is ≥ 5× faster than portmap
 * for add and for remove.
 *
 * Usage (root): `deno task bench:ports [N=100]`. Everything runs in a throwaway host
 * namespace and a throwaway nats-server, removed at the end.
 *
 * @module
 */

import { createController, type Driver } from "../mod.ts";
import { createBridgeDriver } from "../drivers/bridge/mod.ts";
import { portSpec, publishCommands, unpublishCommands } from "../drivers/bridge/_portmap.ts";
import { createKernel } from "../src/kernel/mod.ts";
import { output, sh } from "../tests/_harness/command.ts";
import { startNats } from "../tests/_harness/nats.ts";
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

/** The bridge driver, with the time of its last program and revoke. */
function timedBridge(): Driver & { last: { program: number; revoke: number } } {
  const inner = createBridgeDriver();
  const last = { program: 0, revoke: 0 };
  return {
    ...inner,
    last,
    async programExternalConnectivity(net, ep, mappings, ctx) {
      const t0 = performance.now();
      try {
        return await inner.programExternalConnectivity!(net, ep, mappings, ctx);
      } finally {
        last.program = performance.now() - t0;
      }
    },
    async revokeExternalConnectivity(net, ep, mappings, ctx) {
      const t0 = performance.now();
      try {
        return await inner.revokeExternalConnectivity!(net, ep, mappings, ctx);
      } finally {
        last.revoke = performance.now() - t0;
      }
    },
  };
}

async function main() {
  try {
    await Deno.stat(PORTMAP);
  } catch {
    throw new Error(`${PORTMAP} is missing: apt-get install containernetworking-plugins`);
  }
  const host = await createTestHost("bp");
  const nats = await startNats();
  const stateDir = await Deno.makeTempDir({ prefix: "cnm-bench-ports-" });
  const kernel = await createKernel({ hostNamespace: host.path });
  const bridge = timedBridge();
  const cnm = await createController({
    nats: { servers: nats.url },
    stream: "BENCHPORTS",
    prefix: "benchports",
    hostId: "bench",
    kernel: { hostNamespace: host.path },
    namePrefix: `${host.prefix}-`,
    stateDir,
    defaultBridge: false,
    drivers: [bridge],
  });
  try {
    const inHost = (argv: string[], stdin?: string) =>
      sh(["nsenter", `--net=${host.path}`, "--", ...argv], stdin);
    await inHost(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    const net = await cnm.createNetwork({
      name: "bench",
      options: { "com.docker.network.bridge.name": `${host.prefix}br` },
      ipam: { config: [{ subnet: "10.90.0.0/16" }] },
    });
    // The CNI plugin's sandboxes sit on a plain bridge of their own.
    await kernel.ensureBridge({ name: `${host.prefix}cni`, addresses: ["10.91.0.1/16"] });

    const addr = (net: number, i: number) => `10.${net}.${(i + 2) >> 8}.${(i + 2) & 0xff}`;
    const sandboxes = { plain: [] as string[], pub: [] as string[], cni: [] as string[] };
    for (let i = 0; i < N + 1; i++) {
      for (const k of ["plain", "pub"] as const) {
        sandboxes[k].push((await cnm.createSandbox({ name: `${k}${i}` })).id);
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
    const attach = async (sandbox: string, port?: number) => {
      const ep = await cnm.createEndpoint("bench", {
        name: sandbox,
        ...(port ? { portBindings: [{ containerPort: 80, hostPort: port }] } : {}),
      });
      await cnm.join(ep.id, sandbox);
      return ep.id;
    };
    const detach = async (ep: string, sandbox: string) => {
      await cnm.leave(ep, sandbox);
      await cnm.deleteEndpoint(ep);
    };
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
    await detach(await attach(sandboxes.pub[N], 20000 + N), sandboxes.pub[N]);
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
    const eps: { plain: string[]; pub: string[] } = { plain: [], pub: [] };
    const floors = Array.from({ length: N }, (_, i) => floorSpec(i));
    const t = "inet cnm";
    for (let i = 0; i < N; i++) {
      s.attach.push(await time(async () => eps.plain.push(await attach(sandboxes.plain[i]))));
      bridge.last.program = NaN; // a publish that did not happen shows
      s.attachPub.push(
        await time(async () => eps.pub.push(await attach(sandboxes.pub[i], 20000 + i))),
      );
      s.program.push(bridge.last.program);
      s.floorAdd.push(
        await time(() => inHost(["nft", "-f", "-"], publishCommands(t, floors[i]).join("\n"))),
      );
      s.cniAdd.push(await time(() => portmap("ADD", i)));
    }
    for (let i = 0; i < N; i++) {
      s.detach.push(await time(() => detach(eps.plain[i], sandboxes.plain[i])));
      bridge.last.revoke = NaN;
      s.detachPub.push(await time(() => detach(eps.pub[i], sandboxes.pub[i])));
      s.revoke.push(bridge.last.revoke);
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
    const load = (await Deno.readTextFile("/proc/loadavg").catch(() => "?")).split(" ")[0];
    console.log(
      `\nport publishing through the controller, N = ${N}, load ${load}, ms (median, p95)\n`,
    );
    console.log("| add | median | p95 |\n|---|---:|---:|");
    console.log(row("attach (createEndpoint + join)", "attach"));
    console.log(row("attach + publish one port (-p P:80)", "attachPub"));
    console.log(row("  of which programExternalConnectivity", "program"));
    console.log(row("floor: the same nftables work, one nft -f", "floorAdd"));
    console.log(row("CNI portmap ADD", "cniAdd"));
    console.log("\n| remove | median | p95 |\n|---|---:|---:|");
    console.log(row("detach (leave + deleteEndpoint)", "detach"));
    console.log(row("detach of a publishing endpoint", "detachPub"));
    console.log(row("  of which revokeExternalConnectivity", "revoke"));
    console.log(row("floor: the same nftables removal, one nft -f", "floorDel"));
    console.log(row("CNI portmap DEL", "cniDel"));
    const addedA = m("attachPub") - m("attach"), addedD = m("detachPub") - m("detach");
    const r = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
    console.log(
      `\npublish adds ${addedA.toFixed(2)} ms to attach (${r(addedA, m("floorAdd"))} the floor;` +
        ` program alone ${r(m("program"), m("floorAdd"))}); portmap ADD is ` +
        `${r(m("cniAdd"), addedA)} slower than publishing (${
          r(m("cniAdd"), m("program"))
        } than program)`,
    );
    console.log(
      `unpublish adds ${addedD.toFixed(2)} ms to detach (${r(addedD, m("floorDel"))} the floor;` +
        ` revoke alone ${r(m("revoke"), m("floorDel"))}); portmap DEL is ` +
        `${r(m("cniDel"), addedD)} slower than unpublishing (${
          r(m("cniDel"), m("revoke"))
        } than revoke)`,
    );
    const met = (ok: boolean) => ok ? "met" : "NOT met";
    console.log(
      `goals: publishing adds ≤ 1.5× the floor to attach → ${met(addedA <= 1.5 * m("floorAdd"))}` +
        `, to detach → ${met(addedD <= 1.5 * m("floorDel"))}; ` +
        `≥ 5× faster than portmap ADD → ${met(m("cniAdd") >= 5 * addedA)}, ` +
        `DEL → ${met(m("cniDel") >= 5 * addedD)}`,
    );
  } finally {
    await cnm.close().catch(() => {});
    await kernel.close().catch(() => {});
    await nats.cleanup().catch(() => {});
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    await host.cleanup();
  }
}

if (import.meta.main) await main();
