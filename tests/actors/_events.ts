/** Builds envelope-valid events for pure machine tests. */
import type { CnmEvent } from "../../src/journal/events.ts";

let n = 0;

/** An event of `type` for object `id`. */
export function ev(type: string, id: string, data: Record<string, unknown> = {}): CnmEvent {
  n++;
  const kind = type.split(".")[0];
  return {
    v: 1,
    eventId: `e${n}`,
    effectId: `f${n}`,
    kind,
    objectId: id,
    type,
    from: null,
    to: "x",
    at: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
    host: "h1",
    data,
  };
}
