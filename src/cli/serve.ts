/**
 * `cnm serve`: runs this host's controller and answers the NATS API until SIGINT/SIGTERM, or
 * until its parent process dies (see `--exit-with-parent`), logging on stderr what an
 * operator needs: the recovery and the start-up reconciliation (what was repaired and
 * removed), NATS disconnects and reconnects, and per request the verb, the object and the
 * outcome. `cnm reconcile [--dry-run]` asks a running controller to compare the journal
 * with the kernel.
 *
 * @module
 */

import { createController } from "../controller/mod.ts";
import type { ReconcileReport } from "../controller/drift.ts";
import { ConflictError } from "../errors.ts";
import { apiSubject, createApiClient } from "../api/client.ts";
import { probeResponder, serve } from "../api/serve.ts";
import { type DockerServer, serveDocker } from "../api/docker/mod.ts";
import { type Ctx, expectArgs, json, table, type Verb } from "./_context.ts";
import { UsageError } from "./_args.ts";
import { redact } from "./_nats.ts";
import { watchParent } from "./_parent.ts";

/** One line per finding: what, where, and what was done. */
export function findingRows(r: ReconcileReport): string[][] {
  return r.findings.map((f) => [
    f.kind === "host" ? "host" : `${f.kind} ${f.objectId.slice(0, 12)}`,
    f.resource,
    f.name,
    f.problem +
    (f.expected ? ` (expected ${f.expected}${f.actual ? `, found ${f.actual}` : ""})` : ""),
    r.dryRun
      ? "not repaired (dry run)"
      : f.error
      ? `FAILED: ${f.error}`
      : f.repaired
      ? repairedAs(f)
      : "not repaired",
  ]);
}

function repairedAs(f: ReconcileReport["findings"][number]): string {
  if (f.problem === "unexpected") return "repaired: removed (an orphan with cnm's mark)";
  if (f.problem === "missing") return "repaired: re-created";
  return "repaired: set as the journal says";
}

/** A one-line summary of a reconciliation. */
export function reconcileSummary(r: ReconcileReport): string {
  const n = r.findings.length;
  if (!n) return `reconcile: kernel matches the journal (${r.ms.toFixed(0)} ms)`;
  const repaired = r.findings.filter((f) => f.repaired).length;
  const removed = r.findings.filter((f) => f.repaired && f.problem === "unexpected").length;
  return `reconcile: ${n} difference${n === 1 ? "" : "s"}, ${repaired} repaired (${removed} orphan${
    removed === 1 ? "" : "s"
  } removed), ${n - repaired} left (${r.ms.toFixed(0)} ms)`;
}

/** `cnm serve` */
export const serveVerb: Verb = {
  usage:
    "cnm serve [--namespace PATH] [--name-prefix P] [--state-dir DIR] [--docker-socket PATH] " +
    "[--advertise-addr IP] [--replicas N] [--resolv-conf PATH]",
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
    "resolv-conf": {
      type: "string",
      arg: "PATH",
      help: "the host's resolv.conf: sandboxes' files and the embedded DNS resolver's upstreams " +
        "(default /etc/resolv.conf)",
    },
    "advertise-addr": {
      type: "string",
      arg: "IP",
      help:
        "this host's VTEP for overlay networks (default: the address of the default route's device)",
    },
    replicas: {
      type: "string",
      arg: "N",
      help: "replicas of the stream and KV buckets it creates, on a JetStream cluster (default 1)",
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
    "exit-with-parent": {
      type: "boolean",
      env: "CNM_EXIT_WITH_PARENT",
      help: "stop when the parent process dies (set by `deno task cnm`; supervisors: run ./cnm)",
    },
  },
  async run(ctx: Ctx) {
    expectArgs(ctx, 0, 0, "no arguments");
    const f = ctx.flags;
    const replicas = f.replicas === undefined ? undefined : Number(f.replicas);
    if (replicas !== undefined && !(Number.isInteger(replicas) && replicas >= 1 && replicas <= 5)) {
      throw new UsageError(`invalid --replicas ${JSON.stringify(f.replicas)}: 1 to 5`);
    }
    const group = f["docker-group"] as string | undefined;
    if (group !== undefined && !/^\d+$/.test(group)) {
      throw new UsageError(`--docker-group takes a numeric group id, got ${JSON.stringify(group)}`);
    }
    const hostId = ctx.host;
    const say = (text: string) => ctx.io.err(redact(text, ctx.natsSettings.secrets));
    // Our own connection first: bad credentials fail here with their own message, and it
    // checks that no other controller answers for the host before the controller starts.
    const nc = await ctx.connect({ reconnect: true });
    const other = await probeResponder(nc, ctx.prefix, hostId);
    if (other) {
      throw new ConflictError(
        `host ${hostId} is already served on ${
          apiSubject(ctx.prefix, hostId, "*")
        } (${other}); stop that server first`,
      );
    }
    const note = (text: string) => say(`${new Date().toISOString()} ${text}`);
    const controller = await createController({
      nats: { ...ctx.nats, maxReconnectAttempts: -1, name: `cnm serve ${hostId} (controller)` },
      hostId,
      stream: ctx.stream,
      prefix: ctx.prefix,
      kernel: f.namespace ? { hostNamespace: f.namespace as string } : {},
      ...(f["name-prefix"] ? { namePrefix: f["name-prefix"] as string } : {}),
      ...(f["state-dir"] ? { stateDir: f["state-dir"] as string } : {}),
      ...(f["resolv-conf"] ? { hostResolvConf: f["resolv-conf"] as string } : {}),
      log: (line) => say(`cnm serve: ${line}`),
      ...(f["advertise-addr"] ? { advertiseAddress: f["advertise-addr"] as string } : {}),
      ...(replicas ? { replicas } : {}),
      onConnectionStatus: (s) =>
        note(
          s === "disconnect"
            ? "nats: disconnected (controller); commands fail until it is back"
            : "nats: reconnected (controller)",
        ),
    });
    const r = controller.recovery;
    let server;
    let docker: DockerServer | undefined;
    const log = (line: string) => f.quiet ? undefined : say(`${new Date().toISOString()} ${line}`);
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
        nats: nc,
        onRequest: f.quiet ? undefined : (verb, ms, err, object) =>
          log(
            `${verb}${object ? ` ${object}` : ""}: ${err ? `${err.name}: ${err.message}` : "ok"} (${
              ms.toFixed(1)
            } ms)`,
          ),
        onStatus: (s) =>
          log(s === "disconnect" ? "nats: disconnected (API)" : "nats: reconnected (API)"),
      });
    } catch (err) {
      await docker?.close();
      await controller.close();
      throw err;
    }
    say(
      `cnm serve: host ${controller.hostId}, stream ${controller.stream}: answering on ${server.subject} ` +
        `(recovered ${r.objects} objects to #${r.events} in ` +
        `${(r.ms - r.leaseWaitMs).toFixed(0)} ms, ` +
        (r.source === "snapshot"
          ? `from the snapshot at #${r.snapshotSeq} + ${r.tail} events`
          : `folding ${r.tail} events`) +
        `${r.resumed.length ? `; resumed ${r.resumed.join(", ")}` : ""}` +
        `${r.leaseWaitMs ? `; waited ${(r.leaseWaitMs / 1000).toFixed(1)} s for a lease` : ""})` +
        (docker ? `; Docker API on ${docker.path}` : ""),
    );
    for (const w of r.warnings) note(`warning: #${w.seq} ${w.type} ${w.objectId}: ${w.reason}`);
    if (r.reconcile) {
      note(reconcileSummary(r.reconcile));
      for (const row of findingRows(r.reconcile)) note(`  ${row.join("  ")}`);
    }
    const why = await new Promise<string>((resolve) => {
      Deno.addSignalListener("SIGINT", () => resolve("SIGINT"));
      Deno.addSignalListener("SIGTERM", () => resolve("SIGTERM"));
      if (f["exit-with-parent"]) watchParent(() => resolve("the death of its parent process"));
    });
    try {
      say(`cnm serve: stopping on ${why} (the kernel stays as it is)`);
    } catch { /* stderr may be gone with the parent: stop all the same */ }
    await docker?.close();
    await server.close();
    await controller.close();
  },
};

/** `cnm reconcile` */
export const reconcileVerb: Verb = {
  usage: "cnm reconcile [--dry-run]",
  summary: "Asks the host's controller to compare the journal with the kernel and repair " +
    "each difference (recorded as <kind>.reconciled; orphans as host.reconciled).",
  flags: { "dry-run": { type: "boolean", help: "only report; change and journal nothing" } },
  async run(ctx) {
    expectArgs(ctx, 0, 0, "no arguments");
    const api = await createApiClient({
      nats: await ctx.connect(),
      prefix: ctx.prefix,
      hostId: ctx.host,
      stream: ctx.stream,
    });
    let report: ReconcileReport;
    try {
      report = await api.reconcile({ dryRun: ctx.flags["dry-run"] === true });
    } finally {
      await api.close();
    }
    if (ctx.json) return json(ctx.io, report);
    ctx.io.out(reconcileSummary(report));
    if (report.findings.length) {
      ctx.io.out("");
      table(ctx.io, ["OBJECT", "RESOURCE", "NAME", "PROBLEM", "DONE"], findingRows(report));
    }
  },
};
