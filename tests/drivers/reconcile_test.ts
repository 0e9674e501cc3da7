import assert from "node:assert/strict";
import { hostVethName } from "../../drivers/bridge/mod.ts";
import { sh, startEnv } from "../_harness/env.ts";
import { connectTcp, serveTcp } from "../_harness/tcp.ts";

const nsOf = (key: string) => key.split("/").pop()!;

Deno.test("reconcile (root, nats-server) reports drift made by hand, repairs it and records the repair", async (t) => {
  const env = await startEnv("drf");
  try {
    const cnm = await env.open({ defaultBridge: false });
    const net = await cnm.createNetwork({ name: "front" });
    const a = await cnm.createSandbox({ name: "a" });
    const b = await cnm.createSandbox({ name: "b" });
    const ea = await cnm.createEndpoint("front", { name: "a" });
    const eb = await cnm.createEndpoint("front", { name: "b" });
    await cnm.join(ea.id, a.id);
    await cnm.join(eb.id, b.id);
    await t.step("no drift: an empty report", async () => {
      assert.deepEqual((await cnm.reconcile({ dryRun: true })).findings, []);
    });
    // Drift: a veth deleted, an address removed, a stray link and namespace carrying our
    // marks (with our owner id), a stray firewall chain, a network's rules removed.
    const hostNs = env.host.name;
    await sh(["ip", "-n", hostNs, "link", "del", hostVethName(ea.id)]);
    await sh(["ip", "-n", nsOf(b.key), "addr", "flush", "dev", "eth0"]);
    await sh([
      "ip",
      "-n",
      hostNs,
      "link",
      "add",
      "vethdead",
      "type",
      "veth",
      "peer",
      "name",
      "vethdead2",
    ]);
    const alias = `cnm:${cnm.ownerId}:endpoint:deadbeef0000`;
    await sh(["ip", "-n", hostNs, "link", "set", "vethdead", "alias", alias]);
    const orphan = `${env.host.prefix}-${cnm.ownerId}-0123456789ab`;
    await sh(["ip", "netns", "add", orphan]);
    const id12 = net.id.slice(0, 12);
    await sh([
      "ip",
      "netns",
      "exec",
      hostNs,
      "nft",
      "delete",
      "chain",
      "inet",
      "cnm",
      `net-${id12}`,
    ]).catch(
      () => {/* the chain may be referenced; the map entry check below covers it */},
    );
    const before = (await env.readAll()).length;
    await t.step("a dry run reports every difference and changes nothing", async () => {
      const report = await cnm.reconcile({ dryRun: true });
      const seen = report.findings.map((f) => `${f.kind} ${f.resource} ${f.problem} ${f.name}`)
        .sort();
      assert.ok(seen.includes(`endpoint veth missing ${hostVethName(ea.id)}`), seen.join("\n"));
      assert.ok(seen.includes(`endpoint address missing eth0 in b`), seen.join("\n"));
      assert.ok(seen.includes("host veth unexpected vethdead"), seen.join("\n"));
      assert.ok(seen.includes(`host netns unexpected ${orphan}`), seen.join("\n"));
      assert.ok(report.findings.every((f) => !f.repaired));
      assert.equal((await env.readAll()).length, before);
      assert.ok((await env.sandboxesInKernel()).includes(orphan));
    });
    await t.step("reconcile repairs it", async () => {
      const report = await cnm.reconcile();
      assert.ok(report.findings.length >= 4);
      assert.ok(report.findings.every((f) => f.repaired), JSON.stringify(report.findings));
      assert.deepEqual((await cnm.reconcile({ dryRun: true })).findings, []);
      assert.ok(!(await env.sandboxesInKernel()).includes(orphan));
      assert.doesNotMatch(await sh(["ip", "-n", hostNs, "-br", "link"]), /vethdead/);
      // The repaired interface got its default route back too.
      assert.match(
        await sh(["ip", "-n", nsOf(a.key), "route"]),
        new RegExp(
          `^default via ${net.ipam.config[0].gateway!.replaceAll(".", "\\.")} dev eth0`,
          "m",
        ),
      );
    });
    await t.step("traffic flows again", async () => {
      const server = await serveTcp(nsOf(a.key), 8080);
      try {
        assert.ok(await connectTcp(nsOf(b.key), ea.ipv4Address!.split("/")[0], 8080));
      } finally {
        await server.close();
      }
    });
    await t.step("the history shows what was fixed and why", async () => {
      const events = (await env.readAll()).slice(before);
      const types = events.map((e) => `${e.type} ${e.objectId.slice(0, 12)}`);
      assert.ok(types.includes(`endpoint.reconciled ${ea.id.slice(0, 12)}`), types.join("\n"));
      assert.ok(types.includes(`endpoint.reconciled ${eb.id.slice(0, 12)}`), types.join("\n"));
      assert.ok(types.some((x) => x.startsWith("host.reconciled")), types.join("\n"));
      const ep = events.find((e) => e.type === "endpoint.reconciled" && e.objectId === ea.id)!;
      assert.equal(ep.from, "joined");
      assert.equal(ep.to, "joined");
      assert.deepEqual(ep.data.findings, [{
        resource: "veth",
        name: hostVethName(ea.id),
        problem: "missing",
      }]);
      assert.equal(ep.data.repaired, true);
    });
    await t.step(
      "a restart after the repair folds the reconciled events without warnings",
      async () => {
        await cnm.close();
        const again = await env.open({ defaultBridge: false });
        assert.deepEqual(again.recovery.warnings, []);
        assert.equal(again.endpoint(ea.id)?.state, "joined");
        assert.deepEqual(again.recovery.reconcile?.findings, []);
      },
    );
  } finally {
    await env.cleanup();
  }
});

Deno.test("reconcile (root, nats-server) runs at start: removes what carries its mark and the journal does not know, reports old marks it does not know", async () => {
  const env = await startEnv("drs");
  try {
    const cnm = await env.open({ defaultBridge: false });
    const net = await cnm.createNetwork({ name: "front" });
    const owner = cnm.ownerId;
    const gone = await cnm.createNetwork({ name: "gone" });
    await cnm.deleteNetwork("gone");
    await cnm.close();
    const link = async (name: string, alias: string) => {
      await sh(["ip", "-n", env.host.name, "link", "add", name, "type", "bridge"]);
      await sh(["ip", "-n", env.host.name, "link", "set", name, "alias", alias]);
    };
    const p = env.host.prefix;
    // Ours (our owner id) and unknown to the journal: orphans.
    await sh(["ip", "netns", "add", `${p}-${owner}-0123456789ab`]);
    await link("br-leaked", `cnm:${owner}:network:0123456789ab`);
    // Old marks (no owner id) of objects the journal does not know: reported, kept.
    await sh(["ip", "netns", "add", `${p}-leaked`]);
    await link("br-old", "cnm:network:abcdefabcdef");
    // Another controller's marks: reported, kept.
    await sh(["ip", "netns", "add", `${p}-0badcafe-0123456789ab`]);
    await link("br-other", "cnm:0badcafe:network:0123456789ab");
    // An old mark of an object the journal knows (here: deleted): ours, an orphan.
    await link("br-gone", `cnm:network:${gone.id.slice(0, 12)}`);
    // Folding the whole stream, as the first start after an upgrade from old marks does (no
    // snapshot yet): deleted objects are known too. (A snapshot keeps only live objects: from
    // one, an old mark of a deleted object is judged foreign and kept, the safe side.)
    const again = await env.open({ defaultBridge: false, snapshots: false });
    const found = again.recovery.reconcile!.findings.map((f) =>
      `${f.resource} ${f.name} ${f.problem} ${f.repaired}`
    );
    assert.deepEqual(
      found.sort(),
      [
        `bridge br-gone unexpected true`,
        `bridge br-leaked unexpected true`,
        `bridge br-old foreign false`,
        `bridge br-other foreign false`,
        `netns ${p}-0badcafe-0123456789ab foreign false`,
        `netns ${p}-${owner}-0123456789ab unexpected true`,
        `netns ${p}-leaked foreign false`,
      ].sort(),
    ); // the owner id is random per run: sort both sides
    assert.deepEqual(await env.sandboxesInKernel(), [`${p}-0badcafe-0123456789ab`, `${p}-leaked`]);
    const links = await sh(["ip", "-n", env.host.name, "-br", "link"]);
    assert.match(links, /^br-old /m);
    assert.match(links, /^br-other /m);
    assert.doesNotMatch(links, /^br-(leaked|gone) /m);
    assert.match(links, new RegExp(`^br-${net.id.slice(0, 12)} `, "m"));
  } finally {
    await env.cleanup();
  }
});
