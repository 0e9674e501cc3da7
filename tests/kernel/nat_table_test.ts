/**
 * The NAT table over nf_tables netlink. The pure tests need nothing; the others need root:
 * they run in throwaway namespaces of a per-run prefix, removed afterwards, and compare with
 * what `nft` (1.0.6) makes and lists in a namespace of their own.
 */

import assert from "node:assert/strict";
import { describeListing, describeTable, dnatScript, dnatTable } from "../../src/dns/dnat.ts";
import { DriverError, InvalidArgumentError } from "../../src/errors.ts";
import {
  decodeRule,
  deleteNatTable,
  ensureNatTable,
  type NatRule,
  type NatTable,
  readNatTable,
  ruleExprs,
} from "../../src/kernel/nat_table.ts";
import { sh } from "../_harness/command.ts";
import { createTestHost, listPrefixed, type TestHost } from "../_harness/netns.ts";

const nsName = (path: string) => path.slice(path.lastIndexOf("/") + 1);

/** `nft -j list table ip <name>` in a namespace, parsed (metainfo left out). */
async function nftList(ns: string, name = "cnm-dns"): Promise<unknown[]> {
  const json = await sh([
    "ip",
    "netns",
    "exec",
    nsName(ns),
    "nft",
    "-j",
    "list",
    "table",
    "ip",
    name,
  ]);
  return (JSON.parse(json).nftables as Record<string, unknown>[]).filter((i) => !i.metainfo);
}

const nft = (ns: string, script: string) =>
  sh(["ip", "netns", "exec", nsName(ns), "nft", "-f", "-"], script);

/** Runs `fn` with two fresh namespaces (the host's and `<prefix>-b`); always cleans up. */
async function withTwo(fn: (a: string, b: string, host: TestHost) => Promise<void>): Promise<void> {
  const host = await createTestHost("nat");
  try {
    await sh(["ip", "netns", "add", `${host.prefix}-b`]);
    await fn(host.path, `/var/run/netns/${host.prefix}-b`, host);
  } finally {
    await host.cleanup();
    assert.deepEqual(await listPrefixed(host.prefix), []);
  }
}

const RULES: NatRule[] = [
  { daddr: "10.0.0.1", protocol: "tcp", dport: 80, nat: "dnat", toAddr: "10.1.0.2", toPort: 8080 },
  { saddr: "10.0.0.3", daddr: "10.0.0.1", protocol: "udp", nat: "dnat", toAddr: "10.1.0.3" },
  { protocol: "udp", sport: 5353, counter: true, nat: "snat", toPort: 53, comment: "x y" },
  { protocol: "tcp", nat: "snat", toAddr: "10.9.9.9", toPort: 1 },
];

Deno.test("ruleExprs and decodeRule are inverses", () => {
  for (const r of RULES) {
    const { comment: _, ...rest } = r;
    assert.deepEqual(decodeRule(ruleExprs(r, "r")), rest);
  }
  // A foreign shape (no nat at the end) is not one of ours.
  assert.equal(decodeRule(ruleExprs(RULES[0], "r").slice(0, -1)), undefined);
});

Deno.test("ensureNatTable refuses a malformed table before sending anything", async (t) => {
  const base: NatTable = {
    name: "t",
    chains: [{ name: "c", hook: "output", priority: 0, rules: [] }],
  };
  const refuses = (table: unknown, message: string) =>
    assert.rejects(ensureNatTable(table as NatTable, "/nonexistent/netns"), {
      name: "InvalidArgumentError",
      message: `invalid NAT table: ${message}`,
    });
  await t.step("names", async () => {
    await refuses({ ...base, name: "a b" }, `table name: bad name "a b"`);
    await refuses({ name: "t", chains: [base.chains[0], base.chains[0]] }, "chain c: listed twice");
  });
  await t.step("hooks and priorities", async () => {
    await refuses(
      { name: "t", chains: [{ ...base.chains[0], hook: "forward" }] },
      "chain c: hook must be prerouting, input, output or postrouting",
    );
    await refuses(
      { name: "t", chains: [{ ...base.chains[0], priority: 1.5 }] },
      "chain c: bad priority 1.5",
    );
  });
  await t.step("rules", async () => {
    const rule = (r: Partial<NatRule>) => ({
      name: "t",
      chains: [{ ...base.chains[0], rules: [{ ...RULES[0], ...r }] }],
    });
    await refuses(rule({ toPort: 70000 }), "rule 1 of chain c toPort: bad port 70000");
    await refuses(
      rule({ daddr: "fd00::1" }),
      `rule 1 of chain c daddr: "fd00::1" is not an IPv4 address`,
    );
    await refuses(rule({ sport: 1 }), "rule 1 of chain c: at most one of sport and dport");
    await refuses(
      rule({ protocol: "icmp" as "tcp" }),
      `rule 1 of chain c: protocol must be tcp or udp, not "icmp"`,
    );
    await refuses(
      rule({ toAddr: undefined, toPort: undefined }),
      "rule 1 of chain c: needs toAddr or toPort",
    );
  });
  await t.step("the class", async () => {
    const err = await ensureNatTable({ name: "", chains: [] }).catch((e) => e);
    assert.ok(err instanceof InvalidArgumentError);
  });
});

Deno.test("ensureNatTable (root) makes the table nft -f makes, as nft lists it", async (t) => {
  await withTwo(async (a, b) => {
    await t.step("a new table", async () => {
      await nft(
        a,
        dnatScript({ udp: 40001, tcp: 40002 }).replace(
          /^add table.*\ndelete table.*\n/,
          "create table ip cnm-dns\n",
        ),
      );
      await ensureNatTable(dnatTable({ udp: 40001, tcp: 40002 }), b);
      assert.deepEqual(await nftList(b), await nftList(a));
    });
    await t.step("the table replaced (new handles, counters at zero)", async () => {
      await nft(a, dnatScript({ udp: 40003, tcp: 40004 }));
      await ensureNatTable(dnatTable({ udp: 40003, tcp: 40004 }), b);
      const listed = await nftList(b);
      assert.deepEqual(listed, await nftList(a));
      assert.match(JSON.stringify(listed), /"port":40003/);
    });
    await t.step("the same again: idempotent", async () => {
      const before = await nftList(b);
      await ensureNatTable(dnatTable({ udp: 40003, tcp: 40004 }), b);
      const after = JSON.stringify(await nftList(b)).replace(/"handle":\d+/g, "");
      assert.equal(after, JSON.stringify(before).replace(/"handle":\d+/g, ""));
    });
    await t.step("other shapes: one namespace through nft, one through netlink", async () => {
      const table: NatTable = {
        name: "t2",
        chains: [
          { name: "pre", hook: "prerouting", priority: -100, rules: RULES.slice(0, 2) },
          { name: "post", hook: "postrouting", priority: 100, rules: RULES.slice(2) },
        ],
      };
      await nft(
        a,
        [
          "table ip t2 {",
          "  chain pre { type nat hook prerouting priority -100; policy accept;",
          "    ip daddr 10.0.0.1 tcp dport 80 dnat to 10.1.0.2:8080",
          "    ip saddr 10.0.0.3 ip daddr 10.0.0.1 meta l4proto udp dnat to 10.1.0.3",
          "  }",
          "  chain post { type nat hook postrouting priority 100; policy accept;",
          '    udp sport 5353 counter snat to :53 comment "x y"',
          "    meta l4proto tcp snat to 10.9.9.9:1",
          "  }",
          "}",
        ].join("\n"),
      );
      await ensureNatTable(table, b);
      // (b's table counter is ahead: its cnm-dns was replaced once more above)
      const unhandled = (items: unknown[]) =>
        items.map((i) =>
          (i as { table?: object }).table
            ? { table: { ...(i as { table: object }).table, handle: 0 } }
            : i
        );
      assert.deepEqual(unhandled(await nftList(b, "t2")), unhandled(await nftList(a, "t2")));
      const read = await readNatTable("t2", b);
      assert.deepEqual(read?.chains.map((c) => [c.name, c.hook, c.priority]), [[
        "pre",
        "prerouting",
        -100,
      ], ["post", "postrouting", 100]]);
      assert.deepEqual(read?.chains.flatMap((c) => c.rules.map((r) => r.rule)), RULES);
    });
  });
});

Deno.test("ensureNatTable (root) leaves the table as it was when the kernel refuses a rule", async (t) => {
  await withTwo(async (a) => {
    const good = dnatTable({ udp: 40001, tcp: 40002 });
    // SNAT on the output hook: well formed, but the kernel allows it only after routing.
    const bad = (ports: { udp: number; tcp: number }): NatTable => {
      const table = dnatTable(ports);
      table.chains[0].rules.push({ protocol: "udp", nat: "snat", toPort: 53 });
      return table;
    };
    const refusal = {
      name: "DriverError",
      message:
        `nf_tables in ${a}: table ip cnm-dns: add rule 3 of chain dns-dnat: Operation not supported (EOPNOTSUPP)`,
    };
    await t.step("no table: none is left", async () => {
      await assert.rejects(ensureNatTable(bad({ udp: 1, tcp: 2 }), a), refusal);
      assert.equal(await readNatTable("cnm-dns", a), undefined);
    });
    await t.step("a table: the old one stays, rules and all", async () => {
      await ensureNatTable(good, a);
      const before = await nftList(a);
      const err = await ensureNatTable(bad({ udp: 5, tcp: 6 }), a).catch((e) => e);
      assert.ok(err instanceof DriverError);
      assert.equal(err.message, refusal.message);
      assert.deepEqual(await nftList(a), before);
    });
  });
});

Deno.test("deleteNatTable and readNatTable (root): present, absent, foreign rules, no namespace", async (t) => {
  await withTwo(async (a, b, host) => {
    await t.step("a foreign rule is listed by handle, ours decoded", async () => {
      await ensureNatTable(dnatTable({ udp: 40001, tcp: 40002 }), a);
      await sh([
        "ip",
        "netns",
        "exec",
        nsName(a),
        "nft",
        "add",
        "rule",
        "ip",
        "cnm-dns",
        "dns-dnat",
        "meta",
        "mark",
        "7",
        "accept",
      ]);
      const read = await readNatTable("cnm-dns", a);
      const rules = read!.chains[0].rules;
      assert.equal(rules.length, 3);
      assert.equal(rules[0].rule?.comment, "cnm-dns udp");
      assert.equal(rules[2].rule, undefined);
      assert.deepEqual(rules[2].exprs, ["meta", "cmp", "immediate"]);
      // dns/dnat.ts's two readers agree: netlink's and nft's JSON.
      const json = await sh([
        "ip",
        "netns",
        "exec",
        nsName(a),
        "nft",
        "-j",
        "list",
        "table",
        "ip",
        "cnm-dns",
      ]);
      assert.deepEqual(describeTable(read!), describeListing(json));
      assert.ok(describeTable(read!).includes(`rule dns-dnat ${rules[2].handle}`));
    });
    await t.step("delete: gone, and again: nothing to do", async () => {
      await deleteNatTable("cnm-dns", a);
      assert.equal(await readNatTable("cnm-dns", a), undefined);
      await deleteNatTable("cnm-dns", a);
      await deleteNatTable("cnm-dns", b); // never had one
    });
    await t.step("a namespace that does not exist", async () => {
      const gone = `/var/run/netns/${host.prefix}-gone`;
      const message =
        `nf_tables in ${gone}: delete table ip cnm-dns: open ${gone}: No such file or directory (ENOENT)`;
      await assert.rejects(deleteNatTable("cnm-dns", gone), { name: "DriverError", message });
      await assert.rejects(readNatTable("cnm-dns", gone), {
        name: "DriverError",
        message: message.replace("delete", "list"),
      });
    });
  });
});
