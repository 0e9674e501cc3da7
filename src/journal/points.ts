/**
 * Points in the stream: a sequence, or a time found by binary search over the events' `at`
 * (so a time means the same in a stream and in its imported copy).
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { decodeEvent } from "./events.ts";
import { InvalidArgumentError } from "../errors.ts";
import { streamError } from "./nats_errors.ts";

/** A stream sequence (number) or a time (ISO-8601 string or Date). */
export type Point = number | string | Date;

/**
 * Turns a point into the last stream sequence at or before it: a number is a sequence; a
 * time is found by binary search over the events' `at` (a handful of direct gets), so the
 * answer is the same for a stream and for its imported copy. 0 when nothing is that old.
 */
export async function resolvePoint(
  nc: NatsConnection,
  sel: { stream?: string; prefix?: string },
  point: Point | undefined,
): Promise<number> {
  const stream = sel.stream ?? "CNM";
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(stream).catch((err) => streamError(err, stream));
  const { first_seq: first, last_seq: last, messages } = info.state;
  if (messages === 0) return 0;
  if (point === undefined) return last;
  if (typeof point === "number") return Math.min(Math.max(0, Math.floor(point)), last);
  const t = new Date(point).getTime();
  if (Number.isNaN(t)) throw new InvalidArgumentError(`invalid time ${String(point)}`);
  const atOf = async (seq: number): Promise<number> => {
    const m = await jsm.streams.getMessage(stream, { seq });
    if (!m) return -Infinity;
    try {
      return Date.parse(decodeEvent(m.data).at);
    } catch {
      return m.time.getTime();
    }
  };
  // Largest seq in [first, last] with at <= t, or first - 1 when none.
  let lo = first - 1, hi = last;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (await atOf(mid) <= t) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
