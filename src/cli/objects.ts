/**
 * What the object verbs (`cnm network|sandbox|endpoint …`, networks.ts, sandboxes.ts,
 * endpoints.ts) share. Reads (ls, inspect) come from the stream (its snapshot plus the events
 * after it) and need no controller; they show `--host` (default: this machine) unless
 * `--all-hosts`. Writes go to the host's controller through the NATS API; their options are
 * checked before connecting.
 *
 * @module
 */

import { type ApiClient, createApiClient } from "../api/client.ts";
import { NotFoundError } from "../errors.ts";
import { replay, type ReplayState } from "../journal/replay.ts";
import type { FlagSpecs } from "./_args.ts";
import { type Ctx, expectArgs, json, progress, short, table, type Verb } from "./_context.ts";
import { filtered, find, parseFilters, scoped } from "./_scope.ts";

/** The current state of `kinds` on every host (snapshot + tail; a progress bar when slow). */
export async function wholeState(ctx: Ctx, kinds?: string[]): Promise<ReplayState> {
  const bar = progress(ctx.io, "reading");
  try {
    return await replay({
      nats: await ctx.connect(),
      stream: ctx.stream,
      prefix: ctx.prefix,
      ...(kinds ? { kinds } : {}),
      onProgress: bar.onProgress,
    });
  } finally {
    bar.done();
  }
}

/** The current state of `kinds` (snapshot + tail; a progress bar when it is slow), in view. */
export async function currentState(ctx: Ctx, kinds?: string[]): Promise<ReplayState> {
  return scoped(ctx, await wholeState(ctx, kinds));
}

/** Runs `f` with an API client for the host's controller, closed after. */
export async function withApi<T>(ctx: Ctx, f: (api: ApiClient) => Promise<T>): Promise<T> {
  const api = await createApiClient({
    nats: await ctx.connect(),
    prefix: ctx.prefix,
    hostId: ctx.host,
    stream: ctx.stream,
  });
  try {
    return await f(api);
  } finally {
    await api.close();
  }
}

/** The flags of every `ls`. */
export const LS_FLAGS: FlagSpecs = {
  quiet: { type: "boolean", short: "q", help: "print only ids" },
  filter: {
    type: "string",
    multi: true,
    arg: "KEY=VALUE",
    help: "only matching objects: id (prefix), name (part), label, driver, scope, state, host",
  },
  all: { type: "boolean", short: "a", help: "also list failed creates, with their error" },
};

/**
 * Prints a listing: ids only with -q, JSON with --format json, else the table. Failed
 * creates only with `--all`, the table then gaining an ERROR column saying why each failed.
 */
export function listing<T extends { id: string; state: string; error?: { message: string } }>(
  ctx: Ctx,
  items: T[],
  header: string[],
  row: (i: T) => (string | number | null | undefined)[],
): void {
  const all = ctx.flags.all === true;
  const shown = filtered(
    all ? items : items.filter((i) => i.state !== "failed"),
    parseFilters(ctx.flags.filter as string[] | undefined),
  );
  if (ctx.flags.quiet) {
    if (ctx.json) return json(ctx.io, shown.map((i) => i.id));
    for (const i of shown) ctx.io.out(short(i.id));
    return;
  }
  if (ctx.json) return json(ctx.io, shown);
  if (!all) return table(ctx.io, header, shown.map(row));
  table(ctx.io, [...header, "ERROR"], shown.map((i) => [...row(i), i.error?.message ?? ""]));
}

/** `rm` of several refs; with `--force`, a missing one is not an error. */
export async function removeAll(
  ctx: Ctx,
  refs: string[],
  rm: (api: ApiClient, ref: string) => Promise<void>,
): Promise<void> {
  const deleted: string[] = [];
  await withApi(ctx, async (api) => {
    for (const r of refs) {
      try {
        await rm(api, r);
      } catch (err) {
        if (ctx.flags.force === true && err instanceof NotFoundError) continue;
        throw err;
      }
      deleted.push(r);
      if (!ctx.json) ctx.io.out(r);
    }
  });
  if (ctx.json) json(ctx.io, { deleted });
}

/** `rm -f`. */
export const RM_FORCE: FlagSpecs = {
  force: { type: "boolean", short: "f", help: "do not fail when it does not exist" },
};

/** `--label KEY=VALUE`. */
export const LABEL: FlagSpecs = {
  label: { type: "string", multi: true, arg: "KEY=VALUE", help: "label" },
};
/** `-o, --opt KEY=VALUE` (driver options). */
export const OPT: FlagSpecs = {
  opt: { type: "string", short: "o", multi: true, arg: "KEY=VALUE", help: "driver option" },
};

/** Prints a created object: its id, or the whole of it as JSON. */
export function printed(ctx: Ctx, info: { id: string }): void {
  if (ctx.json) json(ctx.io, info);
  else ctx.io.out(info.id);
}

/** `inspect` of a kind: the objects named, as JSON, read from the stream. */
export function inspect(kind: "networks" | "sandboxes" | "endpoints", what: string): Verb {
  return {
    usage: `cnm ${what} inspect ${what.toUpperCase()}...`,
    summary: `Shows ${what}s (by id, name or id prefix) as JSON, read from the stream.`,
    flags: {},
    async run(ctx) {
      const refs = expectArgs(ctx, 1, Infinity, `one or more ${what}s`);
      const state = await currentState(ctx, [what]);
      const items = state[kind] as unknown as { id: string; name: string; host: string }[];
      json(ctx.io, refs.map((r) => find(ctx, items, r, what)));
    },
  };
}
