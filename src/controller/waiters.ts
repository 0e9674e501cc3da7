/**
 * Commands waiting for their outcome: one promise per intent eventId, resolved when the
 * outcome is durable, rejected on a conflict, on close, or after the command timeout.
 *
 * @module
 */

import type { CnmEvent } from "../journal/events.ts";
import { UnavailableError } from "../errors.ts";

/** The waiting commands. */
export interface Waiters {
  /** Waits for the outcome of the intent `eventId`. */
  wait(eventId: string): Promise<CnmEvent>;
  /** Resolves the waiter of `eventId`, if any. */
  settle(eventId: string, outcome: CnmEvent): void;
  /** Rejects the waiter of `eventId`, if any. */
  fail(eventId: string, err: Error): void;
  /** Rejects every waiter. */
  failAll(err: Error): void;
}

/** Creates the waiters; each times out after `timeoutMs`. */
export function createWaiters(timeoutMs: number): Waiters {
  const waiting = new Map<string, { resolve(e: CnmEvent): void; reject(err: Error): void }>();
  const take = (eventId: string) => {
    const w = waiting.get(eventId);
    waiting.delete(eventId);
    return w;
  };
  return {
    wait: (eventId) =>
      new Promise<CnmEvent>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(eventId);
          reject(
            new UnavailableError(
              `timed out after ${timeoutMs} ms waiting for the outcome of ${eventId}; ` +
                "it completes when the journal and the driver answer",
            ),
          );
        }, timeoutMs);
        waiting.set(eventId, {
          resolve: (e) => {
            clearTimeout(timer);
            resolve(e);
          },
          reject: (err) => {
            clearTimeout(timer);
            reject(err);
          },
        });
      }),
    settle: (eventId, outcome) => take(eventId)?.resolve(outcome),
    fail: (eventId, err) => take(eventId)?.reject(err),
    failAll(err) {
      for (const id of [...waiting.keys()]) take(id)?.reject(err);
    },
  };
}
