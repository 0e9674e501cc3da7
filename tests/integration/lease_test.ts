import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { ConflictError } from "../../mod.ts";
import { openJournal } from "../../src/journal/journal.ts";
import { newEventId } from "../../src/ids.ts";
import { startEnv } from "../_harness/env.ts";

Deno.test("lease (root, nats-server) allows one controller per host and stream", async (t) => {
  const env = await startEnv("lse");
  try {
    const first = await env.open({ leaseTtlMs: 2000 });
    await t.step(
      "a second controller for the same host is refused while the first is alive",
      async () => {
        const started = Date.now();
        await assert.rejects(
          () => env.open({ leaseTtlMs: 2000, leaseWaitMs: 3000 }),
          (e: Error) =>
            e instanceof ConflictError &&
            /^host h1 is owned by a running controller on stream /.test(e.message),
        );
        // The first keeps refreshing, so waiting longer than its TTL does not help the second.
        assert.ok(Date.now() - started >= 3000);
      },
    );
    await t.step("another host id on the same stream is fine", async () => {
      const other = await env.open({ hostId: "h2", predefined: false });
      assert.equal(other.hostId, "h2");
      assert.equal(other.networks().length, 0, "h1's objects are not h2's");
      await other.close();
    });
    await first.close();
    await t.step("after a clean close the next controller starts at once", async () => {
      const started = Date.now();
      const next = await env.open({ leaseTtlMs: 2000 });
      assert.ok(Date.now() - started < 1500, `took ${Date.now() - started} ms`);
      await next.close();
    });
  } finally {
    await env.cleanup();
  }
});

Deno.test("lease (root, nats-server) a stale writer cannot interleave: the controller reloads the object", async () => {
  const env = await startEnv("stl");
  try {
    const cnm = await env.open();
    const sb = await cnm.createSandbox({ name: "a" });
    const ep = await cnm.createEndpoint("none", { name: "e" });
    // Another writer extends the endpoint's history behind the controller's back.
    const nc = await connect({ servers: env.nats.url });
    try {
      const j = await openJournal(nc, { stream: env.stream, prefix: env.prefix });
      const last = await j.last("endpoint", ep.id);
      await j.append({
        v: 1,
        eventId: newEventId(),
        effectId: newEventId(),
        kind: "endpoint",
        objectId: ep.id,
        type: "endpoint.join.requested",
        from: "created",
        to: "joining",
        at: new Date().toISOString(),
        host: "intruder",
        data: { sandboxId: sb.id, ifname: "eth0" },
      }, last!.seq);
    } finally {
      await nc.close();
    }
    await assert.rejects(
      () => cnm.deleteEndpoint(ep.id),
      (e: Error) => e instanceof ConflictError && /another writer changed endpoint/.test(e.message),
    );
    // The controller took the journal's view: the join the other writer decided was carried out.
    const deadline = Date.now() + 5000;
    while (cnm.endpoint(ep.id)?.state !== "joined" && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(cnm.endpoint(ep.id)?.state, "joined");
    assert.equal(cnm.endpoint(ep.id)?.sandboxId, sb.id);
  } finally {
    await env.cleanup();
  }
});
