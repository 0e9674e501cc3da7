/** Journal events as Docker events (pure; no root, no server). */
import assert from "node:assert/strict";
import type { RecordedEvent } from "../../../mod.ts";
import {
  createEventMapper,
  type DockerEvent,
  encodeEvent,
  includeEvent,
} from "../../../src/api/docker/_events.ts";
import { parseFilters } from "../../../src/api/docker/_filters.ts";

let seq = 0;
const ev = (
  type: string,
  objectId: string,
  data: Record<string, unknown> = {},
  host = "h1",
): RecordedEvent => ({
  v: 1,
  eventId: crypto.randomUUID(),
  kind: type.split(".")[0] as RecordedEvent["kind"],
  objectId,
  type,
  from: null,
  to: "x",
  at: `2026-12-01T07:25:${String(10 + ++seq).padStart(2, "0")}.713Z`,
  host,
  data,
  seq,
});
const N = "n".repeat(64), E = "e".repeat(64), S = "s".repeat(64);

Deno.test("createEventMapper maps the journal to create, connect, disconnect, destroy", () => {
  const m = createEventMapper("h1");
  const out = [
    ev("network.create.requested", N, { name: "front", driver: "bridge" }),
    ev("network.created", N),
    ev("endpoint.create.requested", E, { networkId: N, name: "c1" }),
    ev("endpoint.created", E),
    ev("endpoint.join.requested", E, { sandboxId: S, ifname: "eth0" }),
    ev("endpoint.joined", E),
    ev("endpoint.left", E),
    ev("endpoint.join.requested", E, { sandboxId: S, ifname: "eth0" }),
    ev("endpoint.joined", E),
    ev("endpoint.delete.requested", E, { force: true }),
    ev("endpoint.deleted", E),
    ev("network.delete.requested", N),
    ev("network.deleted", N),
  ].map((e) => m.apply(e)).filter((d): d is DockerEvent => !!d);
  assert.deepEqual(out.map((d) => d.Action), [
    "create",
    "connect",
    "disconnect",
    "connect",
    "disconnect",
    "destroy",
  ]);
  assert.deepEqual(out[1].Actor, {
    ID: N,
    Attributes: { container: S, name: "front", type: "bridge" },
  });
  assert.deepEqual(out[0].Actor, { ID: N, Attributes: { name: "front", type: "bridge" } });
  assert.equal(out[0].timeNano, BigInt(Date.parse("2026-12-01T07:25:12.713Z")) * 1_000_000n);
});

Deno.test("createEventMapper shows only this host's events, but learns names from all", () => {
  const m = createEventMapper("h1");
  m.apply(ev("network.create.requested", N, { name: "front", driver: "bridge" }, "h2"));
  assert.equal(m.apply(ev("network.created", N, {}, "h2")), undefined);
  assert.equal(m.apply(ev("network.deleted", N, {}, "h1"))?.Actor.Attributes.name, "front");
});

Deno.test("encodeEvent writes dockerd's event line with exact nanoseconds", () => {
  const e: DockerEvent = {
    Type: "network",
    Action: "create",
    Actor: { ID: N, Attributes: { name: "a<b", type: "bridge" } },
    scope: "local",
    timeNano: 1_796_117_165_617_123_456n,
  };
  assert.equal(
    encodeEvent(e),
    `{"Type":"network","Action":"create","Actor":{"ID":"${N}","Attributes":{"name":"a\\u003cb","type":"bridge"}},"scope":"local","time":1796117165,"timeNano":1796117165617123456}\n`,
  );
});

Deno.test("includeEvent follows moby's events filter", () => {
  const e: DockerEvent = {
    Type: "network",
    Action: "connect",
    Actor: { ID: N, Attributes: { container: S, name: "front", type: "bridge" } },
    scope: "local",
    timeNano: 0n,
  };
  const f = (json: string) => includeEvent(parseFilters(json), e);
  assert.equal(f('{"type":{"network":true}}'), true);
  assert.equal(f('{"type":["container"]}'), false);
  assert.equal(f('{"event":["connect","disconnect"]}'), true);
  assert.equal(f('{"event":["create"]}'), false);
  assert.equal(f('{"network":["fro"]}'), true);
  assert.equal(f('{"network":["nnn"]}'), true);
  assert.equal(f('{"network":["back"]}'), false);
  assert.equal(f('{"container":["c1"]}'), false);
  assert.equal(f('{"scope":["local"]}'), true);
  assert.equal(f('{"scope":["swarm"]}'), false);
});
