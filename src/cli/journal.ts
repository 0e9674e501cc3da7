/**
 * The audit verbs: `cnm history`, `cnm state`, `cnm diff`, `cnm export`, `cnm import`
 * (`cnm events` is events.ts). All read (or, for import, write) the stream directly; no controller needed.
 *
 * @module
 */

import { headers } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { subjectOf, validateEvent } from "../journal/events.ts";
import { ConflictError, InvalidArgumentError } from "../errors.ts";
import { streamConfig } from "../journal/journal.ts";
import type { ReplayState } from "../journal/replay.ts";
import { kindsOf } from "./events.ts";
import { verifySnapshot } from "../journal/verify.ts";
import { scoped, scopeHost } from "./_scope.ts";
import { history } from "../journal/history.ts";
import { borrowConnection, readEvents } from "../journal/watch.ts";
import { parsePoint, UsageError } from "./_args.ts";
import {
  type Ctx,
  expectArgs,
  json,
  progress,
  short,
  stateAt,
  table,
  type Verb,
} from "./_context.ts";
import { printHistory } from "./_timeline.ts";

const point = (ctx: Ctx, flag: string) =>
  ctx.flags[flag] === undefined ? undefined : parsePoint(ctx.flags[flag] as string, flag);

/** `cnm history` */
export const historyVerb: Verb = {
  usage: "cnm history [--kind KIND] OBJECT | cnm history --host HOST",
  summary: "Tells the story of one object (id, id prefix or name): each transition, " +
    "how long it stayed in each state, what caused it, and the errors it met. Without OBJECT, " +
    "the host's own events (what reconcile removed).",
  flags: { kind: { type: "string", arg: "KIND", help: "only look for this kind" } },
  extra: "A name several kinds share picks the sandbox, then the network, then the endpoint " +
    "(the others are listed; choose with --kind). Looks on --host unless --all-hosts.",
  async run(ctx) {
    const [ref] = expectArgs(ctx, 0, 1, "an object id, id prefix or name");
    const kind = kindsOf(ctx, false)?.[0];
    if (ref === undefined && ctx.flags.host === undefined) {
      throw new UsageError("expected an object id, id prefix or name (or --host HOST alone)");
    }
    const bar = progress(ctx.io, "scanning");
    let h;
    try {
      h = await history(ref ?? ctx.host, {
        nats: await ctx.connect(),
        stream: ctx.stream,
        prefix: ctx.prefix,
        ...(ref === undefined ? { kind: "host" } : kind ? { kind } : {}),
        ...(scopeHost(ctx) !== undefined ? { host: ctx.host } : {}),
        onProgress: bar.onProgress,
      });
    } finally {
      bar.done();
    }
    if (ctx.json) return json(ctx.io, h);
    printHistory(ctx.io, h);
  },
};

/** `cnm state` */
export const state: Verb = {
  usage: "cnm state [--at T|SEQ] [--verify]",
  summary:
    "Shows every network, sandbox, endpoint, IPAM allocation and driver configuration as it was at a point.",
  flags: {
    at: { type: "string", arg: "T|SEQ", help: "sequence, time or duration ago (default: now)" },
    verify: {
      type: "boolean",
      help: "fold every event, also of deleted objects, report misfits, and check the snapshot",
    },
  },
  async run(ctx) {
    expectArgs(ctx, 0, 0, "no arguments");
    const s = scoped(ctx, await stateAt(ctx, point(ctx, "at"), ctx.flags.verify === true));
    if (ctx.json) {
      if (ctx.flags.verify !== true || ctx.flags.at !== undefined) return json(ctx.io, s);
      const check = await verifySnapshot({
        nats: ctx.nats,
        stream: ctx.stream,
        prefix: ctx.prefix,
      });
      json(ctx.io, { ...s, snapshot: check });
      if (check.result === "differs") throw new Error("the snapshot differs from the journal");
      return;
    }
    ctx.io.out(`state at #${s.seq}${s.at ? ` (${s.at})` : ""}, ${s.events} events`);
    ctx.io.out("\nNETWORKS");
    table(
      ctx.io,
      ["ID", "NAME", "DRIVER", "STATE", "HOST"],
      s.networks.map((n) => [short(n.id), n.name, n.driver, n.state, n.host]),
    );
    ctx.io.out("\nSANDBOXES");
    table(
      ctx.io,
      ["ID", "NAME", "STATE", "ENDPOINTS", "KEY"],
      s.sandboxes.map((
        b,
      ) => [short(b.id), b.name, b.state, b.endpointIds.map(short).join(","), b.key]),
    );
    ctx.io.out("\nENDPOINTS");
    table(
      ctx.io,
      ["ID", "NAME", "NETWORK", "SANDBOX", "STATE", "IPV4"],
      s.endpoints.map((
        e,
      ) => [short(e.id), e.name, short(e.networkId), short(e.sandboxId), e.state, e.ipv4Address]),
    );
    ctx.io.out("\nIPAM");
    table(
      ctx.io,
      ["NETWORK", "POOL", "GATEWAY", "ADDRESSES"],
      s.ipam.pools.map((p) => [
        p.network,
        p.pool,
        p.gateway,
        s.ipam.addresses.filter((a) => a.networkId === p.networkId && a.family === p.family).length,
      ]),
    );
    ctx.io.out("\nDRIVERS");
    table(
      ctx.io,
      ["DRIVER", "HOST", "SEQ", "CONFIG"],
      s.drivers.map((d) => [d.name, d.host, d.seq, JSON.stringify(d.config)]),
    );
    for (const w of s.warnings) {
      ctx.io.err(`warning: #${w.seq} ${w.type} ${w.objectId}: ${w.reason}`);
    }
    if (ctx.flags.verify === true && ctx.flags.at === undefined) await checkSnapshot(ctx);
  },
};

/** `state --verify`: the snapshot against the fold of every event (exit 1 when they differ). */
async function checkSnapshot(ctx: Ctx): Promise<void> {
  const bar = progress(ctx.io, "verifying");
  let c;
  try {
    c = await verifySnapshot({
      nats: ctx.nats,
      stream: ctx.stream,
      prefix: ctx.prefix,
      onProgress: bar.onProgress,
    });
  } finally {
    bar.done();
  }
  if (c.result === "missing") {
    ctx.io.out("\nsnapshot: none yet (a running controller writes it); nothing to compare");
    return;
  }
  ctx.io.out(
    `\nsnapshot at #${c.snapshotSeq} + ${c.tail} events ${
      c.result === "matches" ? "matches" : "DIFFERS FROM"
    } the fold of every event up to #${c.seq}`,
  );
  for (const d of c.differences) ctx.io.out(`  ${d}`);
  if (c.result === "differs") {
    const n = c.differences.length;
    throw new Error(`the snapshot differs from the journal in ${n} place${n === 1 ? "" : "s"}`);
  }
}

/** One difference between two states. */
export interface Change {
  change: "added" | "removed" | "changed";
  kind: string;
  id: string;
  name: string;
  /** Changed fields as `field: before → after`. */
  fields?: Record<string, { from: unknown; to: unknown }>;
}

/** What changed from state `a` to state `b`. */
export function diffStates(a: ReplayState, b: ReplayState): Change[] {
  const out: Change[] = [];
  for (const kind of ["networks", "sandboxes", "endpoints", "drivers"] as const) {
    const k = kind === "sandboxes" ? "sandbox" : kind.slice(0, -1);
    const before = new Map<string, Record<string, unknown>>(a[kind].map((o) => [o.id, o as never]));
    const after = new Map<string, Record<string, unknown>>(b[kind].map((o) => [o.id, o as never]));
    for (const [id, o] of after) {
      const old = before.get(id);
      if (!old) {
        out.push({ change: "added", kind: k, id, name: String(o.name) });
        continue;
      }
      const fields: Change["fields"] = {};
      for (const f of new Set([...Object.keys(old), ...Object.keys(o)])) {
        if (JSON.stringify(old[f]) !== JSON.stringify(o[f])) fields[f] = { from: old[f], to: o[f] };
      }
      if (Object.keys(fields).length) {
        out.push({ change: "changed", kind: k, id, name: String(o.name), fields });
      }
    }
    for (const [id, o] of before) {
      if (!after.has(id)) out.push({ change: "removed", kind: k, id, name: String(o.name) });
    }
  }
  return out;
}

/** `cnm diff` */
export const diff: Verb = {
  usage: "cnm diff --from T|SEQ [--to T|SEQ]",
  summary: "Shows what was added, removed or changed between two points of the stream.",
  flags: {
    from: { type: "string", arg: "T|SEQ", help: "earlier point (required)" },
    to: { type: "string", arg: "T|SEQ", help: "later point (default: now)" },
  },
  async run(ctx) {
    expectArgs(ctx, 0, 0, "no arguments");
    if (ctx.flags.from === undefined) throw new UsageError("--from is required");
    const a = scoped(ctx, await stateAt(ctx, point(ctx, "from"), false));
    const b = scoped(ctx, await stateAt(ctx, point(ctx, "to"), false));
    const changes = diffStates(a, b);
    if (ctx.json) {
      return json(ctx.io, {
        from: { seq: a.seq, at: a.at },
        to: { seq: b.seq, at: b.at },
        changes,
      });
    }
    ctx.io.out(
      `from #${a.seq} (${a.at ?? "empty"}) to #${b.seq} (${
        b.at ?? "empty"
      }): ${changes.length} changes`,
    );
    const show = (
      v: unknown,
    ) => (v === undefined ? "∅" : typeof v === "string" ? v : JSON.stringify(v));
    table(
      ctx.io,
      ["CHANGE", "KIND", "ID", "NAME", "DETAIL"],
      changes.map((c) => [
        c.change,
        c.kind,
        short(c.id),
        c.name,
        Object.entries(c.fields ?? {}).map(([f, v]) => `${f}: ${show(v.from)} → ${show(v.to)}`)
          .join("; "),
      ]),
    );
  },
};

/** `cnm export` */
export const exportVerb: Verb = {
  usage: "cnm export [--since T|SEQ] [--until T|SEQ] > events.jsonl",
  summary:
    "Writes events as JSON lines (with their sequence), for a bug report someone else replays.",
  flags: {
    since: { type: "string", arg: "T|SEQ", help: "first sequence or time" },
    until: { type: "string", arg: "T|SEQ", help: "last sequence or time" },
  },
  async run(ctx) {
    expectArgs(ctx, 0, 0, "no arguments");
    const { nc, release } = await borrowConnection(await ctx.connect());
    let n = 0;
    try {
      const read = readEvents(nc, {
        stream: ctx.stream,
        prefix: ctx.prefix,
        since: point(ctx, "since") ?? 1,
        until: point(ctx, "until"),
      });
      for await (const e of read) {
        ctx.io.out(JSON.stringify(e));
        n++;
      }
    } finally {
      await release();
    }
    ctx.io.err(`exported ${n} events`);
  },
};

/** `cnm import` */
export const importVerb: Verb = {
  usage: "cnm import [--stream NEW] [--prefix P] < events.jsonl",
  summary:
    "Appends exported events, in order, into a fresh stream (created; refused if it has events).",
  flags: { file: { type: "string", arg: "PATH", help: "read this file instead of stdin" } },
  async run(ctx) {
    expectArgs(ctx, 0, 0, "no arguments");
    const text = ctx.flags.file
      ? await Deno.readTextFile(ctx.flags.file as string)
      : await new Response(Deno.stdin.readable).text();
    const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
    const evs = lines.map((l, i) => {
      try {
        const { seq: _seq, ...event } = JSON.parse(l);
        return validateEvent(event);
      } catch (err) {
        throw new InvalidArgumentError(`line ${i + 1}: ${(err as Error).message}`);
      }
    });
    const { nc, release } = await borrowConnection(await ctx.connect());
    try {
      const jsm = await jetstreamManager(nc);
      const existing = await jsm.streams.info(ctx.stream).catch(() => undefined);
      if (existing && existing.state.messages > 0) {
        throw new ConflictError(
          `stream ${ctx.stream} already has ${existing.state.messages} events; import into a fresh stream (--stream NEW --prefix NEW)`,
        );
      }
      if (!existing) await jsm.streams.add(streamConfig(ctx.stream, ctx.prefix));
      const js = jetstream(nc, { timeout: 30_000 });
      const enc = new TextEncoder();
      let pending: Promise<unknown>[] = [];
      for (const e of evs) {
        const h = headers();
        h.set("Cnm-Type", e.type);
        h.set("Cnm-Kind", e.kind);
        const subject = subjectOf(ctx.prefix, e.kind, e.objectId);
        pending.push(
          js.publish(subject, enc.encode(JSON.stringify(e)), { msgID: e.eventId, headers: h }),
        );
        if (pending.length >= 256) {
          await Promise.all(pending);
          pending = [];
        }
      }
      await Promise.all(pending);
    } finally {
      await release();
    }
    if (ctx.json) json(ctx.io, { imported: evs.length, stream: ctx.stream, prefix: ctx.prefix });
    else {ctx.io.out(
        `imported ${evs.length} events into stream ${ctx.stream} (prefix ${ctx.prefix})`,
      );}
  },
};
