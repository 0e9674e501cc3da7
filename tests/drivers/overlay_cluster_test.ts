/**
 * Overlay on a 3-node NATS cluster (stream and KV buckets with 3 replicas), one `cnm serve`
 * process per lab host (needs root and nats-server): the stream leader is killed with SIGKILL
 * during a join workload on every host. During the election commands fail with a clear
 * UnavailableError and change nothing; afterwards every acknowledged command is in the
 * journal, and on every host the kernel matches the journal (each joined endpoint's interface
 * in its sandbox, one neighbour and one FDB entry per remote endpoint). Slow by nature: a
 * 2.9.10 election takes 6–8 s.
 */

import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { history, replay } from "../../mod.ts";
import type { EndpointInfo } from "../../mod.ts";
import { ownerId } from "../../src/ids.ts";
import { sh } from "../_harness/command.ts";
import { ping } from "../_harness/multihost.ts";
import { startNatsCluster, uniqueStreamName } from "../_harness/nats_cluster.ts";
import { createOverlayLab } from "../_harness/overlay_lab.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ipOf = (cidr?: string) => cidr!.split("/")[0];
const nsOf = (key: string) => key.slice(key.lastIndexOf("/") + 1);

/** Reads the journal's state, retrying while the cluster still settles after the election. */
async function settledState(servers: string[], stream: string, prefix: string) {
  for (let attempt = 0;; attempt++) {
    try {
      return await replay({ nats: { servers }, stream, prefix });
    } catch (err) {
      if (attempt >= 10 || (err as Error).name !== "UnavailableError") throw err;
      await sleep(1000);
    }
  }
}

Deno.test("overlay on a 3-node NATS cluster survives the stream leader's death (root, nats-server)", async (t) => {
  const cluster = await startNatsCluster();
  const stream = uniqueStreamName("OVC");
  let lab: Awaited<ReturnType<typeof createOverlayLab>> | undefined;
  try {
    lab = await createOverlayLab({
      hosts: 3,
      label: "ovc",
      urls: cluster.servers,
      stream,
      serveArgs: ["--replicas", "3"],
    });
    const hosts = lab.hosts;
    const acked: { host: number; ep: EndpointInfo; sandbox: string }[] = [];
    const failures: string[] = [];
    /** The node killed (started again at the end: a 2.9.10 replica catching up may answer stale). */
    let killed = -1;

    await t.step("an overlay network on the clustered stream", async () => {
      await hosts[0].api.createNetwork({ name: "ov", driver: "overlay" });
      for (const h of hosts) {
        for (let i = 0; i < 100 && !(await h.api.network("ov")); i++) await sleep(10);
        assert.ok(await h.api.network("ov"), `${h.hostId} sees ov`);
      }
      // The stream and every bucket the controllers made have 3 replicas.
      const nc = await connect({ servers: cluster.servers });
      try {
        const jsm = await jetstreamManager(nc);
        for (
          const s of [
            stream,
            ...["LEASES", "GLOBAL", "SNAPSHOT"].map((b) => `KV_${stream}_${b}`),
          ]
        ) {
          assert.equal((await jsm.streams.info(s)).config.num_replicas, 3, s);
        }
      } finally {
        await nc.close();
      }
    });

    await t.step("joins on every host while the stream leader is killed", async () => {
      let stop = false;
      const work = hosts.map(async (h, i) => {
        for (let n = 0; !stop; n++) {
          const name = `w${i}n${n}`;
          try {
            const sb = await h.api.createSandbox({ name });
            const ep = await h.api.createEndpoint("ov", { name });
            const joined = await h.api.join(ep.id, sb.id);
            acked.push({ host: i, ep: joined, sandbox: nsOf(sb.key) });
          } catch (err) {
            const e = err as Error;
            failures.push(`${e.name}: ${e.message}`);
            await sleep(200);
          }
        }
      });
      await sleep(1500);
      const leader = await cluster.streamLeader(stream);
      assert.ok(leader, "the stream has a leader");
      await cluster.kill(cluster.index(leader));
      // Through the election, then a while with the new leader.
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        const now = await cluster.streamLeader(stream).catch(() => undefined);
        if (now && now !== leader) break;
        await sleep(250);
      }
      const before = acked.length;
      const more = Date.now() + 15_000;
      while (acked.length < before + 6 && Date.now() < more) await sleep(100);
      stop = true;
      await Promise.all(work);
      assert.ok(acked.length >= before + 6, `joins resumed after the election (${acked.length})`);
      killed = cluster.index(leader);
    });

    await t.step("failures during the election were clear and unavailable", () => {
      // (A quick election may fail nothing; whatever failed must say the journal was unavailable.)
      console.log(`${failures.length} commands failed during the election`);
      for (const f of failures) {
        assert.match(f, /^(UnavailableError|NoControllerError): /, f);
      }
    });

    await t.step("every acknowledged join is in the journal, joined", async () => {
      const state = await settledState(cluster.servers, stream, lab!.prefix);
      const byId = new Map(state.endpoints.map((e) => [e.id, e]));
      for (const a of acked) {
        const got = byId.get(a.ep.id)?.state;
        if (got !== "joined") {
          const h = await history(a.ep.id, {
            nats: { servers: cluster.servers },
            stream,
            prefix: lab!.prefix,
          });
          assert.fail(
            `endpoint ${a.ep.name} is ${got}: ${
              JSON.stringify(h.transitions.map((x) => [x.seq, x.type, x.host]))
            }`,
          );
        }
      }
      // Nothing half-applied: every object settled (no intent left without its outcome).
      for (const o of [...state.networks, ...state.endpoints, ...state.sandboxes]) {
        assert.ok(!["creating", "joining", "leaving", "deleting"].includes(o.state), o.id);
      }
    });

    await t.step("the kernel matches the journal on every host", async () => {
      const state = await settledState(cluster.servers, stream, lab!.prefix);
      const net = state.networks.find((n) => n.name === "ov")!;
      const joined = state.endpoints.filter((e) => e.state === "joined" && e.networkId === net.id);
      const converged: number[] = [];
      const sandboxes = new Map(state.sandboxes.map((s) => [s.id, s]));
      for (const [i, h] of hosts.entries()) {
        // Each joined endpoint of this host has its interface in its sandbox.
        for (const e of joined.filter((e) => e.host === h.hostId)) {
          const sb = nsOf(sandboxes.get(e.sandboxId!)!.key);
          const addrs = await lab!.ipJson(sb, "addr", "show", "dev", e.ifname!);
          assert.equal(
            addrs[0]?.addr_info?.find((a: { family: string }) => a.family === "inet")?.local,
            ipOf(e.ipv4Address),
            `${e.name} in ${sb}`,
          );
        }
        // One neighbour entry per remote joined endpoint, converged.
        const ns = `${h.namePrefix}ov-${ownerId(stream, h.hostId)}-${net.id.slice(0, 12)}`;
        const want = joined.filter((e) => e.host !== h.hostId).map((e) => ipOf(e.ipv4Address))
          .sort();
        let have: string[] = [];
        const t0 = performance.now();
        for (let n = 0; n < 300; n++) {
          have = (JSON.parse(await sh(["ip", "-n", ns, "-j", "neigh"]) || "[]") as {
            dst: string;
            state?: string[];
          }[]).filter((x) => x.state?.includes("PERMANENT")).map((x) => x.dst).sort();
          if (JSON.stringify(have) === JSON.stringify(want)) break;
          await sleep(50);
        }
        assert.deepEqual(have, want, `peers on host ${i + 1}`);
        converged.push(Math.round(performance.now() - t0));
      }
      // And traffic flows between hosts after the failover.
      const a = acked.find((x) => x.host === 0)!;
      const b = acked.findLast((x) => x.host === 2)!;
      assert.ok(await ping(a.sandbox, ipOf(b.ep.ipv4Address)), "h1 reaches h3");
      console.log(`peer tables converged after ${converged.join(", ")} ms more`);
    });

    await t.step("the killed server returns; the cluster takes joins", async () => {
      await cluster.start(killed);
      const sb = await hosts[1].api.createSandbox({ name: "after" });
      const ep = await hosts[1].api.createEndpoint("ov", { name: "after" });
      assert.equal((await hosts[1].api.join(ep.id, sb.id)).state, "joined");
    });
  } finally {
    await lab?.cleanup();
    await cluster.cleanup();
  }
});
