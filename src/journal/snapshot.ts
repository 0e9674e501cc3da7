/**
 * Snapshots: the folded state of every live object, kept in the JetStream KV bucket
 * `<stream>_SNAPSHOT` so that start-up and the read verbs cost O(objects + events since the
 * snapshot) instead of O(all events). The journal stays the truth: a snapshot is
 * disposable, ignored (and rebuilt by the next controller) when it is missing, written by
 * another schema, or belongs to an earlier stream of the same name.
 *
 * Keys: `<kind>.<objectId>` — one record per live object, carrying the stream sequence of
 * the object's last event it reflects; deleted objects' keys are purged. `_meta` — the
 * watermark: every event up to `seq` is reflected in the records. `_writer` — the lease of
 * the one controller that writes (snapshot_writer.ts).
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { DeliverPolicy, jetstream, type JetStreamManager } from "@nats-io/jetstream";
import { MACHINES } from "../../actors/mod.ts";
import type { Kind, RecordedEvent } from "./events.ts";
import type { FoldedObject, FoldWarning } from "./fold.ts";
import { lastSeqOf } from "./watch.ts";

/**
 * Version of the record format and of the fold that produced it. Bump it whenever a
 * machine's context or the fold changes shape: older snapshots are then ignored and rebuilt.
 */
export const SNAPSHOT_SCHEMA = 2;

/** The KV bucket of a stream's snapshot. */
export function snapshotBucketOf(stream: string): string {
  return `${stream}_SNAPSHOT`;
}

/** The JetStream stream behind the bucket. */
export function snapshotStreamOf(stream: string): string {
  return `KV_${snapshotBucketOf(stream)}`;
}

/** Key of the watermark. */
export const META_KEY = "_meta";
/** Key of the writer's lease. */
export const WRITER_KEY = "_writer";

/** The key of an object's record. */
export function recordKey(kind: string, id: string): string {
  return `${kind}.${id}`;
}

/** The watermark: everything up to `seq` is in the records. */
export interface SnapshotMeta {
  s: number;
  /** Last stream sequence reflected. */
  seq: number;
  /** Messages of the stream up to `seq`. */
  events: number;
  /** Time of the event at `seq`, or null. */
  at: string | null;
  stream: string;
  /** The stream's creation time: a re-created stream of the same name is another stream. */
  created: string;
  /** Who wrote it (`<host> pid <pid>`). */
  writer: string;
  /** Events that did not apply, up to `seq` (at most the last 100). */
  warnings: FoldWarning[];
}

/** One object's record. */
export interface SnapshotRecord {
  s: number;
  kind: Kind;
  id: string;
  host: string;
  /** Sequence of the last event reflected. */
  seq: number;
  firstSeq: number;
  events: number;
  /** The machine snapshot: top-level (or nested) state value and context. */
  value: unknown;
  context: unknown;
  /**
   * In a transient state: the intent that put it there and the snapshot before it. (A
   * sandbox's current endpoints are not stored: they follow from the endpoints' records.)
   */
  intent?: RecordedEvent;
  before?: { value: unknown; context: unknown };
  /** Sandboxes: every endpoint that ever asked to join (a set: order does not matter). */
  joins?: string[];
  /** Endpoints: sequence of the join of the current attachment (orders sandbox members). */
  joinedSeq?: number;
}

/** The record of a folded object. */
export function recordOf(o: FoldedObject): SnapshotRecord {
  return {
    s: SNAPSHOT_SCHEMA,
    kind: o.kind,
    id: o.id,
    host: o.host,
    seq: o.lastSeq,
    firstSeq: o.firstSeq,
    events: o.events,
    value: o.snapshot.value,
    context: o.snapshot.context,
    ...(o.intent ? { intent: o.intent } : {}),
    ...(o.before ? { before: { value: o.before.value, context: o.before.context } } : {}),
    ...(o.joins ? { joins: o.joins } : {}),
    ...(o.joinedSeq !== undefined ? { joinedSeq: o.joinedSeq } : {}),
  };
}

/** A folded object from its record, or undefined when the record is not one of ours. */
export function foldedOf(r: SnapshotRecord): FoldedObject | undefined {
  const machine = MACHINES[r?.kind];
  if (!machine || r.s !== SNAPSHOT_SCHEMA || typeof r.id !== "string") return undefined;
  if (typeof r.seq !== "number" || !r.context || r.value === undefined) return undefined;
  const resolve = (v: { value: unknown; context: unknown }) =>
    machine.resolveState({ value: v.value as never, context: v.context as never });
  return {
    kind: r.kind,
    id: r.id,
    host: r.host,
    snapshot: resolve(r),
    lastSeq: r.seq,
    firstSeq: r.firstSeq,
    events: r.events,
    ...(r.intent ? { intent: r.intent } : {}),
    ...(r.intent?.type === `${r.kind}.create.requested` ? { createIntent: r.intent } : {}),
    ...(r.before ? { before: resolve(r.before) } : {}),
    ...(r.kind === "sandbox" ? { members: [] } : {}), // set from the endpoints (current.ts)
    ...(r.joins ? { joins: [...r.joins] } : {}),
    ...(r.joinedSeq !== undefined ? { joinedSeq: r.joinedSeq } : {}),
  };
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Encodes a record or the meta as a KV value. */
export function encodeValue(v: SnapshotRecord | SnapshotMeta): Uint8Array {
  return enc.encode(JSON.stringify(v));
}

/** Decodes a KV value; undefined when it is not JSON. */
export function decodeValue<T>(data: Uint8Array): T | undefined {
  try {
    return JSON.parse(dec.decode(data)) as T;
  } catch {
    return undefined;
  }
}

/**
 * The meta, when a snapshot of this schema exists for this stream; else undefined.
 * `created` is the stream's creation time.
 */
export async function readMeta(
  jsm: JetStreamManager,
  stream: string,
  created: string,
): Promise<{ meta: SnapshotMeta; revision: number } | undefined> {
  const bucket = snapshotBucketOf(stream);
  try {
    const m = await jsm.streams.getMessage(snapshotStreamOf(stream), {
      last_by_subj: `$KV.${bucket}.${META_KEY}`,
    });
    if (!m || !m.data.length) return undefined;
    const meta = decodeValue<SnapshotMeta>(m.data);
    if (!meta || meta.s !== SNAPSHOT_SCHEMA || meta.stream !== stream) return undefined;
    if (meta.created !== created) return undefined;
    return { meta, revision: m.seq };
  } catch {
    return undefined; // no bucket, or no meta: no snapshot
  }
}

/** A record read from the bucket, with the KV revision it has there. */
export interface StoredRecord {
  object: FoldedObject;
  revision: number;
}

/**
 * Reads the records of `kinds` (default all) with one ordered consumer, last value per key.
 * Records that are not ours (another schema, garbage) are left out.
 */
export async function readRecords(
  nc: NatsConnection,
  stream: string,
  kinds?: readonly string[],
): Promise<Map<string, StoredRecord>> {
  const bucket = snapshotBucketOf(stream);
  const out = new Map<string, StoredRecord>();
  const filter = kinds?.length === 1 ? `$KV.${bucket}.${kinds[0]}.*` : `$KV.${bucket}.*.*`;
  // The last record delivered is the newest on the filter (a pending count may be off).
  const end = await lastSeqOf(nc, snapshotStreamOf(stream), filter);
  if (!end) return out;
  const consumer = await jetstream(nc).consumers.get(snapshotStreamOf(stream), {
    filter_subjects: filter,
    deliver_policy: DeliverPolicy.LastPerSubject,
  });
  try {
    const messages = await consumer.consume({ max_messages: 512 });
    try {
      for await (const m of messages) {
        const op = m.headers?.get("KV-Operation");
        if (!op && m.data.length) {
          const r = decodeValue<SnapshotRecord>(m.data);
          const o = r && (!kinds || kinds.includes(r.kind)) ? foldedOf(r) : undefined;
          if (o) out.set(o.id, { object: o, revision: m.seq });
        }
        if (m.seq >= end) break;
      }
    } finally {
      messages.stop();
    }
  } finally {
    await consumer.delete().catch(() => {});
  }
  return out;
}

/** One record by key, with its revision; undefined when absent. */
export async function readRecord(
  jsm: JetStreamManager,
  stream: string,
  kind: string,
  id: string,
): Promise<StoredRecord | undefined> {
  try {
    const m = await jsm.streams.getMessage(snapshotStreamOf(stream), {
      last_by_subj: `$KV.${snapshotBucketOf(stream)}.${recordKey(kind, id)}`,
    });
    if (!m || !m.data.length) return undefined;
    const r = decodeValue<SnapshotRecord>(m.data);
    const object = r ? foldedOf(r) : undefined;
    return object ? { object, revision: m.seq } : undefined;
  } catch {
    return undefined;
  }
}
