/**
 * The port publishing flags of `cnm connect` and `cnm endpoint create`: `-p/--publish SPEC`
 * (Docker's `[hostIp:][hostPort[-end]:]containerPort[-end][/tcp|udp]`, repeatable),
 * `--expose PORT[/PROTO]` and `-P/--publish-all`.
 *
 * @module
 */

import { InvalidArgumentError } from "../errors.ts";
import { parsePortSpec, type PortBinding } from "../ports/binding.ts";
import { type FlagSpecs, UsageError } from "./_args.ts";
import type { Ctx } from "./_context.ts";
/** The publishing flags. */
export const PUBLISH_FLAGS: FlagSpecs = {
  publish: {
    type: "string",
    short: "p",
    multi: true,
    arg: "SPEC",
    help: "publish a port: [hostIp:][hostPort[-end]:]containerPort[-end][/tcp|udp]",
  },
  expose: { type: "string", multi: true, arg: "PORT[/PROTO]", help: "a port the sandbox exposes" },
  "publish-all": {
    type: "boolean",
    short: "P",
    help: "publish every --expose'd port on a port cnm chooses",
  },
};

/** Parses `80` or `53/udp`. */
export function exposed(spec: string): { port: number; proto: "tcp" | "udp" } {
  const m = /^(\d{1,5})(?:\/(tcp|udp))?$/i.exec(spec);
  const port = Number(m?.[1]);
  if (!m || port < 1 || port > 65535) {
    throw new UsageError(`invalid --expose ${spec}: PORT[/tcp|udp]`);
  }
  return { port, proto: (m[2]?.toLowerCase() ?? "tcp") as "tcp" | "udp" };
}

/** The `createEndpoint` options the publishing flags ask for. */
export function publishOptions(ctx: Ctx): {
  portBindings?: PortBinding[];
  exposedPorts?: { port: number; proto: "tcp" | "udp" }[];
  publishAll?: boolean;
} {
  const f = ctx.flags;
  const specs = (f.publish as string[] | undefined) ?? [];
  const expose = (f.expose as string[] | undefined) ?? [];
  const bindings = specs.flatMap((s) => {
    try {
      return parsePortSpec(s);
    } catch (err) {
      if (err instanceof InvalidArgumentError) throw new UsageError(`-p ${s}: ${err.message}`);
      throw err;
    }
  });
  return {
    ...(bindings.length ? { portBindings: bindings } : {}),
    ...(expose.length ? { exposedPorts: expose.map(exposed) } : {}),
    ...(f["publish-all"] === true ? { publishAll: true } : {}),
  };
}
