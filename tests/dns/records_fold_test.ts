import assert from "node:assert/strict";
import type { RecordedEvent } from "../../src/journal/events.ts";
import { aliasesOf, createDnsFold } from "../../src/dns/records_fold.ts";
import { ev } from "../actors/_events.ts";

let seq = 0;
const rec = (type: string, id: string, data: Record<string, unknown> = {}): RecordedEvent => ({
  ...ev(type, id, data),
  seq: ++seq,
});

const network = (id: string, name: string, internal = false) =>
  rec("network.create.requested", id, {
    name,
    driver: "bridge",
    scope: "local",
    internal,
    labels: {},
    options: {},
  });
const sandbox = (id: string, name: string, hostname?: string) =>
  rec("sandbox.create.requested", id, {
    name,
    key: `/var/run/netns/${id}`,
    owned: true,
    labels: {},
    ...(hostname ? { config: { hostname } } : {}),
  });
const endpoint = (id: string, networkId: string, ip: string, aliases?: unknown) =>
  rec("endpoint.create.requested", id, {
    networkId,
    name: id,
    labels: {},
    options: {},
    ipv4Address: ip,
    ...(aliases !== undefined ? { aliases } : {}),
  });

Deno.test("createDnsFold follows the journal's join and leave outcomes", async (t) => {
  const fold = createDnsFold();
  const r = fold.records;
  for (
    const e of [
      network("n1", "front"),
      rec("network.created", "n1"),
      sandbox("s1", "web", "www"),
      rec("sandbox.created", "s1"),
      sandbox("s2", "db"),
      rec("sandbox.created", "s2"),
      endpoint("e1", "n1", "10.1.0.2/24", ["portal", 7, ""]),
      rec("endpoint.created", "e1"),
      endpoint("e2", "n1", "10.1.0.3/24"),
      rec("endpoint.created", "e2"),
      rec("endpoint.join.requested", "e2", { sandboxId: "s2", ifname: "eth0" }),
      rec("endpoint.joined", "e2"),
      rec("endpoint.join.requested", "e1", { sandboxId: "s1", ifname: "eth0" }),
    ]
  ) fold.apply(e);
  await t.step("a join requested is not yet a name", () => {
    assert.equal(r.lookup("s2", "web"), undefined);
  });
  await t.step("endpoint.joined: the sandbox name, hostname and aliases resolve", () => {
    fold.apply(rec("endpoint.joined", "e1"));
    assert.deepEqual(r.lookup("s2", "web")?.ipv4, ["10.1.0.2"]);
    assert.deepEqual(r.lookup("s2", "www.front")?.ipv4, ["10.1.0.2"]);
    assert.deepEqual(r.lookup("s2", "portal")?.ipv4, ["10.1.0.2"]);
    assert.deepEqual(r.lookup("s1", "db")?.ipv4, ["10.1.0.3"]);
  });
  await t.step("endpoint.leave.requested: gone at once", () => {
    fold.apply(rec("endpoint.leave.requested", "e1", { sandboxId: "s1" }));
    assert.equal(r.lookup("s2", "web"), undefined);
    fold.apply(rec("endpoint.left", "e1"));
    assert.equal(r.lookup("s2", "web"), undefined);
  });
  await t.step("deletes remove the objects", () => {
    fold.apply(rec("endpoint.delete.requested", "e1", { force: false }));
    fold.apply(rec("endpoint.deleted", "e1"));
    fold.apply(rec("sandbox.delete.requested", "s2"));
    fold.apply(rec("sandbox.deleted", "s2"));
    assert.equal(r.lookup("s1", "db"), undefined);
    assert.deepEqual(r.scope("s2"), { networks: [], external: false });
  });
  await t.step("events that do not apply are counted, not thrown", () => {
    fold.apply(rec("endpoint.joined", "e2"));
    assert.equal(fold.warnings, 1);
    assert.equal(fold.lastSeq, seq);
  });
});

Deno.test("aliasesOf keeps non-empty strings", () => {
  assert.deepEqual(aliasesOf([" a ", "", 3, null, "b"]), ["a", "b"]);
  assert.deepEqual(aliasesOf("a"), []);
  assert.deepEqual(aliasesOf(undefined), []);
});
