/**
 * `cnm port SANDBOX [PORT[/PROTO]]`: what a sandbox publishes, as `docker port` prints it, read
 * from the stream (no controller needed).
 *
 * @module
 */

import { InvalidArgumentError } from "../errors.ts";
import { expectArgs, json, type Verb } from "./_context.ts";
import { exposed } from "./_publish.ts";
import { currentState } from "./objects.ts";
import { find } from "./_scope.ts";

/** `cnm port` */
export const portVerb: Verb = {
  usage: "cnm port SANDBOX [PORT[/PROTO]]",
  summary: "Lists a sandbox's published ports (`80/tcp -> 0.0.0.0:8080`, as `docker port`), " +
    "read from the stream; with PORT, only its host addresses.",
  flags: {},
  async run(ctx) {
    const [ref, filter] = expectArgs(ctx, 1, 2, "a sandbox and maybe a port");
    const want = filter === undefined ? undefined : exposed(filter);
    const state = await currentState(ctx);
    const sb = find(ctx, state.sandboxes, ref, "sandbox");
    const rows = state.endpoints
      .filter((e) => e.sandboxId === sb.id && e.state === "joined")
      // A plugin's network: only the bindings as asked are known (the plugin chooses): none.
      .flatMap((e) =>
        (e.ports ?? []).filter((m) => !m.requested).map((m) => ({ ...m, endpoint: e.id }))
      )
      .filter((m) => !want || (m.containerPort === want.port && m.proto === want.proto));
    if (ctx.json) return json(ctx.io, rows);
    const at = (ip: string, port: number) => ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
    for (const m of rows) {
      ctx.io.out(
        want
          ? at(m.hostIp, m.hostPort)
          : `${m.containerPort}/${m.proto} -> ${at(m.hostIp, m.hostPort)}`,
      );
    }
    if (want && !rows.length) {
      throw new InvalidArgumentError(
        `No public port '${want!.port}/${want!.proto}' published for ${sb.name}`,
      );
    }
  },
};
