/**
 * The reconcile command: compares the journal's view with the kernel (drift.ts) and, unless
 * dry, repairs each difference under the object's lock and journals it as
 * `<kind>.reconciled` (orphans: `host.reconciled`).
 *
 * @module
 */

import type { EndpointContext } from "../../actors/endpoint.ts";
import type { NetworkContext } from "../../actors/network.ts";
import type { SandboxContext } from "../../actors/sandbox.ts";
import { toErrorRecord } from "../errors.ts";
import { newEventId } from "../ids.ts";
import { type ControllerContext, effectEnv } from "./context.ts";
import {
  type Finding,
  hasFirewall,
  inspectDrift,
  type ReconcileReport,
  repairDrift,
} from "./drift.ts";
import { ensureJoined, ensureNetwork } from "./effects.ts";
import {
  inspectOverlayDrift,
  isOverlayFinding,
  isOverlayNamespace,
  removeOverlayDevice,
  removeOverlayOrphan,
  repairOverlay,
} from "./drift_overlay.ts";
import { endpointsOfSandbox } from "./objects.ts";
import { inspectPortsDrift, isPortFinding, repairPortDrift } from "./drift_ports.ts";
import type { Rec } from "./runtime.ts";

/** Options of {@link reconcile}. */
export interface ReconcileOptions {
  /** Only report; change nothing and journal nothing. Default false. */
  dryRun?: boolean;
}

/** Compares the journal's view with the kernel and, unless `dryRun`, repairs it. */
export async function reconcile(
  ctx: ControllerContext,
  options: ReconcileOptions = {},
): Promise<ReconcileReport> {
  const rt = ctx.runtime;
  rt.assertOpen();
  const started = performance.now();
  const dryRun = options.dryRun ?? false;
  return await rt.locks.with(["reconcile"], async () => {
    const view = <C>(m: Map<string, Rec>) =>
      [...m.values()].map((r) => ({ state: rt.state(r), c: rt.context<C>(r) }));
    const networks = view<NetworkContext>(rt.objects.network);
    const firewall = ctx.firewall;
    const findings = [
      ...await inspectDrift({
        kernel: ctx.kernel,
        namePrefix: ctx.settings.namePrefix,
        self: { owner: ctx.settings.owner, known: rt.known },
        hostNamespace: ctx.settings.hostNamespace,
        networks,
        endpoints: view<EndpointContext>(rt.objects.endpoint),
        sandboxes: view<SandboxContext>(rt.objects.sandbox),
        notSandbox: (name) => isOverlayNamespace(ctx, name),
        firewallNetworks: async () =>
          networks.some((n) => hasFirewall(n.c)) ? await firewall.networkOwners() : undefined,
      }),
      ...await inspectOverlayDrift(ctx),
      ...await inspectPortsDrift(ctx),
      ...await ctx.dns.inspect(),
    ];
    const report: ReconcileReport = { dryRun, findings: [], ms: 0 };
    if (dryRun) {
      report.findings = findings.map((f) => ({ ...f, repaired: false }));
    } else {
      const env = effectEnv(ctx);
      report.findings = await repairDrift(findings.filter((f) => !isPortFinding(f)), {
        kernel: ctx.kernel,
        firewall,
        withObject: (kind, id, f) =>
          rt.locks.with([id], async () => {
            const rec = rt.objects[kind].get(id);
            if (rec) await f(rt.context(rec));
          }),
        joinedTo: (sandboxId) =>
          endpointsOfSandbox(rt, sandboxId)
            .filter((r) => rt.state(r) === "joined")
            .map((r) => rt.context<EndpointContext>(r)),
        ensureNetwork: (c, found) =>
          found.some(isOverlayFinding)
            ? repairOverlay(ctx, c, found)
            : ensureNetwork(env, c, newEventId()),
        removeNamespace: (name) =>
          isOverlayNamespace(ctx, name)
            ? removeOverlayOrphan(ctx, name)
            : ctx.kernel.deleteNetns(name),
        removeVxlan: (name) => removeOverlayDevice(ctx, name),
        ensureJoined: (c) => ensureJoined(env, c, newEventId()),
        repairDns: (sandboxId, found) => ctx.dns.repair(sandboxId, found),
        record: (kind, objectId, group, error) =>
          recordReconciled(ctx, kind, objectId, group, error),
      });
      report.findings.push(
        ...await repairPortDrift(ctx, findings.filter(isPortFinding), report.findings, {
          record: (kind, objectId, group, error) =>
            recordReconciled(ctx, kind, objectId, group, error),
        }),
      );
    }
    report.ms = performance.now() - started;
    return report;
  });
}

/** Journals one repair (or its failure): `<kind>.reconciled`, or `host.reconciled`. */
async function recordReconciled(
  ctx: ControllerContext,
  kind: Finding["kind"],
  objectId: string,
  findings: Finding[],
  error: unknown,
): Promise<void> {
  const rt = ctx.runtime;
  const data = {
    findings: findings.map(({ kind: _k, objectId: _o, ...f }) => f),
    repaired: error === undefined,
    ...(error ? { error: toErrorRecord(error) } : {}),
  };
  if (kind === "host") {
    await rt.append(rt.event("host", rt.hostId, "host.reconciled", "active", "active", data));
    return;
  }
  const rec = rt.objects[kind].get(objectId);
  if (rec) await rt.note(rec, `${kind}.reconciled`, data);
}
