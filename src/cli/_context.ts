/**
 * What every verb gets: parsed flags, connection settings, output helpers (table or JSON),
 * and a progress bar for long replays.
 *
 * @module
 */

import type { NatsConnection, NodeConnectionOptions } from "@nats-io/transport-node";
import { type Flags, UsageError } from "./_args.ts";
import { checkHostId, checkPrefix, checkStream } from "./_names.ts";
import { type NatsSettings, natsSettings } from "./_nats.ts";
import { connectNats } from "./_nats_connect.ts";
import { replay, type ReplayState } from "../journal/replay.ts";

/** Where output goes (replaceable in tests). */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** Whether stderr is a terminal (progress bars only then). */
  errIsTty: boolean;
}

/** The default: stdout/stderr of the process. */
export const stdio: Io = {
  out: (t) => Deno.stdout.writeSync(new TextEncoder().encode(t + "\n")),
  err: (t) => Deno.stderr.writeSync(new TextEncoder().encode(t + "\n")),
  errIsTty: Deno.stderr.isTerminal(),
};

/** A verb's view of the command line. */
export interface Ctx {
  flags: Flags;
  args: string[];
  io: Io;
  /** nats.js connect options (servers, authenticator, TLS), for a connection of one's own. */
  nats: NodeConnectionOptions;
  /** The connection settings: what to print about them, what to redact. */
  natsSettings: NatsSettings;
  /**
   * The verb's connection, opened on first use (one failing fast, one reconnecting for ever
   * with `reconnect`), closed by {@link Ctx.close}.
   *
   * @throws {NatsAuthError} when NATS refuses the credentials or TLS fails.
   * @throws {NatsUnreachableError} when no server answers.
   */
  connect(options?: { reconnect?: boolean }): Promise<NatsConnection>;
  /** Closes the connections `connect` opened. */
  close(): Promise<void>;
  stream: string;
  prefix: string;
  /** The host id (this machine's hostname by default, checked when a verb reads it). */
  readonly host: string;
  json: boolean;
  /** `table`, `json`, or a format the verb adds (`docker` for `network inspect`). */
  format: string;
}

/**
 * Builds the context: checks `--format`, the stream, prefix and host names, and the NATS
 * connection flags.
 *
 * @param sources where each flag came from (`--x` or `$X`), for messages and precedence.
 * @param verb the verb's name, in the connection's name.
 * @param formats `--format` values the verb takes besides `table` and `json`.
 * @throws {UsageError} naming the flag that is wrong.
 */
export function makeCtx(
  flags: Flags,
  args: string[],
  io: Io,
  sources: Map<string, string> = new Map(),
  verb = "",
  formats: string[] = [],
): Ctx {
  const format = (flags.format as string | undefined) ?? "table";
  const allowed = ["table", "json", ...formats];
  if (!allowed.includes(format)) {
    throw new UsageError(
      `--format takes ${allowed.slice(0, -1).join(", ")} or ${allowed.at(-1)}, got ${
        JSON.stringify(format)
      }`,
    );
  }
  const src = (name: string) => sources.get(name) ?? `--${name}`;
  const given = (name: string) => flags[name] as string | undefined;
  const stream = checkStream(given("stream") ?? "CNM", src("stream"));
  const prefix = checkPrefix(given("prefix") ?? "cnm", src("prefix"));
  const explicitHost = given("host");
  if (explicitHost !== undefined) checkHostId(explicitHost, src("host"));
  const settings = natsSettings(flags, sources);
  const open = new Map<boolean, Promise<NatsConnection>>();
  return {
    flags,
    args,
    io,
    nats: { ...settings.options, maxReconnectAttempts: 0 },
    natsSettings: settings,
    connect({ reconnect = false } = {}) {
      let nc = open.get(reconnect);
      if (!nc) {
        nc = connectNats(settings, { reconnect, name: `cnm ${verb}`.trim() });
        open.set(reconnect, nc);
      }
      return nc;
    },
    async close() {
      const all = [...open.values()];
      open.clear();
      await Promise.allSettled(all.map(async (p) => (await p).close()));
    },
    stream,
    prefix,
    get host() {
      return explicitHost ??
        checkHostId(Deno.hostname(), `this machine's hostname (the default of --host)`);
    },
    json: format === "json",
    format,
  };
}

/** Prints aligned columns (first row is the header). */
export function table(
  io: Io,
  header: string[],
  rows: (string | number | null | undefined)[][],
): void {
  const cells = [
    header,
    ...rows.map((r) => r.map((c) => (c === null || c === undefined ? "" : String(c)))),
  ];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  for (const r of cells) {
    io.out(
      r.map((c, i) => (i === r.length - 1 ? c : (c ?? "").padEnd(widths[i]))).join("   ").trimEnd(),
    );
  }
}

/** Prints a value as indented JSON. */
export function json(io: Io, value: unknown): void {
  io.out(JSON.stringify(value, null, 2));
}

/** First 12 characters of an id, like docker. */
export function short(id: string | null | undefined): string {
  return id ? id.slice(0, 12) : "";
}

/**
 * A progress callback that draws a bar on stderr once the work has taken more than a
 * second, only when stderr is a terminal. Call `done()` to clear it.
 */
export function progress(
  io: Io,
  label: string,
): { onProgress?: (n: number, total: number) => void; done(): void } {
  if (!io.errIsTty) return { done() {} };
  const started = Date.now();
  let drawn = false;
  const enc = new TextEncoder();
  return {
    onProgress(n, total) {
      if (Date.now() - started < 1000) return;
      const frac = total > 0 ? Math.min(1, n / total) : 0;
      const bar = "#".repeat(Math.round(frac * 30)).padEnd(30, ".");
      const text = `\r${label} [${bar}] ${Math.round(frac * 100)}% ${n}/${total} events`;
      Deno.stderr.writeSync(enc.encode(text));
      drawn = true;
    },
    done() {
      if (drawn) Deno.stderr.writeSync(enc.encode("\r\x1b[2K"));
    },
  };
}

/** Formats milliseconds for people: `850ms`, `2.4s`, `3m12s`, `2h05m`, `3d4h`. */
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "";
  if (ms < 10) return `${Math.round(ms * 10) / 10}ms`;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d${h % 24}h`;
}

/** One verb of the CLI. */
export interface Verb {
  usage: string;
  summary: string;
  flags: import("./_args.ts").FlagSpecs;
  /** Extra help (examples). */
  extra?: string;
  /** `--format` values beyond table and json that this verb takes. */
  formats?: string[];
  run(ctx: Ctx): Promise<void>;
}

/** Checks the number of positional arguments. */
export function expectArgs(ctx: Ctx, min: number, max: number, what: string): string[] {
  if (ctx.args.length < min || ctx.args.length > max) {
    throw new UsageError(
      `expected ${what}, got ${ctx.args.length ? ctx.args.join(" ") : "nothing"}`,
    );
  }
  return ctx.args;
}

/** The state as of `at` (default: the end), with a progress bar when the replay is slow. */
export async function stateAt(
  ctx: Ctx,
  at: number | Date | undefined,
  verify: boolean,
): Promise<ReplayState> {
  const bar = progress(ctx.io, "replaying");
  try {
    return await replay({
      nats: await ctx.connect(),
      stream: ctx.stream,
      prefix: ctx.prefix,
      ...(at !== undefined ? { until: at } : {}),
      verify,
      onProgress: bar.onProgress,
    });
  } finally {
    bar.done();
  }
}
