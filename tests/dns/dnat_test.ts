import assert from "node:assert/strict";
import { checkDnat, describeListing, describeRules, dnatScript } from "../../src/dns/dnat.ts";

const LISTING = JSON.stringify({
  nftables: [
    { metainfo: { version: "1.0.6" } },
    { table: { family: "ip", name: "cnm-dns" } },
    { chain: { name: "dns-dnat", type: "nat", hook: "output", prio: -100 } },
    { chain: { name: "dns-snat", type: "nat", hook: "postrouting", prio: 100 } },
    ...[["udp", 40001], ["tcp", 40002]].map(([p, port]) => ({
      rule: {
        chain: "dns-dnat",
        expr: [
          { match: { left: { payload: { protocol: "ip", field: "daddr" } }, right: "127.0.0.11" } },
          { match: { left: { payload: { protocol: p, field: "dport" } }, right: 53 } },
          { counter: { packets: 0, bytes: 0 } },
          { dnat: { addr: "127.0.0.11", port } },
        ],
      },
    })),
    ...[["udp", 40001], ["tcp", 40002]].map(([p, port]) => ({
      rule: {
        chain: "dns-snat",
        expr: [
          { match: { left: { payload: { protocol: p, field: "sport" } }, right: port } },
          { snat: { port: 53 } },
        ],
      },
    })),
  ],
});

Deno.test("dnatScript replaces the sandbox's table in one transaction", () => {
  const s = dnatScript({ udp: 40001, tcp: 40002 });
  const lines = s.split("\n");
  assert.deepEqual(lines.slice(0, 3), [
    "add table ip cnm-dns",
    "delete table ip cnm-dns",
    "table ip cnm-dns {",
  ]);
  assert.match(s, /type nat hook output priority -100;/);
  assert.match(s, /ip daddr 127\.0\.0\.11 udp dport 53 counter dnat to 127\.0\.0\.11:40001/);
  assert.match(s, /ip daddr 127\.0\.0\.11 tcp dport 53 counter dnat to 127\.0\.0\.11:40002/);
  assert.match(s, /ip saddr 127\.0\.0\.11 udp sport 40001 counter snat to :53/);
  assert.throws(() => dnatScript({ udp: 0, tcp: 1 }), {
    name: "RangeError",
    message: "invalid udp port 0",
  });
});

Deno.test("describeListing reads back exactly the pair dnatScript writes", () => {
  assert.deepEqual(describeListing(LISTING), describeRules({ udp: 40001, tcp: 40002 }));
});

Deno.test("checkDnat reports a missing or different table", async () => {
  const ports = { udp: 40001, tcp: 40002 };
  const ok = await checkDnat("/ns", ports, () => Promise.resolve(LISTING));
  assert.deepEqual(ok, []);
  const moved = await checkDnat("/ns", { ...ports, udp: 40009 }, () => Promise.resolve(LISTING));
  assert.equal(moved.length, 1);
  assert.equal(moved[0].problem, "different");
  assert.match(moved[0].actual!, /dnat udp 53 -> 40001/);
  assert.match(moved[0].expected!, /dnat udp 53 -> 40009/);
  const gone = await checkDnat(
    "/ns",
    ports,
    () => Promise.reject(new Error("nft: Error: No such file or directory")),
  );
  assert.deepEqual(gone.map((f) => [f.problem, f.name]), [["missing", "ip cnm-dns in /ns"]]);
  await assert.rejects(
    checkDnat("/ns", ports, () => Promise.reject(new Error("nft: permission denied"))),
    { message: "nft: permission denied" },
  );
});
