/**
 * The snapshot writer: follows the whole stream (every host's events, imports, anything
 * appended), folds each event onto the records it holds, and flushes what changed to the
 * `<stream>_SNAPSHOT` bucket every `flushMs` — records first, then the watermark. One
 * writer per stream at a time, by a lease in the bucket: every controller runs one, the
 * others stand by and take over when the holder's lease lapses. Every record and the
 * watermark are written with compare-and-set on their KV revision, so a writer that lost
 * its lease can never overwrite a newer record with an older one.
 *
 * Asynchronous by design: commands never wait for it. Readers stay exact whatever its lag,
 * because they fold the events after the watermark themselves (current.ts).
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import type { KV } from "@nats-io/kv";
import { jetstreamManager } from "@nats-io/jetstream";
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
  WRITER_KEY,
} from "./snapshot.ts";
import { errText } from "../errors.ts";
import { isWrongLastSequence } from "./journal.ts";
import { readEvents } from "./watch.ts";
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

const enc = new TextEncoder();
const dec = new TextDecoder();
/** How often an idle writer looks for events others appended. */
const POLL_MS = 1000;

interface LeaseValue {
  instance: string;
  host: string;
  pid: number;
  expiresAt: string;
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
  const instance = crypto.randomUUID();
  const writer = `${options.hostId} pid ${Deno.pid}`;
  const kv: KV = await new Kvm(nc).create(snapshotBucketOf(stream), { history: 1 });
  const jsm = await jetstreamManager(nc);
  const publisher = createPublisher(nc, 10_000);

  let closed = false;
  let writing = false;
  let leaseRev = 0;
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
  let gapSince: number | undefined;
  let closing = false;
  let lastPoll = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let flushing: Promise<void> | undefined;
  const counters = { flushes: 0, written: 0, purged: 0 };
  let pending = initial;

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
    lastPoll = 0; // look for what was appended meanwhile at the first tick
    schedule(0);
  }

  /** Applies event `seq` (known, or read) to the fold; the fold then covers `seq`. */
  function apply(s: NonNullable<typeof state>, seq: number, e?: RecordedEvent, snapshot?: unknown) {
    if (e) {
      // (adds what it changed to `dirty`: fold.touched)
      foldEvent(s.fold, e, snapshot);
      s.at = e.at;
    }
    s.fold.lastSeq = seq;
    s.events++;
  }

  /** Applies the known events that follow the fold without a gap. */
  function advance(s: NonNullable<typeof state>): void {
    for (let k = known.get(s.fold.lastSeq + 1); k; k = known.get(s.fold.lastSeq + 1)) {
      known.delete(s.fold.lastSeq + 1);
      apply(s, s.fold.lastSeq + 1, k.event, k.id === k.event?.objectId ? k.snapshot : undefined);
    }
  }

  /**
   * Reads the events `from..to` this process did not append (another host's, an import's)
   * and applies them with the known ones, in order.
   */
  async function fill(s: NonNullable<typeof state>, from: number, to: number): Promise<void> {
    const read = new Map<number, RecordedEvent | undefined>();
    if (to - from < 64) {
      await Promise.all(Array.from({ length: to - from + 1 }, async (_, i) => {
        const m = await jsm.direct.getMessage(stream, { seq: from + i }).catch(() => null);
        read.set(from + i, m ? decodeOr(s, m.data, from + i) : undefined);
      }));
    } else {
      for await (const e of readEvents(nc, { stream, prefix, since: from, until: to, onInvalid })) {
        read.set(e.seq, e);
      }
    }
    for (let seq = from; seq <= to && s.fold.lastSeq < seq; seq++) {
      const k = known.get(seq);
      known.delete(seq);
      const e = k?.event ?? read.get(seq);
      apply(s, seq, e, k && e && k.id === e.objectId ? k.snapshot : undefined);
    }
    advance(s);
  }

  const onInvalid = (err: Error, seq: number) =>
    state?.fold.warnings.push({ seq, objectId: "", type: "", reason: errText(err) });

  function decodeOr(s: NonNullable<typeof state>, data: Uint8Array, seq: number) {
    try {
      return { ...decodeEvent(data), seq };
    } catch (err) {
      s.fold.warnings.push({ seq, objectId: "", type: "", reason: errText(err) });
      return undefined;
    }
  }

  /**
   * One step of following the stream: apply what this process appended; fill gaps (events of
   * others) and, when nothing is known, look at the stream's end once a second; then flush.
   * The stream is read only for what this process did not append itself.
   */
  async function tick(final = false): Promise<void> {
    const s = state;
    if (!s || !writing) return;
    advance(s);
    if (final) {
      const end = (await jsm.streams.info(stream)).state.last_seq;
      if (end > s.fold.lastSeq) await fill(s, s.fold.lastSeq + 1, end);
    } else if (known.size) {
      let first = Infinity;
      for (const seq of known.keys()) if (seq < first) first = seq;
      // A gap that outlived a flush interval: someone else appended there.
      if (
        first > s.fold.lastSeq + 1 && gapSince !== undefined && Date.now() - gapSince >= flushMs
      ) {
        await fill(s, s.fold.lastSeq + 1, first - 1);
        gapSince = undefined;
      } else if (first > s.fold.lastSeq + 1) gapSince ??= Date.now();
    } else if (Date.now() - lastPoll >= POLL_MS) {
      lastPoll = Date.now();
      const end = (await jsm.streams.info(stream)).state.last_seq;
      if (end > s.fold.lastSeq) await fill(s, s.fold.lastSeq + 1, end);
    }
    await doFlush();
  }

  function schedule(ms: number): void {
    if (timer !== undefined || closed || closing) return;
    timer = setTimeout(() => {
      timer = undefined;
      void flush();
    }, ms);
  }

  /** Runs one tick (at most one at a time), then schedules the next. */
  function flush(final = false): Promise<void> {
    if (flushing) return flushing;
    flushing = tick(final).catch((err) => {
      onError(err);
    }).finally(() => {
      flushing = undefined;
      if (writing && !closed) schedule(known.size || dirty.size ? flushMs : POLL_MS);
    });
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
  }

  async function acquire(): Promise<void> {
    if (closed || writing) return;
    if (!await tryLease()) return;
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
    try {
      leaseRev = await kv.update(WRITER_KEY, leaseValue(), leaseRev);
    } catch {
      const e = await kv.get(WRITER_KEY).catch(() => undefined);
      const cur = e?.value.length ? JSON.parse(dec.decode(e.value)) as LeaseValue : undefined;
      if (cur && cur.instance !== instance) stop();
      else if (e && cur?.instance === instance) leaseRev = e.revision;
    }
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
      schedule(flushMs);
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
      lastPoll = 0; // look at the stream's end at the next tick
      schedule(0);
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
      closing = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      clearInterval(leaseTimer);
      if (writing) {
        await flushing;
        await flush(true).catch(() => {});
        await kv.delete(WRITER_KEY, { previousSeq: leaseRev }).catch(() => {});
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
