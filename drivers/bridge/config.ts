/**
 * The bridge driver's configuration (driver.Config): what `configureDriver("bridge", …)` and
 * the controller option `driverConfig.bridge` take. Every key reaches only networks created
 * after the change; each network records the configuration it was created under.
 *
 * | key                  | default                 | what it does                                   |
 * | -------------------- | ----------------------- | ---------------------------------------------- |
 * | `mtu`                | 1500                    | MTU of new bridges and their veths, unless the network sets `com.docker.network.driver.mtu` |
 * | `enableIPForwarding` | true                    | new networks turn on `net.ipv4.ip_forward` (and IPv6 forwarding for IPv6 networks) in the controller's host namespace; false leaves the sysctls as they are |
 * | `firewallBackend`    | `nftables`              | `none`: new networks get no firewall rules (no masquerade, isolation, ICC or internal rules) |
 * | `defaultAddressPools`| libnetwork's local pools| `[{ base, size }]`, daemon.json's `default-address-pools`: where the default IPAM picks automatic subnets (the `LocalDefault` space) |
 *
 * @example
 * ```ts
 * import { BridgeConfigSchema } from "./config.ts";
 * import assert from "node:assert/strict";
 * const config = BridgeConfigSchema.parse({ mtu: 9000 });
 * assert.equal(config.mtu, 9000);
 * assert.equal(config.firewallBackend, "nftables");
 * ```
 *
 * @module
 */

import { z } from "zod";
import type { DriverConfig, DriverNetwork } from "../driver.ts";
import { bitsOf, parseCidr } from "../../src/ipam/cidr.ts";
import { localDefaultPools } from "../../src/ipam/mod.ts";

/** One predefined pool: `base` split into subnets of prefix length `size`. */
const PoolBaseSchema = z.strictObject({
  base: z.string({ error: "must be a CIDR like 10.10.0.0/16" }).refine((s) => {
    try {
      parseCidr(s);
      return true;
    } catch {
      return false;
    }
  }, { error: "must be a CIDR like 10.10.0.0/16" }),
  size: z.number({ error: "must be a number" }).int({ error: "must be an integer prefix length" }),
}).superRefine((p, ctx) => {
  let cidr;
  try {
    cidr = parseCidr(p.base);
  } catch {
    return; // reported on `base`
  }
  if (p.size < cidr.prefix || p.size > bitsOf(cidr.family)) {
    ctx.addIssue({
      code: "custom",
      path: ["size"],
      message: `must be between ${cidr.prefix} and ${bitsOf(cidr.family)} for base ${p.base}`,
    });
  }
});

/** The bridge driver's configuration schema (strict: unknown keys are refused). */
export const BridgeConfigSchema = z.strictObject({
  mtu: z.number({ error: "must be a number" }).int({ error: "must be an integer" }).min(68, {
    error: "must be at least 68",
  })
    .max(65535, { error: "must be at most 65535" }).default(1500),
  enableIPForwarding: z.boolean({ error: "must be true or false" }).default(true),
  firewallBackend: z.enum(["nftables", "none"], { error: 'must be "nftables" or "none"' })
    .default("nftables"),
  defaultAddressPools: z.array(PoolBaseSchema, { error: "must be a list of { base, size }" }).min(
    1,
    { error: "must name at least one pool" },
  )
    .default(() => localDefaultPools.map((p) => ({ ...p }))),
});

/** A parsed bridge configuration. */
export type BridgeDriverConfig = z.output<typeof BridgeConfigSchema>;

/** Every bridge key reaches only new networks: existing bridges keep what they were made with. */
export const BRIDGE_NEW_NETWORKS_ONLY: readonly string[] = [
  "mtu",
  "enableIPForwarding",
  "firewallBackend",
  "defaultAddressPools",
];

const parsed = new WeakMap<DriverConfig, BridgeDriverConfig>();
let defaults: BridgeDriverConfig | undefined;

/**
 * The configuration a network was created under (the defaults for networks that recorded
 * none). A recorded configuration that no longer parses falls back to the defaults key by key.
 */
export function bridgeDriverConfigOf(
  network: Pick<DriverNetwork, "driverConfig">,
): BridgeDriverConfig {
  const recorded = network.driverConfig;
  defaults ??= BridgeConfigSchema.parse({});
  if (!recorded) return defaults;
  let cfg = parsed.get(recorded);
  if (!cfg) {
    const r = BridgeConfigSchema.safeParse(recorded);
    cfg = r.success ? r.data : { ...defaults, ...pick(recorded) };
    parsed.set(recorded, cfg);
  }
  return cfg;
}

/** The keys of `recorded` that are valid on their own. */
function pick(recorded: DriverConfig): Partial<BridgeDriverConfig> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(recorded)) {
    const field = BridgeConfigSchema.shape[key as keyof BridgeDriverConfig];
    if (field?.safeParse(value).success) out[key] = value;
  }
  return out as Partial<BridgeDriverConfig>;
}
