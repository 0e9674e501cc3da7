/**
 * `cnm driver ls|config|inspect`: driver configuration (driver.Config). `config` goes to the
 * host's controller through the NATS API and is journaled there; `ls` and `inspect` read the
 * stream (no controller needed), also as of a past point with `--at`.
 *
 * @module
 */

import { createApiClient } from "../api/client.ts";
import { builtinDrivers } from "../../drivers/mod.ts";
import { NotFoundError } from "../errors.ts";
import { pairs, parsePoint } from "./_args.ts";
import { type Ctx, expectArgs, json, stateAt, table, type Verb } from "./_context.ts";

/**
 * A `-o KEY=VALUE` value: JSON when it parses (`9000`, `false`, `[{"base":…}]`), else the
 * text (`none`, `10.0.0.1`); empty = back to the default (null).
 */
export function optionValue(text: string): unknown {
  if (text === "") return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

const show = (v: unknown) => (v === null || v === undefined ? "∅" : JSON.stringify(v));

const at = (ctx: Ctx) =>
  ctx.flags.at === undefined ? undefined : parsePoint(ctx.flags.at as string, "at");

const AT = {
  at: { type: "string" as const, arg: "T|SEQ", help: "as of a sequence, time or duration ago" },
};

/** `cnm driver …` */
export const driver: Record<string, Verb> = {
  ls: {
    usage: "cnm driver ls [--at T|SEQ]",
    summary: "Lists driver configurations journaled, per host (read from the stream).",
    flags: AT,
    async run(ctx) {
      expectArgs(ctx, 0, 0, "no arguments");
      const { drivers } = await stateAt(ctx, at(ctx), false);
      if (ctx.json) return json(ctx.io, drivers);
      table(
        ctx.io,
        ["DRIVER", "HOST", "CHANGES", "SEQ", "SINCE", "CONFIG"],
        drivers.map((d) => [d.name, d.host, d.changes, d.seq, d.at, JSON.stringify(d.config)]),
      );
    },
  },
  config: {
    usage: "cnm driver config NAME -o KEY=VALUE...",
    summary: "Changes a driver's configuration on the host's controller (journaled).",
    flags: {
      opt: {
        type: "string",
        short: "o",
        multi: true,
        arg: "KEY=VALUE",
        help: "option (JSON values: 9000, false, [...]; other text as is; empty = default)",
      },
    },
    extra: [
      "Examples:",
      "  cnm driver config bridge -o mtu=9000 -o firewallBackend=none",
      `  cnm driver config bridge -o 'defaultAddressPools=[{"base":"10.10.0.0/16","size":24}]'`,
      "  cnm driver config bridge -o mtu=        # back to the default",
      "Without -o it changes nothing and prints the configuration in force.",
    ].join("\n"),
    async run(ctx) {
      const [name] = expectArgs(ctx, 1, 1, "a driver name");
      const options = Object.fromEntries(
        Object.entries(pairs(ctx.flags.opt as string[] | undefined, "opt")).map((
          [k, v],
        ) => [k, optionValue(v)]),
      );
      const api = await createApiClient({ nats: ctx.nats, prefix: ctx.prefix, hostId: ctx.host });
      let result;
      try {
        result = await api.configureDriver(name, options);
      } finally {
        await api.close();
      }
      if (ctx.json) return json(ctx.io, result);
      for (const w of result.warnings) ctx.io.err(`warning: ${w}`);
      if (!result.journaled) {
        ctx.io.out(`driver ${result.driver} on host ${result.host}: nothing changed`);
        return;
      }
      ctx.io.out(`driver ${result.driver} on host ${result.host}: configured (#${result.seq})`);
      for (const [key, c] of Object.entries(result.changed)) {
        const reach = (c as { appliesTo?: string }).appliesTo;
        ctx.io.out(`  ${key}: ${show(c.from)} → ${show(c.to)}${reach ? ` (${reach})` : ""}`);
      }
    },
  },
  inspect: {
    usage: "cnm driver inspect [--at T|SEQ] NAME",
    summary: "Shows a driver's configuration on the host (--host) as JSON, read from the stream.",
    flags: AT,
    async run(ctx) {
      const [name] = expectArgs(ctx, 1, 1, "a driver name");
      const state = await stateAt(ctx, at(ctx), false);
      const found = state.drivers.find((d) => d.name === name && d.host === ctx.host);
      if (found) {
        return json(ctx.io, { ...found, configured: true });
      }
      // Not journaled: a built-in runs with its defaults; anything else is unknown here.
      const builtin = builtinDrivers().get(name);
      if (!builtin) {
        throw new NotFoundError(
          `driver "${name}" has no configuration journaled for host ${ctx.host}`,
        );
      }
      json(ctx.io, {
        id: `${ctx.host}.${name}`,
        name,
        host: ctx.host,
        config: builtin.configSchema?.parse({}) ?? {},
        configured: false,
      });
    },
  },
};
