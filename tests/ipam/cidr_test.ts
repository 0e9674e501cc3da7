import assert from "node:assert/strict";
import { InvalidArgumentError } from "../../src/errors.ts";
import {
  addressOf,
  cidrContains,
  cidrsOverlap,
  cidrToString,
  ipToString,
  isIPv6,
  normalizeCidr,
  normalizeIp,
  parseCidr,
  parseIp,
  prefixOf,
} from "../../src/ipam/cidr.ts";

function assertInvalid(fn: () => unknown, message: string) {
  assert.throws(fn, (err: unknown) => {
    assert.deepEqual(err instanceof InvalidArgumentError, true, `not InvalidArgumentError: ${err}`);
    assert.deepEqual((err as Error).message, message);
    return true;
  });
}

Deno.test("cidr parses and formats IPv4", () => {
  assert.deepEqual(parseIp("172.18.0.1"), { family: 4, value: 0xac120001n });
  assert.deepEqual(ipToString({ family: 4, value: 0xffffffffn }), "255.255.255.255");
  assert.deepEqual(normalizeIp("0.0.0.0"), "0.0.0.0");
});

Deno.test("cidr parses and formats IPv6 canonically", async (t) => {
  const cases: [string, string][] = [
    ["::", "::"],
    ["::1", "::1"],
    ["FD00:0:0:0:0:0:0:1", "fd00::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // first longest run wins
    ["2001:0db8:0000:0001:0000:0000:0000:0000", "2001:db8:0:1::"],
    ["1:0:1:1:1:1:1:1", "1:0:1:1:1:1:1:1"], // a single zero group is not compressed
    ["::ffff:10.0.0.1", "::ffff:10.0.0.1"],
    ["64:ff9b::192.0.2.33", "64:ff9b::c000:221"],
    ["fd00:0:0:1::", "fd00:0:0:1::"],
  ];
  for (const [input, want] of cases) {
    await t.step(input, () => assert.deepEqual(normalizeIp(input), want));
  }
});

Deno.test("cidr refuses malformed addresses, naming them", async (t) => {
  for (
    const bad of [
      "",
      "1.2.3",
      "1.2.3.4.5",
      "256.0.0.1",
      "01.2.3.4",
      "1.2.3.-4",
      "a.b.c.d",
      ":::",
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7::8",
      "12345::",
      "1.2.3.4::",
      "::1.2.3",
      "fe80::1%eth0",
      "1::2:",
      ":1::",
      " 10.0.0.1",
    ]
  ) {
    await t.step(JSON.stringify(bad), () => {
      assertInvalid(() => parseIp(bad), `invalid IP address: ${bad}`);
    });
  }
});

Deno.test("cidr refuses malformed CIDRs, naming them", async (t) => {
  for (
    const bad of ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/024", "fd00::/129", "x/8", "/8"]
  ) {
    await t.step(bad, () => assertInvalid(() => parseCidr(bad), `invalid CIDR address: ${bad}`));
  }
});

Deno.test("cidr normalises a subnet to its network", () => {
  assert.deepEqual(normalizeCidr("10.0.0.5/24"), "10.0.0.0/24");
  assert.deepEqual(normalizeCidr("172.18.255.255/16"), "172.18.0.0/16");
  assert.deepEqual(normalizeCidr("FD00::1:2/64"), "fd00::/64");
  assert.deepEqual(normalizeCidr("1.2.3.4/0"), "0.0.0.0/0");
  assert.deepEqual(normalizeCidr("10.0.0.5/32"), "10.0.0.5/32");
  const c = parseCidr("10.0.0.5/24");
  assert.deepEqual([c.address, c.network, c.last, c.prefix], [
    0x0a000005n,
    0x0a000000n,
    0x0a0000ffn,
    24,
  ]);
  assert.deepEqual(cidrToString(c), "10.0.0.0/24");
});

Deno.test("cidr addressOf and prefixOf split address/prefix", () => {
  assert.deepEqual(addressOf("10.0.0.2/24"), "10.0.0.2");
  assert.deepEqual(addressOf("10.0.0.2"), "10.0.0.2");
  assert.deepEqual(addressOf("fd00:0::2/64"), "fd00::2");
  assert.deepEqual(prefixOf("10.0.0.2/24"), 24);
  assert.deepEqual(prefixOf("fd00::2/64"), 64);
  assertInvalid(() => prefixOf("10.0.0.2"), "invalid CIDR address: 10.0.0.2");
});

Deno.test("cidr isIPv6 tells families apart without throwing", () => {
  assert.deepEqual(isIPv6("fd00::1"), true);
  assert.deepEqual(isIPv6("fd00::/64"), true);
  assert.deepEqual(isIPv6("10.0.0.1"), false);
  assert.deepEqual(isIPv6("10.0.0.0/8"), false);
  assert.deepEqual(isIPv6("nonsense:"), false);
});

Deno.test("cidr containment", () => {
  assert.deepEqual(cidrContains("172.18.0.0/16", "172.18.255.255"), true);
  assert.deepEqual(cidrContains("172.18.0.0/16", "172.19.0.0"), false);
  assert.deepEqual(cidrContains("172.18.0.5/16", "172.18.0.1/24"), true); // prefixes ignored
  assert.deepEqual(cidrContains("fd00::/64", "fd00::ffff:ffff:ffff:ffff"), true);
  assert.deepEqual(cidrContains("fd00::/64", "fd00:0:0:1::"), false);
  assert.deepEqual(cidrContains("0.0.0.0/0", "::"), false); // families never mix
  assertInvalid(() => cidrContains("10.0.0.0/8", "10.0.0"), "invalid IP address: 10.0.0");
});

Deno.test("cidr overlap", () => {
  assert.deepEqual(cidrsOverlap("172.20.0.0/14", "172.23.0.0/16"), true);
  assert.deepEqual(cidrsOverlap("172.20.0.0/14", "172.24.0.0/16"), false);
  assert.deepEqual(cidrsOverlap("10.0.0.0/24", "10.0.0.255/32"), true);
  assert.deepEqual(cidrsOverlap("10.0.0.0/24", "10.0.1.0/24"), false);
  assert.deepEqual(cidrsOverlap("fd00::/8", "fdff:1::/64"), true);
  assert.deepEqual(cidrsOverlap("::/0", "0.0.0.0/0"), false);
  assertInvalid(() => cidrsOverlap("10.0.0.0/8", "10/8"), "invalid CIDR address: 10/8");
});
