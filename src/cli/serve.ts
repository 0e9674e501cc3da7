/**
 * `cnm serve`: runs this host's controller and answers the NATS API until SIGINT/SIGTERM.
 *
 * @module
 */

import { createController } from "../controller.ts";
import { serve } from "../serve.ts";
import { type DockerServer, serveDocker } from "../api/docker/mod.ts";
import { type Ctx, expectArgs, type Verb } from "./_context.ts";
import { UsageError } from "./_args.ts";

/** `cnm serve` */
export const serveVerb: Verb = {
  usage: "cnm serve [--namespace PATH] [--name-prefix P] [--state-dir DIR] [--docker-socket PATH]",
  summary: "Runs the controller for --host, journaling to --stream, and answers commands on " +
    "<prefix>-api.<host>.<verb> until interrupted. Stopping leaves the kernel as it is. " +
    "With --docker-socket it also answers the Docker Engine API for networks there.",
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
    "docker-socket": {
      type: "string",
      arg: "PATH",
      help: "also serve the Docker Engine API (networks) on this unix socket (mode 0660)",
    },
    "docker-group": {
      type: "string",
      arg: "GID",
      help: "group id to give the Docker socket (default: unchanged)",
    },
    quiet: { type: "boolean", short: "q", help: "do not log requests on stderr" },
  },
  async run(ctx: Ctx) {
    expectArgs(ctx, 0, 0, "no arguments");
    const f = ctx.flags;
    const group = f["docker-group"] as string | undefined;
    if (group !== undefined && !/^\d+$/.test(group)) {
      throw new UsageError(`--docker-group takes a numeric group id, got ${JSON.stringify(group)}`);
    }
    const controller = await createController({
      nats: { ...ctx.nats, maxReconnectAttempts: -1 },
      hostId: ctx.host,
      stream: ctx.stream,
      prefix: ctx.prefix,
      kernel: f.namespace ? { hostNamespace: f.namespace as string } : {},
      ...(f["name-prefix"] ? { namePrefix: f["name-prefix"] as string } : {}),
      ...(f["state-dir"] ? { stateDir: f["state-dir"] as string } : {}),
    });
    const r = controller.recovery;
    let server;
    let docker: DockerServer | undefined;
    const log = (line: string) =>
      f.quiet ? undefined : ctx.io.err(`${new Date().toISOString()} ${line}`);
    try {
      if (f["docker-socket"]) {
        docker = await serveDocker(controller, {
          path: f["docker-socket"] as string,
          ...(group !== undefined ? { group: Number(group) } : {}),
          nats: { ...ctx.nats, maxReconnectAttempts: -1 },
          onRequest: (method, path, status, ms) =>
            log(`docker ${method} ${path} ${status} ${ms.toFixed(1)}ms`),
        });
      }
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
      await docker?.close();
      await controller.close();
      throw err;
    }
    ctx.io.err(
      `cnm serve: host ${controller.hostId}, stream ${controller.stream}: answering on ${server.subject} ` +
        `(recovered ${r.objects} objects from ${r.events} events in ${r.ms.toFixed(0)} ms` +
        `${r.resumed.length ? `, resumed ${r.resumed.join(", ")}` : ""})` +
        (docker ? `; Docker API on ${docker.path}` : ""),
    );
    await new Promise<void>((resolve) => {
      Deno.addSignalListener("SIGINT", resolve);
      Deno.addSignalListener("SIGTERM", resolve);
    });
    ctx.io.err("cnm serve: stopping (the kernel stays as it is)");
    await docker?.close();
    await server.close();
    await controller.close();
  },
};
