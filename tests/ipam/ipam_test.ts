import assert from "node:assert/strict";
import {
  ForbiddenError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
} from "../../src/errors.ts";
import { createIpam, GlobalDefault, type Ipam, LocalDefault } from "../../src/ipam/mod.ts";

type ErrorClass = new (message: string) => Error;

function assertError(fn: () => unknown, cls: ErrorClass, message: string) {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err}`);
    assert.equal(err.message, message);
    return true;
  });
}

const overlap = "Pool overlaps with other one on this address space";
const fullySubnetted = "all predefined address pools have been fully subnetted";
const noV4 = "no available IPv4 addresses on this network's address pools";
const noV6 = "no available IPv6 addresses on this network's address pools";
const inUse = "Address already in use";
const notInSubnet = (a: string) =>
  `invalid address ${a}: It does not belong to any of this network's subnets`;

const expectedLocalDefaults = [
  "172.17.0.0/16",
  "172.18.0.0/16",
  "172.19.0.0/16",
  "172.20.0.0/16",
  "172.21.0.0/16",
  "172.22.0.0/16",
  "172.23.0.0/16",
  "172.24.0.0/16",
  "172.25.0.0/16",
  "172.26.0.0/16",
  "172.27.0.0/16",
  "172.28.0.0/16",
  "172.29.0.0/16",
  "172.30.0.0/16",
  "172.31.0.0/16",
  ...Array.from({ length: 16 }, (_, i) => `192.168.${i * 16}.0/20`),
];

Deno.test("ipam names libnetwork's default address spaces", () => {
  assert.deepEqual(createIpam().getDefaultAddressSpaces(), {
    local: LocalDefault,
    global: GlobalDefault,
  });
  assert.equal(LocalDefault, "LocalDefault");
  assert.equal(GlobalDefault, "GlobalDefault");
});

Deno.test("ipam auto-picks the 31 local default pools in order, then refuses", () => {
  const ipam = createIpam();
  const picked = expectedLocalDefaults.map(() => ipam.requestPool({}));
  assert.equal(picked.length, 31);
  assert.deepEqual(picked.map((p) => p.pool), expectedLocalDefaults);
  assert.deepEqual(picked[0], {
    poolId: "LocalDefault/172.17.0.0/16",
    pool: "172.17.0.0/16",
    addressSpace: LocalDefault,
    v6: false,
  });
  assertError(() => ipam.requestPool({}), UnavailableError, fullySubnetted);
});

Deno.test("ipam reuses a released default pool first", () => {
  const ipam = createIpam();
  ipam.requestPool({});
  const second = ipam.requestPool({});
  ipam.requestPool({});
  ipam.releasePool(second.poolId);
  assert.equal(ipam.requestPool({}).pool, "172.18.0.0/16");
});

Deno.test("ipam global space auto-picks /24s from 10.0.0.0/8", () => {
  const ipam = createIpam();
  const a = ipam.requestPool({ addressSpace: GlobalDefault });
  const b = ipam.requestPool({ addressSpace: GlobalDefault });
  assert.equal(a.poolId, "GlobalDefault/10.0.0.0/24");
  assert.equal(b.pool, "10.0.1.0/24");
  // Spaces are independent: the local space still starts at 172.17.0.0/16.
  assert.equal(ipam.requestPool({}).pool, "172.17.0.0/16");
  assertError(
    () => ipam.requestPool({ addressSpace: GlobalDefault, v6: true }),
    UnavailableError,
    fullySubnetted,
  );
});

Deno.test("ipam auto-pick skips host networks, read on every pick", () => {
  let host = ["172.17.0.0/16", "172.18.5.0/24", "8.8.8.8", "0.0.0.0/0", "fd00::/64"];
  const ipam = createIpam({ hostNetworks: () => host });
  assert.equal(ipam.requestPool({}).pool, "172.19.0.0/16"); // /0 (default route) ignored
  host = ["172.20.0.0/14"]; // the whole /14 is in use on the host
  assert.equal(ipam.requestPool({}).pool, "172.17.0.0/16");
  assert.equal(ipam.requestPool({}).pool, "172.18.0.0/16");
  assert.equal(ipam.requestPool({}).pool, "172.24.0.0/16");
  host = ["fd00::/63"];
  assert.equal(ipam.requestPool({ v6: true }).pool, "fd00:0:0:2::/64");
});

Deno.test("ipam refuses a malformed host network, naming it", () => {
  const ipam = createIpam({ hostNetworks: () => ["172.17.0.0/99"] });
  assertError(
    () => ipam.requestPool({}),
    InvalidArgumentError,
    "invalid CIDR address: 172.17.0.0/99",
  );
});

Deno.test("ipam auto-pick skips explicit pools in use, large or small", () => {
  const ipam = createIpam();
  ipam.requestPool({ pool: "172.16.0.0/12" });
  assert.equal(ipam.requestPool({}).pool, "192.168.0.0/20");
  ipam.requestPool({ pool: "192.168.17.0/24" });
  assert.equal(ipam.requestPool({}).pool, "192.168.32.0/20");
});

Deno.test("ipam explicit pool is normalised and needs no default", () => {
  const ipam = createIpam();
  const info = ipam.requestPool({ pool: "10.10.3.7/16" });
  assert.deepEqual(info, {
    poolId: "LocalDefault/10.10.0.0/16",
    pool: "10.10.0.0/16",
    addressSpace: LocalDefault,
    v6: false,
  });
  // An explicit pool inside a host network is the user's choice and is allowed.
  const hosted = createIpam({ hostNetworks: () => ["10.0.0.0/8"] });
  assert.equal(hosted.requestPool({ pool: "10.1.0.0/16" }).pool, "10.1.0.0/16");
});

Deno.test("ipam refuses overlapping pools in one address space", async (t) => {
  const ipam = createIpam();
  ipam.requestPool({ pool: "172.18.0.0/16" });
  await t.step("same pool", () => {
    assertError(() => ipam.requestPool({ pool: "172.18.0.0/16" }), ForbiddenError, overlap);
  });
  await t.step("smaller pool inside", () => {
    assertError(() => ipam.requestPool({ pool: "172.18.1.0/24" }), ForbiddenError, overlap);
  });
  await t.step("larger pool around", () => {
    assertError(() => ipam.requestPool({ pool: "172.16.0.0/12" }), ForbiddenError, overlap);
  });
  await t.step("new pool with a subPool overlapping", () => {
    assertError(
      () => ipam.requestPool({ pool: "172.18.0.0/17", subPool: "172.18.0.0/24" }),
      ForbiddenError,
      overlap,
    );
  });
  await t.step("same pool in another space is fine", () => {
    assert.equal(
      ipam.requestPool({ addressSpace: GlobalDefault, pool: "172.18.0.0/16" }).poolId,
      "GlobalDefault/172.18.0.0/16",
    );
  });
  await t.step("after release, the pool is free again", () => {
    ipam.releasePool("LocalDefault/172.18.0.0/16");
    assert.equal(ipam.requestPool({ pool: "172.18.1.0/24" }).pool, "172.18.1.0/24");
  });
});

Deno.test("ipam refuses bad pool requests, naming the value", async (t) => {
  const ipam = createIpam();
  await t.step("malformed pool", () => {
    assertError(
      () => ipam.requestPool({ pool: "172.18.0/16" }),
      InvalidArgumentError,
      "invalid CIDR address: 172.18.0/16",
    );
  });
  await t.step("malformed subPool", () => {
    assertError(
      () => ipam.requestPool({ pool: "172.18.0.0/16", subPool: "172.18.1.0" }),
      InvalidArgumentError,
      "invalid CIDR address: 172.18.1.0",
    );
  });
  await t.step("subPool outside pool", () => {
    assertError(
      () => ipam.requestPool({ pool: "172.18.0.0/16", subPool: "172.19.0.0/24" }),
      InvalidArgumentError,
      "invalid subPool 172.19.0.0/24: it is not inside pool 172.18.0.0/16",
    );
  });
  await t.step("subPool without pool", () => {
    assertError(
      () => ipam.requestPool({ subPool: "172.19.0.0/24" }),
      InvalidArgumentError,
      "invalid subPool 172.19.0.0/24: a subPool needs a pool",
    );
  });
  await t.step("family mismatch", () => {
    assertError(
      () => ipam.requestPool({ pool: "10.0.0.0/8", v6: true }),
      InvalidArgumentError,
      "invalid pool 10.0.0.0/8: it is IPv4 but v6 is true",
    );
  });
  await t.step("unknown address space", () => {
    assertError(
      () => ipam.requestPool({ addressSpace: "Nope" }),
      InvalidArgumentError,
      "cannot find address space Nope",
    );
  });
  assert.deepEqual(ipam.pools(), []); // nothing was changed
});

Deno.test("ipam refuses a malformed default pool at creation", () => {
  assertError(
    () => createIpam({ defaultPools: { LocalDefault: [{ base: "10.0.0.0/16", size: 8 }] } }),
    InvalidArgumentError,
    "invalid default pool size 8 for base 10.0.0.0/16",
  );
});

Deno.test("ipam custom default pools and spaces", () => {
  const ipam = createIpam({
    defaultPools: {
      LocalDefault: [{ base: "10.99.0.0/23", size: 24 }],
      Lab: [{ base: "10.5.0.0/16", size: 16 }],
    },
  });
  assert.equal(ipam.requestPool({}).pool, "10.99.0.0/24");
  assert.equal(ipam.requestPool({}).pool, "10.99.1.0/24");
  assertError(() => ipam.requestPool({}), UnavailableError, fullySubnetted);
  assert.equal(ipam.requestPool({ addressSpace: "Lab" }).poolId, "Lab/10.5.0.0/16");
  assert.equal(ipam.requestPool({ addressSpace: GlobalDefault }).pool, "10.0.0.0/24"); // kept
});

Deno.test("ipam setDefaultPools changes later auto-picks and leaves pools in use alone", () => {
  const ipam = createIpam();
  const before = ipam.requestPool({});
  assert.equal(before.pool, "172.17.0.0/16");
  ipam.setDefaultPools(LocalDefault, [{ base: "10.10.0.0/16", size: 24 }]);
  assert.equal(ipam.requestPool({}).pool, "10.10.0.0/24");
  assert.equal(ipam.requestPool({}).pool, "10.10.1.0/24");
  // The pool picked from the old base is still held: its addresses, its overlap check.
  assert.equal(ipam.requestAddress(before.poolId), "172.17.0.1/16");
  assertError(() => ipam.requestPool({ pool: "172.17.5.0/24" }), ForbiddenError, overlap);
  // A bad entry changes nothing.
  assertError(
    () => ipam.setDefaultPools(LocalDefault, [{ base: "10.20.0.0/16", size: 12 }]),
    InvalidArgumentError,
    "invalid default pool size 12 for base 10.20.0.0/16",
  );
  assert.equal(ipam.requestPool({}).pool, "10.10.2.0/24");
  // undefined restores the built-in pools; the ones in use are skipped.
  ipam.setDefaultPools(LocalDefault, undefined);
  assert.equal(ipam.requestPool({}).pool, "172.18.0.0/16");
  assertError(
    () => ipam.setDefaultPools("Nowhere", undefined),
    InvalidArgumentError,
    "cannot find address space Nowhere",
  );
});

Deno.test("ipam gateway is the first address; network and broadcast are reserved", () => {
  const ipam = createIpam();
  const { poolId } = ipam.requestPool({ pool: "10.0.0.0/30" });
  assert.equal(ipam.requestAddress(poolId, { gateway: true }), "10.0.0.1/30");
  assert.equal(ipam.requestAddress(poolId), "10.0.0.2/30");
  assertError(() => ipam.requestAddress(poolId), UnavailableError, noV4);
  assertError(() => ipam.requestAddress(poolId, { address: "10.0.0.0" }), ForbiddenError, inUse);
  assertError(() => ipam.requestAddress(poolId, { address: "10.0.0.3" }), ForbiddenError, inUse);
  assert.deepEqual(ipam.addresses(poolId), ["10.0.0.1/30", "10.0.0.2/30"]);
  // Releasing a reserved address does not free it.
  ipam.releaseAddress(poolId, "10.0.0.3");
  assertError(() => ipam.requestAddress(poolId), UnavailableError, noV4);
});

Deno.test("ipam /31 and /32 use every address", () => {
  const ipam = createIpam();
  const p31 = ipam.requestPool({ pool: "10.0.0.0/31" }).poolId;
  assert.equal(ipam.requestAddress(p31, { gateway: true }), "10.0.0.0/31");
  assert.equal(ipam.requestAddress(p31), "10.0.0.1/31");
  assertError(() => ipam.requestAddress(p31), UnavailableError, noV4);
  const p32 = ipam.requestPool({ pool: "10.0.1.7/32" }).poolId;
  assert.equal(ipam.requestAddress(p32), "10.0.1.7/32");
  assertError(() => ipam.requestAddress(p32), UnavailableError, noV4);
});

Deno.test("ipam exhausts a /29 after six addresses", () => {
  const ipam = createIpam();
  const { poolId } = ipam.requestPool({ pool: "192.0.2.8/29" });
  const got = Array.from({ length: 6 }, () => ipam.requestAddress(poolId));
  assert.deepEqual(got, [1, 2, 3, 4, 5, 6].map((i) => `192.0.2.${8 + i}/29`));
  assertError(() => ipam.requestAddress(poolId), UnavailableError, noV4);
});

Deno.test("ipam subPool: dynamic addresses come from the range, specific ones from the pool", () => {
  const ipam = createIpam();
  const info = ipam.requestPool({ pool: "172.28.0.0/16", subPool: "172.28.5.0/30" });
  assert.deepEqual(info, {
    poolId: "LocalDefault/172.28.0.0/16/172.28.5.0/30",
    pool: "172.28.0.0/16",
    subPool: "172.28.5.0/30",
    addressSpace: LocalDefault,
    v6: false,
  });
  const id = info.poolId;
  // The range's first address is usable: only the pool's network/broadcast are reserved.
  assert.equal(ipam.requestAddress(id, { gateway: true }), "172.28.5.0/16");
  assert.equal(ipam.requestAddress(id), "172.28.5.1/16");
  // A specific address may lie outside the range but must lie in the pool (libnetwork).
  assert.equal(ipam.requestAddress(id, { address: "172.28.9.9" }), "172.28.9.9/16");
  assertError(
    () => ipam.requestAddress(id, { address: "172.29.0.1" }),
    InvalidArgumentError,
    notInSubnet("172.29.0.1"),
  );
  assert.equal(ipam.requestAddress(id), "172.28.5.2/16");
  assert.equal(ipam.requestAddress(id), "172.28.5.3/16");
  assertError(() => ipam.requestAddress(id), UnavailableError, noV4);
});

Deno.test("ipam subPools of one pool share its subnet, as in libnetwork", () => {
  const ipam = createIpam();
  const a = ipam.requestPool({ pool: "10.1.0.0/16", subPool: "10.1.1.0/24" }).poolId;
  const b = ipam.requestPool({ pool: "10.1.0.0/16", subPool: "10.1.2.0/24" }).poolId;
  assertError(
    () => ipam.requestPool({ pool: "10.1.0.0/16", subPool: "10.1.1.0/24" }),
    ForbiddenError,
    overlap,
  );
  ipam.requestAddress(a, { address: "10.1.2.0" });
  assertError(() => ipam.requestAddress(b, { address: "10.1.2.0" }), ForbiddenError, inUse);
  assert.equal(ipam.requestAddress(b), "10.1.2.1/16");
  ipam.releasePool(a);
  assert.deepEqual(ipam.addresses(b), ["10.1.2.0/16", "10.1.2.1/16"]); // subnet still held by b
  ipam.releasePool(b);
  assert.deepEqual(ipam.pools(), []);
  const again = ipam.requestPool({ pool: "10.1.0.0/16" }).poolId;
  assert.deepEqual(ipam.addresses(again), []); // last holder gone: addresses forgotten
});

Deno.test("ipam specific address: allocated, in use, malformed, wrong family", () => {
  const ipam = createIpam();
  const { poolId } = ipam.requestPool({ pool: "172.18.0.0/16" });
  assert.equal(ipam.requestAddress(poolId, { address: "172.18.0.10" }), "172.18.0.10/16");
  assertError(() => ipam.requestAddress(poolId, { address: "172.18.0.10" }), ForbiddenError, inUse);
  // First-free allocation fills the gap below, then skips the taken address.
  const got = Array.from({ length: 10 }, () => ipam.requestAddress(poolId));
  assert.equal(got[8], "172.18.0.9/16");
  assert.equal(got[9], "172.18.0.11/16");
  assertError(
    () => ipam.requestAddress(poolId, { address: "172.18.0" }),
    InvalidArgumentError,
    "invalid IP address: 172.18.0",
  );
  assertError(
    () => ipam.requestAddress(poolId, { address: "fd00::1" }),
    InvalidArgumentError,
    notInSubnet("fd00::1"),
  );
  assertError(
    () => ipam.requestAddress(poolId, { address: "10.0.0.1" }),
    InvalidArgumentError,
    notInSubnet("10.0.0.1"),
  );
});

Deno.test("ipam release and reuse", () => {
  const ipam = createIpam();
  const { poolId } = ipam.requestPool({ pool: "10.0.0.0/24" });
  for (let i = 0; i < 5; i++) ipam.requestAddress(poolId);
  ipam.releaseAddress(poolId, "10.0.0.2/24"); // with prefix
  ipam.releaseAddress(poolId, "10.0.0.4"); // without
  assert.deepEqual(ipam.addresses(poolId), ["10.0.0.1/24", "10.0.0.3/24", "10.0.0.5/24"]);
  assert.equal(ipam.requestAddress(poolId), "10.0.0.2/24");
  assert.equal(ipam.requestAddress(poolId), "10.0.0.4/24");
  assert.equal(ipam.requestAddress(poolId), "10.0.0.6/24");
  // Releasing a free address is a no-op (replaying a release is harmless).
  ipam.releaseAddress(poolId, "10.0.0.200");
  ipam.releaseAddress(poolId, "10.0.0.200");
  assert.equal(ipam.addresses(poolId).length, 6);
  assertError(
    () => ipam.releaseAddress(poolId, "10.0.1.1"),
    InvalidArgumentError,
    notInSubnet("10.0.1.1"),
  );
  assertError(
    () => ipam.releaseAddress(poolId, "bogus"),
    InvalidArgumentError,
    "invalid IP address: bogus",
  );
});

Deno.test("ipam unknown pool id is not found, by name", () => {
  const ipam = createIpam();
  const id = "LocalDefault/10.9.0.0/16";
  const message = `pool ${id} not found`;
  assertError(() => ipam.requestAddress(id), NotFoundError, message);
  assertError(() => ipam.releaseAddress(id, "10.9.0.1"), NotFoundError, message);
  assertError(() => ipam.restoreAddress(id, "10.9.0.1"), NotFoundError, message);
  assertError(() => ipam.releasePool(id), NotFoundError, message);
  assertError(() => ipam.addresses(id), NotFoundError, message);
  const { poolId } = ipam.requestPool({ pool: "10.9.0.0/16" });
  ipam.releasePool(poolId);
  assertError(() => ipam.releasePool(poolId), NotFoundError, message);
});

Deno.test("ipam serial allocation continues after the last allocated address", async (t) => {
  await t.step("per request", () => {
    const ipam = createIpam();
    const { poolId } = ipam.requestPool({ pool: "10.0.0.0/29" });
    for (let i = 0; i < 3; i++) ipam.requestAddress(poolId); // .1 .2 .3
    ipam.releaseAddress(poolId, "10.0.0.2");
    assert.equal(ipam.requestAddress(poolId, { serial: true }), "10.0.0.4/29");
    assert.equal(ipam.requestAddress(poolId), "10.0.0.2/29"); // first-free again
  });
  await t.step("by pool option, wrapping around", () => {
    const ipam = createIpam();
    const info = ipam.requestPool({
      pool: "10.0.0.0/29",
      options: { "com.docker.network.ipam.serial": "true" },
    });
    assert.deepEqual(info.options, { "com.docker.network.ipam.serial": "true" });
    const id = info.poolId;
    assert.equal(ipam.requestAddress(id, { gateway: true }), "10.0.0.1/29");
    assert.equal(ipam.requestAddress(id), "10.0.0.2/29");
    assert.equal(ipam.requestAddress(id), "10.0.0.3/29");
    ipam.releaseAddress(id, "10.0.0.2");
    assert.equal(ipam.requestAddress(id), "10.0.0.4/29");
    assert.equal(ipam.requestAddress(id), "10.0.0.5/29");
    assert.equal(ipam.requestAddress(id), "10.0.0.6/29");
    assert.equal(ipam.requestAddress(id), "10.0.0.2/29"); // wrapped
    assertError(() => ipam.requestAddress(id), UnavailableError, noV4);
  });
  await t.step("gateway stays first-free in a serial pool", () => {
    const ipam = createIpam();
    const id = ipam.requestPool({
      pool: "10.0.0.0/29",
      options: { "com.docker.network.ipam.serial": "true" },
    }).poolId;
    ipam.requestAddress(id, { address: "10.0.0.5" });
    assert.equal(ipam.requestAddress(id, { gateway: true }), "10.0.0.1/29");
  });
});

Deno.test("ipam IPv6 explicit /64 reserves only the subnet-router anycast", () => {
  const ipam = createIpam();
  const info = ipam.requestPool({ pool: "2001:DB8:1::/64", v6: true });
  assert.deepEqual(info, {
    poolId: "LocalDefault/2001:db8:1::/64",
    pool: "2001:db8:1::/64",
    addressSpace: LocalDefault,
    v6: true,
  });
  const id = info.poolId;
  assert.equal(ipam.requestAddress(id, { gateway: true }), "2001:db8:1::1/64");
  assertError(() => ipam.requestAddress(id, { address: "2001:db8:1::" }), ForbiddenError, inUse);
  const last = "2001:db8:1:0:ffff:ffff:ffff:ffff";
  assert.equal(ipam.requestAddress(id, { address: last }), `${last}/64`);
  assert.equal(ipam.requestAddress(id), "2001:db8:1::2/64");
  assertError(
    () => ipam.requestAddress(id, { address: "10.0.0.1" }),
    InvalidArgumentError,
    notInSubnet("10.0.0.1"),
  );
});

Deno.test("ipam IPv6 auto pools are sequential /64s from fd00::/8", () => {
  const ipam = createIpam();
  const a = ipam.requestPool({ v6: true });
  const b = ipam.requestPool({ v6: true });
  assert.deepEqual(a, {
    poolId: "LocalDefault/fd00::/64",
    pool: "fd00::/64",
    addressSpace: LocalDefault,
    v6: true,
  });
  assert.equal(b.pool, "fd00:0:0:1::/64");
  ipam.requestPool({ pool: "fd00:0:0:2::/63" });
  assert.equal(ipam.requestPool({ v6: true }).pool, "fd00:0:0:4::/64");
  // IPv4 and IPv6 pools never block each other.
  assert.equal(ipam.requestPool({}).pool, "172.17.0.0/16");
});

Deno.test("ipam IPv6 exhaustion message", () => {
  const ipam = createIpam();
  const id = ipam.requestPool({ pool: "fd00::/126" }).poolId;
  assert.equal(ipam.requestAddress(id), "fd00::1/126");
  assert.equal(ipam.requestAddress(id), "fd00::2/126");
  assert.equal(ipam.requestAddress(id), "fd00::3/126"); // no broadcast in IPv6
  assertError(() => ipam.requestAddress(id), UnavailableError, noV6);
});

/** The live run of a small scenario: pools and addresses decided, one released. */
function liveRun(ipam: Ipam) {
  const a = ipam.requestPool({});
  const b = ipam.requestPool({
    pool: "10.5.0.0/16",
    subPool: "10.5.1.0/24",
    options: { "com.docker.network.ipam.serial": "true" },
  });
  const c = ipam.requestPool({ v6: true });
  const facts: [string, string][] = [];
  for (const p of [a, b, c]) {
    facts.push([p.poolId, ipam.requestAddress(p.poolId, { gateway: true })]);
    for (let i = 0; i < 3; i++) facts.push([p.poolId, ipam.requestAddress(p.poolId)]);
  }
  facts.push([b.poolId, ipam.requestAddress(b.poolId, { address: "10.5.7.7" })]);
  ipam.releaseAddress(a.poolId, "172.17.0.3");
  return { pools: [a, b, c], facts: facts.filter(([, addr]) => addr !== "172.17.0.3/16") };
}

Deno.test("ipam restore then allocate does not collide with restored addresses (restart)", () => {
  const live = createIpam();
  const { pools, facts } = liveRun(live);
  const restarted = createIpam();
  for (const p of pools) restarted.restorePool(p);
  for (const [poolId, address] of facts) restarted.restoreAddress(poolId, address);
  assert.deepEqual(restarted.pools(), live.pools());
  for (const p of pools) assert.deepEqual(restarted.addresses(p.poolId), live.addresses(p.poolId));
  // New decisions after the restart match what the live allocator would decide.
  for (const p of pools) {
    const next = restarted.requestAddress(p.poolId);
    assert.equal(next, live.requestAddress(p.poolId));
    assert.ok(!facts.some(([, addr]) => addr === next));
  }
  assert.equal(restarted.requestAddress(pools[0].poolId), "172.17.0.5/16");
  // The restored serial pool continues after its last allocation, not from the start.
  restarted.releaseAddress(pools[1].poolId, "10.5.1.1");
  assert.equal(restarted.requestAddress(pools[1].poolId), "10.5.1.5/16");
  // Auto-pick skips restored pools.
  assert.equal(restarted.requestPool({}).pool, "172.18.0.0/16");
  assert.equal(restarted.requestPool({ v6: true }).pool, "fd00:0:0:1::/64");
  // Restored specific addresses are in use.
  assertError(
    () => restarted.requestAddress(pools[1].poolId, { address: "10.5.7.7" }),
    ForbiddenError,
    inUse,
  );
});

Deno.test("ipam restore is idempotent", () => {
  const ipam = createIpam();
  const info = {
    poolId: "LocalDefault/172.18.0.0/16",
    pool: "172.18.0.0/16",
    addressSpace: LocalDefault,
    v6: false,
  };
  ipam.restorePool(info);
  ipam.restorePool(info);
  ipam.restoreAddress(info.poolId, "172.18.0.1/16");
  ipam.restoreAddress(info.poolId, "172.18.0.1/16");
  ipam.restoreAddress(info.poolId, "172.18.0.2");
  assert.deepEqual(ipam.pools(), [info]);
  assert.deepEqual(ipam.addresses(info.poolId), ["172.18.0.1/16", "172.18.0.2/16"]);
  assertError(() => ipam.requestPool({ pool: "172.18.0.0/16" }), ForbiddenError, overlap);
  // Restoring a fact that contradicts the state is refused, not silently accepted.
  assertError(
    () =>
      ipam.restorePool({ ...info, poolId: "LocalDefault/172.18.0.0/24", pool: "172.18.0.0/24" }),
    ForbiddenError,
    overlap,
  );
  assertError(
    () => ipam.restorePool({ ...info, poolId: "LocalDefault/172.99.0.0/16" }),
    InvalidArgumentError,
    "invalid pool id LocalDefault/172.99.0.0/16: expected LocalDefault/172.18.0.0/16",
  );
  assertError(() => ipam.restoreAddress(info.poolId, "172.18.0.0"), ForbiddenError, inUse);
  assertError(
    () => ipam.restoreAddress(info.poolId, "172.19.0.1"),
    InvalidArgumentError,
    notInSubnet("172.19.0.1"),
  );
});

Deno.test("ipam is deterministic: same calls, same snapshot", () => {
  const a = createIpam();
  const b = createIpam();
  liveRun(a);
  liveRun(b);
  assert.deepEqual(b.snapshot(), a.snapshot());
  assert.deepEqual(JSON.parse(JSON.stringify(a.snapshot())), a.snapshot()); // JSON-able
  const snap = a.snapshot() as { subnets: { pool: string; allocated: string[]; last?: string }[] };
  assert.deepEqual(snap.subnets.find((s) => s.pool === "172.17.0.0/16"), {
    addressSpace: LocalDefault,
    pool: "172.17.0.0/16",
    allocated: ["172.17.0.0-172.17.0.2", "172.17.0.4", "172.17.255.255"],
    last: "172.17.0.4",
  });
});

Deno.test("ipam replay in journal order reproduces the live snapshot", () => {
  const live = createIpam();
  const { pools, facts } = liveRun(live);
  const replay = createIpam();
  for (const p of pools) replay.restorePool(p);
  // Journal order: addresses in the order they were decided; the released one is not live.
  for (const [poolId, address] of facts) replay.restoreAddress(poolId, address);
  assert.deepEqual(replay.snapshot(), live.snapshot());
});

Deno.test("ipam large pools are cheap: 10k addresses in a /8 and in a /64", () => {
  const ipam = createIpam();
  const v4 = ipam.requestPool({ pool: "10.0.0.0/8" }).poolId;
  let last = "";
  for (let i = 0; i < 10_000; i++) last = ipam.requestAddress(v4);
  assert.equal(last, "10.0.39.16/8"); // 10 000 = 39 * 256 + 16
  assert.equal(ipam.requestAddress(v4, { address: "10.255.255.254" }), "10.255.255.254/8");
  const snap = ipam.snapshot() as { subnets: { allocated: string[] }[] };
  assert.deepEqual(snap.subnets[0].allocated, [
    "10.0.0.0-10.0.39.16",
    "10.255.255.254-10.255.255.255",
  ]);
  const v6 = ipam.requestPool({ v6: true }).poolId;
  for (let i = 0; i < 10_000; i++) last = ipam.requestAddress(v6, { serial: true });
  assert.equal(last, "fd00::2710/64");
  assert.equal(ipam.addresses(v6).length, 10_000);
});
