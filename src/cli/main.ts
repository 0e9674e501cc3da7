/**
 * The `cnm` command line. `main(argv)` parses, runs one verb and returns the exit code:
 * 0 ok, 1 the operation failed, 2 usage, 3 NATS unreachable, 4 no controller for the host,
 * 5 NATS refused the credentials or TLS failed. Nothing it prints carries a secret.
 *
 * @module
 */

import { NoControllerError } from "../api/client.ts";
import { toErrorRecord, UnavailableError } from "../errors.ts";
import { NatsUnreachableError } from "../journal/watch.ts";
import { Exit, EXIT_CODES, GLOBAL_FLAGS, helpText, parseArgs, UsageError } from "./_args.ts";
import { type Ctx, type Io, makeCtx, stdio, type Verb } from "./_context.ts";
import { redact } from "./_nats.ts";
import { isAuthFailure, NatsAuthError } from "./_nats_connect.ts";
import { connectVerb, disconnectVerb, endpoint, network, sandbox } from "./objects.ts";
import { diff, events, exportVerb, historyVerb, importVerb, state } from "./journal.ts";
import { serveVerb } from "./serve.ts";
import { driver } from "./drivers.ts";
import { portVerb } from "./ports.ts";

const GROUPS: Record<string, Record<string, Verb>> = { network, sandbox, endpoint, driver };
const VERBS: Record<string, Verb> = {
  serve: serveVerb,
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
    `  ${`${g} ${Object.keys(vs).join("|")}`.padEnd(30)} ${
      vs.ls.summary.replace(/^Lists (\w+).*/, "manage $1")
    }`
  );
  const verbs = Object.entries(VERBS).map(([n, v]) =>
    `  ${n.padEnd(30)} ${v.summary.split(". ")[0].replace(/\.$/, "")}`
  );
  return [
    "Usage: cnm [GLOBAL OPTIONS] COMMAND [ARGS]",
    "",
    "Docker's Container Network Model over NATS JetStream: manage a host's networks through its",
    "controller (`cnm serve`), and read, replay and audit the journal from anywhere.",
    "",
    "Commands:",
    ...groups,
    ...verbs,
    "",
    "Global options:",
    ...Object.entries(GLOBAL_FLAGS).map(([n, s]) =>
      `  ${s.short ? `-${s.short}, ` : ""}--${n}${s.type === "string" ? ` ${s.arg}` : ""}`
        .padEnd(32) +
      `${s.help}${s.env ? ` [${[s.env].flat().map((e) => `$${e}`).join(", ")}]` : ""}`
    ),
    "",
    "Run 'cnm COMMAND --help' for a command's options.",
    EXIT_CODES,
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

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[], io: Io = stdio): Promise<number> {
  // Global flags may come before the command: the command starts at the first bare word.
  let globalsFirst = -1;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("-")) {
      globalsFirst = i;
      break;
    }
    const name = a.startsWith("--")
      ? a.slice(2)
      : Object.keys(GLOBAL_FLAGS).find((n) => `-${GLOBAL_FLAGS[n].short}` === a) ?? "";
    const spec = GLOBAL_FLAGS[name];
    if (spec?.type === "string" && !a.includes("=")) i++;
  }
  const words = globalsFirst >= 0 ? argv.slice(globalsFirst) : [];
  const before = globalsFirst >= 0 ? argv.slice(0, globalsFirst) : argv;
  if (globalsFirst < 0 || words[0] === "help") {
    const topic = words[0] === "help" ? lookup(words.slice(1)) : undefined;
    if (topic?.verb) {
      io.out(helpText(topic.verb.usage, topic.verb.summary, topic.verb.flags, topic.verb.extra));
    } else io.out(overview());
    return before.some((a) => a === "--help" || a === "-h") || words[0] === "help"
      ? Exit.Ok
      : Exit.Usage;
  }
  const { verb, name, rest, group } = lookup(words);
  if (!verb) {
    const wantsHelp = rest.includes("--help") || rest.includes("-h") || before.includes("--help");
    if (group) {
      const list = Object.entries(GROUPS[group]).map(([n, v]) =>
        `  ${`cnm ${group} ${n}`.padEnd(26)} ${v.summary}`
      );
      io[wantsHelp ? "out" : "err"](`Usage: cnm ${group} COMMAND\n\nCommands:\n${list.join("\n")}`);
      return wantsHelp ? Exit.Ok : Exit.Usage;
    }
    io.err(
      `cnm: unknown command ${JSON.stringify(name)}\nRun 'cnm --help' for the list of commands.`,
    );
    return Exit.Usage;
  }
  let json = false;
  let ctx: Ctx | undefined;
  let secrets: string[] = [];
  try {
    const { flags, args, sources } = parseArgs([...before, ...rest], verb.flags);
    // Mask what could be a secret even before the settings are understood.
    secrets = [flags.password, flags.token, flags.password === undefined ? flags.user : undefined]
      .filter((v): v is string => typeof v === "string");
    if (flags.help) {
      io.out(helpText(verb.usage, verb.summary, verb.flags, verb.extra));
      return Exit.Ok;
    }
    ctx = makeCtx(flags, args, io, sources, name, verb.formats);
    secrets = ctx.natsSettings.secrets;
    json = ctx.json;
    for (const w of ctx.natsSettings.warnings) {
      io.err(
        `cnm: warning: ${w} on the command line is visible to every user of this machine (ps); ` +
          "prefer $NATS_PASSWORD / $NATS_TOKEN / $NATS_URL, --creds or --nkey",
      );
    }
    await verb.run(ctx);
    return Exit.Ok;
  } catch (err) {
    const code = exitCodeOf(err);
    const message = redact((err as Error).message, secrets);
    if (code === Exit.Usage) {
      io.err(`cnm ${name}: ${message}\nRun 'cnm ${name} --help' for usage.`);
    } else if (json) {
      io.err(redact(JSON.stringify({ error: toErrorRecord(err) }), secrets));
    } else {
      io.err(`cnm ${name}: ${(err as Error).name}: ${message}`);
    }
    return code;
  } finally {
    await ctx?.close();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
