/**
 * Drift of published ports: what each ready sandbox should publish on its gateway endpoint
 * (derived from the journal, sandbox_ports.ts) against the port chains and map elements of
 * this controller's networks in the firewall and the host sockets this process holds —
 * `inspectPortDrift` of the bridge driver does the comparison.
 *
 * Findings (resources `port-rule`, `port-element`, `held-port`) and their repairs: anything
 * missing or different on a publishing endpoint → program its sandbox's publication again
 * (an ensure: exactly that list); a chain or socket of an endpoint that should publish
 * nothing → revoke it (through its driver; a chain of an endpoint the journal no longer has
 * is unpublished directly, a stray socket released). Port chains of another controller's
 * networks are `foreign`: reported, never touched. After reconcile rebuilt a publishing
 * endpoint's interface (its veth loses hairpin mode), the publication is programmed again.
 *
 * @module
 */

import type { EndpointContext } from "../../actors/endpoint.ts";
import type { NetworkContext } from "../../actors/network.ts";
import { inspectPortDrift, type PortFinding } from "../../drivers/bridge/mod.ts";
import { portChainPattern } from "../../drivers/bridge/_portmap.ts";
import { errText } from "../errors.ts";
import type { ControllerContext } from "./context.ts";
import { type Finding, hasFirewall, type ReconcileReport } from "./drift.ts";
import { portRulesByOwner } from "./sandbox_ports.ts";

const RESOURCES = new Set<Finding["resource"]>(["port-rule", "port-element", "held-port"]);

/** Whether a finding is about published ports (repaired by {@link repairPortDrift}). */
export function isPortFinding(f: Finding): boolean {
  return RESOURCES.has(f.resource);
}

/** Compares published ports with the journal's view. Reads only. */
export async function inspectPortsDrift(ctx: ControllerContext): Promise<Finding[]> {
  const rt = ctx.runtime;
  const held = await ctx.kernel.heldPorts();
  const firewalled = [...rt.objects.network.values()]
    .some((r) => hasFirewall(rt.context<NetworkContext>(r)));
  if (!firewalled && !held.length) return [];
  const expected = ctx.ports.expected();
  const { ours, others } = firewalled ? await portRulesByOwner(ctx) : { ours: [], others: [] };
  const out: Finding[] = [];
  for (const r of others) {
    out.push({
      kind: "host",
      objectId: "",
      resource: "port-rule",
      name: r.chain,
      problem: "foreign",
      actual: "a port chain of a network another controller owns",
    });
  }
  for (const f of inspectPortDrift(expected, ours, held)) out.push(toFinding(ctx, f));
  return out;
}

function toFinding(ctx: ControllerContext, f: PortFinding): Finding {
  const full = ctx.runtime.objects.endpoint.has(f.endpointId)
    ? f.endpointId
    : [...ctx.runtime.objects.endpoint.keys()].find((id) => id.startsWith(f.endpointId));
  return {
    kind: full ? "endpoint" : "host",
    objectId: full ?? "",
    resource: f.resource,
    name: f.name,
    problem: f.problem,
  };
}

/** What a port repair needs besides the context. */
export interface PortRepairDeps {
  /** Journals the repair of one object (or orphan). */
  record(kind: Finding["kind"], objectId: string, group: Finding[], error: unknown): Promise<void>;
}

/**
 * Repairs port findings object by object and records each; then programs again every
 * publication whose endpoint the other repairs rebuilt (`repaired`: their report).
 */
export async function repairPortDrift(
  ctx: ControllerContext,
  findings: Finding[],
  repaired: ReconcileReport["findings"],
  deps: PortRepairDeps,
): Promise<ReconcileReport["findings"]> {
  const rt = ctx.runtime;
  const out: ReconcileReport["findings"] = [];
  const expected = new Map(ctx.ports.expected().map((p) => [p.endpointId, p]));
  const republish = (endpointId: string) => {
    const p = expected.get(endpointId)!;
    return ctx.ports.sync(p.sandboxId, ctx.sandboxes.members(p.sandboxId), {
      strict: true,
      force: true,
    });
  };
  const groups = new Map<string, Finding[]>();
  for (const f of findings) {
    if (f.problem === "foreign") {
      out.push({ ...f, repaired: false });
      continue;
    }
    const key = f.kind === "host" ? `host:${f.resource}:${f.name}` : `${f.kind}:${f.objectId}`;
    groups.set(key, [...(groups.get(key) ?? []), f]);
  }
  const done = new Set<string>();
  for (const group of groups.values()) {
    const f = group[0];
    let error: unknown;
    try {
      if (f.kind === "endpoint" && expected.has(f.objectId)) {
        await rt.locks.with([f.objectId], () => republish(f.objectId));
        done.add(f.objectId);
      } else if (f.kind === "endpoint") {
        const rec = rt.objects.endpoint.get(f.objectId);
        const c = rec && rt.context<EndpointContext>(rec);
        if (c) await rt.locks.with([c.id], () => ctx.ports.revokeEndpoint(c.networkId, c.id));
      } else if (f.resource === "held-port") {
        const m = /^\[?([0-9a-f.:]+?)\]?:(\d+)\/(tcp|udp)$/.exec(f.name);
        if (m) {
          await ctx.kernel.releasePort({
            hostIp: m[1],
            hostPort: Number(m[2]),
            proto: m[3] as "tcp" | "udp",
          });
        }
      } else {
        const m = portChainPattern.exec(f.name);
        if (m) await ctx.ports.revokeEndpoint(m[1], m[2]);
      }
    } catch (err) {
      error = err;
    }
    for (const x of group) {
      out.push({
        ...x,
        repaired: error === undefined,
        ...(error ? { error: errText(error) } : {}),
      });
    }
    await deps.record(f.kind, f.objectId, group, error).catch((err) =>
      console.error(`cnm: cannot journal a reconcile repair: ${errText(err)}`)
    );
  }
  // Interfaces rebuilt by the other repairs: their publication again (hairpin mode).
  const rebuilt = new Set<string>();
  for (const f of repaired) {
    if (!f.repaired) continue;
    if (f.kind === "endpoint") rebuilt.add(f.objectId);
    if (f.kind === "sandbox") {
      for (const p of expected.values()) if (p.sandboxId === f.objectId) rebuilt.add(p.endpointId);
    }
  }
  for (const id of rebuilt) {
    if (!expected.has(id) || done.has(id)) continue;
    await rt.locks.with([id], () => republish(id)).catch((err) =>
      console.error(`cnm: endpoint ${id}: publishing its ports after a repair: ${errText(err)}`)
    );
  }
  return out;
}
