/**
 * The single-writer lease: one controller per `hostId` and stream. The lease is a key in a
 * JetStream KV bucket, taken and refreshed with compare-and-set on the key's revision, and
 * carrying its own expiry time and its holder's identity (pid, process start time, boot id,
 * pid namespace: lease_holder.ts). A controller that dies (kill -9) stops refreshing; a new
 * one on the same machine sees that the holder is provably dead and takes over at once,
 * otherwise it waits (saying what for) until the lease has expired — after at most `ttlMs`.
 * Even a stale writer that slipped through cannot interleave events: every append carries
 * `expect.lastSubjectSequence`.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import type { KV } from "@nats-io/kv";
import { ConflictError, UnavailableError } from "../errors.ts";
import { errText } from "../errors.ts";
import { holderStatus, type ProcessIdentity, selfIdentity } from "./lease_holder.ts";

/** What a lease says about its holder (the identity fields are absent in older records). */
export interface LeaseRecord extends ProcessIdentity {
  instance: string;
  hostId: string;
  startedAt: string;
  expiresAt: string;
}

/** Options of {@link acquireLease}. */
export interface LeaseOptions {
  stream: string;
  prefix: string;
  hostId: string;
  /** How long a lease lives without a refresh. Default 10000 ms. */
  ttlMs?: number;
  /** How long to wait for another holder's lease to expire. Default ttlMs + 2000. */
  waitMs?: number;
  /** Called when the lease was lost to another writer (stop writing). */
  onLost?: (reason: string) => void;
  /** Where to say what the acquisition waits for, or whom it took over from. */
  log?: (line: string) => void;
  /** Replicas of the lease bucket when it is created here (a JetStream cluster). Default 1. */
  replicas?: number;
}

/** A held lease. */
export interface Lease {
  readonly record: LeaseRecord;
  /** Milliseconds spent waiting for another holder's lease. */
  readonly waitedMs: number;
  /** Set when the lease was taken from a holder that provably died: what happened. */
  readonly tookOver?: string;
  /** Gives the lease up (deletes the key), so the next controller starts at once. */
  release(): Promise<void>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The KV bucket holding the leases of a stream. */
export function leaseBucketOf(stream: string): string {
  return `${stream}_LEASES`;
}

/**
 * Takes the lease of `hostId`, waiting for an expired holder's lease to lapse.
 *
 * @throws {ConflictError} when a live controller holds it.
 */
export async function acquireLease(nc: NatsConnection, options: LeaseOptions): Promise<Lease> {
  const ttl = options.ttlMs ?? 10_000;
  const waitMs = options.waitMs ?? ttl + 2000;
  let kv: KV;
  try {
    kv = await new Kvm(nc).create(leaseBucketOf(options.stream), {
      history: 1,
      ...(options.replicas ? { replicas: options.replicas } : {}),
    });
  } catch (err) {
    throw new UnavailableError(`cannot open the lease bucket: ${errText(err)}`, { cause: err });
  }
  const key = leaseKeyOf(options.prefix, options.hostId);
  const record = (): LeaseRecord => ({
    instance,
    hostId: options.hostId,
    ...selfIdentity(),
    startedAt,
    expiresAt: new Date(Date.now() + ttl).toISOString(),
  });
  const instance = crypto.randomUUID();
  const startedAt = new Date().toISOString();
  const began = Date.now();
  const deadline = began + waitMs;
  let revision = 0;
  let tookOver: string | undefined;
  let announced: string | undefined;
  for (;;) {
    const entry = await kv.get(key);
    const current = entry && entry.operation === "PUT" && entry.value.length
      ? JSON.parse(dec.decode(entry.value)) as LeaseRecord
      : undefined;
    const holder = current && Date.parse(current.expiresAt) >= Date.now()
      ? holderStatus(current)
      : undefined;
    try {
      if (!entry) revision = await kv.create(key, enc.encode(JSON.stringify(record())));
      else if (!current || !holder || holder.status === "dead") {
        revision = await kv.update(key, enc.encode(JSON.stringify(record())), entry.revision);
        if (holder?.status === "dead") {
          tookOver = `took over the lease of host ${options.hostId} from pid ${current!.pid} ` +
            `on ${current!.hostname}, which died`;
          options.log?.(tookOver);
        }
      } else if (Date.now() > deadline) {
        throw new ConflictError(
          `host ${options.hostId} is owned by a running controller on stream ${options.stream} ` +
            `(pid ${current.pid} on ${current.hostname}, lease valid until ${current.expiresAt})`,
        );
      } else {
        if (announced !== current!.instance) {
          announced = current!.instance;
          const left = (Date.parse(current!.expiresAt) - Date.now()) / 1000;
          const state = holder.status === "alive" ? "alive" : holder.why;
          options.log?.(
            `waiting up to ${((deadline - Date.now()) / 1000).toFixed(1)} s for the lease of ` +
              `host ${options.hostId}: pid ${current!.pid} on ${current!.hostname} holds it ` +
              `(${state}; valid ${Math.max(0, left).toFixed(1)} s more)`,
          );
        }
        await new Promise((r) => setTimeout(r, Math.min(250, ttl / 4)));
        continue;
      }
      break;
    } catch (err) {
      if (err instanceof ConflictError) throw err;
      // Lost a race for the key (create/update refused): look again.
      if (Date.now() > deadline) {
        throw new UnavailableError(`cannot take the lease of ${options.hostId}: ${errText(err)}`, {
          cause: err,
        });
      }
    }
  }
  const waitedMs = tookOver ? 0 : Date.now() - began;
  let held = record();
  let stopped = false;
  const timer = setInterval(async () => {
    if (stopped) return;
    const next = record();
    try {
      revision = await kv.update(key, enc.encode(JSON.stringify(next)), revision);
      held = next;
    } catch (err) {
      const entry = await kv.get(key).catch(() => undefined);
      const other = entry?.value.length
        ? JSON.parse(dec.decode(entry.value)) as LeaseRecord
        : undefined;
      if (other && other.instance !== instance) {
        stopped = true;
        clearInterval(timer);
        options.onLost?.(
          `lease of ${options.hostId} taken by pid ${other.pid} on ${other.hostname}`,
        );
      } else if (entry && other?.instance === instance) {
        revision = entry.revision; // our own write landed; carry on
      }
      // Otherwise NATS is unreachable: keep trying; appends are fenced by sequence anyway.
      void err;
    }
  }, Math.max(100, Math.floor(ttl / 3)));
  return {
    get record() {
      return held;
    },
    waitedMs,
    ...(tookOver ? { tookOver } : {}),
    async release() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      await kv.delete(key, { previousSeq: revision }).catch(() => {});
    },
  };
}

/** The key of a host's lease in the lease bucket. */
export function leaseKeyOf(prefix: string, hostId: string): string {
  return `${prefix}.${hostId}`;
}

/**
 * Reads a host's lease without taking it (for clients explaining why no controller answers).
 * Undefined when there is none (or the bucket does not exist).
 */
export async function readLease(
  nc: NatsConnection,
  where: { stream: string; prefix: string; hostId: string },
): Promise<LeaseRecord | undefined> {
  let kv: KV;
  try {
    kv = await new Kvm(nc).open(leaseBucketOf(where.stream), { bindOnly: true });
  } catch {
    return undefined;
  }
  const entry = await kv.get(leaseKeyOf(where.prefix, where.hostId));
  if (!entry || entry.operation !== "PUT" || !entry.value.length) return undefined;
  return JSON.parse(dec.decode(entry.value)) as LeaseRecord;
}

/** Why no controller answers for `hostId`, given its lease (undefined: none). */
export function noControllerMessage(hostId: string, lease: LeaseRecord | undefined): string {
  const start = "start one with `cnm serve`";
  if (!lease) return `no controller running for host ${hostId} (${start})`;
  const who = `pid ${lease.pid} on ${lease.hostname}`;
  const left = Math.ceil((Date.parse(lease.expiresAt) - Date.now()) / 1000);
  if (left <= 0) {
    return `no controller running for host ${hostId}: the last one (${who}) stopped ` +
      `refreshing its lease at ${lease.expiresAt} (${start})`;
  }
  const holder = holderStatus(lease);
  if (holder.status === "dead") {
    return `no controller answers for host ${hostId}: the last one (${who}) died; its lease ` +
      `lapses in ${left} s, but a new \`cnm serve\` takes over at once`;
  }
  const state = holder.status === "alive" ? "alive" : holder.why;
  return `no controller answers for host ${hostId} yet: ${who} holds its lease (${state}, ` +
    `valid ${left} s more): a controller is starting, or it stopped answering; ` +
    "do not start a second one";
}
