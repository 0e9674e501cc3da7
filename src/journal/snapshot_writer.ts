/**
 * The snapshot writer: follows the whole stream (every host's events, imports, anything
 * appended), folds each event onto the records it holds, and flushes what changed to the
 * `<stream>_SNAPSHOT` bucket every `flushMs` — records first, then the watermark. One
 * writer per stream at a time, by a lease in the bucket: every controller runs one, the
 * others stand by and take over when the holder's lease lapses. Every record and the
 * watermark are written with compare-and-set on their KV revision, so a writer that lost
 * its lease can never overwrite a newer record with an older one. The lease itself is
 * snapshot_lease.ts.
 *
 * Asynchronous by design: commands never wait for it. Readers stay exact whatever its lag,
 * because they fold the events after the watermark themselves (current.ts).
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import type { KV } from "@nats-io/kv";
import {
  type ConsumerMessages,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { decodeEvent, type RecordedEvent } from "./events.ts";
import { foldEvent, type FoldState, stateOf } from "./fold.ts";
import { type Current, loadCurrent, metaOf } from "./current.ts";
import {
  encodeValue,
  META_KEY,
  recordKey,
  recordOf,
  snapshotBucketOf,
  snapshotStreamOf,
} from "./snapshot.ts";
import { createWriterLease } from "./snapshot_lease.ts";
import { errText } from "../errors.ts";
import { isWrongLastSequence } from "./journal.ts";
import { createPublisher } from "./publisher.ts";

/** Options of {@link startSnapshotWriter}. */
export interface SnapshotWriterOptions {
  stream: string;
  prefix: string;
  /** Who writes (shown in the meta and the lease). */
  hostId: string;
  /** Milliseconds between the first change and its flush. Default 50. */
  flushMs?: number;
  /** Lifetime of the writer lease without a refresh. Default 10000. */
  leaseTtlMs?: number;
  /** Called when a flush or the follower fails (it retries). Default: nothing. */
  onError?: (err: unknown) => void;
  /** Replicas of the snapshot bucket when this writer creates it (a JetStream cluster). */
  replicas?: number;
}

/** A running writer (or a stand-by one). */
export interface SnapshotWriter {
  /** True while this process holds the lease and writes. */
  readonly writing: boolean;
  /** Hands over an event this process appended, so the follower need not decode it. */
  offer(event: RecordedEvent): void;
  /**
   * Hands over the snapshot an actor reached by applying the event at `seq` to object `id`,
   * so the follower need not compute it (fold.ts checks it is in the event's `to` state).
   */
  offerSnapshot(seq: number, id: string, snapshot: unknown): void;
  /**
   * Resolves once the watermark covers everything in the stream at the time of the call
   * (only when writing; otherwise at once with false).
   */
  sync(timeoutMs?: number): Promise<boolean>;
  /** What it did: flushes, records written and purged, the watermark. */
  stats(): { flushes: number; written: number; purged: number; seq: number };
  /** Flushes what it holds, gives the lease up and stops. */
  close(): Promise<void>;
}

/**
 * Starts a writer for `options.stream`. With `initial` (what recovery just loaded, kept by
 * reference: its objects become the writer's) it needs no second read when it gets the lease.
 */
export async function startSnapshotWriter(
  nc: NatsConnection,
  initial: Current | undefined,
  options: SnapshotWriterOptions,
): Promise<SnapshotWriter> {
  const { stream, prefix } = options;
  const flushMs = options.flushMs ?? 50;
  const ttl = options.leaseTtlMs ?? 10_000;
  const onError = options.onError ?? (() => {});
  const writer = `${options.hostId} pid ${Deno.pid}`;
  const kv: KV = await new Kvm(nc).create(snapshotBucketOf(stream), {
    history: 1,
    ...(options.replicas ? { replicas: options.replicas } : {}),
  });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const publisher = createPublisher(nc, 10_000);
  const lease = createWriterLease(kv, { hostId: options.hostId, ttlMs: ttl });

  let closed = false;
  let writing = false;
  let state: {
    fold: FoldState;
    revisions: Map<string, number>;
    metaRev?: number;
    created: string;
    events: number;
    at: string | null;
    flushedSeq: number;
  } | undefined;
  const dirty = new Set<string>();
  const known = new Map<number, { event?: RecordedEvent; id?: string; snapshot?: unknown }>();
  let messages: ConsumerMessages | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let flushing: Promise<void> | undefined;
  const counters = { flushes: 0, written: 0, purged: 0 };
  let pending = initial;

  async function begin(): Promise<void> {
    const cur = pending ?? await loadCurrent(nc, { stream, prefix });
    pending = undefined;
    state = {
      fold: cur.fold,
      revisions: cur.revisions,
      metaRev: cur.metaRevision,
      created: cur.created,
      events: cur.events,
      at: cur.at,
      flushedSeq: cur.source === "snapshot" ? cur.snapshotSeq : 0,
    };
    if (cur.source === "stream") {
      // No usable snapshot: drop whatever the bucket holds and write every object.
      await jsm.streams.purge(snapshotStreamOf(stream), {
        filter: `$KV.${snapshotBucketOf(stream)}.*.*`,
      }).catch(() => {});
      await jsm.streams.purge(snapshotStreamOf(stream), {
        filter: `$KV.${snapshotBucketOf(stream)}.${META_KEY}`,
      }).catch(() => {});
      state.revisions.clear();
      state.metaRev = undefined;
      for (const id of cur.fold.objects.keys()) dirty.add(id);
    } else {
      // The tail recovery folded is not in the records yet.
      for (const o of cur.fold.objects.values()) {
        if (o.lastSeq > cur.snapshotSeq) dirty.add(o.id);
      }
    }
    state.fold.touched = dirty;
    schedule(dirty.size ? 0 : flushMs);
    await follow(state.fold.lastSeq + 1);
  }

  async function follow(from: number): Promise<void> {
    const consumer = await js.consumers.get(stream, {
      filter_subjects: `${prefix}.>`,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: from,
    });
    messages = await consumer.consume({ max_messages: 1024 });
    (async () => {
      for await (const m of messages!) {
        const s = state;
        if (!s || !writing) break;
        if (m.seq <= s.fold.lastSeq) continue;
        const k = known.get(m.seq);
        if (k) known.delete(m.seq);
        let e = k?.event;
        if (!e) {
          try {
            e = { ...decodeEvent(m.data), seq: m.seq };
          } catch (err) {
            s.fold.warnings.push({ seq: m.seq, objectId: "", type: "", reason: errText(err) });
          }
        }
        if (e) {
          // (adds what it changed to `dirty`: fold.touched)
          foldEvent(s.fold, e, k?.id === e.objectId ? k.snapshot : undefined);
          s.at = e.at;
        }
        s.fold.lastSeq = m.seq;
        s.events++;
        schedule(flushMs);
      }
    })().catch(onError);
  }

  function schedule(ms: number): void {
    if (timer !== undefined || closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      void flush();
    }, ms);
  }

  function flush(): Promise<void> {
    if (flushing) return flushing;
    flushing = doFlush().catch((err) => {
      onError(err);
      schedule(Math.max(flushMs, 500)); // try again
    }).finally(() => (flushing = undefined));
    return flushing;
  }

  async function doFlush(): Promise<void> {
    const s = state;
    if (!s || !writing) return;
    if (!dirty.size && s.flushedSeq === s.fold.lastSeq) return;
    // Encode everything first: the records then all reflect exactly `upTo`.
    const upTo = s.fold.lastSeq;
    const meta = metaOf(s.fold, stream, s.created, s.events, s.at, writer);
    const ops: (() => Promise<void>)[] = [];
    const batch = [...dirty];
    dirty.clear();
    for (const id of batch) {
      const o = s.fold.objects.get(id);
      if (!o) continue;
      const key = recordKey(o.kind, id);
      const rev = s.revisions.get(key);
      if (stateOf(o.snapshot) === "deleted") {
        if (rev === undefined) { // never written: just forget it
          s.fold.objects.delete(id);
          continue;
        }
        ops.push(async () => {
          await jsm.streams.purge(snapshotStreamOf(stream), {
            filter: `$KV.${snapshotBucketOf(stream)}.${key}`,
          });
          s.fold.objects.delete(id);
          s.revisions.delete(key);
          counters.purged++;
        });
        continue;
      }
      const value = encodeValue(recordOf(o));
      ops.push(async () => {
        s.revisions.set(key, await put(key, value, rev));
        counters.written++;
      });
    }
    try {
      await runAll(ops, 256);
      s.metaRev = await put(META_KEY, encodeValue(meta), s.metaRev);
    } catch (err) {
      if (isWrongLastSequence(err)) {
        // Another writer wrote here: stop; whoever holds the lease now carries on.
        stop();
      } else {
        for (const id of batch) if (s.fold.objects.has(id)) dirty.add(id);
      }
      throw err;
    }
    s.flushedSeq = upTo;
    if (s.fold.warnings.length > 100) s.fold.warnings.splice(0, s.fold.warnings.length - 100);
    counters.flushes++;
    if (dirty.size) schedule(flushMs);
  }

  /**
   * Writes a key with compare-and-set on its revision (`undefined`: it must not exist; a
   * delete marker left by someone else counts as not existing).
   */
  async function put(key: string, value: Uint8Array, rev: number | undefined): Promise<number> {
    const subject = `$KV.${snapshotBucketOf(stream)}.${key}`;
    try {
      return (await publisher.publish(subject, value, { expectLastSubjectSequence: rev ?? 0 })).seq;
    } catch (err) {
      if (rev !== undefined || !isWrongLastSequence(err)) throw err;
      const m = await jsm.streams.getMessage(snapshotStreamOf(stream), { last_by_subj: subject });
      const op = m?.header?.get("KV-Operation");
      if (!m || (op !== "DEL" && op !== "PURGE")) throw err;
      return (await publisher.publish(subject, value, { expectLastSubjectSequence: m.seq })).seq;
    }
  }

  function stop(): void {
    writing = false;
    state = undefined;
    known.clear();
    dirty.clear();
    messages?.stop();
    messages = undefined;
  }

  async function acquire(): Promise<void> {
    if (closed || writing) return;
    if (!await lease.take()) return;
    writing = true;
    try {
      await begin();
    } catch (err) {
      stop();
      onError(err);
    }
  }

  const leaseTimer = setInterval(async () => {
    if (closed) return;
    if (!writing) return void acquire();
    if (!await lease.refresh()) stop();
  }, Math.max(100, Math.floor(ttl / 3)));

  await acquire();
  if (!writing) pending = undefined; // another writer: load afresh when taking over

  return {
    get writing() {
      return writing;
    },
    offer(event) {
      if (!writing || !state || event.seq <= state.fold.lastSeq) return;
      const k = known.get(event.seq);
      if (k) k.event = event;
      else known.set(event.seq, { event });
    },
    offerSnapshot(seq, id, snapshot) {
      if (!writing || !state || seq <= state.fold.lastSeq) return;
      const k = known.get(seq);
      if (k) Object.assign(k, { id, snapshot });
      else known.set(seq, { id, snapshot });
    },
    async sync(timeoutMs = 10_000) {
      if (!writing || !state) return false;
      const target = (await jsm.streams.info(stream)).state.last_seq;
      const deadline = Date.now() + timeoutMs;
      while (writing && state && state.flushedSeq < target) {
        if (Date.now() > deadline) return false;
        await new Promise((r) => setTimeout(r, 10));
      }
      return writing;
    },
    stats: () => ({ ...counters, seq: state?.flushedSeq ?? 0 }),
    async close() {
      if (closed) return;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      clearInterval(leaseTimer);
      if (writing) {
        await flushing;
        await flush().catch(() => {});
        await lease.release();
      }
      closed = true;
      stop();
      publisher.close();
    },
  };
}

/** Runs `ops` with at most `width` at a time; rejects with the first failure. */
async function runAll(ops: (() => Promise<void>)[], width: number): Promise<void> {
  let next = 0;
  let failed: unknown;
  const lane = async () => {
    while (next < ops.length && failed === undefined) {
      try {
        await ops[next++]();
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, ops.length) }, lane));
  if (failed !== undefined) throw failed;
}
