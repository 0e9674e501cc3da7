/**
 * The bridge driver's configuration in the kernel (root, nats-server): the default MTU, IP
 * forwarding and the firewall backend reach new networks, and existing networks keep what
 * they were created under — also for endpoints that join them later.
 */
import assert from "node:assert/strict";
import { sh, startEnv } from "../_harness/env.ts";

const nsOf = (key: string) => key.split("/").pop()!;

async function mtuOf(netns: string, link: string): Promise<number> {
  return JSON.parse(await sh(["ip", "-n", netns, "-j", "link", "show", link]))[0].mtu;
}

Deno.test("bridge configuration (root, nats-server) reaches new networks; existing ones keep theirs", async (t) => {
  const env = await startEnv("bcfg");
  const host = env.host.name;
  const forwarding = async () =>
    (await sh(["ip", "netns", "exec", host, "cat", "/proc/sys/net/ipv4/ip_forward"])).trim();
  const chains = async () =>
    await sh(["ip", "netns", "exec", host, "nft", "list", "ruleset"]).catch(() => "");
  try {
    assert.equal(await forwarding(), "0", "a fresh namespace starts without forwarding");
    const cnm = await env.open({
      defaultBridge: false,
      driverConfig: { bridge: { enableIPForwarding: false } },
    });
    const n1 = await cnm.createNetwork({ name: "n1" });
    await t.step(
      "enableIPForwarding false: creating a network leaves ip_forward alone",
      async () => {
        assert.equal(await forwarding(), "0");
        assert.equal(await mtuOf(host, String(n1.driverInfo.bridge)), 1500);
        assert.match(await chains(), new RegExp(`net-${n1.id.slice(0, 12)}`));
      },
    );
    const r = await cnm.configureDriver("bridge", {
      enableIPForwarding: true,
      mtu: 9000,
      firewallBackend: "none",
    });
    await t.step("the change says it reaches new networks, and touches nothing yet", async () => {
      assert.deepEqual(
        Object.entries(r.changed).map(([k, c]) => [k, c.appliesTo]),
        [["enableIPForwarding", "new networks"], ["firewallBackend", "new networks"], [
          "mtu",
          "new networks",
        ]],
      );
      assert.equal(await forwarding(), "0");
      assert.equal(await mtuOf(host, String(n1.driverInfo.bridge)), 1500);
    });
    const n2 = await cnm.createNetwork({ name: "n2" });
    await t.step("a new network: MTU 9000, forwarding on, no firewall rules", async () => {
      assert.equal(await mtuOf(host, String(n2.driverInfo.bridge)), 9000);
      assert.equal(await forwarding(), "1");
      const rules = await chains();
      assert.doesNotMatch(rules, new RegExp(n2.id.slice(0, 12)));
      assert.match(rules, new RegExp(`net-${n1.id.slice(0, 12)}`), "n1 keeps its rules");
    });
    await t.step(
      "endpoints joining later get the MTU of their network's configuration",
      async () => {
        const sb = await cnm.createSandbox({ name: "c" });
        const e1 = await cnm.createEndpoint("n1", { name: "c-n1" });
        const e2 = await cnm.createEndpoint("n2", { name: "c-n2" });
        await cnm.join(e1.id, sb.id);
        await cnm.join(e2.id, sb.id);
        assert.equal(await mtuOf(nsOf(sb.key), cnm.endpoint(e1.id)!.ifname!), 1500);
        assert.equal(await mtuOf(nsOf(sb.key), cnm.endpoint(e2.id)!.ifname!), 9000);
      },
    );
    await t.step("reconcile expects no rules for a network made without a firewall", async () => {
      const report = await cnm.reconcile({ dryRun: true });
      assert.deepEqual(report.findings, []);
    });
    await cnm.close();
    await t.step("after a restart the networks still use their own configuration", async () => {
      const again = await env.open({ defaultBridge: false });
      assert.deepEqual(again.recovery.reconcile?.findings, []);
      const sb = await again.createSandbox({ name: "d" });
      const e1 = await again.createEndpoint("n1", { name: "d-n1" });
      await again.join(e1.id, sb.id);
      assert.equal(await mtuOf(nsOf(sb.key), again.endpoint(e1.id)!.ifname!), 1500);
      await again.deleteSandbox(sb.id);
      await again.deleteSandbox("c");
      await again.deleteNetwork("n2");
      await again.deleteNetwork("n1");
      assert.doesNotMatch(await chains(), /net-/);
    });
  } finally {
    await env.cleanup();
  }
});
