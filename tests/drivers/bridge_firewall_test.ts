/**
 * Tests of the bridge driver's nftables firewall. Needs root, nft, ip and nsenter: the
 * tests fail (they are not skipped) without them. Every test builds its own throwaway host
 * namespace and runs nft only inside it; the root namespace's ruleset is checked unchanged.
 *
 * @module
 */

import { deepStrictEqual, notDeepStrictEqual, ok, rejects } from "node:assert/strict";
import { createFirewall, type FirewallNetwork } from "../../drivers/bridge/_firewall.ts";
import { ConflictError, DriverError, InvalidArgumentError } from "../../src/errors.ts";
import { type Lab, withLab } from "./_fw_netns.ts";

const ID1 = "aaaaaaaaaaaa0000000000000000000000000000000000000000000000000001";
const ID2 = "bbbbbbbbbbbb0000000000000000000000000000000000000000000000000002";

function network(id: string, bridge: string, subnets: string[], over = {}): FirewallNetwork {
  return { id, bridge, subnets, internal: false, icc: true, masquerade: true, ...over };
}

/** The ruleset as JSON text (handles included: "identical" means nothing was rewritten). */
const ruleset = (lab: Lab) => lab.exec(["nft", "-j", "list", "ruleset"]);
const rulesetText = (lab: Lab) => lab.exec(["nft", "list", "ruleset"]);

/** Comments of every rule in the host namespace, counted. */
async function ruleComments(lab: Lab): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const item of JSON.parse(await ruleset(lab)).nftables) {
    if (!item.rule) continue;
    const key = `${item.rule.family} ${item.rule.table} ${item.rule.chain} ${item.rule.comment}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

/** Two bridges: c1, c2 on b1 (10.77.1.0/24), c3 on b2 (10.77.2.0/24), servers on port 8080. */
async function twoBridges(lab: Lab) {
  const b1 = await lab.bridge("b1", "10.77.1.1/24");
  const b2 = await lab.bridge("b2", "10.77.2.1/24");
  const c1 = await lab.container("c1", b1, "10.77.1.11/24", "10.77.1.1");
  const c2 = await lab.container("c2", b1, "10.77.1.12/24", "10.77.1.1");
  const c3 = await lab.container("c3", b2, "10.77.2.13/24", "10.77.2.1");
  for (const ns of [c1, c2, c3]) await lab.serve(ns, 8080);
  return { b1, b2, c1, c2, c3 };
}

Deno.test("firewall (root) ensureNetwork twice leaves an identical ruleset", async () => {
  await withLab(async (lab) => {
    const fw = createFirewall({ exec: lab.exec });
    const n1 = network(ID1, `${lab.prefix}b1`, ["10.77.1.0/24", "fd77:1::/64"]);
    const n2 = network(ID2, `${lab.prefix}b2`, ["10.77.2.5/24"], { icc: false });
    await fw.ensureNetwork(n1);
    await fw.ensureNetwork(n2);
    const first = await ruleset(lab);
    await fw.ensureNetwork(n1);
    await fw.ensureNetwork(n2);
    await fw.ensureBase();
    deepStrictEqual(await ruleset(lab), first);

    // A changed network is rewritten, and changing it back gives the same rules again.
    const text = await rulesetText(lab);
    await fw.ensureNetwork({ ...n2, icc: true, internal: true });
    notDeepStrictEqual(await rulesetText(lab), text);
    await fw.ensureNetwork(n2);
    deepStrictEqual(await rulesetText(lab), text);

    // No duplicates: every network rule exists once per generated line.
    const counts = await ruleComments(lab);
    const of = (id: string) =>
      Object.entries(counts).filter(([k]) => k.includes(` cnm:${id.slice(0, 12)} `));
    // nat-: masquerade per subnet, plus the hairpin masquerade.
    deepStrictEqual(of(ID1).map(([k, n]) => [k.split(" ")[2], n]), [["net-aaaaaaaaaaaa", 1], [
      "nat-aaaaaaaaaaaa",
      3,
    ]]);
    deepStrictEqual(of(ID2).map(([k, n]) => [k.split(" ")[2], n]).sort(), [
      ["icc-bbbbbbbbbbbb", 1],
      ["nat-bbbbbbbbbbbb", 2],
      ["net-bbbbbbbbbbbb", 2],
    ]);
    deepStrictEqual(await fw.listNetworks(), ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]);
  });
});

Deno.test("firewall (root) removeNetwork removes exactly that network's rules", async () => {
  await withLab(async (lab) => {
    // Another tool's table, which we must never touch.
    await lab.exec(["nft", "-f", "-"], {
      stdin:
        "table inet other {\n chain c {\n type filter hook forward priority 0;\n counter\n }\n}\n",
    });
    const fw = createFirewall({ exec: lab.exec });
    await fw.ensureNetwork(network(ID1, `${lab.prefix}b1`, ["10.77.1.0/24"]));
    const withOne = await ruleset(lab);
    await fw.ensureNetwork(
      network(ID2, `${lab.prefix}b2`, ["10.77.2.0/24", "fd77:2::/64"], { icc: false }),
    );
    notDeepStrictEqual(await ruleset(lab), withOne);
    await fw.removeNetwork(ID2);
    deepStrictEqual(await ruleset(lab), withOne);
    await fw.removeNetwork(ID2); // already gone: a no-op
    deepStrictEqual(await ruleset(lab), withOne);
    deepStrictEqual(await fw.listNetworks(), ["aaaaaaaaaaaa"]);

    await fw.removeNetwork("aaaaaaaaaaaa");
    deepStrictEqual(await fw.listNetworks(), []);
    ok(!(await rulesetText(lab)).includes("cnm:aaaaaaaaaaaa"));

    await fw.removeAll();
    await fw.removeAll(); // idempotent
    const tables = JSON.parse(await lab.exec(["nft", "-j", "list", "tables"])).nftables
      .filter((i: { table?: unknown }) => i.table)
      .map((i: { table: { family: string; name: string } }) => `${i.table.family} ${i.table.name}`);
    deepStrictEqual(tables, ["inet other"]);
    deepStrictEqual(await fw.listNetworks(), []);
  });
});

Deno.test("firewall (root) ensureBase keeps the user chain and repairs the base", async () => {
  await withLab(async (lab) => {
    const fw = createFirewall({ exec: lab.exec, table: "cnmtest" });
    await fw.ensureBase();
    await lab.exec(["nft", "add", "rule", "inet", "cnmtest", "cnm-user", "iifname", "x", "drop"]);
    await fw.ensureBase();
    const userRules = async () =>
      JSON.parse(await lab.exec(["nft", "-j", "list", "chain", "inet", "cnmtest", "cnm-user"]))
        .nftables.filter((i: { rule?: unknown }) => i.rule).length;
    deepStrictEqual(await userRules(), 1);

    // Someone deletes one of our base rules: ensureBase rebuilds the base chain only.
    const forward = JSON.parse(
      await lab.exec(["nft", "-j", "-a", "list", "chain", "inet", "cnmtest", "forward"]),
    ).nftables.filter((i: { rule?: unknown }) => i.rule);
    await lab.exec([
      "nft",
      "delete",
      "rule",
      "inet",
      "cnmtest",
      "forward",
      "handle",
      String(forward.at(-1).rule.handle),
    ]);
    await fw.ensureBase();
    const text = await lab.exec(["nft", "list", "chain", "inet", "cnmtest", "forward"]);
    const rules = text.split("\n").map((l) => l.trim()).filter((l) => l.includes("comment"));
    deepStrictEqual(rules.length, 7);
    ok(rules[0].startsWith("jump cnm-user"), rules[0]);
    deepStrictEqual(await userRules(), 1);
  });
});

Deno.test("firewall (root) isolates networks and lets endpoints of one bridge talk", async () => {
  await withLab(async (lab) => {
    const { b1, b2, c1, c2, c3 } = await twoBridges(lab);
    // Without the firewall the host namespace routes between the bridges.
    deepStrictEqual(await lab.connect(c3, "10.77.1.11", 8080), "ok 10.77.2.13");

    const fw = createFirewall({ exec: lab.exec });
    await fw.ensureNetwork(network(ID1, b1, ["10.77.1.0/24"]));
    await fw.ensureNetwork(network(ID2, b2, ["10.77.2.0/24"]));
    deepStrictEqual(await lab.connect(c1, "10.77.1.12", 8080), "ok 10.77.1.11");
    deepStrictEqual(await lab.connect(c2, "10.77.1.11", 8080), "ok 10.77.1.12");
    deepStrictEqual(await lab.connect(c3, "10.77.1.11", 8080), null);
    deepStrictEqual(await lab.connect(c1, "10.77.2.13", 8080), null);
    // The host itself still reaches every endpoint.
    deepStrictEqual(await lab.connect(lab.host, "10.77.2.13", 8080), "ok 10.77.2.1");

    // An operator's accept in the user chain wins over isolation.
    const nft = (line: string) => lab.exec(["nft", "-f", "-"], { stdin: line + "\n" });
    await nft(`add rule inet cnm cnm-user iifname "${b2}" oifname "${b1}" accept`);
    await nft(`add rule inet cnm cnm-user oifname "${b2}" ct state established accept`);
    // (Masqueraded, like Docker: the subnet's traffic leaving through another interface.)
    deepStrictEqual(await lab.connect(c3, "10.77.1.11", 8080), "ok 10.77.1.1");

    await fw.removeAll();
    deepStrictEqual(await lab.connect(c1, "10.77.2.13", 8080), "ok 10.77.1.11");
  });
});

Deno.test("firewall (root) ICC off blocks traffic between endpoints of one bridge", async () => {
  await withLab(async (lab) => {
    const { b1, c1, c2 } = await twoBridges(lab);
    const fw = createFirewall({ exec: lab.exec });
    const n1 = network(ID1, b1, ["10.77.1.0/24"], { icc: false });
    for (const brNetfilter of ["0", "1"]) {
      // Per network namespace; 0 proves the bridge-family table works without br_netfilter.
      await lab.inNs(lab.host, [
        "sysctl",
        "-qw",
        `net.bridge.bridge-nf-call-iptables=${brNetfilter}`,
      ]);
      await fw.ensureNetwork({ ...n1, icc: true });
      deepStrictEqual(await lab.connect(c1, "10.77.1.12", 8080), "ok 10.77.1.11");
      await fw.ensureNetwork(n1);
      deepStrictEqual(
        await lab.connect(c1, "10.77.1.12", 8080),
        null,
        `br_netfilter=${brNetfilter}`,
      );
      deepStrictEqual(
        await lab.connect(c2, "10.77.1.11", 8080),
        null,
        `br_netfilter=${brNetfilter}`,
      );
      // Endpoints still reach their gateway (the host).
      await lab.serve(lab.host, 8081 + Number(brNetfilter));
      deepStrictEqual(
        await lab.connect(c1, "10.77.1.1", 8081 + Number(brNetfilter)),
        "ok 10.77.1.11",
      );
    }
  });
});

Deno.test("firewall (root) an internal network has no traffic to or from other networks", async () => {
  await withLab(async (lab) => {
    const { b1, b2, c1, c2, c3 } = await twoBridges(lab);
    const out = await lab.outside("out", "192.168.77.1/24", "192.168.77.2/24");
    await lab.serve(out, 8080);
    const fw = createFirewall({ exec: lab.exec });
    await fw.ensureNetwork(network(ID1, b1, ["10.77.1.0/24"], { internal: true }));
    await fw.ensureNetwork(network(ID2, b2, ["10.77.2.0/24"]));
    deepStrictEqual(await lab.connect(c1, "10.77.1.12", 8080), "ok 10.77.1.11");
    deepStrictEqual(await lab.connect(c2, "10.77.1.11", 8080), "ok 10.77.1.12");
    deepStrictEqual(await lab.connect(c1, "10.77.2.13", 8080), null);
    deepStrictEqual(await lab.connect(c3, "10.77.1.11", 8080), null);
    deepStrictEqual(await lab.connect(c1, "192.168.77.2", 8080), null);
    // The non-internal network does get out (masqueraded to the host's address).
    deepStrictEqual(await lab.connect(c3, "192.168.77.2", 8080), "ok 192.168.77.1");
  });
});

Deno.test("firewall (root) masquerades traffic leaving the bridge", async () => {
  await withLab(async (lab) => {
    const b1 = await lab.bridge("b1", "10.77.1.1/24");
    const c1 = await lab.container("c1", b1, "10.77.1.11/24", "10.77.1.1");
    // "out" has no route back to 10.77.1.0/24: only masqueraded traffic gets answers.
    const out = await lab.outside("out", "192.168.77.1/24", "192.168.77.2/24");
    await lab.serve(out, 8080);
    const fw = createFirewall({ exec: lab.exec });
    await fw.ensureNetwork(network(ID1, b1, ["10.77.1.0/24"], { masquerade: false }));
    deepStrictEqual(await lab.connect(c1, "192.168.77.2", 8080), null);
    await fw.ensureNetwork(network(ID1, b1, ["10.77.1.0/24"]));
    deepStrictEqual(await lab.connect(c1, "192.168.77.2", 8080), "ok 192.168.77.1");
  });
});

Deno.test("firewall (root) converges after a failure between its transactions", async () => {
  await withLab(async (lab) => {
    const n1 = network(ID1, `${lab.prefix}b1`, ["10.77.1.0/24"], { icc: false });
    // A "crash" after the base transaction, before the network's: nothing of it is written.
    const crashing = createFirewall({
      exec: (argv, options) =>
        options?.stdin?.includes("net-")
          ? Promise.reject(new Error("killed"))
          : lab.exec(argv, options),
    });
    await rejects(() => crashing.ensureNetwork(n1), {
      name: "DriverError",
      message: "firewall: ensuring network aaaaaaaaaaaa failed: killed",
    });
    deepStrictEqual(await crashing.listNetworks(), []);

    const fw = createFirewall({ exec: lab.exec });
    await fw.ensureNetwork(n1);
    const recovered = await ruleset(lab);
    await fw.ensureNetwork(n1);
    deepStrictEqual(await ruleset(lab), recovered);
    deepStrictEqual(await fw.listNetworks(), ["aaaaaaaaaaaa"]);

    // The same for removal: a failed removal leaves everything, a re-run removes it.
    await rejects(() => crashing.removeNetwork(ID1), DriverError);
    deepStrictEqual(await ruleset(lab), recovered);
    await fw.removeNetwork(ID1);
    deepStrictEqual(await fw.listNetworks(), []);
  });
});

Deno.test("firewall (root) refuses a bridge that belongs to another network", async () => {
  await withLab(async (lab) => {
    const fw = createFirewall({ exec: lab.exec });
    await fw.ensureNetwork(network(ID1, `${lab.prefix}b1`, ["10.77.1.0/24"]));
    await rejects(
      () => fw.ensureNetwork(network(ID2, `${lab.prefix}b1`, ["10.77.2.0/24"])),
      ConflictError,
    );
    await rejects(
      () => fw.ensureNetwork(network(ID2, `${lab.prefix}b1`, ["10.77.2.0/24"])),
      { message: `firewall: bridge ${lab.prefix}b1 already belongs to network aaaaaaaaaaaa` },
    );
    deepStrictEqual(await fw.listNetworks(), ["aaaaaaaaaaaa"]);
  });
});

Deno.test("firewall rejects invalid input before running nft", async () => {
  const calls: string[][] = [];
  const fw = createFirewall({ exec: (argv) => (calls.push(argv), Promise.resolve("")) });
  await rejects(
    () => fw.ensureNetwork(network(ID1, 'br"; flush ruleset', ["10.0.0.0/24"])),
    (err: Error) => {
      ok(err instanceof InvalidArgumentError);
      deepStrictEqual(err.message, 'invalid bridge name: br"; flush ruleset');
      return true;
    },
  );
  await rejects(
    () => fw.ensureNetwork(network("xyz", "br0", ["10.0.0.0/24"])),
    (err: Error) =>
      err instanceof InvalidArgumentError && err.message === "invalid network id: xyz",
  );
  await rejects(
    () => fw.ensureNetwork(network(ID1, "br0", ["10.0.0.0/33"])),
    (err: Error) =>
      err instanceof InvalidArgumentError && err.message === "invalid CIDR address: 10.0.0.0/33",
  );
  deepStrictEqual(calls, []);
});

Deno.test("firewall reports nft's stderr as a DriverError", async () => {
  const fw = createFirewall({
    exec: () => Promise.reject(new Error("nft exited with 1: Error: Could not process rule")),
  });
  await rejects(
    () => fw.ensureBase(),
    (err: Error) => {
      ok(err instanceof DriverError);
      deepStrictEqual(
        err.message,
        "firewall: reading the ruleset failed: nft exited with 1: Error: Could not process rule",
      );
      return true;
    },
  );
});
