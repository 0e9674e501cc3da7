import assert from "node:assert/strict";
import { initialTransition, transition } from "xstate";
import { sandboxMachine } from "../../actors/sandbox.ts";
import { ev } from "./_events.ts";

const create = ev("sandbox.create.requested", "s1", {
  name: "c1",
  key: "/var/run/netns/x",
  owned: true,
  labels: {},
});

Deno.test("sandboxMachine goes creating → ready → deleting → deleted", () => {
  let [s] = initialTransition(sandboxMachine, { event: create });
  assert.equal(s.value, "creating");
  assert.equal(s.context.key, "/var/run/netns/x");
  [s] = transition(sandboxMachine, s, ev("sandbox.created", "s1"));
  assert.equal(s.value, "ready");
  assert.equal(s.can(ev("sandbox.created", "s1")), false);
  [s] = transition(sandboxMachine, s, ev("sandbox.delete.requested", "s1"));
  assert.equal(s.value, "deleting");
  [s] = transition(sandboxMachine, s, ev("sandbox.deleted", "s1"));
  assert.equal(s.value, "deleted");
});

Deno.test("sandboxMachine fails when its namespace cannot be made", () => {
  let [s] = initialTransition(sandboxMachine, { event: create });
  [s] = transition(
    sandboxMachine,
    s,
    ev("sandbox.create.failed", "s1", {
      error: { name: "DriverError", code: "DRIVER", message: "x" },
    }),
  );
  assert.equal(s.value, "failed");
});
