/**
 * The drivers' configuration schemas (driver.Config), pure: defaults, refusals naming the key,
 * and what the bridge driver does with a network's recorded configuration.
 */
import assert from "node:assert/strict";
import { BridgeConfigSchema, bridgeDriverConfigOf } from "../../drivers/bridge/config.ts";
import { bridgeConfig } from "../../drivers/bridge/mod.ts";
import { OverlayConfigSchema } from "../../drivers/overlay/config.ts";
import { remoteConfigSchema } from "../../drivers/remote/config.ts";
import { formatIssues } from "../../src/journal/events.ts";
import { localDefaultPools } from "../../src/ipam/mod.ts";
import type { z } from "zod";

/** The message a refusal carries (as the controller formats it). */
function refusal(schema: z.ZodType, value: unknown): string {
  const r = schema.safeParse(value);
  assert.equal(r.success, false, `expected ${JSON.stringify(value)} to be refused`);
  return formatIssues(r.error!);
}

Deno.test("bridge configuration schema: defaults, and refusals that name the key", async (t) => {
  await t.step("{} is the defaults: MTU 1500, forwarding on, nftables, libnetwork's pools", () => {
    assert.deepEqual(BridgeConfigSchema.parse({}), {
      mtu: 1500,
      enableIPForwarding: true,
      firewallBackend: "nftables",
      defaultAddressPools: localDefaultPools.map((p) => ({ ...p })),
    });
  });
  await t.step("bad values and unknown keys are refused by name", () => {
    assert.equal(refusal(BridgeConfigSchema, { mtu: 10 }), "mtu: must be at least 68");
    assert.equal(refusal(BridgeConfigSchema, { mtu: 1e6 }), "mtu: must be at most 65535");
    assert.equal(refusal(BridgeConfigSchema, { mtu: "9000" }), "mtu: must be a number");
    assert.equal(refusal(BridgeConfigSchema, { mtu: 1500.5 }), "mtu: must be an integer");
    assert.equal(
      refusal(BridgeConfigSchema, { enableIPForwarding: "yes" }),
      "enableIPForwarding: must be true or false",
    );
    assert.equal(refusal(BridgeConfigSchema, { colour: "red" }), "colour: unknown field");
    assert.match(
      refusal(BridgeConfigSchema, { firewallBackend: "iptables" }),
      /^firewallBackend: /,
    );
    assert.equal(
      refusal(BridgeConfigSchema, { defaultAddressPools: [{ base: "10.0.0.0/8", size: 4 }] }),
      "defaultAddressPools.0.size: must be between 8 and 32 for base 10.0.0.0/8",
    );
    assert.equal(
      refusal(BridgeConfigSchema, { defaultAddressPools: [{ base: "nope", size: 24 }] }),
      "defaultAddressPools.0.base: must be a CIDR like 10.10.0.0/16",
    );
    assert.equal(
      refusal(BridgeConfigSchema, { defaultAddressPools: [] }),
      "defaultAddressPools: must name at least one pool",
    );
  });
  await t.step("a network's MTU defaults to the configuration it recorded", () => {
    const net = { id: "a".repeat(64), options: {} };
    assert.equal(bridgeConfig(net).mtu, 1500);
    assert.equal(bridgeConfig({ ...net, driverConfig: { mtu: 9000 } }).mtu, 9000);
    const explicit = { "com.docker.network.driver.mtu": "1400" };
    assert.equal(
      bridgeConfig({ ...net, options: explicit, driverConfig: { mtu: 9000 } }).mtu,
      1400,
    );
  });
  await t.step("a recorded configuration that no longer parses keeps its valid keys", () => {
    const cfg = bridgeDriverConfigOf({
      driverConfig: { mtu: 9000, gone: true, firewallBackend: 7 },
    });
    assert.equal(cfg.mtu, 9000);
    assert.equal(cfg.firewallBackend, "nftables");
  });
});

Deno.test("overlay configuration schema: VXLAN port range with libnetwork's message, IPv4 VTEP only", () => {
  assert.deepEqual(OverlayConfigSchema.parse({}), { vxlanPort: 4789 });
  assert.deepEqual(OverlayConfigSchema.parse({ vxlanPort: 0 }), { vxlanPort: 4789 });
  assert.deepEqual(
    OverlayConfigSchema.parse({ vxlanPort: 4790, advertiseAddress: "192.0.2.10" }),
    { vxlanPort: 4790, advertiseAddress: "192.0.2.10" },
  );
  assert.equal(OverlayConfigSchema.parse({ vxlanPort: 1024 }).vxlanPort, 1024);
  assert.equal(OverlayConfigSchema.parse({ vxlanPort: 49151 }).vxlanPort, 49151);
  for (const port of [80, 1023, 49152, 65535]) {
    assert.equal(
      refusal(OverlayConfigSchema, { vxlanPort: port }),
      `vxlanPort: VXLAN UDP port number is not in valid range (1024-49151): ${port}`,
    );
  }
  assert.equal(
    refusal(OverlayConfigSchema, { advertiseAddress: "10.0.0.1/24" }),
    "advertiseAddress: must be an IPv4 address (no prefix)",
  );
  // As --advertise-addr and createOverlayDriver: the underlay of an overlay is IPv4.
  assert.equal(
    refusal(OverlayConfigSchema, { advertiseAddress: "2001:db8::1" }),
    'advertiseAddress: must be an IPv4 address (overlay networks are IPv4 only), got "2001:db8::1"',
  );
  assert.equal(
    refusal(OverlayConfigSchema, { advertiseAddress: 7 }),
    "advertiseAddress: must be an IPv4 address (no prefix)",
  );
  assert.equal(refusal(OverlayConfigSchema, { vni: 5 }), "vni: unknown field");
});

Deno.test("remote configuration schema: the client's construction values are the defaults", () => {
  assert.deepEqual(remoteConfigSchema().parse({}), { callTimeoutMs: 30000, retryTimeoutMs: 30000 });
  const schema = remoteConfigSchema({ callTimeout: 5000, retryTimeout: 2000 });
  assert.deepEqual(schema.parse({ callTimeoutMs: 300 }), {
    callTimeoutMs: 300,
    retryTimeoutMs: 2000,
  });
  assert.equal(refusal(schema, { callTimeoutMs: 0 }), "callTimeoutMs: must be at least 1 ms");
  assert.equal(refusal(schema, { labels: {} }), "labels: unknown field");
});
