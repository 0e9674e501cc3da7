/**
 * `cnm serve`: runs this host's controller and answers the NATS API until SIGINT/SIGTERM.
 *
 * @module
 */

import { createController } from "../controller/mod.ts";
import { serve } from "../api/serve.ts";
import { type Ctx, expectArgs, type Verb } from "./_context.ts";

/** `cnm serve` */
export const serveVerb: Verb = {
  usage: "cnm serve [--namespace PATH] [--name-prefix P] [--state-dir DIR]",
  summary: "Runs the controller for --host, journaling to --stream, and answers commands on " +
    "<prefix>-api.<host>.<verb> until interrupted. Stopping leaves the kernel as it is.",
  flags: {
    namespace: {
      type: "string",
      arg: "PATH",
      help: "network namespace to treat as the host (default: this one)",
    },
    "name-prefix": {
      type: "string",
      arg: "P",
      help: "prefix of kernel object names (default cnm-)",
    },
    "state-dir": {
      type: "string",
      arg: "DIR",
      help: "sandbox files (default /var/lib/cnm/<host>)",
    },
    quiet: { type: "boolean", short: "q", help: "do not log requests on stderr" },
  },
  async run(ctx: Ctx) {
    expectArgs(ctx, 0, 0, "no arguments");
    const f = ctx.flags;
    const controller = await createController({
      nats: { ...ctx.nats, maxReconnectAttempts: -1 },
      hostId: ctx.host,
      stream: ctx.stream,
      prefix: ctx.prefix,
      kernel: f.namespace ? { hostNamespace: f.namespace as string } : {},
      ...(f["name-prefix"] ? { namePrefix: f["name-prefix"] as string } : {}),
      ...(f["state-dir"] ? { stateDir: f["state-dir"] as string } : {}),
      log: (line) => ctx.io.err(`cnm serve: ${line}`),
    });
    const r = controller.recovery;
    let server;
    try {
      server = await serve(controller, {
        nats: { ...ctx.nats, maxReconnectAttempts: -1 },
        onRequest: f.quiet ? undefined : (verb, ms, err) =>
          ctx.io.err(
            `${new Date().toISOString()} ${verb} ${ms.toFixed(1)}ms${
              err ? ` ${err.name}: ${err.message}` : ""
            }`,
          ),
      });
    } catch (err) {
      await controller.close();
      throw err;
    }
    ctx.io.err(
      `cnm serve: host ${controller.hostId}, stream ${controller.stream}: answering on ${server.subject} ` +
        `(recovered ${r.objects} objects from ${r.events} events in ` +
        `${(r.ms - r.leaseWaitMs).toFixed(0)} ms` +
        `${r.resumed.length ? `, resumed ${r.resumed.join(", ")}` : ""}` +
        `${r.leaseWaitMs ? `; waited ${(r.leaseWaitMs / 1000).toFixed(1)} s for a lease` : ""})`,
    );
    await new Promise<void>((resolve) => {
      Deno.addSignalListener("SIGINT", resolve);
      Deno.addSignalListener("SIGTERM", resolve);
    });
    ctx.io.err("cnm serve: stopping (the kernel stays as it is)");
    await server.close();
    await controller.close();
  },
};
