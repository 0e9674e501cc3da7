/**
 * Checks the snapshot against the truth: the current state built from the snapshot plus the
 * events after it, against every event folded from the first one, at the same sequence.
 * `cnm state --verify` prints it; a difference is a bug (report it), and the snapshot is
 * disposable: `cnm` ignores it when it is missing, and the next controller rebuilds it.
 *
 * @module
 */

import { loadCurrent } from "./current.ts";
import { replay, type ReplayState, stateOfFold } from "./replay.ts";
import { borrowConnection, type NatsTarget } from "./watch.ts";

/** What the check found. */
export interface SnapshotCheck {
  /** The sequence both states are at. */
  seq: number;
  /** `missing`: no usable snapshot (nothing to check). */
  result: "matches" | "differs" | "missing";
  /** The snapshot's watermark and the events folded on top of it. */
  snapshotSeq: number;
  tail: number;
  /** One line per difference: `sandbox 3f2a…: endpointIds: [] → ["…"]`. */
  differences: string[];
}

/** Options of {@link verifySnapshot}. */
export interface VerifyOptions {
  nats: NatsTarget;
  stream?: string;
  prefix?: string;
  onProgress?: (read: number, total: number) => void;
}

/** Compares the snapshot's current state with the fold of every event. */
export async function verifySnapshot(options: VerifyOptions): Promise<SnapshotCheck> {
  const { nc, release } = await borrowConnection(options.nats);
  try {
    const sel = { stream: options.stream, prefix: options.prefix };
    const cur = await loadCurrent(nc, sel);
    const check = { seq: cur.fold.lastSeq, snapshotSeq: cur.snapshotSeq, tail: cur.tail };
    if (cur.source !== "snapshot") return { ...check, result: "missing", differences: [] };
    const fromSnapshot = stateOfFold(cur.fold, cur.at, cur.events);
    const full = await replay({
      nats: nc,
      ...sel,
      until: cur.fold.lastSeq,
      verify: true,
      onProgress: options.onProgress,
    });
    const differences = compareStates(fromSnapshot, full);
    return { ...check, result: differences.length ? "differs" : "matches", differences };
  } finally {
    await release();
  }
}

/** Differences between two states' objects and IPAM, one line each (`a` → `b`). */
export function compareStates(a: ReplayState, b: ReplayState): string[] {
  const out: string[] = [];
  for (const kind of ["networks", "sandboxes", "endpoints"] as const) {
    const left = new Map(a[kind].map((o) => [o.id, o as unknown as Record<string, unknown>]));
    const right = new Map(b[kind].map((o) => [o.id, o as unknown as Record<string, unknown>]));
    for (const [id, o] of right) {
      const l = left.get(id);
      if (!l) {
        out.push(`${kind} ${id.slice(0, 12)}: missing from the snapshot`);
        continue;
      }
      for (const f of new Set([...Object.keys(l), ...Object.keys(o)])) {
        const x = JSON.stringify(l[f]), y = JSON.stringify(o[f]);
        if (x !== y) out.push(`${kind} ${id.slice(0, 12)}: ${f}: ${x} (snapshot) ≠ ${y} (events)`);
      }
    }
    for (const id of left.keys()) {
      if (!right.has(id)) out.push(`${kind} ${id.slice(0, 12)}: only in the snapshot`);
    }
    const order = (s: ReplayState) => s[kind].map((o) => o.id).join(",");
    if (!out.length && order(a) !== order(b)) out.push(`${kind}: listed in another order`);
  }
  if (JSON.stringify(a.ipam) !== JSON.stringify(b.ipam)) out.push("ipam: allocations differ");
  return out;
}
