/**
 * `cnm serve`: runs this host's controller and answers the NATS API until SIGINT/SIGTERM,
 * logging on stderr what an operator needs: the recovery and the start-up reconciliation
 * (what was repaired and removed), NATS disconnects and reconnects, and per request the
 * verb, the object and the outcome. `cnm reconcile [--dry-run]` asks a running controller
 * to compare the journal with the kernel.
 *
 * @module
 */

import { createController } from "../controller/mod.ts";
import type { ReconcileReport } from "../controller/drift.ts";
import { createApiClient } from "../api/client.ts";
import { serve } from "../api/serve.ts";
import { type Ctx, expectArgs, json, table, type Verb } from "./_context.ts";

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
    const log = (text: string) => ctx.io.err(`${new Date().toISOString()} ${text}`);
    const controller = await createController({
      nats: { ...ctx.nats, maxReconnectAttempts: -1 },
      hostId: ctx.host,
      stream: ctx.stream,
      prefix: ctx.prefix,
      kernel: f.namespace ? { hostNamespace: f.namespace as string } : {},
      ...(f["name-prefix"] ? { namePrefix: f["name-prefix"] as string } : {}),
      ...(f["state-dir"] ? { stateDir: f["state-dir"] as string } : {}),
      onConnectionStatus: (s) =>
        log(
          s === "disconnect"
            ? "nats: disconnected (controller); commands fail until it is back"
            : "nats: reconnected (controller)",
        ),
    });
    const r = controller.recovery;
    let server;
    try {
      server = await serve(controller, {
        nats: { ...ctx.nats, maxReconnectAttempts: -1 },
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
      await controller.close();
      throw err;
    }
    ctx.io.err(
      `cnm serve: host ${controller.hostId}, stream ${controller.stream}: answering on ${server.subject} ` +
        `(recovered ${r.objects} objects to #${r.events} in ${r.ms.toFixed(0)} ms, ` +
        (r.source === "snapshot"
          ? `from the snapshot at #${r.snapshotSeq} + ${r.tail} events`
          : `folding ${r.tail} events`) +
        `${r.resumed.length ? `; resumed ${r.resumed.join(", ")}` : ""})`,
    );
    for (const w of r.warnings) log(`warning: #${w.seq} ${w.type} ${w.objectId}: ${w.reason}`);
    if (r.reconcile) {
      log(reconcileSummary(r.reconcile));
      for (const row of findingRows(r.reconcile)) log(`  ${row.join("  ")}`);
    }
    await new Promise<void>((resolve) => {
      Deno.addSignalListener("SIGINT", resolve);
      Deno.addSignalListener("SIGTERM", resolve);
    });
    ctx.io.err("cnm serve: stopping (the kernel stays as it is)");
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
    const api = await createApiClient({ nats: ctx.nats, prefix: ctx.prefix, hostId: ctx.host });
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
