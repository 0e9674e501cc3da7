/**
 * The IPAM half of Docker's plugin protocol (`IpamDriver.*`), as an {@link IpamDriver}.
 * Errors come back as `{ "Error": "…" }` and surface as `remote: …`.
 *
 * @module
 */

import { z } from "zod";
import type { IpamDriver } from "../driver.ts";
import { addressOf, parseCidr } from "../../src/ipam/cidr.ts";
import { Empty, NotImplementedError, type PluginClient } from "./_client.ts";

/** A CIDR string ("10.0.0.2/24"), as the protocol sends addresses and pools. */
export const cidr = () =>
  z.string().refine((s) => {
    try {
      parseCidr(s);
      return true;
    } catch {
      return false;
    }
  }, { message: "expected an address with a prefix length (a.b.c.d/nn)" });

const Capabilities = z.looseObject({
  RequiresMACAddress: z.boolean().nullish(),
  RequiresRequestReplay: z.boolean().nullish(),
});
const AddressSpaces = z.looseObject({
  LocalDefaultAddressSpace: z.string().min(1),
  GlobalDefaultAddressSpace: z.string().min(1),
});
const Data = z.record(z.string(), z.string()).nullish().transform((d) => d ?? {});
const Pool = z.looseObject({ PoolID: z.string().min(1), Pool: cidr(), Data });
const Address = z.looseObject({ Address: cidr(), Data });

/** IPAM capabilities; both false when the plugin does not implement GetCapabilities. */
export interface RemoteIpamCapabilities {
  requiresMACAddress: boolean;
  requiresRequestReplay: boolean;
}

/** Builds the IPAM driver on an activated plugin's client. */
export function remoteIpamDriver(name: string, client: PluginClient): IpamDriver {
  const call = <S extends z.ZodType>(method: string, body: unknown, schema: S) =>
    client.call(`IpamDriver.${method}`, body, schema, "Error");
  let caps: Promise<RemoteIpamCapabilities> | undefined;
  return {
    name,
    capabilities() {
      caps ??= call("GetCapabilities", {}, Capabilities).then(
        (c) => ({
          requiresMACAddress: c.RequiresMACAddress ?? false,
          requiresRequestReplay: c.RequiresRequestReplay ?? false,
        }),
        (err) => {
          if (err instanceof NotImplementedError) {
            return { requiresMACAddress: false, requiresRequestReplay: false };
          }
          caps = undefined; // a transient failure is asked again next time
          throw err;
        },
      );
      return caps;
    },
    async getDefaultAddressSpaces() {
      const res = await call("GetDefaultAddressSpaces", {}, AddressSpaces);
      return { local: res.LocalDefaultAddressSpace, global: res.GlobalDefaultAddressSpace };
    },
    async requestPool(req) {
      const res = await call("RequestPool", {
        AddressSpace: req.addressSpace,
        Pool: req.pool ?? "",
        SubPool: req.subPool ?? "",
        Options: req.options,
        V6: req.v6,
      }, Pool);
      return { poolId: res.PoolID, pool: res.Pool, meta: res.Data };
    },
    async releasePool(poolId) {
      await call("ReleasePool", { PoolID: poolId }, Empty);
    },
    async requestAddress(poolId, req) {
      const res = await call("RequestAddress", {
        PoolID: poolId,
        Address: req.address ? addressOf(req.address) : "",
        Options: req.options,
      }, Address);
      return res.Address;
    },
    async releaseAddress(poolId, address) {
      // Docker sends the bare IP.
      await call("ReleaseAddress", { PoolID: poolId, Address: addressOf(address) }, Empty);
    },
  };
}
