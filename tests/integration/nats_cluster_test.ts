/**
 * The 3-node NATS cluster harness itself, against real nats-server processes on loopback:
 * the cluster forms, an R3 stream takes writes, killing the stream leader (by pid) elects
 * another and publishing resumes with nothing acknowledged lost, and the killed node
 * catches up when it returns. Slow by nature (a 2.9.10 election takes 6–8 s).
 */

import assert from "node:assert/strict";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { startNatsCluster, uniqueStreamName } from "../_harness/nats_cluster.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function alive(pid: number): Promise<boolean> {
  try {
    return (await Deno.readTextFile(`/proc/${pid}/stat`)).split(" ")[2] !== "Z";
  } catch {
    return false;
  }
}

Deno.test("nats cluster harness: a leader killed by pid is replaced and publishing resumes", async (t) => {
  const cluster = await startNatsCluster();
  const pids = cluster.nodes.map((n) => n.pid!);
  const nc = await cluster.connect();
  try {
    const stream = uniqueStreamName("CL");
    const js = jetstream(nc, { timeout: 1000 });
    const acked: number[] = [];

    await t.step("three nodes agree on one meta leader", async () => {
      const leaders = await Promise.all([0, 1, 2].map((i) => cluster.metaLeader(i)));
      assert.equal(new Set(leaders).size, 1);
      assert.ok(["n1", "n2", "n3"].includes(leaders[0]!));
      assert.equal(new Set(pids).size, 3);
    });
    let leader: string;
    await t.step("a stream with 3 replicas takes writes", async () => {
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.add({
        name: stream,
        subjects: [`${stream}.>`],
        num_replicas: 3,
      });
      assert.equal(info.config.num_replicas, 3);
      for (let i = 0; i < 20; i++) acked.push((await js.publish(`${stream}.x`, `m${i}`)).seq);
      leader = (await cluster.streamLeader(stream))!;
      assert.ok(leader, "the stream has a leader");
      const replicas = (await jsm.streams.info(stream)).cluster?.replicas ?? [];
      assert.equal(replicas.length, 2);
    });
    await t.step("kill -9 of the stream leader: another is elected", async () => {
      const i = cluster.index(leader);
      await cluster.kill(i);
      assert.equal(await alive(pids[i]), false, "the leader's process is gone");
      const deadline = Date.now() + 30_000;
      let next: string | undefined;
      while (Date.now() < deadline) {
        next = await cluster.streamLeader(stream);
        if (next && next !== leader) break;
        await sleep(250);
      }
      assert.ok(next && next !== leader, `no new leader within 30 s (saw ${next})`);
    });
    await t.step("publishing resumes and nothing acknowledged is lost", async () => {
      const deadline = Date.now() + 30_000;
      let resumed = false;
      while (!resumed && Date.now() < deadline) {
        try {
          acked.push((await js.publish(`${stream}.x`, "after")).seq);
          resumed = true;
        } catch {
          await sleep(200);
        }
      }
      assert.ok(resumed, "publishing did not resume within 30 s");
      const jsm = await jetstreamManager(nc);
      for (const seq of acked) {
        assert.ok(await jsm.streams.getMessage(stream, { seq }), `seq ${seq}`);
      }
      assert.equal((await jsm.streams.info(stream)).state.messages, acked.length);
    });
    await t.step("the killed node comes back and catches up", async () => {
      const i = cluster.index(leader);
      await cluster.start(i);
      const jsm = await jetstreamManager(nc);
      const deadline = Date.now() + 30_000;
      let current = false;
      while (!current && Date.now() < deadline) {
        const replicas = (await jsm.streams.info(stream).catch(() =>
          undefined
        ))?.cluster?.replicas ?? [];
        current = replicas.some((r) => r.name === leader && r.current);
        if (!current) await sleep(250);
      }
      assert.ok(current, `${leader} did not catch up within 30 s`);
    });
  } finally {
    await nc.close();
    await cluster.cleanup();
    await cluster.cleanup(); // safe twice
  }
  for (const pid of pids) assert.equal(await alive(pid), false, `nats-server ${pid} left running`);
});
