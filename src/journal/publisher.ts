/**
 * A lean JetStream publisher: every publish carries a reply subject under one inbox this
 * publisher subscribes to once, and the PubAck (`{ stream, seq, duplicate }` or
 * `{ error: { code, err_code, description } }`, JetStream's documented reply) resolves it.
 * `js.publish` of the NATS client does the same through a request per message — a timer,
 * a mux entry and three `Error`s with stack traces each — which costs about four times the
 * client CPU of this (bench/scale.ts prints both). Timeouts are swept by one timer.
 *
 * @module
 */

import {
  createInbox,
  headers,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from "@nats-io/transport-node";

/** What JetStream answered. */
export interface PubAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

/** A refusal by JetStream (`code` is its `err_code`, e.g. 10071 wrong last sequence). */
export class PublishError extends Error {
  constructor(message: string, readonly code: number, readonly status: number) {
    super(message);
    this.name = "PublishError";
  }
}

/** Options of one publish. */
export interface PublishOptions {
  /** `Nats-Msg-Id`: deduplicated by the stream within its window. */
  msgId?: string;
  /** `Nats-Expected-Last-Subject-Sequence` (0: the subject must be empty). */
  expectLastSubjectSequence?: number;
  /** `Nats-Expected-Stream`. */
  expectStream?: string;
  /** More headers. */
  headers?: Record<string, string>;
}

/** A publisher on one connection. */
export interface Publisher {
  publish(subject: string, data: Uint8Array, options?: PublishOptions): Promise<PubAck>;
  /** Fails what is waiting and unsubscribes. */
  close(): void;
}

interface Waiting {
  resolve(ack: PubAck): void;
  reject(err: Error): void;
  deadline: number;
}

const dec = new TextDecoder();

/** Creates a publisher; every publish times out after `timeoutMs` (default 4000). */
export function createPublisher(nc: NatsConnection, timeoutMs = 4000): Publisher {
  const inbox = createInbox();
  const waiting = new Map<string, Waiting>();
  let token = 0;
  let sweeper: ReturnType<typeof setInterval> | undefined;
  let sub: Subscription | undefined;

  const settle = (subject: string, data: Uint8Array, hdrs?: MsgHdrs) => {
    const w = waiting.get(subject);
    if (!w) return;
    waiting.delete(subject);
    if (hdrs?.hasError || (!data.length && hdrs && hdrs.code >= 400)) {
      const code = hdrs.code;
      w.reject(
        new PublishError(
          code === 503 ? "no responders: JetStream is not answering for this subject" : (
            hdrs.description || `status ${code}`
          ),
          0,
          code,
        ),
      );
      return;
    }
    let ack: { stream?: string; seq?: number; duplicate?: boolean; error?: Record<string, any> };
    try {
      ack = JSON.parse(dec.decode(data));
    } catch {
      return w.reject(new PublishError("invalid PubAck: not JSON", 0, 0));
    }
    if (ack.error) {
      return w.reject(
        new PublishError(
          String(ack.error.description ?? "publish refused"),
          Number(ack.error.err_code ?? 0),
          Number(ack.error.code ?? 0),
        ),
      );
    }
    if (!ack.stream || typeof ack.seq !== "number") {
      return w.reject(new PublishError("invalid PubAck", 0, 0));
    }
    w.resolve({ stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate === true });
  };

  const ensure = () => {
    if (sub && !sub.isClosed()) return;
    sub = nc.subscribe(`${inbox}.*`, {
      callback: (err, m) => {
        if (!err) settle(m.subject, m.data, m.headers);
      },
    });
  };

  const sweep = () => {
    const now = Date.now();
    for (const [subject, w] of waiting) {
      if (w.deadline <= now) {
        waiting.delete(subject);
        w.reject(new PublishError(`timeout after ${timeoutMs} ms waiting for the PubAck`, 0, 408));
      }
    }
    if (!waiting.size && sweeper !== undefined) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  };

  return {
    publish(subject, data, options = {}) {
      if (nc.isClosed()) return Promise.reject(new PublishError("connection closed", 0, 0));
      ensure();
      const h = headers();
      if (options.msgId) h.set("Nats-Msg-Id", options.msgId);
      if (options.expectLastSubjectSequence !== undefined) {
        h.set("Nats-Expected-Last-Subject-Sequence", String(options.expectLastSubjectSequence));
      }
      if (options.expectStream) h.set("Nats-Expected-Stream", options.expectStream);
      for (const [k, v] of Object.entries(options.headers ?? {})) h.set(k, v);
      const reply = `${inbox}.${++token}`;
      const p = new Promise<PubAck>((resolve, reject) => {
        waiting.set(reply, { resolve, reject, deadline: Date.now() + timeoutMs });
      });
      try {
        nc.publish(subject, data, { reply, headers: h });
      } catch (err) {
        waiting.delete(reply);
        return Promise.reject(err);
      }
      sweeper ??= setInterval(sweep, Math.min(250, timeoutMs / 4));
      return p;
    },
    close() {
      if (sweeper !== undefined) clearInterval(sweeper);
      sweeper = undefined;
      for (const w of waiting.values()) w.reject(new PublishError("publisher closed", 0, 0));
      waiting.clear();
      sub?.unsubscribe();
    },
  };
}
