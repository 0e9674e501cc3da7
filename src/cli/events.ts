/**
 * `cnm events`: journal events in stream order, bounded or followed live (resuming after the
 * last event shown across NATS restarts), for `--host` unless `--all-hosts`.
 *
 * @module
 */

import type { RecordedEvent } from "../journal/events.ts";
import { replay } from "../journal/replay.ts";
import { borrowConnection, readEvents, watch } from "../journal/watch.ts";
import { resolveRef } from "../refs.ts";
import { NotFoundError } from "../errors.ts";
import { history } from "../journal/history.ts";
import { parsePoint, UsageError } from "./_args.ts";
import { type Ctx, expectArgs, progress, short, type Verb } from "./_context.ts";
import { scoped, scopeHost } from "./_scope.ts";

const point = (ctx: Ctx, flag: string) =>
  ctx.flags[flag] === undefined ? undefined : parsePoint(ctx.flags[flag] as string, flag);

/** What a `*.reconciled` event did, in words: `repaired netns cnm-1a2b (unexpected)`. */
export function reconciledNote(e: RecordedEvent): string | undefined {
  if (!e.type.endsWith(".reconciled")) return undefined;
  const d = e.data as {
    findings?: { resource: string; name: string; problem: string }[];
    repaired?: boolean;
    error?: { message: string };
  };
  const what = (d.findings ?? []).map((f) =>
    `${f.resource} ${f.name} ${f.problem === "unexpected" ? "(orphan, removed)" : `(${f.problem})`}`
  ).join(", ");
  return d.repaired
    ? `repaired: ${what}`
    : `NOT repaired: ${what}${d.error ? `: ${d.error.message}` : ""}`;
}

/** One table row of an event. */
export function eventRow(e: RecordedEvent): (string | number)[] {
  const d = e.data as { elapsedMs?: number; error?: { message: string } };
  const note = reconciledNote(e) ??
    (d.error ? `error: ${d.error.message}` : d.elapsedMs !== undefined ? `${d.elapsedMs}ms` : "");
  return [
    e.seq,
    e.at,
    e.type,
    `${e.kind} ${short(e.objectId)}`,
    `${e.from ?? "∅"} → ${e.to}`,
    e.host,
    note,
  ];
}
/** The header of the events table. */
export const EVENT_HEADER = ["SEQ", "TIME", "TYPE", "OBJECT", "TRANSITION", "HOST", "NOTE"];

/** The `--kind` values the journal verbs take. */
const KINDS = ["network", "endpoint", "sandbox", "driver", "host"];

/** The `--kind` values, checked. */
export function kindsOf(ctx: Ctx, many: boolean): string[] | undefined {
  const raw = ctx.flags.kind;
  const list = raw === undefined ? undefined : Array.isArray(raw) ? raw : [raw as string];
  for (const k of list ?? []) {
    if (!KINDS.includes(k)) {
      throw new UsageError(`--kind takes ${KINDS.join(", ")}, got ${JSON.stringify(k)}`);
    }
  }
  if (!many && list && list.length > 1) throw new UsageError("--kind takes one kind here");
  return list;
}

/** `cnm events` */
export const events: Verb = {
  usage: "cnm events [--follow] [--since T|SEQ] [--until T|SEQ] [--kind K]... [--object REF]",
  summary: "Prints journal events in stream order; --follow keeps printing new ones.",
  flags: {
    follow: { type: "boolean", short: "f", help: "keep following (default: stop at the end)" },
    since: { type: "string", arg: "T|SEQ", help: "start at a sequence, time or duration ago" },
    until: { type: "string", arg: "T|SEQ", help: "stop after a sequence or time" },
    kind: {
      type: "string",
      multi: true,
      arg: "KIND",
      help: "only network, endpoint, sandbox or host events",
    },
    object: {
      type: "string",
      arg: "REF",
      help: "only this object's events (id, id prefix or name)",
    },
  },
  extra: "With --format json, prints one event per line (JSON lines). Shows the events of --host " +
    "(and of global networks) unless --all-hosts.",
  async run(ctx) {
    expectArgs(ctx, 0, 0, "no arguments");
    const kinds = kindsOf(ctx, true);
    const since = point(ctx, "since");
    const until = point(ctx, "until");
    const host = scopeHost(ctx);
    let objectId: string | undefined;
    let objectKind: string | undefined;
    if (ctx.flags.object !== undefined) {
      ({ id: objectId, kind: objectKind } = await resolveObject(
        ctx,
        ctx.flags.object as string,
        kinds,
      ));
    }
    const sel = {
      stream: ctx.stream,
      prefix: ctx.prefix,
      kinds: objectKind ? [objectKind] : kinds,
      objectId,
      onInvalid: (err: Error, seq: number) =>
        ctx.io.err(`warning: skipping #${seq}: ${err.message}`),
    };
    // An object was resolved in view; otherwise keep the host's events (and global ones).
    const shown = (e: RecordedEvent) =>
      objectId !== undefined || host === undefined || e.host === host;
    // Fixed widths: with --follow the rows are not known in advance.
    const widths = [7, 25, 27, 22, 22, 12];
    const line = (cells: (string | number)[]) =>
      cells.map((c, i) => (i < widths.length ? String(c).padEnd(widths[i]) : String(c))).join(" ")
        .trimEnd();
    const print = (e: RecordedEvent) => {
      if (shown(e)) ctx.io.out(ctx.json ? JSON.stringify(e) : line(eventRow(e)));
    };
    if (!ctx.json) ctx.io.out(line(EVENT_HEADER));
    if (!ctx.flags.follow) {
      const { nc, release } = await borrowConnection(ctx.nats);
      const bar = progress(ctx.io, "reading");
      try {
        const read = readEvents(nc, {
          ...sel,
          since: since ?? 1,
          until,
          onProgress: bar.onProgress,
        });
        for await (const e of read) print(e);
      } finally {
        bar.done();
        await release();
      }
      return;
    }
    const untilSeq = typeof until === "number" ? until : Infinity;
    const untilTime = until instanceof Date ? until.getTime() : Infinity;
    await new Promise<void>((resolve, reject) => {
      const stop = () => {
        sub.unsubscribe();
        resolve();
      };
      const sub = watch({ ...sel, nats: { ...ctx.nats, maxReconnectAttempts: -1 }, since })
        .subscribe({
          next(e) {
            if (e.seq > untilSeq || Date.parse(e.at) > untilTime) return stop();
            try {
              print(e);
            } catch (err) {
              sub.unsubscribe(); // e.g. stdout closed (`| head -1`): main exits quietly
              return reject(err);
            }
            if (e.seq === untilSeq) stop();
          },
          error: reject,
          complete: resolve,
        });
      Deno.addSignalListener("SIGINT", stop);
      Deno.addSignalListener("SIGTERM", stop);
    });
  },
};

/**
 * Resolves `--object` (id, id prefix or name) to an id, among the live objects in view, else
 * among the deleted ones (as `history` does).
 */
async function resolveObject(ctx: Ctx, ref: string, kinds?: string[]) {
  if (/^[0-9a-f]{64}$/.test(ref)) {
    return { id: ref, kind: kinds?.length === 1 ? kinds[0] : undefined };
  }
  const s = scoped(
    ctx,
    await replay({ nats: ctx.nats, stream: ctx.stream, prefix: ctx.prefix }),
  );
  const items = [
    ...s.sandboxes.map((o) => ({ kind: "sandbox", id: o.id, name: o.name })),
    ...s.networks.map((o) => ({ kind: "network", id: o.id, name: o.name })),
    ...s.endpoints.map((o) => ({ kind: "endpoint", id: o.id, name: o.name })),
  ].filter((o) => !kinds || kinds.includes(o.kind));
  try {
    const { hit } = resolveRef(items, ref, "object");
    return { id: hit.id, kind: hit.kind as string | undefined };
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    // Not live: a deleted object, found as `history` finds it (a scan of the stream).
    const bar = progress(ctx.io, "scanning");
    try {
      const h = await history(ref, {
        nats: ctx.nats,
        stream: ctx.stream,
        prefix: ctx.prefix,
        ...(kinds?.length === 1 ? { kind: kinds[0] } : {}),
        ...(scopeHost(ctx) !== undefined ? { host: ctx.host } : {}),
        onProgress: bar.onProgress,
      });
      if (kinds && !kinds.includes(h.kind)) throw err;
      return { id: h.id, kind: h.kind };
    } catch (again) {
      throw again instanceof NotFoundError ? err : again;
    } finally {
      bar.done();
    }
  }
}
