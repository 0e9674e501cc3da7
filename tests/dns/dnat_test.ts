import assert from "node:assert/strict";
import {
  checkDnat,
  describeListing,
  describeRules,
  describeTable,
  dnatScript,
  dnatTable,
  DNS_TABLE,
} from "../../src/dns/dnat.ts";
import { batchBytes, deleteTable, newTable, NFPROTO_IPV4 } from "../../src/kernel/_nftnl.ts";
import { natTableRequests, type NatTableState } from "../../src/kernel/nat_table.ts";
import { NFT_CREATE, NFT_REMOVE, NFT_REPLACE } from "./_nft_batches.ts";

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

/** The messages of one datagram: [type, flags, payload hex], sequence numbers left out. */
function messages(bytes: Uint8Array, ignoreFlags = 0): [number, number, string][] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: [number, number, string][] = [];
  for (let off = 0; off + 16 <= bytes.byteLength;) {
    const len = v.getUint32(off, true);
    const payload = bytes.subarray(off + 16, off + len);
    out.push([
      v.getUint16(off + 4, true),
      v.getUint16(off + 6, true) & ~ignoreFlags,
      Array.from(payload, (b) => b.toString(16).padStart(2, "0")).join(""),
    ]);
    off += (len + 3) & ~3;
  }
  return out;
}

const fromHex = (h: string) => new Uint8Array(h.match(/../g)!.map((b) => parseInt(b, 16)));
const NLM_F_ACK = 4;

Deno.test("dnatTable is, message for message, the batch nft -f sends for the script", async (t) => {
  // nft asks for no ACKs (it polls for errors); ours ask for one each: the only difference.
  const ours = (mode: "create" | "replace", ports: { udp: number; tcp: number }) =>
    messages(batchBytes(natTableRequests(dnatTable(ports), mode), 1), NLM_F_ACK);
  await t.step("a new table (create table, then the table)", () => {
    const theirs = messages(fromHex(NFT_CREATE));
    assert.equal(theirs.length, 10); // begin, create, add, 2 chains, 4 rules, end
    assert.deepEqual(ours("create", { udp: 40001, tcp: 40002 }), theirs);
  });
  await t.step("a table replaced (add, delete, then the table)", () => {
    assert.deepEqual(ours("replace", { udp: 40003, tcp: 40004 }), messages(fromHex(NFT_REPLACE)));
  });
  await t.step("the table removed (add, delete)", () => {
    const remove = [
      newTable(NFPROTO_IPV4, DNS_TABLE, false),
      deleteTable(NFPROTO_IPV4, DNS_TABLE),
    ];
    assert.deepEqual(messages(batchBytes(remove, 1), NLM_F_ACK), messages(fromHex(NFT_REMOVE)));
  });
});

Deno.test("describeTable describes a table read over netlink as describeListing does nft's", () => {
  const ports = { udp: 40001, tcp: 40002 };
  const table = dnatTable(ports);
  let handle = 0;
  const state: NatTableState = {
    name: table.name,
    chains: table.chains.map((c) => ({
      name: c.name,
      type: "nat",
      hook: c.hook,
      priority: c.priority,
      rules: c.rules.map((r) => ({ handle: ++handle, rule: r, exprs: [] })),
    })),
  };
  assert.deepEqual(describeTable(state), describeRules(ports));
  state.chains[0].rules.push({ handle: 9, exprs: ["meta", "cmp"] });
  assert.ok(describeTable(state).includes("rule dns-dnat 9"));
});
