/**
 * The snapshot writer's lease: one writer per stream at a time, by the `_writer` entry of
 * the `<stream>_SNAPSHOT` bucket (instance, host, pid, expiry). Taken with compare-and-set
 * when free or expired, refreshed by its holder, given up on close; a writer whose refresh
 * finds another instance there stops writing (snapshot_writer.ts).
 *
 * @module
 */

import type { KV } from "@nats-io/kv";
import { WRITER_KEY } from "./snapshot.ts";

/** The lease as stored. */
interface LeaseValue {
  instance: string;
  host: string;
  pid: number;
  expiresAt: string;
}

/** One writer's hold on the lease. */
export interface WriterLease {
  /** Takes the lease if free, expired or already this instance's; true when held. */
  take(): Promise<boolean>;
  /**
   * Refreshes the held lease; false when another instance holds it now (stop writing).
   * A failure that shows no other holder keeps it (tried again at the next refresh).
   */
  refresh(): Promise<boolean>;
  /** Gives the lease up, if still this instance's (best effort). */
  release(): Promise<void>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A lease of `kv`'s writer key for this process, valid `ttlMs` after each write. */
export function createWriterLease(kv: KV, options: { hostId: string; ttlMs: number }): WriterLease {
  const ttl = options.ttlMs;
  const instance = crypto.randomUUID();
  let leaseRev = 0;

  const leaseValue = (): Uint8Array =>
    enc.encode(JSON.stringify(
      {
        instance,
        host: options.hostId,
        pid: Deno.pid,
        expiresAt: new Date(Date.now() + ttl).toISOString(),
      } satisfies LeaseValue,
    ));

  /** Takes the lease if free or expired; true when held. */
  async function tryLease(): Promise<boolean> {
    try {
      const e = await kv.get(WRITER_KEY);
      const cur = e?.operation === "PUT" && e.value.length
        ? JSON.parse(dec.decode(e.value)) as LeaseValue
        : undefined;
      if (!e) leaseRev = await kv.create(WRITER_KEY, leaseValue());
      else if (!cur || cur.instance === instance || Date.parse(cur.expiresAt) < Date.now()) {
        leaseRev = await kv.update(WRITER_KEY, leaseValue(), e.revision);
      } else return false;
      return true;
    } catch {
      return false; // lost a race, or NATS is away: try again later
    }
  }

  return {
    take: tryLease,
    async refresh() {
      try {
        leaseRev = await kv.update(WRITER_KEY, leaseValue(), leaseRev);
      } catch {
        const e = await kv.get(WRITER_KEY).catch(() => undefined);
        const cur = e?.value.length ? JSON.parse(dec.decode(e.value)) as LeaseValue : undefined;
        if (cur && cur.instance !== instance) return false;
        if (e && cur?.instance === instance) leaseRev = e.revision;
      }
      return true;
    },
    async release() {
      await kv.delete(WRITER_KEY, { previousSeq: leaseRev }).catch(() => {});
    },
  };
}
