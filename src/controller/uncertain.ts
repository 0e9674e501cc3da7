/**
 * Intents whose append timed out: the journal may or may not have stored them. Each is
 * settled before its object is used again (and on reconnect): if the journal has it, it is
 * closed with a `*.failed` outcome ("abandoned … nothing was changed"), so the history says
 * what happened and nothing runs it later, and the object is reloaded from the journal.
 *
 * @module
 */

import type { CnmEvent, Kind } from "../journal/events.ts";
import type { Journal } from "../journal/journal.ts";
import type { KeyedMutex } from "./locks.ts";

/** What settling needs from the runtime. */
export interface UncertainDeps {
  journal: Journal;
  locks: KeyedMutex;
  /** Builds the abandoning outcome (`from` the intent's target, `to` the object's state). */
  abandon(intent: CnmEvent, to: string): CnmEvent;
  /** The current state of a live object, if it is live. */
  stateOf(kind: Kind, objectId: string): string | undefined;
  /** Publishes an appended event to subscribers. */
  emit(event: CnmEvent, seq: number): void;
  /** Rebuilds the object from the journal. */
  reload(kind: Kind, objectId: string): Promise<void>;
  /** How often pending intents are retried. Default 2000 ms. */
  retryMs?: number;
}

/** The uncertain intents. */
export interface UncertainIntents {
  /** Remembers an intent whose append timed out. */
  add(kind: Kind, intent: CnmEvent): void;
  /** Settles the object's uncertain intent, if any. */
  settle(objectId: string): Promise<void>;
  /** Settles every uncertain intent in the background (after a reconnect). */
  settleAll(): void;
  /** Stops the retry timer. */
  close(): void;
}

/** Creates the set. */
export function createUncertainIntents(deps: UncertainDeps): UncertainIntents {
  const pending = new Map<string, { kind: Kind; intent: CnmEvent }>();

  async function settle(objectId: string): Promise<void> {
    if (!pending.has(objectId)) return;
    await deps.locks.with([`uncertain:${objectId}`], async () => {
      const u = pending.get(objectId);
      if (!u) return;
      const last = await deps.journal.last(u.kind, objectId);
      if (last?.eventId === u.intent.eventId) {
        const outcome = deps.abandon(u.intent, deps.stateOf(u.kind, objectId) ?? "failed");
        const { seq } = await deps.journal.append(outcome, last.seq);
        deps.emit(outcome, seq);
        pending.delete(objectId);
        await deps.reload(u.kind, objectId);
      } else {
        pending.delete(objectId);
      }
    });
  }

  const settleAll = () => {
    for (const id of [...pending.keys()]) {
      settle(id).catch(() => {/* retried on next use, on reconnect and by the timer */});
    }
  };
  // JetStream may be unavailable while the connection stays up (a cluster's leader
  // election): settle what is pending every few seconds, not only on reconnect or next use.
  let timer: ReturnType<typeof setInterval> | undefined;
  const schedule = () => {
    if (timer !== undefined) return;
    timer = setInterval(() => {
      if (!pending.size) {
        clearInterval(timer);
        timer = undefined;
        return;
      }
      settleAll();
    }, deps.retryMs ?? 2000);
    Deno.unrefTimer(timer as unknown as number);
  };

  return {
    add(kind, intent) {
      pending.set(intent.objectId, { kind, intent });
      schedule();
    },
    settle,
    settleAll,
    close() {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
    },
  };
}
