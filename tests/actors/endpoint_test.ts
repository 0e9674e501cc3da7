import assert from "node:assert/strict";
import { initialTransition, transition } from "xstate";
import { endpointMachine } from "../../actors/endpoint.ts";
import { ev } from "./_events.ts";

const create = ev("endpoint.create.requested", "ep1", {
  networkId: "n1",
  name: "web",
  labels: {},
  options: {},
});

function created() {
  const [s0] = initialTransition(endpointMachine, { event: create });
  const [s1] = transition(endpointMachine, s0, ev("endpoint.created", "ep1", { facts: { a: 1 } }));
  return s1;
}

Deno.test("endpointMachine starts in creating with the intent pending", () => {
  const [s] = initialTransition(endpointMachine, { event: create });
  assert.equal(s.value, "creating");
  assert.equal(s.context.pending?.eventId, create.eventId);
  assert.equal(s.context.name, "web");
});

Deno.test("endpointMachine goes created → joining → joined → leaving → created", () => {
  let s = created();
  assert.equal(s.value, "created");
  assert.deepEqual(s.context.facts, { a: 1 });
  assert.equal(s.context.pending, undefined);
  [s] = transition(
    endpointMachine,
    s,
    ev("endpoint.join.requested", "ep1", { sandboxId: "sb1", ifname: "eth0" }),
  );
  assert.equal(s.value, "joining");
  assert.equal(s.context.sandboxId, "sb1");
  [s] = transition(
    endpointMachine,
    s,
    ev("endpoint.joined", "ep1", { facts: { gateway: "10.0.0.1" } }),
  );
  assert.equal(s.value, "joined");
  assert.equal(s.context.joinFacts.gateway, "10.0.0.1");
  [s] = transition(endpointMachine, s, ev("endpoint.leave.requested", "ep1", { sandboxId: "sb1" }));
  assert.equal(s.value, "leaving");
  [s] = transition(endpointMachine, s, ev("endpoint.left", "ep1"));
  assert.equal(s.value, "created");
  assert.equal(s.context.sandboxId, null);
});

Deno.test("endpointMachine refuses join while joined", () => {
  let s = created();
  [s] = transition(
    endpointMachine,
    s,
    ev("endpoint.join.requested", "ep1", { sandboxId: "sb1", ifname: "eth0" }),
  );
  [s] = transition(endpointMachine, s, ev("endpoint.joined", "ep1"));
  const again = ev("endpoint.join.requested", "ep1", { sandboxId: "sb2", ifname: "eth0" });
  assert.equal(s.can(again), false);
});

Deno.test("endpointMachine refuses an unforced delete while joined and takes a forced one", () => {
  let s = created();
  [s] = transition(
    endpointMachine,
    s,
    ev("endpoint.join.requested", "ep1", { sandboxId: "sb1", ifname: "eth0" }),
  );
  [s] = transition(endpointMachine, s, ev("endpoint.joined", "ep1"));
  assert.equal(s.can(ev("endpoint.delete.requested", "ep1", { force: false })), false);
  const forced = ev("endpoint.delete.requested", "ep1", { force: true });
  assert.equal(s.can(forced), true);
  [s] = transition(endpointMachine, s, forced);
  assert.equal(s.value, "deleting");
  assert.equal(s.context.resume, "joined");
  const [back] = transition(
    endpointMachine,
    s,
    ev("endpoint.delete.failed", "ep1", {
      error: { name: "DriverError", code: "DRIVER", message: "x" },
    }),
  );
  assert.equal(back.value, "joined");
  assert.equal(back.context.error?.message, "x");
});

Deno.test("endpointMachine returns to created when a join fails", () => {
  let s = created();
  [s] = transition(
    endpointMachine,
    s,
    ev("endpoint.join.requested", "ep1", { sandboxId: "sb1", ifname: "eth0" }),
  );
  [s] = transition(
    endpointMachine,
    s,
    ev("endpoint.join.failed", "ep1", {
      error: { name: "DriverError", code: "DRIVER", message: "boom" },
    }),
  );
  assert.equal(s.value, "created");
  assert.equal(s.context.sandboxId, null);
  assert.equal(s.context.error?.message, "boom");
});

Deno.test("endpointMachine ignores outcomes that do not belong to the state", () => {
  const s = created();
  assert.equal(s.can(ev("endpoint.joined", "ep1")), false);
  assert.equal(s.can(ev("endpoint.left", "ep1")), false);
});

Deno.test("endpointMachine ends in deleted, a final state", () => {
  let s = created();
  [s] = transition(endpointMachine, s, ev("endpoint.delete.requested", "ep1", { force: false }));
  [s] = transition(endpointMachine, s, ev("endpoint.deleted", "ep1"));
  assert.equal(s.value, "deleted");
  assert.equal(s.status, "done");
});
