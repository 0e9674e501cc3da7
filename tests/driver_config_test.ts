/**
 * The journal side of driver configuration, pure: the `driver` kind folds without a machine,
 * replay shows the configuration in force at each point, subjects with dotted objectIds
 * split back, and a kind filter reaches them.
 */
import assert from "node:assert/strict";
import { foldAll } from "../src/journal/fold.ts";
import { replayEvents } from "../src/journal/replay.ts";
import {
  type RecordedEvent,
  splitSubject,
  subjectOf,
  validateEvent,
} from "../src/journal/events.ts";
import { configChanges, driverObjectId } from "../src/journal/driver_config.ts";
import { filterSubject } from "../src/journal/watch.ts";
import { ev } from "./actors/_events.ts";

const rec = (seq: number, e: ReturnType<typeof ev>): RecordedEvent => ({ ...e, seq });

function configured(seq: number, host: string, driver: string, config: Record<string, unknown>) {
  const e = ev("driver.configured", driverObjectId(host, driver), {
    driver,
    config,
    changed: configChanges(null, config),
  });
  return rec(seq, { ...e, host, to: "configured" });
}

Deno.test("driver.configured folds into the configuration in force, per host and driver", async () => {
  const fold = await foldAll([
    configured(1, "h1", "bridge", { mtu: 9000 }),
    configured(2, "h2", "bridge", { mtu: 1400 }),
    rec(3, ev("sandbox.create.requested", "s1", { name: "c", key: "/k", owned: true, labels: {} })),
    configured(4, "h1", "bridge", { mtu: 1500 }),
  ]);
  assert.deepEqual(fold.drivers.get("h1.bridge"), {
    id: "h1.bridge",
    name: "bridge",
    host: "h1",
    config: { mtu: 1500 },
    seq: 4,
    at: fold.drivers.get("h1.bridge")!.at,
    changes: 2,
  });
  assert.deepEqual(fold.drivers.get("h2.bridge")?.config, { mtu: 1400 });
  assert.equal(fold.objects.size, 1); // driver configurations are not objects with a machine
  assert.deepEqual(fold.warnings, []);
});

Deno.test("a driver event without a configuration is a warning; later types are skipped", async () => {
  const bad = rec(1, { ...ev("driver.configured", "h1.bridge", { driver: "bridge" }) });
  const later = rec(2, ev("driver.reset", "h1.bridge", {}));
  const fold = await foldAll([bad, later]);
  assert.deepEqual(fold.warnings.map((w) => [w.seq, w.reason]), [
    [1, "driver.configured without driver and config"],
  ]);
  assert.equal(fold.drivers.size, 0);
});

Deno.test("replayEvents shows the driver configuration of the time", () => {
  const events = [
    configured(1, "h1", "bridge", { mtu: 9000 }),
    rec(2, ev("sandbox.create.requested", "s1", { name: "c", key: "/k", owned: true, labels: {} })),
    configured(3, "h1", "bridge", { mtu: 1400 }),
  ];
  assert.deepEqual(replayEvents(events, 0).drivers, []);
  const at1 = replayEvents(events, 2).drivers;
  assert.deepEqual(at1.map((d) => [d.id, d.name, d.host, d.config, d.seq, d.changes]), [
    ["h1.bridge", "bridge", "h1", { mtu: 9000 }, 1, 1],
  ]);
  assert.deepEqual(replayEvents(events).drivers[0].config, { mtu: 1400 });
});

Deno.test("configChanges: from null on the first event, only differences after", () => {
  assert.deepEqual(configChanges(null, { a: 1, b: [1] }), {
    a: { from: null, to: 1 },
    b: { from: null, to: [1] },
  });
  assert.deepEqual(configChanges({ a: 1, b: [1] }, { a: 1, b: [2] }), {
    b: { from: [1], to: [2] },
  });
  assert.deepEqual(configChanges({ a: 1, gone: true }, { a: 1 }), {
    gone: { from: true, to: null },
  });
});

Deno.test("driver subjects: <prefix>.driver.<hostId>.<driver> splits back, a kind filter reaches it", () => {
  const subject = subjectOf("cnm.t1", "driver", driverObjectId("host.example.com", "bridge"));
  assert.equal(subject, "cnm.t1.driver.host.example.com.bridge");
  assert.deepEqual(splitSubject(subject, "cnm.t1"), {
    kind: "driver",
    id: "host.example.com.bridge",
  });
  assert.deepEqual(splitSubject("cnm.t1.network.abc", "cnm.t1"), { kind: "network", id: "abc" });
  // One kind: `>` so that dotted objectIds match.
  assert.equal(filterSubject({ prefix: "cnm", kinds: ["driver"] }), "cnm.driver.>");
  assert.equal(
    filterSubject({ prefix: "cnm", kinds: ["driver"], objectId: "h1.bridge" }),
    "cnm.driver.h1.bridge",
  );
});

Deno.test("driver.configured data is validated like every event's", () => {
  const e = configured(1, "h1", "bridge", { mtu: 9000 });
  const { seq: _seq, ...event } = e;
  assert.equal(validateEvent(event).type, "driver.configured");
  assert.throws(
    () => validateEvent({ ...event, data: { driver: "bridge", changed: {} } }),
    /^EventValidationError: invalid driver.configured event data: data.config: /,
  );
});
