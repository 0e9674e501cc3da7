/**
 * The single-writer lease: one controller per `hostId` and stream. The lease is a key in a
 * JetStream KV bucket, taken and refreshed with compare-and-set on the key's revision, and
 * carrying its own expiry time: a controller that dies (kill -9) stops refreshing, and a new
 * one takes over once the lease has expired — after at most `ttlMs`. Even a stale writer
 * that slipped through cannot interleave events: every append carries
 * `expect.lastSubjectSequence`.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import type { KV } from "@nats-io/kv";
import { ConflictError, UnavailableError } from "../errors.ts";
import { errText } from "../errors.ts";

/** What a lease says about its holder. */
export interface LeaseRecord {
  instance: string;
  hostId: string;
  pid: number;
  hostname: string;
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
}

/** A held lease. */
export interface Lease {
  readonly record: LeaseRecord;
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
    kv = await new Kvm(nc).create(leaseBucketOf(options.stream), { history: 1 });
  } catch (err) {
    throw new UnavailableError(`cannot open the lease bucket: ${errText(err)}`, { cause: err });
  }
  const key = `${options.prefix}.${options.hostId}`;
  const record = (): LeaseRecord => ({
    instance,
    hostId: options.hostId,
    pid: Deno.pid,
    hostname: Deno.hostname(),
    startedAt,
    expiresAt: new Date(Date.now() + ttl).toISOString(),
  });
  const instance = crypto.randomUUID();
  const startedAt = new Date().toISOString();
  const deadline = Date.now() + waitMs;
  let revision = 0;
  for (;;) {
    const entry = await kv.get(key);
    const current = entry && entry.operation === "PUT" && entry.value.length
      ? JSON.parse(dec.decode(entry.value)) as LeaseRecord
      : undefined;
    try {
      if (!entry) revision = await kv.create(key, enc.encode(JSON.stringify(record())));
      else if (!current || Date.parse(current.expiresAt) < Date.now()) {
        revision = await kv.update(key, enc.encode(JSON.stringify(record())), entry.revision);
      } else if (Date.now() > deadline) {
        throw new ConflictError(
          `host ${options.hostId} is owned by a running controller on stream ${options.stream} ` +
            `(pid ${current.pid} on ${current.hostname}, lease valid until ${current.expiresAt})`,
        );
      } else {
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
    async release() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      await kv.delete(key, { previousSeq: revision }).catch(() => {});
    },
  };
}
