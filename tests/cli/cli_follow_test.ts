/**
 * `cnm events --follow` as a real process across a NATS restart (needs nats-server; a fake
 * kernel, no root): a follower that has printed events resumes after the last one it
 * printed, and one that had printed nothing starts at the moment it started; neither
 * replays the history, and both stop cleanly on SIGTERM.
 */
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { createController } from "../../mod.ts";
import { startNats } from "../_harness/nats.ts";
import { CNM } from "../_harness/cnm_serve.ts";
import { spawnCollecting, type Spawned } from "../_harness/spawned.ts";
import { fakeOptions } from "./_fake_kernel.ts";
import type { RecordedEvent } from "../../src/journal/events.ts";

/** The sequence numbers of a table-format `cnm events` output (the SEQ column). */
const tableSeqs = (out: string) =>
  out.split("\n").filter((l) => /^\d+\s/.test(l)).map((l) => Number(l.split(/\s+/)[0]));

/** The events of a `--format json` output (one per line). */
const jsonEvents = (out: string): RecordedEvent[] =>
  out.split("\n").filter(Boolean).map((l) => JSON.parse(l));

Deno.test("cnm events --follow (needs nats-server) keeps following across a NATS restart without replaying", async (t) => {
  const nats = await startNats();
  const dir = await Deno.makeTempDir();
  const cnm = await createController(fakeOptions(nats.url, "FOL", "fol", dir));
  const nc = await connect({ servers: nats.url, maxReconnectAttempts: -1 });
  const env = { CNM_NATS_URL: nats.url, CNM_STREAM: "FOL", CNM_PREFIX: "fol", CNM_HOST_ID: "h1" };
  const children: Spawned[] = [];
  /** Whether the server holds a consumer on `filter` (a follower that is subscribed). */
  const consumerOn = async (filter: string) => {
    const jsm = await jetstreamManager(nc);
    const list = await jsm.consumers.list("FOL").next();
    return list.some((c) => c.config.filter_subject === filter);
  };
  try {
    const before = await cnm.createSandbox({ name: "before" });
    // `seen` prints the history from #1 (table), then follows; `fresh` (sandboxes only,
    // JSON lines) starts at "now" and has printed nothing when NATS goes away.
    const seen = spawnCollecting([CNM, "events", "--follow", "--since", "1"], env);
    children.push(seen);
    const created = new RegExp(`sandbox\\.created\\s+sandbox ${before.id.slice(0, 12)}`);
    await seen.waitFor(() => created.test(seen.stdout()), "before's sandbox.created");
    const n = tableSeqs(seen.stdout()).length; // the predefined networks' events, and before's
    const fresh = spawnCollecting(
      [CNM, "--format", "json", "events", "--follow", "--kind", "sandbox"],
      env,
    );
    children.push(fresh);
    for (let i = 0; i < 300 && !(await consumerOn("fol.sandbox.>")); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(await consumerOn("fol.sandbox.>"), "the fresh follower subscribed");
    assert.equal(fresh.stdout(), "", "a follower without --since prints no history");

    await nats.stop();
    await nats.start();
    let after;
    for (let i = 0; i < 100 && !after; i++) {
      after = await cnm.createSandbox({ name: "after" }).catch(() => undefined);
      if (!after) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(after, "the controller works again after the restart");
    const endpoint = await cnm.createEndpoint("none", { name: "e-after" });

    await t.step("the follower that had printed events resumes after the last one", async () => {
      await seen.waitFor(
        () => tableSeqs(seen.stdout()).length >= n + 4,
        "the events after",
        60_000,
      );
      await new Promise((r) => setTimeout(r, 500)); // anything replayed would arrive by now
      const seqs = tableSeqs(seen.stdout());
      assert.deepEqual(seqs, Array.from({ length: n + 4 }, (_, i) => i + 1), seen.stdout());
      assert.equal(seen.stdout().match(/^SEQ\s+TIME/gm)?.length, 1, "one header");
      const rows = seen.stdout().split("\n").filter((l) => /^\d+\s/.test(l));
      assert.match(
        rows[n],
        new RegExp(`sandbox\\.create\\.requested\\s+sandbox ${after.id.slice(0, 12)}`),
      );
      assert.match(
        rows[n + 3],
        new RegExp(`endpoint\\.created\\s+endpoint ${endpoint.id.slice(0, 12)}`),
      );
      assert.ok(!rows.slice(n).some((r) => r.includes(before.id.slice(0, 12))));
    });

    await t.step("the follower that had printed nothing starts at now, once each", async () => {
      await fresh.waitFor(() => jsonEvents(fresh.stdout()).length >= 2, "after's events", 60_000);
      await new Promise((r) => setTimeout(r, 500));
      const evs = jsonEvents(fresh.stdout());
      assert.deepEqual(
        evs.map((e) => [e.seq, e.type, e.objectId]),
        [[n + 1, "sandbox.create.requested", after.id], [n + 2, "sandbox.created", after.id]],
      );
    });

    await t.step("both stop on SIGTERM with exit 0 and nothing on stderr", async () => {
      for (const f of [seen, fresh]) {
        assert.equal(await f.stop(), 0);
        assert.equal(f.stderr(), "");
      }
    });
  } finally {
    for (const c of children) await c.cleanup();
    await cnm.close();
    await nc.close();
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
