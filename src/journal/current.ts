/**
 * The current state of the journal, cheaply: the snapshot's records (snapshot.ts) plus the
 * events appended after its watermark, folded on top — O(objects + events since the
 * snapshot). Without a usable snapshot it falls back to a scan of the whole stream. Either
 * way the result equals folding every event from the first one (`cnm state --verify` and
 * the tests compare them).
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { foldEvent, type FoldState, type FoldWarning } from "./fold.ts";
import type { RecordedEvent } from "./events.ts";
import {
  readMeta,
  readRecord,
  readRecords,
  SNAPSHOT_SCHEMA,
  type SnapshotMeta,
} from "./snapshot.ts";
import { foldScan, scanStream, scanTime } from "./scan.ts";
import { readEvents, streamError } from "./watch.ts";

/** Options of {@link loadCurrent}. */
export interface CurrentOptions {
  stream?: string;
  prefix?: string;
  /** Only these kinds are needed (others are read only when the tail touches them). */
  kinds?: readonly string[];
  /** Ignore the snapshot and scan the stream. Default false. */
  noSnapshot?: boolean;
  /** Progress of a scan without a snapshot: (messages read, messages to read). */
  onProgress?: (read: number, total: number) => void;
}

/** The current fold and where it came from. */
export interface Current {
  /** Objects that are not deleted (and those the tail deleted), folded to `fold.lastSeq`. */
  fold: FoldState;
  source: "snapshot" | "stream";
  /** The snapshot's watermark (0 without one). */
  snapshotSeq: number;
  /** Events folded on top of the snapshot (or read by the scan). */
  tail: number;
  /** Messages of the stream up to `fold.lastSeq`. */
  events: number;
  /** Time of the last event, or null. */
  at: string | null;
  /** The stream's creation time. */
  created: string;
  /** KV revisions of the records read (for the snapshot writer's compare-and-set). */
  revisions: Map<string, number>;
  /** Revision of the meta read, if any. */
  metaRevision?: number;
  /**
   * From a scan of the whole stream only: the 12-character id prefixes of every object it
   * holds, deleted ones included (a snapshot keeps live objects only). Recovery judges
   * old-style kernel marks by it.
   */
  known?: Set<string>;
}

/**
 * Loads the current fold of a stream.
 *
 * @throws {NotFoundError} when the stream does not exist.
 * @throws {UnavailableError} when it cannot be read.
 */
export async function loadCurrent(
  nc: NatsConnection,
  options: CurrentOptions = {},
): Promise<Current> {
  const stream = options.stream ?? "CNM";
  const prefix = options.prefix ?? "cnm";
  const jsm = await jetstreamManager(nc);
  let info = await jsm.streams.info(stream).catch((err) => streamError(err, stream));
  const created = String(info.created);
  const found = options.noSnapshot ? undefined : await readMeta(jsm, stream, created);
  if (!found) return await scanAll(nc, stream, prefix, created, options);
  const { meta, revision } = found;
  // A sandbox's endpoints are derived from the endpoints' records (see rebuildMembers).
  const kinds = options.kinds?.includes("sandbox") && !options.kinds.includes("endpoint")
    ? [...options.kinds, "endpoint"]
    : options.kinds;
  // The snapshot is a cache of the stream: when it cannot be read (its bucket electing a
  // leader on a cluster, say), the stream itself is folded instead.
  const records = await readRecords(nc, stream, kinds).catch(() => undefined);
  if (!records) return await scanAll(nc, stream, prefix, created, options);
  // The end is read after the records, so none reflects an event past it.
  info = await jsm.streams.info(stream).catch((err) => streamError(err, stream));
  const end = info.state.last_seq;
  if (meta.seq > end || String(info.created) !== created) {
    return await scanAll(nc, stream, prefix, created, options);
  }
  const fold: FoldState = {
    objects: new Map(),
    drivers: new Map(),
    warnings: [...meta.warnings],
    lastSeq: end,
  };
  // Driver configurations are not snapshot records: their few events are folded from their
  // own subjects up to the watermark (the tail brings the rest).
  if (meta.seq > 0) {
    for await (
      const e of readEvents(nc, { stream, prefix, kinds: ["driver"], since: 1, until: meta.seq })
    ) foldEvent(fold, e);
  }
  const revisions = new Map<string, number>();
  for (const [id, r] of records) {
    fold.objects.set(id, r.object);
    revisions.set(`${r.object.kind}.${id}`, r.revision);
  }
  const tail: RecordedEvent[] = [];
  if (meta.seq < end) {
    for await (const e of readEvents(nc, { stream, prefix, since: meta.seq + 1, until: end })) {
      tail.push(e);
    }
  }
  rebuildMembers(fold);
  await applyTail(nc, jsm, { stream, prefix }, fold, tail, revisions);
  // Again: a sandbox the tail created missed the joins of endpoints whose records are newer.
  rebuildMembers(fold);
  fold.lastSeq = end;
  return {
    fold,
    source: "snapshot",
    snapshotSeq: meta.seq,
    tail: tail.length,
    events: meta.events + tail.length,
    at: tail.at(-1)?.at ?? meta.at,
    created,
    revisions,
    metaRevision: revision,
  };
}

/**
 * Sets each sandbox's `members` from the endpoints' records (in order of joining). A sandbox's
 * own record may have been written at another moment than its endpoints' (a writer stopped
 * between two records), so members are never taken from it: they follow from the endpoints,
 * and the tail's endpoint events then move them exactly as a fold from the first event does.
 */
export function rebuildMembers(fold: FoldState): void {
  for (const o of fold.objects.values()) if (o.kind === "sandbox") o.members = [];
  const joined = [...fold.objects.values()]
    .filter((o) => o.kind === "endpoint" && o.snapshot.context.sandboxId)
    .sort((a, b) => (a.joinedSeq ?? 0) - (b.joinedSeq ?? 0));
  for (const e of joined) {
    const sb = fold.objects.get(e.snapshot.context.sandboxId);
    sb?.members?.push(e.id);
    if (sb?.joins && !sb.joins.includes(e.id)) sb.joins.push(e.id);
  }
}

/**
 * Folds the events after the watermark onto the records. An object the tail touches but
 * the records do not hold is read by key (another kind than asked for); one without a
 * record whose tail ends in its deletion is dropped; anything else (a record lost) is
 * folded from its own subject's first event.
 */
async function applyTail(
  nc: NatsConnection,
  jsm: Awaited<ReturnType<typeof jetstreamManager>>,
  sel: { stream: string; prefix: string },
  fold: FoldState,
  tail: RecordedEvent[],
  revisions: Map<string, number>,
): Promise<void> {
  const firstOf = new Map<string, RecordedEvent>();
  const lastOf = new Map<string, RecordedEvent>();
  for (const e of tail) {
    if (!firstOf.has(e.objectId)) firstOf.set(e.objectId, e);
    lastOf.set(e.objectId, e);
  }
  const skip = new Set<string>();
  for (const [id, first] of firstOf) {
    if (fold.objects.has(id) || first.type === `${first.kind}.create.requested`) continue;
    if (!(["network", "endpoint", "sandbox"] as string[]).includes(first.kind)) continue;
    const r = await readRecord(jsm, sel.stream, first.kind, id);
    if (r) {
      fold.objects.set(id, r.object);
      revisions.set(`${first.kind}.${id}`, r.revision);
      continue;
    }
    const last = lastOf.get(id)!;
    if (last.type === `${last.kind}.deleted`) {
      skip.add(id);
      continue;
    }
    for await (const e of readEvents(nc, { ...sel, kinds: [first.kind], objectId: id })) {
      if (e.seq >= first.seq) break;
      foldEvent(fold, e);
    }
  }
  for (const e of tail) {
    if (skip.has(e.objectId)) continue;
    const o = fold.objects.get(e.objectId);
    if (o && e.seq <= o.lastSeq) continue;
    foldEvent(fold, e);
  }
}

async function scanAll(
  nc: NatsConnection,
  stream: string,
  prefix: string,
  created: string,
  options: CurrentOptions,
): Promise<Current> {
  const scan = await scanStream(nc, { stream, prefix, onProgress: options.onProgress });
  const fold = foldScan(scan);
  return {
    fold,
    source: "stream",
    snapshotSeq: 0,
    tail: scan.count,
    events: scan.count,
    at: scanTime(scan),
    created,
    revisions: new Map(),
    known: new Set([...scan.objects.keys()].map((id) => id.slice(0, 12))),
  };
}

/** The meta a writer records for a fold at `seq`. */
export function metaOf(
  fold: FoldState,
  stream: string,
  created: string,
  events: number,
  at: string | null,
  writer: string,
): SnapshotMeta {
  const warnings: FoldWarning[] = fold.warnings.slice(-100);
  return {
    s: SNAPSHOT_SCHEMA,
    seq: fold.lastSeq,
    events,
    at,
    stream,
    created,
    writer,
    warnings,
  };
}
