/**
 * The `cnm` command line. `main(argv)` parses, runs one verb and returns the exit code:
 * 0 ok, 1 the operation failed, 2 usage, 3 NATS unreachable, 4 no controller for the host,
 * 5 NATS refused the credentials or TLS failed. Nothing it prints carries a secret. Usage errors are found before connecting; with `--format json` every error, usage ones
 * too, is one JSON line on stderr; a closed stdout (`cnm events | head -1`) ends quietly.
 *
 * @module
 */

import { NoControllerError } from "../api/client.ts";
import { toErrorRecord, UnavailableError } from "../errors.ts";
import { NatsUnreachableError } from "../journal/watch.ts";
import {
  columns,
  Exit,
  EXIT_HELP,
  GLOBAL_FLAGS,
  helpText,
  parseArgs,
  UsageError,
  wrap,
} from "./_args.ts";
import { type Ctx, type Io, makeCtx, stdio, type Verb } from "./_context.ts";
import { redact } from "./_nats.ts";
import { isAuthFailure, NatsAuthError } from "./_nats_connect.ts";
import { network } from "./networks.ts";
import { sandbox } from "./sandboxes.ts";
import { connectVerb, disconnectVerb, endpoint } from "./endpoints.ts";
import { diff, exportVerb, historyVerb, importVerb, state } from "./journal.ts";
import { events } from "./events.ts";
import { reconcileVerb, serveVerb } from "./serve.ts";
import { driver } from "./drivers.ts";
import { portVerb } from "./ports.ts";
import config from "../../deno.json" with { type: "json" };

/** The version printed by `cnm --version` (deno.json's). */
export const VERSION: string = config.version;

const GROUPS: Record<string, Record<string, Verb>> = { network, sandbox, endpoint, driver };
const VERBS: Record<string, Verb> = {
  serve: serveVerb,
  reconcile: reconcileVerb,
  connect: connectVerb,
  disconnect: disconnectVerb,
  port: portVerb,
  events,
  history: historyVerb,
  state,
  diff,
  export: exportVerb,
  import: importVerb,
};

function overview(): string {
  const groups = Object.entries(GROUPS).map(([g, vs]) =>
    columns(
      `  ${g} ${Object.keys(vs).join("|")}`,
      `manage ${g === "sandbox" ? "sandboxes" : `${g}s`}`,
      40,
    )
  );
  const verbs = Object.entries(VERBS).map(([n, v]) =>
    columns(`  ${n}`, v.summary.split(". ")[0].replace(/\.$/, ""), 40)
  );
  return [
    "Usage: cnm [GLOBAL OPTIONS] COMMAND [ARGS]",
    "",
    wrap(
      "Docker's Container Network Model over NATS JetStream: manage a host's networks through " +
        "its controller (`cnm serve`), and read, replay and audit the journal from anywhere.",
    ),
    "",
    "Commands:",
    ...groups,
    ...verbs,
    "",
    "Global options:",
    ...Object.entries(GLOBAL_FLAGS).map(([n, s]) =>
      columns(
        `  ${s.short ? `-${s.short}, ` : ""}--${n}${s.type === "string" ? ` ${s.arg}` : ""}`,
        `${s.help}${s.env ? ` [${[s.env].flat().map((e) => `$${e}`).join(", ")}]` : ""}`,
      )
    ),
    columns("  --version", "print the version"),
    "",
    "Run 'cnm help COMMAND' or 'cnm COMMAND --help' for a command's options.",
    EXIT_HELP,
  ].join("\n");
}

function groupHelp(group: string): string {
  const list = Object.entries(GROUPS[group]).map(([n, v]) =>
    columns(`  cnm ${group} ${n}`, v.summary, 26)
  );
  return [
    `Usage: cnm ${group} COMMAND`,
    "",
    "Commands:",
    ...list,
    "",
    `Run 'cnm ${group} COMMAND --help' for a command's options.`,
  ].join("\n");
}

/** Finds the verb named by the first one or two words. */
function lookup(words: string[]): { verb?: Verb; name: string; rest: string[]; group?: string } {
  const [first, second] = words;
  if (first in GROUPS) {
    const group = GROUPS[first];
    if (second && second in group) {
      return { verb: group[second], name: `${first} ${second}`, rest: words.slice(2) };
    }
    return { name: first, rest: words.slice(1), group: first };
  }
  if (first in VERBS) return { verb: VERBS[first], name: first, rest: words.slice(1) };
  return { name: first ?? "", rest: words.slice(1) };
}

/** Edit distance (for "did you mean"). */
function distance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length];
}

/** The nearest of `names` to `word`, if it is near enough. */
export function nearest(word: string, names: string[]): string | undefined {
  let best: string | undefined;
  let score = Infinity;
  for (const n of names) {
    const s = distance(word, n) - (n.startsWith(word) ? 1 : 0);
    if (s < score) [best, score] = [n, s];
  }
  return best !== undefined && score <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

/** Maps an error to an exit code. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof UsageError) return Exit.Usage;
  if (err instanceof NatsAuthError || isAuthFailure(err)) return Exit.NatsAuth;
  if (err instanceof NoControllerError) return Exit.NoController;
  if (err instanceof NatsUnreachableError) return Exit.NatsUnreachable;
  if (err instanceof UnavailableError && /cannot connect to NATS/.test(err.message)) {
    return Exit.NatsUnreachable;
  }
  return Exit.Error;
}

/** True when the error is stdout (or stderr) closed under us: `cnm events | head -1`. */
function isBrokenPipe(err: unknown): boolean {
  return err instanceof Deno.errors.BrokenPipe ||
    (err as { code?: string })?.code === "EPIPE";
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[], io: Io = stdio): Promise<number> {
  const json = argv.some((a, i) =>
    a === "--format=json" || (a === "--format" && argv[i + 1] === "json")
  );
  // Whatever could be a secret is masked in every message.
  const secrets: string[] = [];
  const fail = (name: string, err: Error, code: number): number => {
    const message = redact(err.message, secrets);
    if (json) {
      const error = err instanceof UsageError
        ? { name: err.name, code: "USAGE", message }
        : { ...toErrorRecord(err), message };
      io.err(redact(JSON.stringify({ error, exitCode: code }), secrets));
    } else if (code === Exit.Usage) {
      io.err(
        `cnm${name ? ` ${name}` : ""}: ${message}\nRun 'cnm ${
          name ? `${name} ` : ""
        }--help' for usage.`,
      );
    } else io.err(`cnm ${name}: ${err.name}: ${message}`);
    return code;
  };
  try {
    return await run(argv, io, fail, secrets);
  } catch (err) {
    if (isBrokenPipe(err)) return Exit.Ok;
    throw err;
  }
}

async function run(
  argv: string[],
  io: Io,
  fail: (name: string, err: Error, code: number) => number,
  secrets: string[],
): Promise<number> {
  // Global flags may come before the command: the command starts at the first bare word.
  let globalsFirst = -1;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("-")) {
      globalsFirst = i;
      break;
    }
    const name = a.startsWith("--")
      ? a.slice(2).split("=")[0]
      : Object.keys(GLOBAL_FLAGS).find((n) => `-${GLOBAL_FLAGS[n].short}` === a) ?? "";
    const spec = GLOBAL_FLAGS[name];
    if (spec?.type === "string" && !a.includes("=")) i++;
  }
  const words = globalsFirst >= 0 ? argv.slice(globalsFirst) : [];
  const before = globalsFirst >= 0 ? argv.slice(0, globalsFirst) : argv;
  if (argv.includes("--version") && (globalsFirst < 0 || words[0] === "version")) {
    io.out(`cnm ${VERSION}`);
    return Exit.Ok;
  }
  if (words[0] === "version") {
    io.out(`cnm ${VERSION}`);
    return Exit.Ok;
  }
  if (globalsFirst < 0 || words[0] === "help") {
    const topic = words[0] === "help" && words.length > 1 ? lookup(words.slice(1)) : undefined;
    if (topic?.verb) {
      io.out(helpText(topic.verb.usage, topic.verb.summary, topic.verb.flags, topic.verb.extra));
    } else if (topic?.group) io.out(groupHelp(topic.group));
    else if (topic) return unknown(topic.name, words.slice(1), fail);
    else io.out(overview());
    return before.some((a) => a === "--help" || a === "-h") || words[0] === "help"
      ? Exit.Ok
      : Exit.Usage;
  }
  const { verb, name, rest, group } = lookup(words);
  if (!verb) {
    const wantsHelp = rest.includes("--help") || rest.includes("-h") || before.includes("--help");
    if (group && (wantsHelp || rest.length === 0 || rest[0].startsWith("-"))) {
      io[wantsHelp ? "out" : "err"](groupHelp(group));
      return wantsHelp ? Exit.Ok : Exit.Usage;
    }
    return unknown(name, words, fail);
  }
  let ctx: Ctx | undefined;
  try {
    const { flags, args, sources } = parseArgs([...before, ...rest], verb.flags);
    // Mask what could be a secret even before the settings are understood.
    secrets.push(
      ...[flags.password, flags.token, flags.password === undefined ? flags.user : undefined]
        .filter((v): v is string => typeof v === "string"),
    );
    if (flags.help) {
      io.out(helpText(verb.usage, verb.summary, verb.flags, verb.extra));
      return Exit.Ok;
    }
    ctx = makeCtx(flags, args, io, sources, name, verb.formats);
    secrets.push(...ctx.natsSettings.secrets);
    for (const w of ctx.natsSettings.warnings) {
      io.err(
        `cnm: warning: ${w} on the command line is visible to every user of this machine (ps); ` +
          "prefer $NATS_PASSWORD / $NATS_TOKEN / $NATS_URL, --creds or --nkey",
      );
    }
    await verb.run(ctx);
    return Exit.Ok;
  } catch (err) {
    if (isBrokenPipe(err)) throw err;
    return fail(name, err as Error, exitCodeOf(err));
  } finally {
    await ctx?.close();
  }
}

/** An unknown command: names itself and suggests the nearest one. */
function unknown(
  name: string,
  words: string[],
  fail: (name: string, err: Error, code: number) => number,
): number {
  let command = name;
  let guess: string | undefined;
  if (name in GROUPS) {
    command = `${name} ${words[1] ?? ""}`.trim();
    const sub = nearest(words[1] ?? "", Object.keys(GROUPS[name]));
    guess = sub && `${name} ${sub}`;
  } else {
    guess = nearest(name, [...Object.keys(GROUPS), ...Object.keys(VERBS), "help", "version"]);
  }
  return fail(
    "",
    new UsageError(
      `unknown command ${JSON.stringify(command)}${guess ? `; did you mean ${guess}?` : ""}`,
    ),
    Exit.Usage,
  );
}

if (import.meta.main) Deno.exit(await main(Deno.args));
