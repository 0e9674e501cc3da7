/**
 * The overlay driver's configuration (driver.Config), declared ahead of the driver so that
 * the driver imports it and the controller, the CLI and the docs share one definition.
 * Until the overlay driver is registered, `configureDriver("overlay", …)` is refused like any
 * unknown driver (`unknown driver "overlay"`).
 *
 * | key                | default | what it does                                                   |
 * | ------------------ | ------- | -------------------------------------------------------------- |
 * | `vxlanPort`        | 4789    | UDP port of the VXLAN devices of new networks (libnetwork's data path port); 1024–49151, 0 = the default |
 * | `advertiseAddress` | none    | this host's VTEP address that other hosts send to; none = the address of the interface of the default route |
 *
 * Both reach only networks created after the change: an existing VXLAN device keeps its port
 * and local address, and every host of an overlay network must agree on the port.
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

const IpAddress = z.string({ error: "must be an IP address (no prefix)" }).refine((s) => {
  try {
    parseIp(s);
    return !s.includes("/");
  } catch {
    return false;
  }
}, { error: "must be an IP address (no prefix)" });

/** The overlay driver's configuration schema (strict: unknown keys are refused). */
export const OverlayConfigSchema = z.strictObject({
  vxlanPort: VxlanPort.default(DEFAULT_VXLAN_PORT),
  advertiseAddress: IpAddress.optional(),
});

/** A parsed overlay configuration. */
export type OverlayDriverConfig = z.output<typeof OverlayConfigSchema>;

/** Both keys reach only new networks. */
export const OVERLAY_NEW_NETWORKS_ONLY: readonly string[] = ["vxlanPort", "advertiseAddress"];
