/**
 * The stream grouped by object without decoding payloads: one ordered consumer over the
 * whole prefix, messages bucketed by the object in their subject. Folding only the objects
 * that are not finally deleted is what makes time travel (and a rebuild without a snapshot)
 * fast; `cnm state --verify` folds everything instead.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { MACHINES } from "../../actors/mod.ts";
import { decodeEvent, DRIVER_KIND, type RecordedEvent, splitSubject } from "./events.ts";
import { emptyFold, foldEvent, type FoldState } from "./fold.ts";
import { lastSeqOf, streamError } from "./watch.ts";

/** One object's raw messages, in stream order, not yet decoded. */
export interface RawObject {
  kind: string;
  id: string;
  seqs: number[];
  data: Uint8Array[];
}

/** The stream grouped by object (by subject), without decoding payloads. */
export interface Scan {
  /** Objects of known kinds, in order of their first message. */
  objects: Map<string, RawObject>;
  /** Messages read (all kinds). */
  count: number;
  /** Highest sequence read. */
  lastSeq: number;
  /** The last message read. */
  last?: { seq: number; data: Uint8Array };
}

/** Decodes and validates message `i` of a raw object. */
export function decodeAt(o: RawObject, i: number): RecordedEvent {
  return { ...decodeEvent(o.data[i]), seq: o.seqs[i] };
}

/** Where a scan reads. */
export interface ScanOptions {
  stream?: string;
  prefix?: string;
  /** Last sequence to read (inclusive). Default: the end of the stream. */
  until?: number;
  onProgress?: (read: number, total: number) => void;
}

/**
 * Reads the stream up to `until` with an ordered consumer and groups messages by the
 * object in their subject (`<prefix>.<kind>.<objectId>`). Payloads stay undecoded.
 *
 * @throws {NotFoundError} when the stream does not exist.
 */
export async function scanStream(nc: NatsConnection, options: ScanOptions = {}): Promise<Scan> {
  const stream = options.stream ?? "CNM";
  const prefix = options.prefix ?? "cnm";
  const until = options.until ?? Infinity;
  const scan: Scan = { objects: new Map(), count: 0, lastSeq: 0 };
  // The end is the last message's sequence, not a pending count (see lastSeqOf).
  const end = Math.min(until, await lastSeqOf(nc, stream, `${prefix}.>`));
  if (end < 1) return scan;
  const consumer = await jetstream(nc).consumers.get(stream, { filter_subjects: `${prefix}.>` })
    .catch((err) => streamError(err, stream));
  try {
    const total = end;
    const messages = await consumer.consume({ max_messages: 4096 });
    try {
      for await (const m of messages) {
        if (m.seq > end) break;
        scan.count++;
        scan.lastSeq = m.seq;
        scan.last = m;
        // An objectId may hold dots (the driver kind's `<hostId>.<driver>`): the kind is the
        // token after the prefix.
        const { kind, id } = splitSubject(m.subject, prefix);
        if (kind in MACHINES || kind === DRIVER_KIND) {
          const o = scan.objects.get(id);
          if (o) {
            o.seqs.push(m.seq);
            o.data.push(m.data);
          } else scan.objects.set(id, { kind, id, seqs: [m.seq], data: [m.data] });
        }
        if (options.onProgress && (scan.count & 1023) === 0) options.onProgress(scan.count, total);
        if (m.seq >= end) break;
      }
    } finally {
      messages.stop();
    }
  } finally {
    await consumer.delete().catch(() => {});
  }
  if (scan.last) scan.last = { seq: scan.last.seq, data: scan.last.data };
  return scan;
}

/**
 * Folds a scan: every object, or (by default) only those whose last event is not their
 * `<kind>.deleted` — those are skipped without decoding. Sandboxes are folded before
 * endpoints, so an endpoint's join finds its sandbox (fold.ts keeps `members`).
 */
export function foldScan(scan: Scan, options: { includeDeleted?: boolean } = {}): FoldState {
  const fold = emptyFold();
  const objects = [...scan.objects.values()];
  const ordered = [
    ...objects.filter((o) => o.kind !== "endpoint"),
    ...objects.filter((o) => o.kind === "endpoint"),
  ];
  for (const o of ordered) {
    const n = o.seqs.length;
    const last = decodeAt(o, n - 1);
    if (!options.includeDeleted && last.type === `${last.kind}.deleted` && last.to === "deleted") {
      continue;
    }
    for (let i = 0; i < n - 1; i++) foldEvent(fold, decodeAt(o, i));
    foldEvent(fold, last);
  }
  fold.lastSeq = scan.lastSeq;
  fold.warnings.sort((a, b) => a.seq - b.seq);
  return fold;
}

/** The time of the last message of a scan, or null. */
export function scanTime(scan: Scan): string | null {
  return scan.last ? decodeEvent(scan.last.data).at : null;
}
