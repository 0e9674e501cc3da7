import assert from "node:assert/strict";
import { Subject } from "rxjs";
import type { RecordedEvent } from "../../src/journal/events.ts";
import { emptyFold, foldEvent } from "../../src/journal/fold.ts";
import { createDnsRecords } from "../../src/dns/records.ts";
import { createDnsFeed } from "../../src/controller/dns_feed.ts";
import type { WorldChange } from "../../src/controller/world.ts";
import { ev } from "../actors/_events.ts";

let seq = 0;
const rec = (type: string, id: string, data: Record<string, unknown> = {}, host = "h1") => ({
  ...ev(type, id, data),
  host,
  seq: ++seq,
} as RecordedEvent);

const history = (): RecordedEvent[] => [
  rec("network.create.requested", "n1", {
    name: "front",
    driver: "bridge",
    scope: "global",
    internal: false,
    labels: {},
    options: {},
  }),
  rec("network.created", "n1"),
  rec("sandbox.create.requested", "s1", { name: "web", key: "/k1", owned: true, labels: {} }),
  rec("sandbox.created", "s1"),
  rec("sandbox.create.requested", "s2", { name: "db", key: "/k2", owned: true, labels: {} }, "h2"),
  rec("sandbox.created", "s2", {}, "h2"),
  rec("endpoint.create.requested", "e1", {
    networkId: "n1",
    name: "web",
    labels: {},
    options: {},
    ipv4Address: "10.1.0.2/24",
  }),
  rec("endpoint.created", "e1"),
  rec("endpoint.join.requested", "e1", { sandboxId: "s1", ifname: "eth0" }),
  rec("endpoint.joined", "e1"),
];

Deno.test("the DNS feed projects the world's fold, then both feeds, newest sequence first", async (t) => {
  const own$ = new Subject<RecordedEvent>();
  const world$ = new Subject<WorldChange>();
  const records = createDnsRecords();
  const feed = createDnsFeed({ records, own$, world$ });
  const world = emptyFold();
  const toWorld = (e: RecordedEvent) => {
    foldEvent(world, e);
    world$.next({ event: e, object: world.objects.get(e.objectId) });
  };
  for (const e of history()) foldEvent(world, e);
  feed.load(world);

  await t.step("load: what the fold says (every host's objects)", () => {
    assert.equal(feed.size, 4);
    assert.deepEqual(records.lookup("s1", "web")?.ipv4, ["10.1.0.2"]);
  });

  // h2's endpoint: its events come through the world only.
  const remote = [
    rec("endpoint.create.requested", "e2", {
      networkId: "n1",
      name: "db",
      labels: {},
      options: {},
      ipv4Address: "10.1.0.3/24",
      aliases: ["store"],
    }, "h2"),
    rec("endpoint.created", "e2", {}, "h2"),
    rec("endpoint.join.requested", "e2", { sandboxId: "s2", ifname: "eth0" }, "h2"),
  ];
  await t.step("another host's join: a name once its joined event is folded", () => {
    for (const e of remote) toWorld(e);
    assert.equal(records.lookup("s1", "db"), undefined, "joining holds no name");
    toWorld(rec("endpoint.joined", "e2", {}, "h2"));
    assert.deepEqual(records.lookup("s1", "store")?.ipv4, ["10.1.0.3"]);
  });

  const leave = rec("endpoint.leave.requested", "e1", { sandboxId: "s1" });
  await t.step("this host's event applies at once, before the world brings it", () => {
    assert.deepEqual(records.lookup("s2", "web")?.ipv4, ["10.1.0.2"]);
    own$.next(leave);
    assert.equal(records.lookup("s2", "web"), undefined, "leaving holds no name");
  });

  await t.step("the world bringing it later changes nothing; nor does an older event", () => {
    const version = records.version;
    toWorld(leave);
    own$.next(leave);
    assert.equal(records.version, version);
    assert.equal(records.lookup("s2", "web"), undefined);
  });

  await t.step("an own event out of step waits for the world's snapshot", () => {
    // (e1 is leaving: endpoint.joined does not apply; the world's left does.)
    own$.next(rec("endpoint.joined", "e1"));
    assert.equal(records.lookup("s2", "web"), undefined);
    const left = rec("endpoint.left", "e1");
    toWorld(left);
    assert.equal(records.lookup("s2", "web"), undefined);
    const again = rec("endpoint.join.requested", "e1", { sandboxId: "s1", ifname: "eth0" });
    own$.next(again);
    own$.next(rec("endpoint.joined", "e1"));
    assert.deepEqual(records.lookup("s2", "web")?.ipv4, ["10.1.0.2"]);
  });

  await t.step("a new object of this host starts from its create intent", () => {
    own$.next(
      rec("sandbox.create.requested", "s3", { name: "cache", key: "/k3", owned: true, labels: {} }),
    );
    own$.next(rec("sandbox.created", "s3"));
    own$.next(rec("endpoint.create.requested", "e3", {
      networkId: "n1",
      name: "cache",
      labels: {},
      options: {},
      ipv4Address: "10.1.0.4/24",
      aliases: ["kv"],
    }));
    own$.next(rec("endpoint.created", "e3"));
    own$.next(rec("endpoint.join.requested", "e3", { sandboxId: "s3", ifname: "eth0" }));
    own$.next(rec("endpoint.joined", "e3"));
    assert.deepEqual(records.lookup("s2", "kv")?.ipv4, ["10.1.0.4"]);
  });

  await t.step("another host's leave and delete remove its names and objects", () => {
    toWorld(rec("endpoint.leave.requested", "e2", { sandboxId: "s2" }, "h2"));
    assert.equal(records.lookup("s1", "store"), undefined);
    toWorld(rec("endpoint.left", "e2", {}, "h2"));
    toWorld(rec("sandbox.delete.requested", "s2", {}, "h2"));
    toWorld(rec("sandbox.deleted", "s2", {}, "h2"));
    assert.equal(records.scope("s2").networks.length, 0, "a deleted sandbox sees nothing");
  });

  await t.step("closed: nothing follows", () => {
    feed.close();
    const version = records.version;
    own$.next(rec("endpoint.leave.requested", "e3", { sandboxId: "s3" }));
    assert.equal(records.version, version);
  });
});
