/**
 * Renders an object's history as a readable timeline for `cnm history`.
 *
 * @module
 */

import type { ObjectHistory, Transition } from "../journal/history.ts";
import { duration, type Io, short, table } from "./_context.ts";
import { reconciledNote } from "./events.ts";

/** What an event says, in words. */
function note(t: Transition, h: ObjectHistory): string {
  const d = t.event.data as Record<string, unknown>;
  const parts: string[] = [];
  if (t.error) parts.push(`FAILED ${t.error.name}: ${t.error.message}`);
  if (t.type.endsWith(".join.requested")) {
    parts.push(`sandbox ${short(String(d.sandboxId))} as ${d.ifname}`);
  }
  if (t.type.endsWith(".leave.requested")) parts.push(`sandbox ${short(String(d.sandboxId))}`);
  if (t.type.endsWith(".delete.requested") && d.force) parts.push("forced");
  if (t.type === "driver.configured") {
    const changed = Object.entries(d.changed as Record<string, { from: unknown; to: unknown }>);
    parts.push(
      changed.map(([k, c]) => `${k}: ${JSON.stringify(c.from)} → ${JSON.stringify(c.to)}`)
        .join(", "),
    );
  }
  if (t.causeSeq !== undefined) {
    let s = `answers #${t.causeSeq}`;
    if (t.elapsedMs !== undefined) s += `, driver took ${duration(t.elapsedMs)}`;
    // An outcome far later than its effect took: the controller stopped and resumed it.
    if (t.inStateMs !== null && t.elapsedMs !== undefined && t.inStateMs - t.elapsedMs > 2000) {
      s += ` (waited ${
        duration(t.inStateMs - t.elapsedMs)
      } before it ran: interrupted and resumed)`;
    }
    parts.push(s);
  }
  const reconciled = reconciledNote(t.event);
  if (reconciled) parts.push(reconciled);
  if (t.host !== h.host) parts.push(`by host ${t.host}`);
  return parts.join("; ");
}

/** Prints the header line, the transitions, related events and the time per state. */
export function printHistory(io: Io, h: ObjectHistory): void {
  const where = h.network ? ` in network ${h.network.name || short(h.network.id)}` : "";
  io.out(`${h.kind} ${h.id} "${h.name}"${where}, host ${h.host}: now ${h.state}`);
  io.out("");
  table(
    io,
    ["TIME", "SEQ", "TRANSITION", "EVENT", "AFTER", "NOTE"],
    h.transitions.map((t) => [
      t.at,
      `#${t.seq}`,
      `${t.from ?? "∅"} → ${t.to}`,
      t.type,
      t.inStateMs === null ? "" : duration(t.inStateMs),
      note(t, h),
    ]),
  );
  if (h.related.length) {
    io.out("");
    io.out("endpoints in this sandbox:");
    table(
      io,
      ["TIME", "SEQ", "ENDPOINT", "EVENT", "NOTE"],
      h.related.map((t) => [
        t.at,
        `#${t.seq}`,
        t.endpoint
          ? `${short(t.endpoint.id)} "${t.endpoint.name}" in ${
            t.endpoint.network.name || short(t.endpoint.network.id)
          }`
          : short(t.event.objectId),
        t.type,
        note(t, h),
      ]),
    );
  }
  io.out("");
  const spent = Object.entries(h.durations).map(([s, ms]) => `${s} ${duration(ms)}`).join(", ");
  io.out(`time in each state: ${spent}${h.state !== "deleted" ? ` (${h.state} until now)` : ""}`);
  if (h.pending) {
    io.out(
      `PENDING: ${h.state} for ${duration(h.pending.sinceMs)} since #${h.pending.intentSeq} ` +
        "with no outcome yet: the controller of this host is down or the driver is stuck; " +
        "a restarted controller resumes it",
    );
  }
  for (const w of h.warnings) io.out(`warning: #${w.seq} ${w.type}: ${w.reason}`);
  if (h.others.length) {
    const kinds = [...new Set(h.others.map((o) => o.kind))].filter((k) => k !== h.kind);
    io.out(
      `also named "${h.name}": ` +
        h.others.map((o) => `${o.kind} ${short(o.id)} (created ${o.created})`).join(", ") +
        (kinds.length ? `; show one with ${kinds.map((k) => `--kind ${k}`).join(" or ")}` : ""),
    );
  }
}
