/**
 * The journal: one JetStream stream, one subject per object, one message per transition.
 * Appends use `msgID` (= eventId) for dedup and `expect.lastSubjectSequence` so only one
 * writer can extend an object's history. Reads validate every payload.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import {
  DeliverPolicy,
  jetstream,
  type JetStreamClient,
  type JetStreamManager,
  jetstreamManager,
  StorageType,
} from "@nats-io/jetstream";
import {
  type CnmEvent,
  decodeEvent,
  encodeEvent,
  type RecordedEvent,
  subjectOf,
} from "./events.ts";
import { ConflictError, errText, UnavailableError } from "../errors.ts";
import { type Current, type CurrentOptions, loadCurrent } from "./current.ts";
import { createPublisher } from "./publisher.ts";
import { lastSeqOf } from "./watch.ts";

/** Options of {@link openJournal}. */
export interface JournalOptions {
  /** Stream name. Default `CNM`. */
  stream?: string;
  /** Subject prefix. Default `cnm`. */
  prefix?: string;
  /** Milliseconds to wait for one PubAck. Default 4000. */
  publishTimeoutMs?: number;
  /** Create the stream when missing. Default true. */
  create?: boolean;
  /** Replicas of a stream created here (JetStream cluster). Default 1. */
  replicas?: number;
}

/** Result of an append. */
export interface AppendResult {
  seq: number;
  duplicate: boolean;
}

/** Where a read starts. */
export interface ReadFrom {
  /** First stream sequence to deliver. */
  seq?: number;
  /** First time to deliver (ISO-8601 or Date). */
  time?: string | Date;
  /** Only this subject (e.g. one object's). Default: the whole prefix. */
  subject?: string;
}

/** The event store. */
export interface Journal {
  readonly stream: string;
  readonly prefix: string;
  /** Appends one event; `expectSeq` is the stream sequence of the object's last event (0 = none). */
  append(event: CnmEvent, expectSeq: number): Promise<AppendResult>;
  /** Reads validated events in stream order up to the end at the time of the call. */
  read(from?: ReadFrom): AsyncGenerator<RecordedEvent>;
  /** The last event of one object, or undefined. */
  last(kind: string, objectId: string): Promise<RecordedEvent | undefined>;
  /** Sequence of the newest message in the stream (0 when empty). */
  lastSeq(): Promise<number>;
  /**
   * Follows the stream live from sequence `fromSeq` on: every validated event in stream
   * order, across reconnects (an ordered consumer recreates itself at the next sequence).
   * Invalid payloads are skipped and reported to `onInvalid`. Ends when `stop()` is called.
   */
  follow(
    fromSeq: number,
    onInvalid?: (err: Error, seq: number) => void,
    onError?: (err: unknown) => void,
  ): Follower;
  /** The current fold: the snapshot plus the events after it (see current.ts). */
  current(options?: Omit<CurrentOptions, "stream" | "prefix">): Promise<Current>;
  /** The connection the journal uses. */
  readonly nc: NatsConnection;
  /** Fails appends still waiting for their PubAck (the connection stays open). */
  close(): void;
}

/** A live follower of the stream. */
export interface Follower extends AsyncIterable<RecordedEvent> {
  /** Stops following; the iteration ends. */
  stop(): void;
}

/** The stream setting every cnm stream gets. */
export function streamConfig(stream: string, prefix: string, replicas = 1) {
  return {
    name: stream,
    num_replicas: replicas,
    subjects: [`${prefix}.>`],
    storage: StorageType.File,
    duplicate_window: 120_000_000_000, // 2 minutes, in nanoseconds
    deny_delete: true,
    deny_purge: true,
    allow_direct: true,
  };
}

/**
 * Opens (and by default creates) the stream.
 *
 * @throws {UnavailableError} when JetStream is not enabled on the server.
 * @throws {ConflictError} when the stream exists with subjects that do not cover the prefix.
 */
export async function openJournal(
  nc: NatsConnection,
  options: JournalOptions = {},
): Promise<Journal> {
  const stream = options.stream ?? "CNM";
  const prefix = options.prefix ?? "cnm";
  const timeout = options.publishTimeoutMs ?? 4000;
  let jsm: JetStreamManager;
  try {
    jsm = await jetstreamManager(nc, { timeout });
  } catch (err) {
    throw new UnavailableError(
      `JetStream is not enabled on the NATS server (start nats-server with -js): ${errText(err)}`,
      { cause: err },
    );
  }
  await ensureStream(jsm, stream, prefix, options.create ?? true, options.replicas ?? 1);
  const js = jetstream(nc, { timeout });
  return createJournal(nc, js, jsm, stream, prefix, timeout);
}

async function ensureStream(
  jsm: JetStreamManager,
  stream: string,
  prefix: string,
  create: boolean,
  replicas: number,
) {
  try {
    const info = await jsm.streams.info(stream);
    const want = `${prefix}.>`;
    if (!info.config.subjects?.some((s) => s === want || s === ">")) {
      throw new ConflictError(
        `stream ${stream} exists with subjects ${JSON.stringify(info.config.subjects)}, ` +
          `which do not include ${want}`,
      );
    }
  } catch (err) {
    if (err instanceof ConflictError) throw err;
    if (!isStreamNotFound(err)) {
      throw new UnavailableError(`cannot read stream ${stream}: ${errText(err)}`, { cause: err });
    }
    if (!create) throw new UnavailableError(`stream ${stream} does not exist`, { cause: err });
    try {
      await jsm.streams.add(streamConfig(stream, prefix, replicas));
    } catch (addErr) {
      // Another process may have created it between info and add.
      try {
        await jsm.streams.info(stream);
      } catch {
        throw new UnavailableError(`cannot create stream ${stream}: ${errText(addErr)}`, {
          cause: addErr,
        });
      }
    }
  }
}

function isStreamNotFound(err: unknown): boolean {
  const e = err as { name?: string; code?: number; message?: string };
  return e?.name === "StreamNotFoundError" || e?.code === 10059 ||
    /stream not found/i.test(String(e?.message));
}

/** True for the server's "wrong last sequence" answer (definitely not stored). */
export function isWrongLastSequence(err: unknown): boolean {
  const e = err as { code?: number; message?: string };
  return e?.code === 10071 || e?.code === 10164 || /wrong last sequence/i.test(String(e?.message));
}

function createJournal(
  nc: NatsConnection,
  js: JetStreamClient,
  jsm: JetStreamManager,
  stream: string,
  prefix: string,
  timeout: number,
): Journal {
  const publisher = createPublisher(nc, timeout);
  return {
    stream,
    prefix,
    nc,
    close: () => publisher.close(),
    current: (options = {}) => loadCurrent(nc, { ...options, stream, prefix }),
    async append(event, expectSeq) {
      const subject = subjectOf(prefix, event.kind, event.objectId);
      try {
        const ack = await publisher.publish(subject, encodeEvent(event), {
          msgId: event.eventId,
          expectLastSubjectSequence: expectSeq,
          expectStream: stream,
          headers: { "Cnm-Type": event.type, "Cnm-Kind": event.kind },
        });
        return { seq: ack.seq, duplicate: ack.duplicate };
      } catch (err) {
        if (isWrongLastSequence(err)) {
          throw new ConflictError(
            `another writer changed ${event.kind} ${event.objectId} (expected last sequence ${expectSeq})`,
            { cause: err },
          );
        }
        throw new UnavailableError(`journal unavailable: ${errText(err)}`, { cause: err });
      }
    },
    async *read(from = {}) {
      const filter = from.subject ?? `${prefix}.>`;
      // The end is the last message on the filter, not a pending count (see lastSeqOf).
      let end;
      try {
        end = await lastSeqOf(nc, stream, filter);
      } catch (err) {
        throw new UnavailableError(`journal unavailable: ${errText(err)}`, { cause: err });
      }
      if (end === 0) return;
      if (from.seq !== undefined && from.seq > end) return;
      const opts: Record<string, unknown> = { filter_subjects: filter };
      if (from.seq !== undefined) {
        opts.deliver_policy = DeliverPolicy.StartSequence;
        opts.opt_start_seq = from.seq;
      } else if (from.time !== undefined) {
        opts.deliver_policy = DeliverPolicy.StartTime;
        opts.opt_start_time = new Date(from.time).toISOString();
      }
      const consumer = await js.consumers.get(stream, opts);
      const messages = await consumer.consume({ max_messages: 1024 });
      try {
        for await (const m of messages) {
          yield { ...decodeEvent(m.data), seq: m.seq };
          if (m.seq >= end) break;
        }
      } finally {
        messages.stop();
        await consumer.delete().catch(() => {});
      }
    },
    async last(kind, objectId) {
      try {
        const m = await jsm.streams.getMessage(stream, {
          last_by_subj: subjectOf(prefix, kind, objectId),
        });
        if (!m) return undefined;
        return { ...decodeEvent(m.data), seq: m.seq };
      } catch (err) {
        if (/no message found|not found/i.test(errText(err))) return undefined;
        throw new UnavailableError(`journal unavailable: ${errText(err)}`, { cause: err });
      }
    },
    async lastSeq() {
      const info = await jsm.streams.info(stream);
      return info.state.last_seq;
    },
    follow(fromSeq, onInvalid, onError) {
      let stopped = false;
      let messages: { stop(): void } | undefined;
      return {
        stop() {
          stopped = true;
          messages?.stop();
        },
        async *[Symbol.asyncIterator]() {
          while (!stopped) {
            try {
              const consumer = await js.consumers.get(stream, {
                filter_subjects: `${prefix}.>`,
                deliver_policy: DeliverPolicy.StartSequence,
                opt_start_seq: Math.max(1, fromSeq),
              });
              // Short heartbeats: a consumer lost with a JetStream leader is noticed in seconds.
              const it = await consumer.consume({
                max_messages: 1024,
                expires: 5000,
                idle_heartbeat: 1000,
              });
              messages = it;
              if (stopped) it.stop();
              // The watchdog: the stream has events the follower has not delivered for two
              // looks in a row (its consumer went with a leader, or stalled): start it anew
              // at the next sequence. Ordered delivery makes the restart seamless.
              let lagging = 0;
              let seen = fromSeq;
              const watchdog = setInterval(async () => {
                try {
                  const last = (await jsm.streams.info(stream)).state.last_seq;
                  lagging = last >= fromSeq && fromSeq === seen ? lagging + 1 : 0;
                  seen = fromSeq;
                  if (lagging >= 2) it.stop();
                } catch { /* the server is busy or unreachable: look again */ }
              }, 1000);
              Deno.unrefTimer(watchdog);
              try {
                for await (const m of it) {
                  fromSeq = m.seq + 1;
                  let event: RecordedEvent;
                  try {
                    event = { ...decodeEvent(m.data), seq: m.seq };
                  } catch (err) {
                    onInvalid?.(err as Error, m.seq);
                    continue;
                  }
                  yield event;
                  if (stopped) break;
                }
              } finally {
                clearInterval(watchdog);
              }
            } catch (err) {
              // The server is unreachable or the consumer could not be made: try again.
              if (stopped) break;
              onError?.(err);
              await new Promise((r) => setTimeout(r, 250));
            }
          }
        },
      };
    },
  };
}
