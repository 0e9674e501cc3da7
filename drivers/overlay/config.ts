/**
 * The overlay driver's configuration (driver.Config): what `configureDriver("overlay", …)`
 * and the controller option `driverConfig.overlay` take (the overlay driver is built in),
 * in its own file so that the driver, the controller, the CLI and the docs share one
 * definition.
 *
 * | key                | default | reaches      | what it does                                   |
 * | ------------------ | ------- | ------------ | ---------------------------------------------- |
 * | `vxlanPort`        | 4789    | new networks | UDP port of the VXLAN devices of new networks (libnetwork's data path port); 1024–49151, 0 = the default |
 * | `advertiseAddress` | none    | next joins   | this host's VTEP (IPv4) that other hosts send to; none = the controller's `advertiseAddress`, else the address of the interface of the default route |
 *
 * `vxlanPort` is recorded with each network: an existing network keeps its port on every
 * host (they must agree), also when its devices are made again. `advertiseAddress` is this
 * host's, as libnetwork's per-daemon advertise address: every join after the change records
 * it, on existing networks too, and other hosts send that endpoint's traffic there; endpoints
 * joined before keep the address they joined with until they join again. Set back to none,
 * the next join uses the controller's address or detects it again, without a restart.
 *
 * @example
 * ```ts
 * import { OverlayConfigSchema } from "./config.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(OverlayConfigSchema.parse({}), { vxlanPort: 4789 });
 * assert.equal(OverlayConfigSchema.safeParse({ vxlanPort: 80 }).success, false);
 * ```
 *
 * @module
 */

import { z } from "zod";
import { parseIp } from "../../src/ipam/cidr.ts";

/** libnetwork's default VXLAN UDP port (IANA's). */
export const DEFAULT_VXLAN_PORT = 4789;

/**
 * libnetwork's check (overlayutils.ConfigVXLANUDPPort): registered ports only, 0 = default.
 * The message is libnetwork's.
 */
const VxlanPort = z.number({ error: "must be a number" }).int({ error: "must be an integer" })
  .transform((port, ctx) => {
    const p = port === 0 ? DEFAULT_VXLAN_PORT : port;
    if (p < 1024 || p > 49151) {
      ctx.addIssue({
        code: "custom",
        message: `VXLAN UDP port number is not in valid range (1024-49151): ${port}`,
      });
      return z.NEVER;
    }
    return p;
  });

const NOT_IPV4 = "must be an IPv4 address (no prefix)";

/** The VTEP: IPv4 only, as `--advertise-addr` and createOverlayDriver (no IPv6 overlay). */
const Ipv4Address = z.string({ error: NOT_IPV4 }).superRefine((s, ctx) => {
  let family;
  try {
    family = s.includes("/") ? undefined : parseIp(s).family;
  } catch {
    family = undefined;
  }
  if (family === 6) {
    ctx.addIssue({
      code: "custom",
      message: `must be an IPv4 address (overlay networks are IPv4 only), got ${JSON.stringify(s)}`,
    });
  } else if (family !== 4) ctx.addIssue({ code: "custom", message: NOT_IPV4 });
});

/** The overlay driver's configuration schema (strict: unknown keys are refused). */
export const OverlayConfigSchema = z.strictObject({
  vxlanPort: VxlanPort.default(DEFAULT_VXLAN_PORT),
  advertiseAddress: Ipv4Address.optional(),
});

/** A parsed overlay configuration. */
export type OverlayDriverConfig = z.output<typeof OverlayConfigSchema>;

/** The port is recorded with each network: only new networks get a changed one. */
export const OVERLAY_NEW_NETWORKS_ONLY: readonly string[] = ["vxlanPort"];

/**
 * The VTEP is this host's, not a network's (libnetwork's advertise address is per daemon):
 * every later join records the one in force, on existing networks too.
 */
export const OVERLAY_NEXT_JOINS: readonly string[] = ["advertiseAddress"];
