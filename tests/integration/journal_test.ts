import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { openJournal } from "../../src/journal/journal.ts";
import { ConflictError, UnavailableError } from "../../src/errors.ts";
import { startNats } from "../_harness/nats.ts";
import { ev } from "../actors/_events.ts";

Deno.test("journal (nats-server) appends with per-object expectations and msgID dedup", async (t) => {
  const nats = await startNats();
  const nc = await connect({ servers: nats.url });
  try {
    const j = await openJournal(nc, { stream: "JT", prefix: "jt" });
    const a1 = ev("sandbox.create.requested", "s1", {
      name: "c",
      key: "/k",
      owned: true,
      labels: {},
    });
    await t.step("first append expects an empty subject", async () => {
      const r = await j.append(a1, 0);
      assert.equal(r.seq, 1);
      assert.equal(r.duplicate, false);
    });
    await t.step(
      "a retried publish with the same eventId is a duplicate, not a second event",
      async () => {
        const r = await j.append(a1, 0);
        assert.equal(r.duplicate, true);
        assert.equal(await j.lastSeq(), 1);
      },
    );
    await t.step("a stale expectation is refused as a conflict", async () => {
      await assert.rejects(
        () => j.append(ev("sandbox.created", "s1"), 0),
        (e: Error) =>
          e instanceof ConflictError && /another writer changed sandbox s1/.test(e.message),
      );
    });
    await t.step("other objects do not interfere", async () => {
      const r = await j.append(
        ev("sandbox.create.requested", "s2", { name: "d", key: "/k2", owned: true, labels: {} }),
        0,
      );
      assert.equal(r.seq, 2);
      await j.append(ev("sandbox.created", "s1"), 1);
    });
    await t.step(
      "read returns validated events in order, from a sequence and per subject",
      async () => {
        const all = [];
        for await (const e of j.read()) all.push([e.seq, e.objectId, e.type]);
        assert.deepEqual(all, [
          [1, "s1", "sandbox.create.requested"],
          [2, "s2", "sandbox.create.requested"],
          [3, "s1", "sandbox.created"],
        ]);
        const tail = [];
        for await (const e of j.read({ seq: 3 })) tail.push(e.seq);
        assert.deepEqual(tail, [3]);
        const last = await j.last("sandbox", "s1");
        assert.equal(last?.type, "sandbox.created");
        assert.equal(await j.last("sandbox", "nope"), undefined);
      },
    );
    await t.step("the stream is append-only (deny_delete, deny_purge)", async () => {
      const { jetstreamManager } = await import("@nats-io/jetstream");
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.info("JT");
      assert.equal(info.config.deny_delete, true);
      assert.equal(info.config.deny_purge, true);
      await assert.rejects(() => jsm.streams.purge("JT"));
    });
  } finally {
    await nc.close();
    await nats.cleanup();
  }
});

Deno.test("journal (nats-server) says JetStream is not enabled when it is not", async () => {
  const nats = await startNats({ noJetStream: true });
  const nc = await connect({ servers: nats.url });
  try {
    await assert.rejects(
      () => openJournal(nc, { stream: "JX", prefix: "jx", publishTimeoutMs: 1000 }),
      (e: Error) => e instanceof UnavailableError && /JetStream is not enabled/.test(e.message),
    );
  } finally {
    await nc.close();
    await nats.cleanup();
  }
});
