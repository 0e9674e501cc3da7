import assert from "node:assert/strict";
import {
  createDnsRecords,
  type DnsEndpoint,
  type DnsRecords,
  networkHasDns,
} from "../../src/dns/records.ts";

/** front: web (s1), db (s2); back: db (s2), api (s3); s4 on nothing. */
function lab(): DnsRecords {
  const r = createDnsRecords();
  r.setNetwork({ id: "nf", name: "front", driver: "bridge", internal: false });
  r.setNetwork({ id: "nb", name: "back", driver: "bridge", internal: true });
  r.setSandbox({ id: "s1", name: "web", hostname: "www" });
  r.setSandbox({ id: "s2", name: "db" });
  r.setSandbox({ id: "s3", name: "api" });
  r.setSandbox({ id: "s4", name: "lonely" });
  const ep = (id: string, networkId: string, sandboxId: string, ip: string, extra = {}) =>
    r.setEndpoint({
      id,
      networkId,
      sandboxId,
      state: "joined",
      ipv4Address: `${ip}/24`,
      ...extra,
    });
  ep("e1", "nf", "s1", "10.1.0.2", { aliases: ["Portal"] });
  ep("e2", "nf", "s2", "10.1.0.3");
  ep("e3", "nb", "s2", "10.2.0.3", { aliases: ["store"] });
  ep("e4", "nb", "s3", "10.2.0.4");
  return r;
}

Deno.test("dns records resolve names of networks shared with the asker", async (t) => {
  const r = lab();
  await t.step("the sandbox name, its hostname and aliases", () => {
    assert.deepEqual(r.lookup("s2", "web")?.ipv4, ["10.1.0.2"]);
    assert.deepEqual(r.lookup("s2", "www")?.ipv4, ["10.1.0.2"]);
    assert.deepEqual(r.lookup("s2", "portal")?.ipv4, ["10.1.0.2"]);
    assert.deepEqual(r.lookup("s1", "web")?.ipv4, ["10.1.0.2"], "its own name too");
  });
  await t.step("case-insensitive, trailing dot ignored", () => {
    assert.deepEqual(r.lookup("s2", "WEB.")?.ipv4, ["10.1.0.2"]);
    assert.deepEqual(r.lookup("s2", "pOrTaL")?.network, "front");
  });
  await t.step("scoped: a sandbox on another network does not see the name", () => {
    assert.deepEqual(r.lookup("s3", "web"), undefined);
    assert.deepEqual(r.lookup("s1", "api"), undefined);
    assert.deepEqual(r.lookup("s1", "store"), undefined, "aliases are scoped to their network");
    assert.deepEqual(r.lookup("s3", "store")?.ipv4, ["10.2.0.3"]);
    assert.deepEqual(r.lookup("s4", "web"), undefined, "a sandbox on no network sees nothing");
  });
  await t.step("name.network picks the network", () => {
    assert.deepEqual(r.lookup("s2", "db.back")?.ipv4, ["10.2.0.3"]);
    assert.deepEqual(r.lookup("s2", "db.front")?.ipv4, ["10.1.0.3"]);
    assert.deepEqual(r.lookup("s1", "db.back"), undefined, "only on the asker's networks");
    assert.deepEqual(r.lookup("s1", "web.nosuch"), undefined);
  });
  await t.step("a name on two of the asker's networks answers from the first in order", () => {
    // non-internal first (libnetwork's endpoint order): front before back
    assert.deepEqual(r.lookup("s2", "db"), { network: "front", ipv4: ["10.1.0.3"], ipv6: [] });
  });
  await t.step("PTR gives <sandbox>.<network> for addresses the asker can see", () => {
    assert.deepEqual(r.reverse("s2", "10.1.0.2"), "web.front");
    assert.deepEqual(r.reverse("s3", "10.2.0.3"), "db.back");
    assert.deepEqual(r.reverse("s3", "10.1.0.2"), undefined);
  });
});

Deno.test("dns records give every holder of a name", () => {
  const r = lab();
  r.setSandbox({ id: "s5", name: "web2" });
  r.setEndpoint({
    id: "e5",
    networkId: "nf",
    sandboxId: "s5",
    state: "joined",
    ipv4Address: "10.1.0.5/24",
    aliases: ["portal"],
  });
  assert.deepEqual(r.lookup("s2", "portal")?.ipv4.sort(), ["10.1.0.2", "10.1.0.5"]);
});

Deno.test("dns records follow joins, leaves and deletes at once", async (t) => {
  const r = lab();
  const e2: DnsEndpoint = {
    id: "e2",
    networkId: "nf",
    sandboxId: "s2",
    state: "joined",
    ipv4Address: "10.1.0.3/24",
  };
  const v0 = r.version;
  await t.step("leaving: the name goes", () => {
    r.setEndpoint({ ...e2, state: "leaving" });
    assert.deepEqual(r.lookup("s1", "db"), undefined);
    assert.deepEqual(r.reverse("s1", "10.1.0.3"), undefined);
    assert.ok(r.version > v0);
  });
  await t.step("joined again: it comes back", () => {
    r.setEndpoint(e2);
    assert.deepEqual(r.lookup("s1", "db")?.ipv4, ["10.1.0.3"]);
  });
  await t.step("the asker's scope follows its own endpoints", () => {
    r.setEndpoint({ ...e2, state: "created", sandboxId: null });
    assert.deepEqual(r.lookup("s2", "web"), undefined);
    assert.deepEqual(r.scope("s2"), { networks: ["back"], external: false });
  });
  await t.step("a sandbox renamed re-registers its names", () => {
    r.setSandbox({ id: "s1", name: "site" });
    assert.deepEqual(r.lookup("s3", "web"), undefined);
    r.setEndpoint(e2);
    assert.deepEqual(r.lookup("s2", "site")?.ipv4, ["10.1.0.2"]);
    assert.deepEqual(r.lookup("s2", "www"), undefined, "the hostname was dropped");
    assert.deepEqual(r.reverse("s2", "10.1.0.2"), "site.front");
  });
  await t.step("endpoint, sandbox and network removal", () => {
    r.removeEndpoint("e1");
    assert.deepEqual(r.lookup("s2", "site"), undefined);
    r.removeSandbox("s3");
    assert.deepEqual(r.lookup("s2", "api"), undefined);
    r.removeNetwork("nb");
    assert.deepEqual(r.lookup("s2", "db.back"), undefined);
    assert.deepEqual(r.scope("s2"), { networks: ["front"], external: true });
  });
  await t.step("a network renamed serves its endpoints under the new name", () => {
    r.setNetwork({ id: "nf", name: "edge", driver: "bridge", internal: false });
    assert.deepEqual(r.lookup("s2", "db.edge")?.ipv4, ["10.1.0.3"]);
    assert.deepEqual(r.lookup("s2", "db.front"), undefined);
    assert.deepEqual(r.reverse("s2", "10.1.0.3"), "db.edge");
  });
});

Deno.test("dns records answer IPv6 and dual-stack endpoints", () => {
  const r = createDnsRecords();
  r.setNetwork({ id: "n", name: "v6", driver: "bridge", internal: false });
  r.setSandbox({ id: "a", name: "a" });
  r.setSandbox({ id: "b", name: "b" });
  r.setEndpoint({
    id: "ea",
    networkId: "n",
    sandboxId: "a",
    state: "joined",
    ipv4Address: "10.0.0.2/24",
  });
  r.setEndpoint({
    id: "eb",
    networkId: "n",
    sandboxId: "b",
    state: "joined",
    ipv4Address: "10.0.0.3/24",
    ipv6Address: "FD00:0:0::3/64",
  });
  assert.deepEqual(r.lookup("a", "b"), { network: "v6", ipv4: ["10.0.0.3"], ipv6: ["fd00::3"] });
  assert.deepEqual(r.lookup("b", "a"), { network: "v6", ipv4: ["10.0.0.2"], ipv6: [] });
  assert.deepEqual(r.reverse("a", "fd00::3"), "b.v6");
});

Deno.test("dns records serve no names on none, host and the default bridge", () => {
  assert.equal(networkHasDns({ id: "", name: "none", driver: "null", internal: false }), false);
  assert.equal(networkHasDns({ id: "", name: "host", driver: "host", internal: false }), false);
  assert.equal(networkHasDns({ id: "", name: "bridge", driver: "bridge", internal: false }), false);
  assert.equal(
    networkHasDns({ id: "", name: "bridge", driver: "bridge", internal: false, predefined: false }),
    true,
    "a user network that happens to be called bridge",
  );
  assert.equal(networkHasDns({ id: "", name: "front", driver: "overlay", internal: true }), true);
  const r = createDnsRecords();
  r.setNetwork({ id: "n0", name: "bridge", driver: "bridge", internal: false, predefined: true });
  r.setSandbox({ id: "a", name: "a" });
  r.setSandbox({ id: "b", name: "b" });
  r.setEndpoint({
    id: "ea",
    networkId: "n0",
    sandboxId: "a",
    state: "joined",
    ipv4Address: "172.17.0.2/16",
  });
  r.setEndpoint({
    id: "eb",
    networkId: "n0",
    sandboxId: "b",
    state: "joined",
    ipv4Address: "172.17.0.3/16",
  });
  assert.equal(r.lookup("a", "b"), undefined);
  assert.deepEqual(r.scope("a"), { networks: [], external: true }, "but it may forward");
});

Deno.test("dns records load replaces everything", () => {
  const r = lab();
  r.load({
    networks: [{ id: "nx", name: "x", driver: "bridge", internal: false }],
    sandboxes: [{ id: "q", name: "q" }],
    endpoints: [{
      id: "eq",
      networkId: "nx",
      sandboxId: "q",
      state: "joined",
      ipv4Address: "10.9.0.2",
    }],
  });
  assert.equal(r.lookup("s2", "web"), undefined);
  assert.deepEqual(r.lookup("q", "q.x")?.ipv4, ["10.9.0.2"]);
});

Deno.test("dns records ignore a malformed address", () => {
  const r = createDnsRecords();
  r.setNetwork({ id: "n", name: "n", driver: "bridge", internal: false });
  r.setSandbox({ id: "a", name: "a" });
  r.setEndpoint({
    id: "ea",
    networkId: "n",
    sandboxId: "a",
    state: "joined",
    ipv4Address: "nonsense",
  });
  assert.deepEqual(r.lookup("a", "a"), { network: "n", ipv4: [], ipv6: [] });
});
