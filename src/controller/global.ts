/**
 * Global-scope networks (overlay): one object for the whole cluster, created and deleted by
 * any host, one writer at a time by `expect.lastSubjectSequence`; its endpoints are each
 * written by their own host. This module holds what that takes beyond a local network:
 *
 * - cluster-wide decisions claimed in KV before the intent (claims.ts): the name, the VNIs,
 *   the subnets (GlobalDefault: 10.0.0.0/8 in /24s) and every address;
 * - the other hosts' events applied to this host's view: global networks mirrored in the
 *   registry (passive while another host runs their effect), their pools and addresses kept
 *   in the IPAM, so no host decides what another already holds;
 * - the stream's total order as the tie-break between a delete of a global network and an
 *   endpoint created on it elsewhere: each effect first waits until the world has folded
 *   everything before its intent, and fails if the other one came first.
 *
 * @module
 */

import type { EndpointContext } from "../../actors/endpoint.ts";
import type { NetworkContext, NetworkIpamEntry } from "../../actors/network.ts";
import { TRANSIENT_STATES } from "../../actors/mod.ts";
import type { DriverCapabilities } from "../../drivers/driver.ts";
import type { CnmEvent, Kind } from "../journal/events.ts";
import { stateOf } from "../journal/fold.ts";
import {
  ConflictError,
  ForbiddenError,
  InvalidArgumentError,
  UnavailableError,
} from "../errors.ts";
import { shortId } from "../ids.ts";
import { addressOf } from "../ipam/cidr.ts";
import { GlobalDefault } from "../ipam/mod.ts";
import { claimKey } from "./claims.ts";
import { staleIn } from "./claims_sweep.ts";
import type { ControllerContext } from "./context.ts";
import {
  allocateEndpoint,
  allocateNetwork,
  defaultIpamOf,
  type EndpointAddresses,
  type NetworkIpam,
  type NetworkIpamRequest,
  releaseEndpoint,
  releaseNetwork,
  restoreEndpoint,
  restoreNetwork,
} from "./network_ipam.ts";
import { addressesInUse, endpointsOnNetwork, poolsInUse, vnisInUse } from "./global_view.ts";
import { networkContext } from "./objects.ts";
import type { WorldChange } from "./world.ts";

/** libnetwork's first VXLAN id. */
export const FIRST_VNI = 4096;
/** The largest VXLAN id (24 bits). */
export const MAX_VNI = (1 << 24) - 1;
const ATTEMPTS = 64;

/**
 * Claims for one object: every key tried is remembered, so giving them back also covers a
 * claim whose answer was lost (JetStream unavailable after storing it).
 */
function claimsFor(ctx: ControllerContext, objectId: string) {
  const tried = new Set<string>();
  const isStale = staleIn(ctx);
  return {
    async claim(key: string): Promise<boolean> {
      tried.add(key);
      return await ctx.claims.claim(key, objectId, isStale);
    },
    /** Gives back one key (retried in the background until JetStream answers). */
    drop(key: string): void {
      tried.delete(key);
      ctx.claims.releaseSoon(key, objectId);
    },
    /** Gives back every key tried. */
    dropAll(): void {
      for (const key of [...tried]) this.drop(key);
    },
  };
}

/** True for a network every host shares. */
export function isGlobal(c: { scope?: string } | undefined): boolean {
  return c?.scope === "global";
}

/** What a global network create decided and claimed; `release` gives it all back. */
export interface GlobalDecision {
  ipam?: NetworkIpam;
  options: Record<string, string>;
  release(): Promise<void>;
}

/**
 * Claims the name, decides and claims the subnets (from GlobalDefault unless given) and, for
 * drivers that need them, the VNIs of a new global network.
 *
 * @throws {ConflictError|ForbiddenError|InvalidArgumentError|UnavailableError}
 */
export async function decideGlobalNetwork(
  ctx: ControllerContext,
  id: string,
  input: NetworkIpamRequest & { name: string; options: Record<string, string> },
  caps: DriverCapabilities,
  withIpam: boolean,
): Promise<GlobalDecision> {
  const prefix = ctx.runtime.journal.prefix;
  const mine = claimsFor(ctx, id);
  let ipam: NetworkIpam | undefined;
  const release = () => {
    releaseNetwork(ctx.ipam, ipam);
    mine.dropAll();
    return Promise.resolve();
  };
  const claim = (key: string) => mine.claim(key);
  // Pools kept allocated here while deciding because another claim held them.
  const kept: NetworkIpamEntry[] = [];
  try {
    if (!(await claim(claimKey.networkName(prefix, input.name)))) {
      throw new ConflictError(`network with name ${input.name} already exists`);
    }
    if (withIpam) {
      const explicit = (input.ipam?.config ?? []).length > 0;
      for (let attempt = 0;; attempt++) {
        ipam = allocateNetwork(ctx.ipam, input, GlobalDefault);
        const taken: string[] = [];
        for (const e of [...ipam.ipv4, ...ipam.ipv6]) {
          if (!(await claim(claimKey.subnet(prefix, e.pool)))) taken.push(e.pool);
        }
        if (!taken.length) break;
        // Another host holds it and its event is not folded here yet.
        if (explicit || attempt >= ATTEMPTS) {
          throw new ForbiddenError("Pool overlaps with other one on this address space");
        }
        // Keep the taken pools allocated while deciding (they are someone's), give back the
        // rest.
        const decided = ipam;
        const keep = (e: { pool: string }) => taken.includes(e.pool);
        kept.push(...[...decided.ipv4, ...decided.ipv6].filter(keep));
        releaseNetwork(ctx.ipam, {
          ipv4: decided.ipv4.filter((e) => !keep(e)),
          ipv6: decided.ipv6.filter((e) => !keep(e)),
        });
        for (const e of [...decided.ipv4, ...decided.ipv6]) {
          if (!keep(e)) mine.drop(claimKey.subnet(prefix, e.pool));
        }
        ipam = undefined;
      }
    }
    const options = { ...input.options };
    if (caps.vniOption) {
      options[caps.vniOption] = (await decideVnis(ctx, id, options[caps.vniOption], ipam, claim))
        .join(",");
    }
    return { ipam, options, release };
  } catch (err) {
    await release();
    throw err;
  } finally {
    // A kept pool stays allocated here only while a live network known here has it: the
    // holder may be dead (a create killed between its claims and its intent) or deleted
    // with its release not landed yet, and its event would never free the pool here.
    const used = poolsInUse(ctx);
    const free = kept.filter((e) => !used.has(e.pool));
    releaseNetwork(ctx.ipam, {
      ipv4: free.filter((e) => !e.pool.includes(":")),
      ipv6: free.filter((e) => e.pool.includes(":")),
    });
  }
}

/** One VNI per IPv4 subnet (at least one): the user's list, else the lowest free ≥ 4096. */
async function decideVnis(
  ctx: ControllerContext,
  id: string,
  requested: string | undefined,
  ipam: NetworkIpam | undefined,
  claim: (key: string) => Promise<boolean>,
): Promise<number[]> {
  const prefix = ctx.runtime.journal.prefix;
  const pools = ipam?.ipv4.length ? ipam.ipv4.map((e) => e.pool) : [""];
  if (requested !== undefined && requested !== "") {
    const list = requested.split(",").map((v) => v.trim());
    const vnis = list.map((v) => Number(v));
    const bad = list.find((v, i) => !/^\d+$/.test(v) || vnis[i] < 1 || vnis[i] > MAX_VNI);
    if (bad !== undefined) {
      throw new InvalidArgumentError(`invalid vxlan id ${JSON.stringify(bad)} (1-${MAX_VNI})`);
    }
    if (vnis.length < pools.length) {
      throw new InvalidArgumentError(
        `could not obtain vxlan id for pool ${pools[vnis.length]}: not enough vxlan ids given`,
      );
    }
    for (const [i, vni] of vnis.slice(0, pools.length).entries()) {
      if (!(await claim(claimKey.vni(prefix, vni)))) {
        throw new ForbiddenError(
          `could not assign vxlan id ${vni} to pool ${pools[i]}: vxlan id ${vni} is in use`,
        );
      }
    }
    return vnis.slice(0, pools.length);
  }
  const used = vnisInUse(ctx, id);
  const out: number[] = [];
  let next = FIRST_VNI;
  for (const pool of pools) {
    for (;; next++) {
      if (next > MAX_VNI) {
        throw new UnavailableError(`could not obtain vxlan id for pool ${pool}: all in use`);
      }
      if (used.has(next)) continue;
      if (await claim(claimKey.vni(prefix, next))) break;
    }
    out.push(next++);
  }
  return out;
}

/**
 * Decides an endpoint's addresses in a global network: the IPAM's first free, claimed in
 * KV; one another claim holds stays marked here while the next is tried, and afterwards only
 * if a live endpoint known here has it.
 *
 * @throws {ForbiddenError} `Address already in use` for a requested address held elsewhere.
 */
export async function decideGlobalAddresses(
  ctx: ControllerContext,
  endpointId: string,
  network: NetworkContext,
  facts: NetworkIpam,
  req: EndpointAddresses,
): Promise<{ addresses: EndpointAddresses; release(): Promise<void> }> {
  const prefix = ctx.runtime.journal.prefix;
  const mine = claimsFor(ctx, endpointId);
  const release = () => {
    mine.dropAll();
    return Promise.resolve();
  };
  // Addresses kept allocated here while deciding because another claim held them (or one of
  // their pair): afterwards only those a live endpoint known here has stay allocated (see the
  // kept pools of decideGlobalNetwork).
  const kept: EndpointAddresses[] = [];
  try {
    for (let attempt = 0;; attempt++) {
      const addresses = allocateEndpoint(ctx.ipam, facts, req);
      let taken = false;
      try {
        for (const a of [addresses.ipv4Address, addresses.ipv6Address]) {
          if (a && !(await mine.claim(claimKey.address(prefix, network.id, a)))) taken = true;
        }
      } catch (err) {
        releaseEndpoint(ctx.ipam, facts, addresses);
        mine.dropAll();
        throw err;
      }
      if (!taken) return { addresses, release };
      mine.dropAll();
      if (req.ipv4Address || req.ipv6Address || attempt >= ATTEMPTS) {
        releaseEndpoint(ctx.ipam, facts, addresses);
        throw new ForbiddenError("Address already in use");
      }
      // The taken addresses stay allocated while deciding (another host's); try the next.
      kept.push(addresses);
    }
  } finally {
    const used = addressesInUse(ctx, network.id);
    const free = (a?: string) => a && !used.has(addressOf(a)) ? a : undefined;
    for (const k of kept) {
      releaseEndpoint(ctx.ipam, facts, {
        ipv4Address: free(k.ipv4Address),
        ipv6Address: free(k.ipv6Address),
      });
    }
  }
}

/** Releases the claims an object held, once its delete or failed create is durable. */
export function releaseGlobalClaims(
  ctx: ControllerContext,
  kind: Kind,
  context: unknown,
  outcome: CnmEvent,
): void {
  const t = outcome.type;
  const prefix = ctx.runtime.journal.prefix;
  const keys: string[] = [];
  let id = "";
  if (kind === "network" && (t === "network.deleted" || t === "network.create.failed")) {
    const c = context as NetworkContext;
    if (!isGlobal(c)) return;
    id = c.id;
    keys.push(claimKey.networkName(prefix, c.name));
    for (const e of [...c.ipam?.ipv4 ?? [], ...c.ipam?.ipv6 ?? []]) {
      keys.push(claimKey.subnet(prefix, e.pool));
    }
    for (const [key, value] of Object.entries(c.options)) {
      if (!/vxlanid_list$/.test(key)) continue;
      for (const v of value.split(",")) keys.push(claimKey.vni(prefix, Number(v)));
    }
  } else if (kind === "endpoint" && (t === "endpoint.deleted" || t === "endpoint.create.failed")) {
    const c = context as EndpointContext;
    if (!isGlobal(networkContext(ctx.runtime, c.networkId))) return;
    id = c.id;
    for (const a of [c.ipv4Address, c.ipv6Address]) {
      if (a) keys.push(claimKey.address(prefix, c.networkId, a));
    }
  }
  for (const key of keys) ctx.claims.releaseSoon(key, id);
}

/**
 * Applies another host's event to this host's view: global networks in the registry (and
 * their pools in the IPAM), endpoints of global networks in the IPAM.
 */
export function applyRemote(ctx: ControllerContext, change: WorldChange): void {
  const { event, object } = change;
  if (!object) return;
  const rt = ctx.runtime;
  if (object.kind === "network") {
    const c = object.snapshot.context as NetworkContext;
    if (!isGlobal(c)) return;
    const state = stateOf(object.snapshot);
    const facts = defaultIpamOf(c);
    if (event.type === "network.create.requested" && facts) restoreNetwork(ctx.ipam, facts);
    if (event.type === "network.deleted" || event.type === "network.create.failed") {
      releaseNetwork(ctx.ipam, facts);
    }
    const writer = object.intent?.host ?? object.host;
    const passive = TRANSIENT_STATES.has(state) && writer !== ctx.settings.hostId;
    rt.adopt("network", object.id, object.snapshot, object.lastSeq, passive);
    return;
  }
  if (object.kind === "endpoint") {
    const c = object.snapshot.context as EndpointContext;
    const net = networkContext(rt, c.networkId);
    const facts = defaultIpamOf(net);
    if (!isGlobal(net) || !facts) return;
    if (event.type === "endpoint.create.requested") restoreEndpoint(ctx.ipam, facts, c);
    if (event.type === "endpoint.deleted" || event.type === "endpoint.create.failed") {
      releaseEndpoint(ctx.ipam, facts, c);
    }
  }
}

/**
 * The stream's order decides between a global network's delete and an endpoint made on it
 * on another host: before the effect runs, everything up to its intent is folded, then an
 * endpoint that came first fails the delete, and a delete that came first fails the
 * endpoint's create.
 */
export async function checkGlobalOrder(
  ctx: ControllerContext,
  kind: Kind,
  state: string,
  context: unknown,
  intentSeq: number,
): Promise<void> {
  if (kind === "network" && state === "deleting") {
    const c = context as NetworkContext;
    if (!isGlobal(c)) return;
    await ctx.world.caughtUp(intentSeq);
    const eps = endpointsOnNetwork(ctx, c.id).filter((e) => {
      const o = ctx.world.fold.objects.get(e.id);
      return !o || o.firstSeq < intentSeq;
    });
    if (eps.length) {
      const list = eps.map((e) =>
        `name:${JSON.stringify(e.name)} id:${JSON.stringify(shortId(e.id))}`
      ).join(", ");
      throw new ForbiddenError(`network ${c.name} has active endpoints (${list})`);
    }
  }
  if (kind === "endpoint" && state === "creating") {
    const c = context as EndpointContext;
    if (!isGlobal(networkContext(ctx.runtime, c.networkId))) return;
    await ctx.world.caughtUp(intentSeq);
    const net = ctx.world.fold.objects.get(c.networkId);
    const s = net ? stateOf(net.snapshot) : "deleted";
    if (s !== "active") {
      const name = (net?.snapshot.context as NetworkContext | undefined)?.name ?? c.networkId;
      throw new ForbiddenError(`network ${name} is not active (state ${s})`);
    }
  }
}
