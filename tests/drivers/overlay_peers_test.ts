/**
 * The overlay driver's pure parts (no root): option parsing and names, the peer table's
 * add/remove/move semantics, and the diff that reconcile repairs from.
 */

import assert from "node:assert/strict";
import { InvalidArgumentError } from "../../src/errors.ts";
import { macFromIp, overlayConfig, overlayNames, ownerId } from "../../drivers/overlay/_config.ts";
import {
  desired,
  diff,
  parsePeers,
  PeerTable,
  repairChanges,
} from "../../drivers/overlay/_peers.ts";
import type { DriverNetwork } from "../../drivers/driver.ts";

const net = (options: Record<string, string> = {}, pools = ["10.0.1.0/24"]): DriverNetwork => ({
  id: "0123456789abcdef".repeat(4),
  internal: false,
  enableIPv6: false,
  options: { "com.docker.network.driver.overlay.vxlanid_list": "4096,4097", ...options },
  labels: {},
  ipv4: pools.map((pool) => ({
    addressSpace: "GlobalDefault",
    pool,
    gateway: pool.replace(/0\/24$/, "1/24"),
    auxAddresses: {},
  })),
  ipv6: [],
  facts: {},
});

const refused = (f: () => unknown, message: string) =>
  assert.throws(f, (e: Error) => {
    assert.ok(e instanceof InvalidArgumentError, `${e.name}: ${e.message}`);
    assert.equal(e.message, message);
    return true;
  });

Deno.test("overlayConfig parses VNIs, MTU and names like libnetwork", () => {
  const cfg = overlayConfig(net({}, ["10.0.1.0/24", "10.0.2.0/24"]));
  assert.equal(cfg.mtu, 1450);
  assert.deepEqual(cfg.subnets.map((s) => [s.pool, s.vni, s.bridge, s.vxlan, s.gateway]), [
    ["10.0.1.0/24", 4096, "ov-001000-01234", "vx-001000-01234", "10.0.1.1/24"],
    ["10.0.2.0/24", 4097, "ov-001001-01234", "vx-001001-01234", "10.0.2.1/24"],
  ]);
  assert.equal(overlayConfig(net({ "com.docker.network.driver.mtu": "9000" })).mtu, 8950);
  assert.equal(overlayConfig(net({ encrypted: "" })).encrypted, true);
});

Deno.test("overlayConfig refuses bad networks with libnetwork's words", () => {
  const vx = "com.docker.network.driver.overlay.vxlanid_list";
  refused(() => overlayConfig(net({ [vx]: "" })), "no VNI provided");
  refused(
    () => overlayConfig(net({ [vx]: "4096" }, ["10.0.1.0/24", "10.0.2.0/24"])),
    "insufficient vnis(1) passed to overlay",
  );
  refused(
    () => overlayConfig(net({ [vx]: "4096,x" })),
    `invalid option ${vx}: "x" is not a VXLAN id (1-16777215)`,
  );
  refused(
    () => overlayConfig(net({ [vx]: "16777216" })),
    `invalid option ${vx}: "16777216" is not a VXLAN id (1-16777215)`,
  );
  refused(
    () => overlayConfig(net({ [vx]: "5,5" })),
    `invalid option ${vx}: VXLAN id 5 is listed twice`,
  );
  refused(() => overlayConfig(net({}, [])), "ipv4 pool is empty");
  refused(
    () => overlayConfig({ ...net(), enableIPv6: true }),
    "overlay networks do not support IPv6 yet (IPv4 subnets only)",
  );
  refused(
    () => overlayConfig(net({ "com.docker.network.driver.mtu": "100" })),
    'invalid option com.docker.network.driver.mtu: "100" is not an MTU (118-65535)',
  );
  refused(
    () => overlayConfig(net({ "com.docker.network.driver.overlay.colour": "red" })),
    "invalid option com.docker.network.driver.overlay.colour: not an overlay driver option",
  );
  // Before the controller decides VNIs, their absence is fine; their syntax is not.
  assert.equal(overlayConfig(net({ [vx]: "" }), { requireVnis: false }).subnets.length, 1);
  refused(
    () => overlayConfig(net({ [vx]: "x" }), { requireVnis: false }),
    `invalid option ${vx}: "x" is not a VXLAN id (1-16777215)`,
  );
});

Deno.test("ownerId and the marks name the controller", () => {
  const a = ownerId("CNM", "h1");
  assert.match(a, /^[0-9a-f]{8}$/);
  assert.equal(ownerId("CNM", "h1"), a, "stable");
  assert.notEqual(ownerId("CNM", "h2"), a);
  assert.notEqual(ownerId("OTHER", "h1"), a);
  const names = overlayNames(a);
  assert.equal(names.namespace("cnm-", "0123456789abcdef"), `cnm-ov-${a}-0123456789ab`);
  assert.equal(names.networkMark("0123456789abcdef"), `cnm:${a}:overlay:0123456789ab`);
  assert.equal(names.isMine(`cnm:${a}:endpoint:x`), true);
  assert.equal(names.isMine(`cnm:${ownerId("CNM", "h2")}:overlay:x`), false);
  assert.equal(names.isMine("cnm:network:0123456789ab"), false, "the bridge driver's mark");
  assert.throws(() => overlayNames("A B"), InvalidArgumentError);
  assert.equal(macFromIp("10.0.1.3/24"), "02:42:0a:00:01:03");
});

Deno.test("parsePeers normalises and names the bad field", () => {
  assert.deepEqual(
    parsePeers([{ ip: "10.0.1.3/24", mac: "02:42:0A:00:01:03", vtep: "192.0.2.2" }]),
    [
      { ip: "10.0.1.3", mac: "02:42:0a:00:01:03", vtep: "192.0.2.2" },
    ],
  );
  refused(
    () => parsePeers([{ ip: "10.0.1.3", mac: "nope", vtep: "192.0.2.2" }]),
    "invalid peer 0: mac: not a MAC address",
  );
  refused(
    () => parsePeers([{ ip: "10.0.1.3", mac: "02:42:0a:00:01:03", vtep: "fd00::1" }]),
    "invalid peer 0: vtep: not an IPv4 address",
  );
  refused(() => parsePeers("x"), "invalid peers: expected an array");
});

const cfg = overlayConfig(net());
const local = {
  vtep: "192.0.2.1",
  ips: new Set(["10.0.1.2"]),
  macs: new Set(["02:42:0a:00:01:02"]),
};
const p = (n: number, vtep = "192.0.2.2") => ({
  ip: `10.0.1.${n}`,
  mac: macFromIp(`10.0.1.${n}`),
  vtep,
});

Deno.test("PeerTable moves an IP, keeps a MAC still in use, and ignores late removals", () => {
  const t = new PeerTable();
  assert.deepEqual(t.add(cfg, [p(3), p(2, "192.0.2.1")], local), [
    { op: "add", neighbor: { dev: "vx-001000-01234", ip: "10.0.1.3", mac: "02:42:0a:00:01:03" } },
    { op: "add", fdb: { dev: "vx-001000-01234", mac: "02:42:0a:00:01:03", dst: "192.0.2.2" } },
  ], "own VTEP and local endpoints are not programmed");
  // Moved to another VTEP: replaces only.
  assert.deepEqual(t.add(cfg, [p(3, "192.0.2.3")], local).map((c) => c.op), ["add", "add"]);
  // A late removal of the old location changes nothing.
  assert.deepEqual(t.remove(cfg, [p(3)], local), []);
  assert.equal(t.all().length, 2);
  // Removal of the current location deletes FDB before neighbour.
  assert.deepEqual(t.remove(cfg, [p(3, "192.0.2.3")], local), [
    { op: "delete", fdb: { dev: "vx-001000-01234", mac: "02:42:0a:00:01:03" } },
    { op: "delete", neighbor: { dev: "vx-001000-01234", ip: "10.0.1.3" } },
  ]);
  // Same IP with another MAC: the old MAC's FDB entry goes when nothing else uses it.
  t.add(cfg, [p(4)], local);
  const changes = t.add(cfg, [{ ...p(4), mac: "02:00:00:00:00:44" }], local);
  assert.deepEqual(changes[0], {
    op: "delete",
    fdb: { dev: "vx-001000-01234", mac: "02:42:0a:00:01:04" },
  });
});

Deno.test("diff sorts kernel entries into ok, missing, stale and learned", () => {
  const want = desired(cfg, [p(3), p(4)], local);
  const dev = "vx-001000-01234";
  const state = diff(cfg, want, [
    { dev, ip: "10.0.1.3", mac: p(3).mac, state: ["permanent"], permanent: true },
    { dev, ip: "10.0.1.9", mac: "02:42:0a:00:01:09", state: ["permanent"], permanent: true },
    { dev, ip: "ff02::16", mac: "33:33:00:00:00:16", state: ["noarp"], permanent: false },
    { dev: "br0", ip: "10.0.1.4", state: ["stale"], permanent: false },
  ], [
    { dev, mac: p(3).mac, dst: "192.0.2.2", self: true, permanent: false, state: ["reachable"] },
    { dev, mac: p(4).mac, dst: "192.0.2.7", self: true, permanent: true, state: ["permanent"] },
    { dev, mac: p(4).mac, dst: "192.0.2.2", self: true, permanent: true, state: ["permanent"] },
    {
      dev,
      mac: "aa:bb:cc:00:00:01",
      master: "br0",
      self: false,
      permanent: true,
      state: ["permanent"],
    },
  ]);
  assert.equal(state.ok, 1);
  assert.deepEqual(state.missing.map((e) => [e.kind, e.ip ?? e.mac, e.vtep]), [
    ["neighbor", "10.0.1.4", undefined],
    ["fdb", p(4).mac, "192.0.2.2"],
  ]);
  assert.deepEqual(state.stale.map((e) => [e.kind, e.ip ?? e.mac, e.vtep]), [
    ["neighbor", "10.0.1.9", undefined],
    ["fdb", p(4).mac, "192.0.2.7"],
    ["fdb", p(4).mac, "192.0.2.2"],
  ]);
  assert.deepEqual(state.learned.map((e) => [e.kind, e.mac]), [["fdb", p(3).mac]]);
  const fix = repairChanges(state, want);
  assert.deepEqual(fix, [
    { op: "delete", fdb: { dev, mac: p(4).mac, dst: "192.0.2.7" } },
    { op: "delete", fdb: { dev, mac: p(4).mac, dst: "192.0.2.2" } },
    { op: "delete", neighbor: { dev, ip: "10.0.1.9" } },
    { op: "add", neighbor: { dev, ip: "10.0.1.4", mac: p(4).mac } },
    { op: "add", fdb: { dev, mac: p(4).mac, dst: "192.0.2.2" } },
    { op: "add", fdb: { dev, mac: p(3).mac, dst: "192.0.2.2" } },
  ]);
});
