/**
 * Reading the journal from any process: a live, resumable {@link watch} of validated events,
 * and {@link readEvents}, a bounded read up to the end of the stream as it was when called.
 * Neither needs a controller; both use an ordered consumer of their own.
 *
 * @module
 */

import { guardedConnect, isAuthFailure, NatsAuthError, streamError } from "./nats_errors.ts";
export { streamError } from "./nats_errors.ts";
import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import {
  type ConsumerMessages,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import { resolvePoint } from "./points.ts";
import { Observable } from "rxjs";
import { decodeEvent, type RecordedEvent } from "./events.ts";
import { UnavailableError } from "../errors.ts";

/** Connect options for a connection of our own, or a connection to borrow (never closed). */
export type NatsTarget = ConnectionOptions | NatsConnection;

/** NATS could not be reached at all (the CLI exits with 3). */
export class NatsUnreachableError extends UnavailableError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NatsUnreachableError";
  }
}

/** True when `t` is a live connection rather than connect options. */
export function isConnection(t: NatsTarget): t is NatsConnection {
  return typeof (t as NatsConnection).request === "function" &&
    typeof (t as NatsConnection).close === "function";
}

/** A connection and whether we must close it. */
export interface Borrowed {
  nc: NatsConnection;
  release(): Promise<void>;
}

/**
 * Connects (or borrows the given connection).
 *
 * @throws {NatsUnreachableError} when nobody answers at the given servers.
 */
export async function borrowConnection(target: NatsTarget): Promise<Borrowed> {
  if (isConnection(target)) return { nc: target, release: () => Promise.resolve() };
  let nc: NatsConnection;
  try {
    nc = await guardedConnect(() =>
      connect({ timeout: 5000, maxReconnectAttempts: -1, ...target })
    );
  } catch (err) {
    const servers = String(target.servers ?? "127.0.0.1:4222");
    if (isAuthFailure(err)) {
      throw new NatsAuthError(
        `NATS at ${servers} refused the credentials: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    throw new NatsUnreachableError(
      `cannot connect to NATS at ${servers}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return { nc, release: () => nc.close().catch(() => {}) };
}

/** Where a read or watch starts: a stream sequence, or a time (ISO-8601 or Date). */
export type StreamPoint = number | string | Date;

/** Which part of the stream to read. */
export interface StreamSelection {
  /** Stream name. Default `CNM`. */
  stream?: string;
  /** Subject prefix. Default `cnm`. */
  prefix?: string;
  /** Only these kinds (`network`, `endpoint`, `sandbox`, `driver`, `host`, …). Default: all. */
  kinds?: string[];
  /** Only this object's events. */
  objectId?: string;
  /**
   * Called for a message whose payload is not a valid event; the message is skipped.
   * Default: the read fails with the validation error.
   */
  onInvalid?: (error: Error, seq: number) => void;
}

/**
 * The one filter subject a selection needs (nats-server 2.9 takes one per consumer). A kind
 * takes `<prefix>.<kind>.>`, since an objectId may hold dots (`driver`: `<hostId>.<driver>`).
 */
export function filterSubject(sel: StreamSelection): string {
  const prefix = sel.prefix ?? "cnm";
  const kind = sel.kinds?.length === 1 ? sel.kinds[0] : "*";
  if (sel.objectId) return `${prefix}.${kind}.${sel.objectId}`;
  return kind === "*" ? `${prefix}.>` : `${prefix}.${kind}.>`;
}

function consumerStart(since: StreamPoint | undefined): Record<string, unknown> {
  if (since === undefined) return { deliver_policy: DeliverPolicy.New };
  if (typeof since === "number") {
    return { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, since) };
  }
  const time = since instanceof Date ? since : new Date(since);
  if (Number.isNaN(time.getTime())) throw new TypeError(`invalid time ${String(since)}`);
  return { deliver_policy: DeliverPolicy.StartTime, opt_start_time: time.toISOString() };
}

function decode(
  m: JsMsg,
  sel: StreamSelection,
): RecordedEvent | undefined {
  let event: RecordedEvent;
  try {
    event = { ...decodeEvent(m.data), seq: m.seq };
  } catch (err) {
    if (!sel.onInvalid) throw err;
    sel.onInvalid(err as Error, m.seq);
    return undefined;
  }
  if (sel.kinds && sel.kinds.length > 1 && !sel.kinds.includes(event.kind)) return undefined;
  return event;
}

async function openConsumer(
  nc: NatsConnection,
  sel: StreamSelection,
  start: StreamPoint | undefined,
) {
  const stream = sel.stream ?? "CNM";
  const js = jetstream(nc, { timeout: 10_000 });
  try {
    return await js.consumers.get(stream, {
      filter_subjects: filterSubject(sel),
      ...consumerStart(start),
    });
  } catch (err) {
    streamError(err, stream);
  }
}

/** Options of {@link watch}. */
export interface WatchOptions extends StreamSelection {
  /** Connect options (a connection of its own, closed on unsubscribe) or a connection to borrow. */
  nats: NatsTarget;
  /** Start at this sequence or time. Default: only events appended after subscribing. */
  since?: StreamPoint;
}

/**
 * Follows the journal: an Observable of validated events in stream order, from `since` on,
 * live. Events of unknown (future) types arrive with their envelope checked. Unsubscribing
 * stops the consumer and closes the connection it opened.
 *
 * @example
 * ```ts ignore
 * const sub = watch({ nats: { servers: "127.0.0.1:4222" }, kinds: ["endpoint"], since: 1 })
 *   .subscribe((e) => console.log(e.seq, e.type, e.objectId));
 * // later
 * sub.unsubscribe();
 * ```
 */
export function watch(options: WatchOptions): Observable<RecordedEvent> {
  return new Observable<RecordedEvent>((subscriber) => {
    let closed = false;
    let messages: ConsumerMessages | undefined;
    let borrowed: Borrowed | undefined;
    let deleteConsumer: (() => Promise<unknown>) | undefined;
    (async () => {
      borrowed = await borrowConnection(options.nats);
      if (closed) return;
      // A concrete start sequence, so the ordered consumer, recreated after NATS restarts,
      // resumes after the last event delivered — or at "now" when none was delivered yet.
      const start = await startSequence(borrowed.nc, options, options.since);
      if (closed) return;
      const consumer = await openConsumer(borrowed.nc, options, start);
      deleteConsumer = () => consumer.delete().catch(() => {});
      if (closed) return;
      messages = await consumer.consume({ max_messages: 1024 });
      for await (const m of messages) {
        if (closed) break;
        const event = decode(m, options);
        if (event) subscriber.next(event);
      }
    })().then(
      () => !closed && subscriber.complete(),
      (err) => !closed && subscriber.error(err),
    );
    return () => {
      closed = true;
      messages?.stop();
      const b = borrowed;
      (async () => {
        await deleteConsumer?.();
        await b?.release();
      })();
    };
  });
}

/**
 * The first sequence a watch delivers: `since` as a sequence, the first event at or after
 * `since` as a time, or the one after the current end ("now").
 */
async function startSequence(
  nc: NatsConnection,
  sel: StreamSelection,
  since: StreamPoint | undefined,
): Promise<number> {
  if (typeof since === "number") return Math.max(1, since);
  const stream = sel.stream ?? "CNM";
  if (since === undefined) {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(stream).catch((err) => streamError(err, stream));
    return info.state.last_seq + 1;
  }
  const t = new Date(since);
  if (Number.isNaN(t.getTime())) throw new TypeError(`invalid time ${String(since)}`);
  return await resolvePoint(nc, sel, new Date(t.getTime() - 1)) + 1;
}

/**
 * The sequence of the last message of `stream` on `filter` (a subject, wildcards allowed),
 * 0 when there is none. Bounded reads end there, not when a message says nothing is
 * pending: nats-server 2.9.10 miscounts a wildcard filter's pending from some start
 * sequences (measured: 21 messages on `p.>`, from sequence 7 it reports 19 pending of 15),
 * so a read ending on `pending === 0` stops early or waits.
 *
 * @throws {NotFoundError} when the stream does not exist; {@link UnavailableError} when it
 *   cannot be read.
 */
export async function lastSeqOf(
  nc: NatsConnection,
  stream: string,
  filter: string,
): Promise<number> {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  try {
    const m = await jsm.streams.getMessage(stream, { last_by_subj: filter });
    return m?.seq ?? 0;
  } catch (err) {
    if (/no message found/i.test((err as Error).message)) return 0;
    streamError(err, stream);
  }
}

/** Options of {@link readEvents}. */
export interface ReadOptions extends StreamSelection {
  /** First sequence or time to deliver. Default: the first event. */
  since?: StreamPoint;
  /** Last sequence (inclusive) or time (events with `at` after it are not read). */
  until?: number | string | Date;
  /** Called every 1024 messages with (messages read, messages to read at most). */
  onProgress?: (seq: number, last: number) => void;
  /** Messages per pull. Default 4096. */
  batch?: number;
}

/**
 * Reads validated events in stream order, from `since` up to the end of the stream as it
 * was when called (or `until`), then returns. Ends the consumer it created.
 *
 * @throws {NotFoundError} when the stream does not exist.
 */
export async function* readEvents(
  nc: NatsConnection,
  options: ReadOptions = {},
): AsyncGenerator<RecordedEvent> {
  const untilSeq = typeof options.until === "number" ? options.until : Infinity;
  const untilTime = options.until === undefined || typeof options.until === "number"
    ? Infinity
    : new Date(options.until).getTime();
  if (Number.isNaN(untilTime)) throw new TypeError(`invalid time ${String(options.until)}`);
  const end = Math.min(
    untilSeq,
    await lastSeqOf(nc, options.stream ?? "CNM", filterSubject(options)),
  );
  // A time becomes the sequence of its first event, so the end is known either way.
  const first = await startSequence(nc, options, options.since ?? 1);
  if (end < first) return;
  const consumer = await openConsumer(nc, options, first);
  const total = end - first + 1;
  let read = 0;
  const messages = await consumer.consume({ max_messages: options.batch ?? 4096 });
  try {
    for await (const m of messages) {
      if (m.seq > end) break;
      const event = decode(m, options);
      if (event && untilTime !== Infinity && Date.parse(event.at) > untilTime) break;
      if (options.onProgress && (++read & 1023) === 0) options.onProgress(read, total);
      if (event) yield event;
      if (m.seq >= end) break;
    }
  } finally {
    messages.stop();
    await consumer.delete().catch(() => {});
  }
}
