/**
 * Two controllers on one kernel namespace (issue 10, item 1): different host ids, streams,
 * subject prefixes and name prefixes (B's namespaces even start with A's prefix). Each makes
 * bridge networks, sandboxes and joined endpoints; then each is restarted and reconciled
 * several times. What one made must stay byte-identical through the other's restarts and
 * reconciles: bridges, veths, addresses, namespaces (and the addresses inside them) and
 * nftables chains, rules and map elements. The same again with one stream, one subject
 * prefix and one name prefix, the host ids alone differing. Needs root and nats-server.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { Controller, ControllerOptions } from "../../mod.ts";
import { createController } from "../../mod.ts";
import { hostVethName, ownershipAlias, parseOwnershipAlias } from "../../drivers/bridge/mod.ts";
import {
  ownerId,
  ownershipOf,
  parseNetnsMark,
  sandboxNetnsName,
} from "../../src/controller/ownership.ts";
import { connect } from "@nats-io/transport-node";
import { openJournal } from "../../src/journal/journal.ts";
import { sh, startEnv, type TestEnv } from "../_harness/env.ts";

const nsOf = (key: string) => key.split("/").pop()!;

/** What one controller made, named from its own API (not from its marks). */
interface Made {
  bridges: string[];
  veths: string[];
  namespaces: string[];
  net12: string[];
}

function madeBy(c: Controller): Made {
  const nets = c.networks().filter((n) => n.driver === "bridge");
  return {
    bridges: nets.map((n) => String(n.driverInfo.bridge)),
    veths: c.endpoints().filter((e) => e.state === "joined").map((e) => hostVethName(e.id)),
    namespaces: c.sandboxes().map((s) => nsOf(s.key)),
    net12: nets.map((n) => n.id.slice(0, 12)),
  };
}

/** A byte-exact dump of the kernel objects in `m`. */
async function dump(env: TestEnv, m: Made): Promise<string> {
  const host = env.host.name;
  const links = JSON.parse(await sh(["ip", "-n", host, "-j", "addr", "show"]))
    .filter((l: { ifname: string }) => m.bridges.includes(l.ifname) || m.veths.includes(l.ifname));
  const present = (await sh(["ip", "netns", "list"])).split("\n").map((l) => l.split(" ")[0]);
  const namespaces: Record<string, unknown> = {};
  for (const ns of m.namespaces) {
    namespaces[ns] = present.includes(ns)
      ? JSON.parse(await sh(["ip", "-n", ns, "-j", "addr", "show"]))
      : "missing";
  }
  const mine = (s: string) => m.net12.some((id) => s.includes(id)) || m.bridges.includes(s);
  const nft: unknown[] = [];
  const ruleset = JSON.parse(
    await sh(["ip", "netns", "exec", host, "nft", "-j", "list", "ruleset"]),
  );
  for (const item of ruleset.nftables) {
    if (item.chain && mine(item.chain.name)) nft.push(item);
    if (item.rule && mine(item.rule.chain)) nft.push(item);
    for (const kind of ["set", "map"]) {
      const s = item[kind];
      if (!s?.elem) continue;
      const elems = s.elem.filter((e: unknown) => mine(JSON.stringify(e)));
      nft.push({ [kind]: s.name, family: s.family, elems });
    }
  }
  // IPv6 duplicate address detection clears `tentative` on the kernel's own timer.
  return JSON.stringify({ links, namespaces, nft }, (k, v) => k === "tentative" ? undefined : v, 1);
}

/**
 * Makes networks, sandboxes and joined endpoints with both controllers, then restarts and
 * reconciles each in turn: the other's kernel objects must stay byte-identical, be reported
 * as foreign and never repaired, and no event may say anything was repaired.
 */
async function neverTouchEachOther(
  t: Deno.TestContext,
  env: TestEnv,
  opts: ControllerOptions[],
  /** Which controllers see the other's namespaces (their name starts with its prefix). */
  seesOthersNamespaces: number[],
) {
  const open: (Controller | undefined)[] = [undefined, undefined];
  try {
    for (const i of [0, 1]) {
      const c = open[i] = await createController(opts[i]);
      await c.createNetwork({ name: "front" });
      await c.createNetwork({
        name: "quiet",
        options: { "com.docker.network.bridge.enable_icc": "false" },
      });
      for (const name of ["a", "b"]) {
        const sb = await c.createSandbox({ name });
        for (const net of ["front", "quiet"]) {
          const ep = await c.createEndpoint(net, { name });
          await c.join(ep.id, sb.id);
        }
      }
    }
    const made = open.map((c) => madeBy(c!));
    const before = await Promise.all(made.map((m) => dump(env, m)));
    await t.step("each controller's objects are in the kernel", () => {
      for (const i of [0, 1]) {
        assert.equal(made[i].bridges.length, 2);
        assert.equal(made[i].veths.length, 4);
        assert.doesNotMatch(before[i], /"missing"/);
      }
      assert.equal(new Set([...made[0].bridges, ...made[1].bridges]).size, 4, "4 bridges");
    });
    for (let round = 1; round <= 3; round++) {
      for (const i of [0, 1]) {
        const other = 1 - i;
        await open[i]!.close();
        const c = open[i] = await createController(opts[i]);
        const report = await c.reconcile();
        await t.step(
          `round ${round}: restarting and reconciling ${"AB"[i]} leaves ${
            "AB"[other]
          } byte-identical`,
          async () => {
            assert.equal(await dump(env, made[other]), before[other]);
            assert.equal(await dump(env, made[i]), before[i]);
            const found = [...(c.recovery.reconcile?.findings ?? []), ...report.findings];
            assert.ok(found.every((f) => !f.repaired), JSON.stringify(found));
            const foreign = found.filter((f) => f.problem === "foreign").map((f) => f.name);
            for (const name of [...made[other].bridges, ...made[other].veths]) {
              assert.ok(foreign.includes(name), `${name} not reported: ${JSON.stringify(found)}`);
            }
            if (seesOthersNamespaces.includes(i)) {
              for (const ns of made[other].namespaces) assert.ok(foreign.includes(ns), ns);
            }
          },
        );
      }
    }
    await t.step("nothing was journaled as repaired (no host.reconciled events)", async () => {
      for (const i of [0, 1]) {
        const c = open[i]!;
        const seen: string[] = [];
        const nc = await connect({ servers: env.nats.url });
        try {
          const j = await openJournal(nc, { stream: c.stream, prefix: c.prefix });
          for await (const e of j.read()) seen.push(e.type);
        } finally {
          await nc.close();
        }
        assert.ok(!seen.some((s) => s.endsWith(".reconciled")), seen.join(","));
      }
    });
  } finally {
    for (const c of open) await c?.close().catch(() => {});
  }
}

Deno.test("ownership (root, nats-server) two controllers on one kernel namespace never touch each other's networking", async (t) => {
  const env = await startEnv("own");
  const dirs = [await Deno.makeTempDir(), await Deno.makeTempDir()];
  const p = env.host.prefix;
  const opts: ControllerOptions[] = [
    env.options({ hostId: "ha", stream: `${env.stream}_A`, prefix: `${p}a`, stateDir: dirs[0] }),
    env.options({
      hostId: "hb",
      stream: `${env.stream}_B`,
      prefix: `${p}b`,
      namePrefix: `${p}-x-`, // starts with A's `${p}-`
      stateDir: dirs[1],
    }),
  ].map((o) => ({ ...o, defaultBridge: false, predefined: false }));
  try {
    // Only A sees B's namespaces: B's names start with A's prefix, not the other way round.
    await neverTouchEachOther(t, env, opts, [0]);
  } finally {
    await env.cleanup();
    for (const d of dirs) await Deno.remove(d, { recursive: true }).catch(() => {});
  }
});

Deno.test("ownership (root, nats-server) one stream, two host ids on one kernel namespace: neither touches the other's", async (t) => {
  // Same stream, subject prefix and name prefix: only the host id (and so the ownership
  // mark) tells them apart, and each folds the other's events too.
  const env = await startEnv("own1");
  const dirs = [await Deno.makeTempDir(), await Deno.makeTempDir()];
  const opts: ControllerOptions[] = ["ha", "hb"].map((hostId, i) => ({
    ...env.options({ hostId, stateDir: dirs[i] }),
    defaultBridge: false,
    predefined: false,
  }));
  try {
    await neverTouchEachOther(t, env, opts, [0, 1]);
  } finally {
    await env.cleanup();
    for (const d of dirs) await Deno.remove(d, { recursive: true }).catch(() => {});
  }
});

Deno.test("ownership marks name the controller; old marks are ours only when the journal knows them", () => {
  const a = ownerId("CNM", "vm");
  assert.match(a, /^[0-9a-f]{8}$/);
  assert.equal(ownerId("CNM", "vm"), a);
  assert.notEqual(ownerId("CNM", "apitest"), a);
  assert.notEqual(ownerId("OTHER", "vm"), a);
  const id = "0123456789abcdef".repeat(4);
  const ns = sandboxNetnsName("cnm-", a, id);
  assert.equal(ns, `cnm-${a}-0123456789ab`);
  assert.deepEqual(parseNetnsMark(ns, "cnm-"), { id12: "0123456789ab", owner: a });
  // A longer prefix of another controller still shows its owner at the end.
  assert.deepEqual(parseNetnsMark("cnm-x-0badcafe-0123456789ab", "cnm-"), {
    id12: "0123456789ab",
    owner: "0badcafe",
  });
  assert.deepEqual(parseNetnsMark("cnm-0123456789ab", "cnm-"), { id12: "0123456789ab" });
  assert.equal(parseNetnsMark("other-0123456789ab", "cnm-"), undefined);
  assert.equal(ownershipAlias("network", id, a), `cnm:${a}:network:0123456789ab`);
  assert.deepEqual(parseOwnershipAlias(`cnm:${a}:endpoint:0123456789ab`), {
    kind: "endpoint",
    id12: "0123456789ab",
    owner: a,
  });
  assert.deepEqual(parseOwnershipAlias("cnm:network:0123456789ab"), {
    kind: "network",
    id12: "0123456789ab",
  });
  assert.equal(parseOwnershipAlias("my bridge"), undefined);
  const self = { owner: a, known: new Set(["0123456789ab"]) };
  assert.deepEqual(ownershipOf({ id12: "ffffffffffff", owner: a }, self), { ours: true });
  assert.deepEqual(ownershipOf({ id12: "0123456789ab" }, self), { ours: true });
  assert.deepEqual(ownershipOf({ id12: "0123456789ab", owner: "0badcafe" }, self), {
    ours: false,
    why: "made by controller 0badcafe",
  });
  assert.deepEqual(ownershipOf({ id12: "ffffffffffff" }, self), {
    ours: false,
    why: "an old mark naming no controller, unknown to this journal",
  });
});
