/**
 * `deno task bench:overlay`: how fast an overlay endpoint becomes reachable from another
 * host, and what an overlay attach costs, each next to its floor in the same run.
 *
 * - Peer convergence: once host A's `join` of a new endpoint resolves, a container on host B
 *   pings it (every 2 ms); from the join resolving to B's first echo reply (the ping process's
 *   start, ~2–5 ms, included). The floor is
 *   what the path needs at least: one JetStream event from A's connection to an ordered
 *   consumer on B's (measured on the same server), plus the kernel work.
 * - Attach: createEndpoint + join on the overlay network against the same on a bridge
 *   network, alternating.
 * - Peer programming cost per remote peer: `deno task bench:overlay:peers` (bench/overlay_peers.ts).
 *
 * Two controllers (hosts h1, h2 of a lab: namespaces on an underlay bridge) run in this
 * process on one stream. Usage (root): `deno task bench:overlay [N=50]`.
 *
 * @module
 */

import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { createController } from "../mod.ts";
import type { Controller } from "../mod.ts";
import { createLab } from "../tests/_harness/multihost.ts";
import { startNats } from "../tests/_harness/nats.ts";
import { formatSummary, median, summarize } from "./_stats.ts";

const N = Number(Deno.args[0] ?? 50);
if (!Number.isInteger(N) || N < 1 || N > 200) throw new Error(`bad N ${Deno.args[0]}`);
const nsOf = (key: string) => key.slice(key.lastIndexOf("/") + 1);

/** Pings `ip` from `netns` every 2 ms; resolves with the wall time (ms) of the first reply. */
function firstReply(netns: string, ip: string) {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", netns, "ping", "-n", "-D", "-i", "0.002", "-W", "1", "-w", "5", ip],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const done = (async () => {
    let text = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      const m = /^\[(\d+\.\d+)\] \d+ bytes from/m.exec(text);
      if (m) {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
        return Number(m[1]) * 1000;
      }
    }
    return NaN;
  })();
  return {
    reply: done,
    async stop() {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
    },
  };
}

async function main() {
  const lab = await createLab({ hosts: 2, label: "bov" });
  const nats = await startNats();
  const stateDir = await Deno.makeTempDir({ prefix: "cnm-bench-ov-" });
  const cnms: Controller[] = [];
  try {
    for (const h of lab.hosts) {
      cnms.push(
        await createController({
          nats: { servers: nats.url },
          stream: "BOV",
          prefix: "bov",
          hostId: `h${h.index}`,
          kernel: { hostNamespace: h.path },
          namePrefix: h.namePrefix,
          stateDir: `${stateDir}/h${h.index}`,
          defaultBridge: false,
          advertiseAddress: h.address,
        }),
      );
    }
    const [a, b] = cnms;
    await a.createNetwork({ name: "ov", driver: "overlay" });
    await a.createNetwork({ name: "br", ipam: { config: [{ subnet: "10.95.0.0/16" }] } });
    for (let i = 0; i < 200 && !b.network("ov"); i++) await new Promise((r) => setTimeout(r, 5));
    const watcher = await b.createSandbox({ name: "watcher" });
    await b.join((await b.createEndpoint("ov", { name: "watcher" })).id, watcher.id);

    // Peer convergence.
    const convergence: number[] = [];
    for (let i = 0; i < N; i++) {
      const sb = await a.createSandbox({ name: `c${i}` });
      const ep = await a.createEndpoint("ov", { name: `c${i}` });
      await a.join(ep.id, sb.id);
      const joined = Date.now();
      // A client that starts talking once the join resolved. (One that was already sending
      // meets its own ARP failure and waits out the kernel's 1 s retransmit, as with Docker.)
      const ping = firstReply(nsOf(watcher.key), ep.ipv4Address!.split("/")[0]);
      const reply = await ping.reply;
      await ping.stop();
      convergence.push(reply - joined);
    }

    // The floor of the event path: A's connection → the stream → an ordered consumer on B's.
    const ncA = await connect({ servers: nats.url });
    const ncB = await connect({ servers: nats.url });
    const delivery: number[] = [];
    try {
      const jsm = await jetstreamManager(ncA);
      await jsm.streams.add({ name: "BOVFLOOR", subjects: ["bovfloor.>"] });
      const consumer = await jetstream(ncB).consumers.get("BOVFLOOR", {});
      const messages = await consumer.consume({ max_messages: 64 });
      const js = jetstream(ncA);
      const it = messages[Symbol.asyncIterator]();
      for (let i = 0; i < N; i++) {
        const t0 = performance.now();
        await js.publish(`bovfloor.x`, `m${i}`);
        await it.next();
        delivery.push(performance.now() - t0);
      }
      messages.stop();
    } finally {
      await ncA.close();
      await ncB.close();
    }

    // Attach: overlay against bridge, alternating.
    const attach = { ov: [] as number[], br: [] as number[] };
    for (let i = 0; i < N; i++) {
      for (const net of ["ov", "br"] as const) {
        const sb = await a.createSandbox({ name: `a${net}${i}` });
        const t0 = performance.now();
        const ep = await a.createEndpoint(net, { name: `a${net}${i}` });
        await a.join(ep.id, sb.id);
        attach[net].push(performance.now() - t0);
      }
    }

    const c = summarize(convergence);
    console.log(`\noverlay, N = ${N}, ms (median, p95)\n`);
    console.log("| measure | median | p95 | floor in the same run |");
    console.log("|---|---:|---:|---:|");
    console.log(
      `| peer convergence: join on h1 resolved → first echo reply from h2 | ${
        c.median.toFixed(2)
      } | ${c.p95.toFixed(2)} | ${median(delivery).toFixed(2)} (one event h1 → h2's consumer) |`,
    );
    const o = summarize(attach.ov), br = summarize(attach.br);
    console.log(
      `| attach (createEndpoint + join), overlay | ${o.median.toFixed(2)} | ${o.p95.toFixed(2)} | ${
        br.median.toFixed(2)
      } (bridge attach) |`,
    );
    console.log(`\nconvergence: ${formatSummary(c)}`);
    console.log(`event delivery floor: ${formatSummary(summarize(delivery))}`);
    console.log(
      `target: convergence median < 100 ms → ${c.median < 100 ? "met" : "NOT met"}` +
        ` (libnetwork's gossip interval alone is 200 ms)`,
    );
  } finally {
    for (const c of cnms) await c.close().catch(() => {});
    await nats.cleanup().catch(() => {});
    await lab.cleanup().catch(() => {});
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await main();
