import assert from "node:assert/strict";
import { foldAll, stateOf } from "../src/journal/fold.ts";
import type { RecordedEvent } from "../src/journal/events.ts";
import { ev } from "./actors/_events.ts";

const rec = (seq: number, e: ReturnType<typeof ev>): RecordedEvent => ({ ...e, seq });

Deno.test("foldAll rebuilds states and remembers an interrupted intent", async () => {
  const events = [
    rec(1, ev("sandbox.create.requested", "s1", { name: "c", key: "/k", owned: true, labels: {} })),
    rec(2, ev("sandbox.created", "s1")),
    rec(
      3,
      ev("endpoint.create.requested", "e1", { networkId: "n", name: "a", labels: {}, options: {} }),
    ),
    rec(4, ev("endpoint.created", "e1")),
    rec(5, ev("endpoint.join.requested", "e1", { sandboxId: "s1", ifname: "eth0" })),
  ];
  const fold = await foldAll(events);
  assert.equal(stateOf(fold.objects.get("s1")!.snapshot), "ready");
  const e1 = fold.objects.get("e1")!;
  assert.equal(stateOf(e1.snapshot), "joining");
  assert.equal(e1.intent?.seq, 5);
  assert.equal(stateOf(e1.before), "created");
  assert.equal(e1.lastSeq, 5);
  assert.equal(fold.lastSeq, 5);
  assert.deepEqual(fold.warnings, []);
});

Deno.test("foldAll warns about events that do not apply, and keeps going", async () => {
  const events = [
    rec(1, ev("endpoint.joined", "e9")),
    rec(2, ev("sandbox.create.requested", "s1", { name: "c", key: "/k", owned: true, labels: {} })),
    rec(3, ev("sandbox.deleted", "s1")),
  ];
  const fold = await foldAll(events);
  assert.equal(fold.warnings.length, 2);
  assert.match(fold.warnings[0].reason, /not a create request/);
  assert.equal(fold.warnings[1].reason, "sandbox.deleted does not apply in state creating");
  assert.equal(stateOf(fold.objects.get("s1")!.snapshot), "creating");
});
