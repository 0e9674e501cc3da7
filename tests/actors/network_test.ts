import assert from "node:assert/strict";
import { initialTransition, transition } from "xstate";
import { networkMachine } from "../../actors/network.ts";
import { ev } from "./_events.ts";

const create = ev("network.create.requested", "n1", {
  name: "net",
  driver: "null",
  scope: "local",
  internal: false,
  enableIPv6: false,
  labels: { a: "b" },
  options: {},
});
const err = { error: { name: "DriverError", code: "DRIVER", message: "no" } };

Deno.test("networkMachine goes creating → active → deleting → deleted", () => {
  let [s] = initialTransition(networkMachine, { event: create });
  assert.equal(s.value, "creating");
  [s] = transition(networkMachine, s, ev("network.created", "n1", { facts: { bridge: "br0" } }));
  assert.equal(s.value, "active");
  assert.equal(s.context.facts.bridge, "br0");
  [s] = transition(networkMachine, s, ev("network.delete.requested", "n1"));
  assert.equal(s.value, "deleting");
  [s] = transition(networkMachine, s, ev("network.deleted", "n1"));
  assert.equal(s.value, "deleted");
});

Deno.test("networkMachine fails on a failed create and can then be deleted", () => {
  let [s] = initialTransition(networkMachine, { event: create });
  [s] = transition(networkMachine, s, ev("network.create.failed", "n1", err));
  assert.equal(s.value, "failed");
  assert.equal(s.context.error?.message, "no");
  [s] = transition(networkMachine, s, ev("network.delete.requested", "n1"));
  assert.equal(s.value, "deleting");
  [s] = transition(networkMachine, s, ev("network.delete.failed", "n1", err));
  assert.equal(s.value, "failed");
});

Deno.test("networkMachine returns to active when a delete fails", () => {
  let [s] = initialTransition(networkMachine, { event: create });
  [s] = transition(networkMachine, s, ev("network.created", "n1"));
  [s] = transition(networkMachine, s, ev("network.delete.requested", "n1"));
  [s] = transition(networkMachine, s, ev("network.delete.failed", "n1", err));
  assert.equal(s.value, "active");
});

Deno.test("networkMachine refuses a delete while creating", () => {
  const [s] = initialTransition(networkMachine, { event: create });
  assert.equal(s.can(ev("network.delete.requested", "n1")), false);
});
