import assert from "node:assert/strict";
import { createController } from "../mod.ts";
import { startNats } from "./_harness/nats.ts";
import { history } from "../src/journal/history.ts";
import { replay } from "../src/journal/replay.ts";
import { InvalidArgumentError, NotFoundError } from "../src/errors.ts";
import { fakeOptions } from "./cli/_fake_kernel.ts";

Deno.test("history (needs nats-server) of an endpoint: transitions, causes, durations", async () => {
  const nats = await startNats();
  const dir = await Deno.makeTempDir();
  try {
    const cnm = await createController(fakeOptions(nats.url, "H1", "h1", dir));
    const sb = await cnm.createSandbox({ name: "c1" });
    const ep = await cnm.createEndpoint("none", { name: "web" });
    await cnm.join(ep.id, sb.id);
    await cnm.leave(ep.id, sb.id);
    await cnm.close();
    const h = await history("web", { nats: { servers: nats.url }, stream: "H1", prefix: "h1" });
    assert.equal(h.id, ep.id);
    assert.equal(h.kind, "endpoint");
    assert.equal(h.state, "created");
    assert.equal(h.network?.name, "none");
    assert.deepEqual(h.transitions.map((t) => `${t.from}>${t.to}`), [
      "null>creating",
      "creating>created",
      "created>joining",
      "joining>joined",
      "joined>leaving",
      "leaving>created",
    ]);
    assert.equal(h.transitions[1].causeSeq, h.transitions[0].seq);
    assert.equal(typeof h.transitions[1].elapsedMs, "number");
    assert.equal(h.transitions[0].inStateMs, null);
    assert.ok(h.durations.created >= 0 && h.durations.joined >= 0);
    assert.equal(h.pending, undefined);

    const byPrefix = await history(ep.id.slice(0, 10), {
      nats: nats.url ? { servers: nats.url } : {},
      stream: "H1",
      prefix: "h1",
    });
    assert.equal(byPrefix.id, ep.id);
    const sbh = await history("c1", { nats: { servers: nats.url }, stream: "H1", prefix: "h1" });
    assert.equal(sbh.kind, "sandbox");
    assert.deepEqual(sbh.related.map((t) => t.type), [
      "endpoint.join.requested",
      "endpoint.joined",
      "endpoint.leave.requested",
      "endpoint.left",
    ]);
    await assert.rejects(
      () =>
        history("nothing-like-this", { nats: { servers: nats.url }, stream: "H1", prefix: "h1" }),
      (e: Error) => e instanceof NotFoundError && /name or id nothing-like-this/.test(e.message),
    );
    await assert.rejects(
      () => history("", { nats: { servers: nats.url }, stream: "H1", prefix: "h1" }),
      (e: Error) => e instanceof InvalidArgumentError && /must not be empty/.test(e.message),
    );
  } finally {
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("long reads (needs nats-server) report progress: a scan without a snapshot, history of a deleted object", async () => {
  const nats = await startNats();
  const dir = await Deno.makeTempDir();
  try {
    const cnm = await createController({
      ...fakeOptions(nats.url, "H3", "h3", dir),
      snapshots: false,
    });
    const gone = await cnm.createSandbox({ name: "gone" });
    await cnm.deleteSandbox(gone.id);
    for (let i = 0; i < 700; i++) await cnm.createEndpoint("none", { name: `e${i}` });
    await cnm.close();
    const sel = { nats: { servers: nats.url }, stream: "H3", prefix: "h3" };
    const calls: [number, number][] = [];
    const s = await replay({ ...sel, snapshot: false, onProgress: (n, t) => calls.push([n, t]) });
    assert.equal(s.endpoints.length, 700);
    assert.ok(calls.length >= 1 && calls.every(([n, t]) => n <= t), JSON.stringify(calls));
    calls.length = 0;
    const h = await history("gone", { ...sel, onProgress: (n, t) => calls.push([n, t]) });
    assert.equal(h.state, "deleted");
    assert.ok(calls.length >= 1, "the scan for a deleted object reported progress");
  } finally {
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
