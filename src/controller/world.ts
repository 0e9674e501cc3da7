/**
 * The world: every host's objects, folded from the whole stream and kept current by a live
 * follower. Several controllers (one per host) share one stream; each runs only its own
 * objects (and global networks it writes), but sees everyone's — so a global network made on
 * h1 is found on h2 within a millisecond of its event, and the overlay driver learns remote
 * endpoints (IP, MAC, VTEP) from the events, not from gossip.
 *
 * Events of other hosts are handed to `onRemote` after they are folded (the controller keeps
 * its registry of global networks and its IPAM in step there); this host's own events are
 * folded too, since the follower is the one place where every event arrives in stream order.
 *
 * @module
 */

import { type Observable, Subject } from "rxjs";
import type { RecordedEvent } from "../journal/events.ts";
import { type FoldedObject, foldEvent, type FoldState, stateOf } from "../journal/fold.ts";
import type { Follower, Journal } from "../journal/journal.ts";

/** One event as the world folded it, with the object it changed. */
export interface WorldChange {
  event: RecordedEvent;
  /** The object after the event (undefined for kinds that are not folded). */
  object?: FoldedObject;
}

/** Options of {@link createWorld}. */
export interface WorldOptions {
  journal: Journal;
  hostId: string;
  /** The fold the controller started from (recovery's); the world keeps extending it. */
  fold: FoldState;
  /** Called for every event of another host, after it is folded. */
  onRemote?(change: WorldChange): void;
}

/** The world view. */
export interface World {
  /** Every host's objects as of {@link World.seq}. */
  readonly fold: FoldState;
  /** Highest sequence folded. */
  readonly seq: number;
  /** Every folded event, in stream order. */
  readonly changes$: Observable<WorldChange>;
  /** Resolves once the world has folded every event up to `seq`. */
  caughtUp(seq: number): Promise<void>;
  /** Live objects of a kind, on every host. */
  live(kind: string): FoldedObject[];
  /** Takes the fold recovery starts from (the snapshot plus its tail), before `start()`. */
  useFold(fold: FoldState): void;
  /** Starts following the stream after the fold's last sequence. */
  start(): void;
  /** Stops following. */
  close(): void;
}

/** Creates the world view; call `start()` once the controller is ready to be told. */
export function createWorld(options: WorldOptions): World {
  const { journal, hostId } = options;
  let fold = options.fold;
  const changes = new Subject<WorldChange>();
  const waiting: { seq: number; resolve(): void }[] = [];
  let follower: Follower | undefined;
  let closed = false;

  const apply = (event: RecordedEvent) => {
    if (event.seq <= fold.lastSeq) return; // already folded (start-up read overlaps)
    foldEvent(fold, event);
    const change: WorldChange = { event, object: fold.objects.get(event.objectId) };
    if (event.host !== hostId) {
      try {
        options.onRemote?.(change);
      } catch (err) {
        console.error(`cnm: applying ${event.type} of host ${event.host}: ${err}`);
      }
    }
    changes.next(change);
    for (let i = waiting.length - 1; i >= 0; i--) {
      if (waiting[i].seq <= fold.lastSeq) waiting.splice(i, 1)[0].resolve();
    }
  };

  return {
    get fold() {
      return fold;
    },
    useFold(f) {
      if (follower) throw new Error("the world already follows the stream");
      fold = f;
    },
    get seq() {
      return fold.lastSeq;
    },
    changes$: changes.asObservable(),
    caughtUp(seq) {
      if (seq <= fold.lastSeq || closed) return Promise.resolve();
      return new Promise((resolve) => waiting.push({ seq, resolve }));
    },
    live: (kind) =>
      [...fold.objects.values()].filter((o) =>
        o.kind === kind && !["deleted", "failed"].includes(stateOf(o.snapshot))
      ),
    start() {
      if (follower || closed) return;
      let said = "";
      const f = journal.follow(
        fold.lastSeq + 1,
        (err, seq) =>
          console.error(`cnm: skipping invalid event at sequence ${seq}: ${err.message}`),
        (err) => {
          // Said once per distinct reason: the follower retries every 250 ms.
          const text = err instanceof Error ? err.message : String(err);
          if (text !== said) console.error(`cnm: following the stream: ${text} (retrying)`);
          said = text;
        },
      );
      follower = f;
      (async () => {
        for await (const e of f) apply(e);
      })().catch((err) => console.error(`cnm: the stream follower stopped: ${err}`));
    },
    close() {
      closed = true;
      follower?.stop();
      for (const w of waiting.splice(0)) w.resolve();
      changes.complete();
    },
  };
}
