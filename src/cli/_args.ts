/**
 * A small argument parser for the CLI: long flags (`--name value`, `--name=value`), short
 * aliases, booleans, repeatable flags, `--` to end flags; plus the global connection flags
 * and their environment variables, and the exit codes.
 *
 * @module
 */

/** Exit codes scripts can rely on. */
export const Exit = {
  Ok: 0,
  /** The operation failed (not found, conflict, driver error, …). */
  Error: 1,
  /** Bad command line. */
  Usage: 2,
  /** NATS could not be reached. */
  NatsUnreachable: 3,
  /** No controller answers for the host (start one with `cnm serve`). */
  NoController: 4,
  /** NATS refused the credentials, or TLS with it failed. */
  NatsAuth: 5,
} as const;

/** The exit codes, as --help prints them. */
/** A wrong command line (exit code 2). */
export class UsageError extends Error {
  constructor(message: string, readonly verb?: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** One flag a verb takes. */
export interface FlagSpec {
  type: "string" | "boolean";
  short?: string;
  /** May be given several times (collected in an array). */
  multi?: boolean;
  /** Environment variable(s) used when the flag is absent, the first one set wins. */
  env?: string | string[];
  /** Shown in --help. */
  help: string;
  /** Placeholder in --help, e.g. `URL`. */
  arg?: string;
}

/** Flags by long name. */
export type FlagSpecs = Record<string, FlagSpec>;

/** Parsed values: string, boolean or string[] by flag name. */
export type Flags = Record<string, string | boolean | string[] | undefined>;

/** Flags every verb accepts: the connection (as the `nats` CLI names them), then cnm's own. */
export const GLOBAL_FLAGS: FlagSpecs = {
  server: {
    type: "string",
    short: "s",
    env: ["CNM_NATS_URL", "NATS_URL"],
    arg: "URL",
    help: "NATS server(s), comma-separated; nats://[user:pass@]host:port, tls://… " +
      "(default 127.0.0.1:4222)",
  },
  nats: { type: "string", arg: "URL", help: "same as --server" },
  user: {
    type: "string",
    env: "NATS_USER",
    arg: "USER",
    help: "user name (a token when no password is given)",
  },
  password: {
    type: "string",
    env: "NATS_PASSWORD",
    arg: "PASSWORD",
    help: "password (prefer $NATS_PASSWORD: flags show in ps)",
  },
  token: { type: "string", env: "NATS_TOKEN", arg: "TOKEN", help: "authentication token" },
  creds: { type: "string", env: "NATS_CREDS", arg: "FILE", help: "user credentials file (JWT)" },
  nkey: { type: "string", env: "NATS_NKEY", arg: "FILE", help: "file holding a user NKey seed" },
  tlscert: { type: "string", env: "NATS_CERT", arg: "FILE", help: "TLS client certificate" },
  tlskey: { type: "string", env: "NATS_KEY", arg: "FILE", help: "TLS client private key" },
  tlsca: { type: "string", env: "NATS_CA", arg: "FILE", help: "TLS certificate authority" },
  stream: {
    type: "string",
    env: "CNM_STREAM",
    arg: "NAME",
    help: "JetStream stream (default CNM)",
  },
  prefix: {
    type: "string",
    env: "CNM_PREFIX",
    arg: "PREFIX",
    help: "subject prefix (default cnm)",
  },
  host: {
    type: "string",
    env: "CNM_HOST_ID",
    arg: "ID",
    help: "controller host id (default: this hostname)",
  },
  "all-hosts": {
    type: "boolean",
    help: "read verbs: show every host's objects (default: --host's only)",
  },
  format: { type: "string", arg: "table|json", help: "output format (default table)" },
  help: { type: "boolean", short: "h", help: "show help" },
};

/**
 * Parses `argv` against `specs` (plus {@link GLOBAL_FLAGS}).
 *
 * @throws {UsageError} on unknown flags, missing values or bad booleans.
 */
export function parseArgs(
  argv: string[],
  specs: FlagSpecs,
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
): { flags: Flags; args: string[]; sources: Map<string, string> } {
  const all = { ...GLOBAL_FLAGS, ...specs };
  const short = new Map(
    Object.entries(all).filter(([, s]) => s.short).map(([n, s]) => [s.short!, n]),
  );
  const flags: Flags = {};
  const args: string[] = [];
  /** Where each given flag came from: `--name` or `$ENV`. */
  const sources = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      args.push(...argv.slice(i + 1));
      break;
    }
    let name: string | undefined;
    let value: string | undefined;
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      if (eq > 0) value = a.slice(eq + 1);
    } else if (/^-[a-zA-Z]$/.test(a)) {
      name = short.get(a.slice(1));
      if (!name) throw new UsageError(`unknown flag ${a}`);
    } else {
      args.push(a);
      continue;
    }
    const spec = all[name];
    if (!spec) throw new UsageError(`unknown flag --${name}`);
    sources.set(name, `--${name}`);
    if (spec.type === "boolean") {
      if (value !== undefined && !["true", "false"].includes(value)) {
        throw new UsageError(`--${name} takes no value (or =true/=false)`);
      }
      flags[name] = value !== "false";
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) {
        throw new UsageError(`--${name} needs a value (${spec.arg ?? "VALUE"})`);
      }
      value = argv[++i];
    }
    if (spec.multi) flags[name] = [...(flags[name] as string[] | undefined ?? []), value];
    else flags[name] = value;
  }
  for (const [name, spec] of Object.entries(all)) {
    if (flags[name] !== undefined || !spec.env) continue;
    const set = [spec.env].flat().find((e) => env(e) !== undefined);
    if (set === undefined) continue;
    flags[name] = spec.type === "boolean" ? /^(1|true|yes)$/i.test(env(set)!) : env(set);
    sources.set(name, `$${set}`);
  }
  return { flags, args, sources };
}

/** `k=v` pairs (from repeatable flags) as a map. */
export function pairs(values: string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values ?? []) {
    const eq = v.indexOf("=");
    if (eq <= 0) throw new UsageError(`--${flag} takes KEY=VALUE, got ${JSON.stringify(v)}`);
    out[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return out;
}

const UNITS: Record<string, number> = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 };

/**
 * A point in the stream: `123` (a sequence), an ISO-8601 time, or a duration ago
 * (`90s`, `15m`, `2h`, `1d`).
 *
 * @throws {UsageError} for anything else.
 */
export function parsePoint(s: string, flag: string, now = Date.now()): number | Date {
  if (/^\d+$/.test(s)) return Number(s);
  const d = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(s);
  if (d) return new Date(now - Number(d[1]) * UNITS[d[2]]);
  const t = Date.parse(s);
  if (!Number.isNaN(t) && /^\d{4}-\d{2}-\d{2}/.test(s)) return new Date(t);
  throw new UsageError(
    `--${flag} takes a sequence (123), a time (2025-01-31T12:00:00Z) or a duration ago (15m), got ${
      JSON.stringify(s)
    }`,
  );
}

/** Wraps `text` to `width` columns, continuation lines indented by `indent`. */
export function wrap(text: string, width = 80, indent = 0): string {
  const out: string[] = [];
  for (const para of text.split("\n")) {
    const lead = /^ */.exec(para)![0];
    let line = lead;
    for (const word of para.slice(lead.length).split(/ +/)) {
      if (line.trim() && line.length + 1 + word.length > width) {
        out.push(line.trimEnd());
        line = " ".repeat(indent) + word;
      } else line = line.trim() ? `${line} ${word}` : line + word;
    }
    out.push(line.trimEnd());
  }
  return out.join("\n");
}

/** Two columns, the right one wrapped to 80 columns. */
export function columns(left: string, right: string, at = 31): string {
  const lines = wrap(right, 80 - at).split("\n");
  const first = left.length >= at
    ? [left, " ".repeat(at) + lines[0]]
    : [left.padEnd(at) + lines[0]];
  return [...first, ...lines.slice(1).map((l) => " ".repeat(at) + l)].join("\n");
}

/** Renders a verb's help text (80 columns). */
export function helpText(usage: string, summary: string, specs: FlagSpecs, extra = ""): string {
  const line = ([n, s]: [string, FlagSpec]) => {
    const left = `  ${s.short ? `-${s.short}, ` : ""}--${n}${
      s.type === "string" ? ` ${s.arg ?? "VALUE"}` : ""
    }`;
    const env = s.env ? ` [${[s.env].flat().map((e) => `$${e}`).join(", ")}]` : "";
    return columns(left, `${s.help}${s.multi ? " (repeatable)" : ""}${env}`);
  };
  const own = Object.entries(specs).map(line);
  const global = Object.entries(GLOBAL_FLAGS).map(line);
  return [
    wrap(`Usage: ${usage}`, 80, 7),
    "",
    wrap(summary),
    ...(own.length ? ["", "Options:", ...own] : []),
    "",
    "Global options:",
    ...global,
    ...(extra ? ["", wrap(extra)] : []),
    "",
    EXIT_HELP,
  ].join("\n");
}

/** The exit codes, for help texts. */
export const EXIT_HELP = wrap(
  "Exit codes: 0 ok, 1 operation failed, 2 usage, 3 NATS unreachable, 4 no controller for the " +
    "host, 5 NATS refused the credentials or TLS failed",
);
