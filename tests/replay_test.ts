import assert from "node:assert/strict";
import { createController } from "../mod.ts";
import { startNats } from "./_harness/nats.ts";
import { replay, replayEvents } from "../src/journal/replay.ts";
import { readEvents } from "../src/journal/watch.ts";
import { connect } from "@nats-io/transport-node";
import { NotFoundError } from "../src/errors.ts";
import type { RecordedEvent } from "../src/journal/events.ts";
import { fakeOptions } from "./cli/_fake_kernel.ts";

/** A controller on a real server with a fake kernel; returns the sequence numbers of steps. */
export async function scenario(url: string, stream: string, prefix: string, stateDir: string) {
  const cnm = await createController(fakeOptions(url, stream, prefix, stateDir));
  try {
    const sb = await cnm.createSandbox({ name: "c1" });
    const ep = await cnm.createEndpoint("none", { name: "c1-none" });
    await cnm.join(ep.id, sb.id);
    const joinedAt = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 20));
    await cnm.leave(ep.id, sb.id);
    await cnm.deleteEndpoint(ep.id);
    const sb2 = await cnm.createSandbox({ name: "c2" });
    return { sb, ep, sb2, joinedAt };
  } finally {
    await cnm.close();
  }
}

Deno.test("replay (needs nats-server) shows the state at a sequence, a time and the end", async () => {
  const nats = await startNats();
  const stateDir = await Deno.makeTempDir();
  try {
    const { sb, ep, sb2, joinedAt } = await scenario(nats.url, "R1", "r1", stateDir);
    const end = await replay({ nats: { servers: nats.url }, stream: "R1", prefix: "r1" });
    assert.deepEqual(end.sandboxes.map((s) => s.name).sort(), ["c1", "c2"]);
    assert.deepEqual(end.endpoints, []);
    assert.ok(end.networks.some((n) => n.name === "none" && n.state === "active"));
    assert.equal(end.warnings.length, 0);

    const then = await replay({
      nats: { servers: nats.url },
      stream: "R1",
      prefix: "r1",
      until: joinedAt,
    });
    const e = then.endpoints.find((x) => x.id === ep.id)!;
    assert.equal(e.state, "joined");
    assert.equal(e.sandboxId, sb.id);
    assert.deepEqual(then.sandboxes.find((s) => s.id === sb.id)!.endpointIds, [ep.id]);
    assert.ok(!then.sandboxes.some((s) => s.id === sb2.id));

    const bySeq = await replay({
      nats: { servers: nats.url },
      stream: "R1",
      prefix: "r1",
      until: then.seq,
    });
    assert.deepEqual(bySeq, then);
  } finally {
    await nats.cleanup();
    await Deno.remove(stateDir, { recursive: true });
  }
});

Deno.test("replay's shortcut for deleted objects equals the full fold (replayEvents) at every point", async () => {
  const nats = await startNats();
  const stateDir = await Deno.makeTempDir();
  const nc = await connect({ servers: nats.url });
  try {
    await scenario(nats.url, "R2", "r2", stateDir);
    const all: RecordedEvent[] = [];
    for await (const e of readEvents(nc, { stream: "R2", prefix: "r2" })) all.push(e);
    assert.ok(all.length > 10);
    for (let seq = 1; seq <= all.length; seq++) {
      const fast = await replay({ nats: nc, stream: "R2", prefix: "r2", until: seq });
      const full = replayEvents(all, seq);
      assert.deepEqual(fast, full, `state at #${seq}`);
    }
    const verified = await replay({ nats: nc, stream: "R2", prefix: "r2", verify: true });
    assert.deepEqual(verified, replayEvents(all));
  } finally {
    await nc.close();
    await nats.cleanup();
    await Deno.remove(stateDir, { recursive: true });
  }
});

Deno.test("replay of a missing stream fails with NotFoundError", async () => {
  const nats = await startNats();
  try {
    await assert.rejects(
      () => replay({ nats: { servers: nats.url }, stream: "NOPE", prefix: "nope" }),
      (err: Error) => err instanceof NotFoundError && /stream NOPE not found/.test(err.message),
    );
  } finally {
    await nats.cleanup();
  }
});

Deno.test("replayEvents before the first event is empty", () => {
  const s = replayEvents([], 0);
  assert.equal(s.seq, 0);
  assert.equal(s.at, null);
  assert.deepEqual([s.networks, s.endpoints, s.sandboxes], [[], [], []]);
});
