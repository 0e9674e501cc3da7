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
  /** The current fold: the snapshot plus the events after it (see current.ts). */
  current(options?: Omit<CurrentOptions, "stream" | "prefix">): Promise<Current>;
  /** The connection the journal uses. */
  readonly nc: NatsConnection;
  /** Fails appends still waiting for their PubAck (the connection stays open). */
  close(): void;
}

/** The stream setting every cnm stream gets. */
export function streamConfig(stream: string, prefix: string) {
  return {
    name: stream,
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
  await ensureStream(jsm, stream, prefix, options.create ?? true);
  const js = jetstream(nc, { timeout });
  return createJournal(nc, js, jsm, stream, prefix, timeout);
}

async function ensureStream(
  jsm: JetStreamManager,
  stream: string,
  prefix: string,
  create: boolean,
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
      await jsm.streams.add(streamConfig(stream, prefix));
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
      let info;
      try {
        info = await jsm.streams.info(stream);
      } catch (err) {
        throw new UnavailableError(`journal unavailable: ${errText(err)}`, { cause: err });
      }
      const end = info.state.last_seq;
      if (info.state.messages === 0 || end === 0) return;
      if (from.seq !== undefined && from.seq > end) return;
      const opts: Record<string, unknown> = {
        filter_subjects: from.subject ?? `${prefix}.>`,
      };
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
          if (m.seq >= end || m.info.pending === 0) break;
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
  };
}
