import assert from "node:assert/strict";
import {
  ConflictError,
  type Driver,
  DriverError,
  ForbiddenError,
  UnavailableError,
} from "../../mod.ts";
import { newEventId, newObjectId } from "../../src/ids.ts";
import type { CnmEvent } from "../../src/journal/events.ts";
import { startEnv } from "../_harness/env.ts";

function event(
  kind: string,
  objectId: string,
  type: string,
  from: string | null,
  to: string,
  data: Record<string, unknown>,
): CnmEvent {
  return {
    v: 1,
    eventId: newEventId(),
    effectId: newEventId(),
    kind,
    objectId,
    type,
    from,
    to,
    at: new Date().toISOString(),
    host: "h1",
    data,
  };
}

/** A driver whose calls can be held open and made to fail, for concurrency tests. */
function testDriver() {
  const calls: string[] = [];
  let inFlight = 0;
  const state = { maxInFlight: 0, failCreate: false, gate: Promise.resolve() };
  const call = async (what: string) => {
    calls.push(what);
    inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, inFlight);
    try {
      await state.gate;
    } finally {
      inFlight--;
    }
  };
  const driver: Driver = {
    name: "test",
    capabilities: () => ({ dataScope: "local", connectivityScope: "local" }),
    createNetwork: async (n) => {
      await call(`createNetwork ${n.id}`);
      if (state.failCreate) throw new DriverError("test driver refused the network");
      return { made: true };
    },
    deleteNetwork: (n) => call(`deleteNetwork ${n.id}`),
    createEndpoint: async (_n, e) => {
      await call(`createEndpoint ${e.id}`);
    },
    deleteEndpoint: (_n, e) => call(`deleteEndpoint ${e.id}`),
    join: async (_n, e) => {
      await call(`join ${e.id}`);
    },
    leave: (_n, e) => call(`leave ${e.id}`),
  };
  return { driver, calls, state };
}

Deno.test("controller (root, nats-server) resumes actors left mid-transition", async (t) => {
  const env = await startEnv("rec");
  try {
    // A controller that "crashed" right after journaling intents: write them by hand.
    const first = await env.open();
    const net = first.network("none")!;
    const sb = await first.createSandbox({ name: "c0" });
    await first.close();
    const sbId = newObjectId(), epId = newObjectId(), ep2 = newObjectId();
    const key = `/var/run/netns/${env.host.prefix}-resumed`;
    const intents = new Map<string, CnmEvent>();
    await env.withJournal(async (j) => {
      const sbCreate = event("sandbox", sbId, "sandbox.create.requested", null, "creating", {
        name: "c1",
        key,
        owned: true,
        labels: {},
      });
      intents.set(sbId, sbCreate);
      await j.append(sbCreate, 0);
      const epCreate = event("endpoint", epId, "endpoint.create.requested", null, "creating", {
        networkId: net.id,
        name: "e1",
        labels: {},
        options: {},
      });
      const s1 = await j.append(epCreate, 0);
      const s2 = await j.append(
        {
          ...event("endpoint", epId, "endpoint.created", "creating", "created", { facts: {} }),
          cause: epCreate.eventId,
        },
        s1.seq,
      );
      const join = event("endpoint", epId, "endpoint.join.requested", "created", "joining", {
        sandboxId: sb.id,
        ifname: "eth0",
      });
      intents.set(epId, join);
      await j.append(join, s2.seq);
      const ep2Create = event("endpoint", ep2, "endpoint.create.requested", null, "creating", {
        networkId: net.id,
        name: "e2",
        labels: {},
        options: {},
      });
      intents.set(ep2, ep2Create);
      await j.append(ep2Create, 0);
    });
    assert.deepEqual(await env.sandboxesInKernel(), [sb.key.split("/").pop()].sort());

    const cnm = await env.open();
    await t.step("the interrupted sandbox create ran again and made the namespace", async () => {
      assert.equal(cnm.sandbox(sbId)?.state, "ready");
      assert.ok((await env.sandboxesInKernel()).includes(`${env.host.prefix}-resumed`));
    });
    await t.step("the interrupted join and create completed", () => {
      assert.equal(cnm.endpoint(epId)?.state, "joined");
      assert.equal(cnm.endpoint(epId)?.sandboxId, sb.id);
      assert.equal(cnm.endpoint(ep2)?.state, "created");
      assert.equal(cnm.recovery.resumed.length, 3);
    });
    await t.step("each outcome carries the effectId of its intent", async () => {
      const events = await env.readAll();
      for (const [id, intent] of intents) {
        const outcome = events.filter((e) => e.objectId === id).at(-1)!;
        assert.equal(outcome.effectId, intent.effectId);
        assert.equal(outcome.cause, intent.eventId);
      }
    });
    await cnm.close();
    await t.step("a second restart re-runs nothing", async () => {
      const count = (await env.readAll()).length;
      const again = await env.open();
      assert.deepEqual(again.recovery.resumed, []);
      assert.equal((await env.readAll()).length, count);
    });
  } finally {
    await env.cleanup();
  }
});

Deno.test("controller (root, nats-server) fails cleanly while nats-server is down and recovers", async (t) => {
  const env = await startEnv("down");
  try {
    const cnm = await env.open({ publishTimeoutMs: 2000 });
    await env.nats.stop();
    await t.step(
      "a command fails within 10 s with a clear error and makes no namespace",
      async () => {
        const started = Date.now();
        await assert.rejects(
          () => cnm.createSandbox({ name: "c1" }),
          (e: Error) => e instanceof UnavailableError && /^journal unavailable: /.test(e.message),
        );
        assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
        assert.deepEqual(await env.sandboxesInKernel(), []);
        assert.equal(cnm.sandbox("c1"), undefined);
      },
    );
    await env.nats.start();
    await t.step("when the server is back the same controller works again", async () => {
      const deadline = Date.now() + 15_000;
      for (;;) {
        try {
          const sb = await cnm.createSandbox({ name: "c1" });
          assert.equal(sb.state, "ready");
          break;
        } catch (e) {
          if (!(e instanceof UnavailableError) || Date.now() > deadline) throw e;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      assert.equal((await env.sandboxesInKernel()).length, 1);
    });
  } finally {
    await env.cleanup();
  }
});

Deno.test("controller (root, nats-server) serialises one object and runs different objects concurrently", async (t) => {
  const env = await startEnv("conc");
  try {
    const { driver, state } = testDriver();
    const cnm = await env.open({ drivers: [driver] });
    await t.step("concurrent creates of one name: exactly one wins", async () => {
      const results = await Promise.allSettled(
        Array.from({ length: 6 }, () => cnm.createNetwork({ name: "dup", driver: "test" })),
      );
      assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
      for (const r of results) {
        if (r.status === "rejected") {
          assert.ok(r.reason instanceof ConflictError);
          assert.equal(r.reason.message, "network with name dup already exists");
        }
      }
      assert.equal(cnm.networks().filter((n) => n.name === "dup").length, 1);
    });
    await t.step("effects on different objects overlap", async () => {
      let open!: () => void;
      state.gate = new Promise<void>((r) => (open = r));
      state.maxInFlight = 0;
      const p = Promise.all(["a", "b", "c"].map((name) => cnm.createEndpoint("dup", { name })));
      await new Promise((r) => setTimeout(r, 200));
      open();
      await p;
      assert.equal(state.maxInFlight, 3);
    });
    await t.step("two joins of one endpoint are serialised: the second is refused", async () => {
      const ep = cnm.endpoints({ network: "dup" })[0];
      const s1 = await cnm.createSandbox({ name: "s1" });
      const s2 = await cnm.createSandbox({ name: "s2" });
      const results = await Promise.allSettled([cnm.join(ep.id, s1.id), cnm.join(ep.id, s2.id)]);
      assert.equal(results[0].status, "fulfilled");
      assert.equal(results[1].status, "rejected");
      assert.ok((results[1] as PromiseRejectedResult).reason instanceof ForbiddenError);
    });
    await t.step("a network with endpoints cannot be deleted; the message lists them", async () => {
      await assert.rejects(() => cnm.deleteNetwork("dup"), (e: Error) => {
        assert.ok(e instanceof ForbiddenError);
        assert.match(
          e.message,
          /^network dup has active endpoints \(name:"[abc]" id:"[0-9a-f]{12}"/,
        );
        return true;
      });
    });
    await t.step(
      "a failed driver call leaves a failed network with the driver's message",
      async () => {
        state.failCreate = true;
        await assert.rejects(
          () => cnm.createNetwork({ name: "bad", driver: "test" }),
          (e: Error) => e instanceof DriverError && e.message === "test driver refused the network",
        );
        assert.equal(cnm.network("bad")?.state, "failed");
        assert.equal(cnm.network("bad")?.error?.message, "test driver refused the network");
        state.failCreate = false;
        await cnm.deleteNetwork("bad");
        assert.equal(cnm.network("bad"), undefined);
        const types = (await env.readAll()).filter((e) => e.kind === "network").map((e) => e.type);
        assert.deepEqual(types.slice(-4), [
          "network.create.requested",
          "network.create.failed",
          "network.delete.requested",
          "network.deleted",
        ]);
      },
    );
  } finally {
    await env.cleanup();
  }
});

Deno.test("controller (root, nats-server) completes an acknowledged command after nats-server comes back", async () => {
  const env = await startEnv("ack");
  try {
    const { driver, state } = testDriver();
    const cnm = await env.open({ drivers: [driver], defaultBridge: false });
    let open!: () => void;
    state.gate = new Promise<void>((r) => (open = r));
    // The intent is durable; the driver holds the effect while the server goes away.
    const pending = cnm.createNetwork({ name: "later", driver: "test" });
    await new Promise((r) => setTimeout(r, 200));
    await env.nats.stop();
    open(); // the effect finishes while the journal is down: the outcome waits for it
    await new Promise((r) => setTimeout(r, 500));
    await env.nats.start();
    const net = await pending;
    assert.equal(net.state, "active");
    const events = (await env.readAll()).filter((e) => e.objectId === net.id).map((e) => e.type);
    assert.deepEqual(events, ["network.create.requested", "network.created"]);
  } finally {
    await env.cleanup();
  }
});
