/**
 * Snapshots (needs nats-server): the current state from the snapshot plus the events after
 * it equals folding every event from the first one; a damaged, foreign or missing snapshot
 * is ignored or worked around; one writer per stream, and a stand-by takes over.
 */
import assert from "node:assert/strict";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { createController } from "../mod.ts";
import { startNats } from "./_harness/nats.ts";
import { replay, replayEvents } from "../src/journal/replay.ts";
import { loadCurrent } from "../src/journal/current.ts";
import { readEvents } from "../src/journal/watch.ts";
import type { RecordedEvent } from "../src/journal/events.ts";
import { snapshotBucketOf, snapshotStreamOf } from "../src/journal/snapshot.ts";
import { verifySnapshot } from "../src/journal/verify.ts";
import { fakeOptions } from "./cli/_fake_kernel.ts";

async function all(nc: NatsConnection, stream: string, prefix: string) {
  const out: RecordedEvent[] = [];
  for await (const e of readEvents(nc, { stream, prefix })) out.push(e);
  return out;
}

Deno.test("snapshot (needs nats-server) gives the state a fold from the first event gives", async (t) => {
  const nats = await startNats();
  const dir = await Deno.makeTempDir();
  const nc = await connect({ servers: nats.url });
  const sel = { nats: nc, stream: "S1", prefix: "s1" };
  try {
    const cnm = await createController(fakeOptions(nats.url, "S1", "s1", dir));
    const a = await cnm.createSandbox({ name: "a" });
    const b = await cnm.createSandbox({ name: "b" });
    const e1 = await cnm.createEndpoint("none", { name: "e1" });
    const e2 = await cnm.createEndpoint("none", { name: "e2" });
    await cnm.join(e2.id, a.id);
    await cnm.join(e1.id, a.id);
    const gone = await cnm.createEndpoint("none", { name: "gone" });
    await cnm.join(gone.id, b.id);
    await cnm.deleteEndpoint(gone.id, { force: true });
    assert.equal(await cnm.snapshots?.sync(), true);
    // A join after the sandbox's record was written changes the sandbox's record too.
    const e3 = await cnm.createEndpoint("none", { name: "e3" });
    assert.equal(await cnm.snapshots?.sync(), true);
    await cnm.join(e3.id, b.id);
    assert.equal(await cnm.snapshots?.sync(), true);
    await cnm.close();

    await t.step("the writer flushed everything: no tail, the same state", async () => {
      const cur = await loadCurrent(nc, { stream: "S1", prefix: "s1" });
      assert.equal(cur.source, "snapshot");
      assert.equal(cur.tail, 0);
      const events = await all(nc, "S1", "s1");
      assert.equal(cur.snapshotSeq, events.at(-1)!.seq);
      assert.deepEqual(await replay(sel), replayEvents(events));
      const sb = (await replay(sel)).sandboxes.find((s) => s.id === a.id)!;
      assert.deepEqual(sb.endpointIds, [e2.id, e1.id]); // in order of joining
      const sb2 = (await replay(sel)).sandboxes.find((s) => s.id === b.id)!;
      assert.deepEqual(sb2.endpointIds, [e3.id]);
    });

    await t.step(
      "events after the snapshot are folded on top (a controller that writes none)",
      async () => {
        const quiet = await createController({
          ...fakeOptions(nats.url, "S1", "s1", dir),
          snapshots: false,
        });
        assert.equal(quiet.recovery.source, "stream");
        await quiet.leave(e1.id, a.id);
        await quiet.deleteSandbox(b.id);
        await quiet.createSandbox({ name: "c" });
        await quiet.close();
        const cur = await loadCurrent(nc, { stream: "S1", prefix: "s1" });
        assert.equal(cur.source, "snapshot");
        assert.ok(cur.tail >= 6, `tail ${cur.tail}`);
        assert.deepEqual(await replay(sel), replayEvents(await all(nc, "S1", "s1")));
      },
    );

    await t.step(
      "verifySnapshot (cnm state --verify) finds a record that disagrees with the events",
      async () => {
        assert.equal((await verifySnapshot(sel)).result, "matches");
        const kv = await new Kvm(nc).open(snapshotBucketOf("S1"));
        const key = `sandbox.${a.id}`;
        const entry = await kv.get(key);
        const record = JSON.parse(new TextDecoder().decode(entry!.value));
        await kv.put(
          key,
          JSON.stringify({ ...record, context: { ...record.context, name: "forged" } }),
        );
        const check = await verifySnapshot(sel);
        assert.equal(check.result, "differs");
        assert.match(
          check.differences.join("\n"),
          /sandboxes [0-9a-f]{12}: name: "forged" \(snapshot\) ≠ "a" \(events\)/,
        );
        await kv.put(key, JSON.stringify(record));
        assert.equal((await verifySnapshot(sel)).result, "matches");
      },
    );

    await t.step("a lost record is folded from its own subject", async () => {
      const kv = await new Kvm(nc).open(snapshotBucketOf("S1"));
      await kv.purge(`sandbox.${a.id}`);
      const cur = await loadCurrent(nc, { stream: "S1", prefix: "s1" });
      assert.equal(cur.fold.objects.has(a.id), false); // not in the tail: simply absent…
      // …until the tail touches it; then its history is read from its subject.
      const again = await createController({
        ...fakeOptions(nats.url, "S1", "s1", dir),
        snapshots: false,
      });
      await again.deleteSandbox(a.id);
      await again.close();
      assert.deepEqual(await replay(sel), replayEvents(await all(nc, "S1", "s1")));
    });

    await t.step("a snapshot of another schema or another stream is ignored", async () => {
      const jsm = await jetstreamManager(nc);
      const kv = await new Kvm(nc).open(snapshotBucketOf("S1"));
      const meta = await kv.get("_meta");
      const value = JSON.parse(new TextDecoder().decode(meta!.value));
      await kv.put("_meta", JSON.stringify({ ...value, s: 999 }));
      assert.equal((await loadCurrent(nc, { stream: "S1", prefix: "s1" })).source, "stream");
      await kv.put("_meta", JSON.stringify({ ...value, created: "2001-01-01T00:00:00Z" }));
      assert.equal((await loadCurrent(nc, { stream: "S1", prefix: "s1" })).source, "stream");
      assert.deepEqual(await replay(sel), replayEvents(await all(nc, "S1", "s1")));
      // The next controller rebuilds it.
      const next = await createController(fakeOptions(nats.url, "S1", "s1", dir));
      assert.equal(next.recovery.source, "stream");
      assert.equal(await next.snapshots?.sync(), true);
      await next.close();
      assert.equal((await loadCurrent(nc, { stream: "S1", prefix: "s1" })).source, "snapshot");
      const info = await jsm.streams.info(snapshotStreamOf("S1"));
      assert.ok(info.state.messages > 0);
    });

    await t.step(
      "a restarted controller starts from the snapshot, with the same objects",
      async () => {
        const c = await createController(fakeOptions(nats.url, "S1", "s1", dir));
        try {
          assert.equal(c.recovery.source, "snapshot");
          assert.equal(c.recovery.tail, 0);
          const state = replayEvents(await all(nc, "S1", "s1"));
          const mine = (xs: { id: string }[]) => xs.map((x) => x.id).sort();
          assert.deepEqual(mine(c.sandboxes()), mine(state.sandboxes));
          assert.deepEqual(mine(c.endpoints()), mine(state.endpoints));
          assert.equal(c.sandbox("c")?.state, "ready");
          assert.equal(c.endpoint(e2.id), undefined); // deleted with sandbox a
        } finally {
          await c.close();
        }
      },
    );
  } finally {
    await nc.close();
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("snapshot writer (needs nats-server): one per stream; a stand-by takes over when it stops", async () => {
  const nats = await startNats();
  const dir = await Deno.makeTempDir();
  const nc = await connect({ servers: nats.url });
  try {
    const opts = (host: string) => ({
      ...fakeOptions(nats.url, "S2", "s2", dir, host),
      leaseTtlMs: 600,
      predefined: host === "h1",
    });
    const h1 = await createController(opts("h1"));
    const h2 = await createController(opts("h2"));
    assert.equal(h1.snapshots?.writing, true);
    assert.equal(h2.snapshots?.writing, false);
    await h2.createSandbox({ name: "on-h2" });
    assert.equal(await h1.snapshots?.sync(), true); // h1 writes h2's objects too
    let cur = await loadCurrent(nc, { stream: "S2", prefix: "s2" });
    assert.equal(cur.tail, 0);
    // Both hosts appending at once: h2's events fill the gaps between h1's own.
    await Promise.all([
      ...Array.from({ length: 20 }, (_, i) => h1.createSandbox({ name: `a${i}` })),
      ...Array.from({ length: 20 }, (_, i) => h2.createSandbox({ name: `b${i}` })),
    ]);
    assert.equal(await h1.snapshots?.sync(), true);
    cur = await loadCurrent(nc, { stream: "S2", prefix: "s2" });
    assert.equal(cur.tail, 0);
    assert.deepEqual(
      await replay({ nats: nc, stream: "S2", prefix: "s2" }),
      replayEvents(await all(nc, "S2", "s2")),
    );
    await h1.close();
    for (let i = 0; i < 50 && !h2.snapshots?.writing; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(h2.snapshots?.writing, true);
    await h2.createSandbox({ name: "later" });
    assert.equal(await h2.snapshots?.sync(), true);
    cur = await loadCurrent(nc, { stream: "S2", prefix: "s2" });
    assert.equal(cur.tail, 0);
    assert.deepEqual(
      await replay({ nats: nc, stream: "S2", prefix: "s2" }),
      replayEvents(await all(nc, "S2", "s2")),
    );
    await h2.close();
  } finally {
    await nc.close();
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
