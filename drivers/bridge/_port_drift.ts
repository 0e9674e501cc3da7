/**
 * Reconcile support for published ports: what should be published (from the journal)
 * against what the firewall's port rules and the kernel's held sockets are. Pure: the caller
 * reads `Firewall.listPorts()` and `Kernel.heldPorts()` and passes them in.
 *
 * Repairs, by finding: a `missing` rule, element or held port → run the endpoint's
 * `programExternalConnectivity` again (an ensure); an `unexpected` rule or element of an
 * endpoint that should publish → the same (it publishes exactly its list); an `unexpected`
 * chain of an endpoint that should not publish → `Firewall.unpublishPorts`; an
 * `unexpected` held port → `Kernel.releasePort`.
 *
 * @example
 * ```ts
 * import { inspectPortDrift } from "./_port_drift.ts";
 * import assert from "node:assert/strict";
 * const m = { proto: "tcp" as const, hostIp: "0.0.0.0", hostPort: 8080, containerPort: 80 };
 * const findings = inspectPortDrift([{ networkId: "n".repeat(12), endpointId: "e".repeat(12), mappings: [m] }], [], []);
 * assert.deepEqual(findings.map((f) => `${f.resource} ${f.problem}`), ["port-rule missing", "held-port missing"]);
 * ```
 *
 * @module
 */

import type { HeldPort } from "../../src/kernel/types.ts";
import { describeMapping, formatHostPort, type PortMapping } from "../../src/ports/binding.ts";
import { elementsOf, type PublishedRules } from "./_portmap.ts";

/** An endpoint that should publish `mappings` (the `ports` its last program returned). */
export interface ExpectedPublication {
  networkId: string;
  endpointId: string;
  mappings: PortMapping[];
}

/** One difference. */
export interface PortFinding {
  /** The endpoint concerned (full id when expected, else the 12 characters in the rules). */
  endpointId: string;
  networkId: string;
  resource: "port-rule" | "port-element" | "held-port";
  /** `0.0.0.0:8080->80/tcp`, `cnm_dnat4_any tcp . 8080`, `pdnat-…` or `0.0.0.0:8080/tcp`. */
  name: string;
  problem: "missing" | "unexpected";
}

const heldName = (p: Pick<HeldPort, "proto" | "hostIp" | "hostPort">) =>
  `${formatHostPort(p.hostIp, p.hostPort)}/${p.proto}`;

/** Compares expected publications with the rules and held ports found. */
export function inspectPortDrift(
  expected: ExpectedPublication[],
  rules: PublishedRules[],
  held: HeldPort[],
): PortFinding[] {
  const out: PortFinding[] = [];
  const byEp12 = new Map(rules.map((r) => [r.endpointId, r]));
  const expectedEp12 = new Set(expected.map((e) => e.endpointId.slice(0, 12)));
  for (const e of expected) {
    const base = { endpointId: e.endpointId, networkId: e.networkId };
    const found = byEp12.get(e.endpointId.slice(0, 12));
    const want = new Set(e.mappings.map(describeMapping));
    const have = new Set((found?.mappings ?? []).map(describeMapping));
    for (const name of want) {
      if (!have.has(name)) out.push({ ...base, resource: "port-rule", name, problem: "missing" });
    }
    for (const name of have) {
      if (!want.has(name)) {
        out.push({ ...base, resource: "port-rule", name, problem: "unexpected" });
      }
    }
    if (found) {
      const wantEl = new Set(
        e.mappings.flatMap((m) => elementsOf(m, found.chain)).map((r) => `${r.set} ${r.key}`),
      );
      const haveEl = new Set(found.elements.map((r) => `${r.set} ${r.key}`));
      for (const name of wantEl) {
        if (!haveEl.has(name) && have.size > 0) {
          out.push({ ...base, resource: "port-element", name, problem: "missing" });
        }
      }
      for (const name of haveEl) {
        if (!wantEl.has(name)) {
          out.push({ ...base, resource: "port-element", name, problem: "unexpected" });
        }
      }
    }
    const mine = new Set(held.filter((h) => h.owner === e.endpointId).map(heldName));
    for (const m of e.mappings) {
      if (!mine.has(heldName(m))) {
        out.push({ ...base, resource: "held-port", name: heldName(m), problem: "missing" });
      }
    }
  }
  for (const r of rules) {
    if (expectedEp12.has(r.endpointId)) continue;
    out.push({
      endpointId: r.endpointId,
      networkId: r.networkId,
      resource: "port-rule",
      name: r.chain,
      problem: "unexpected",
    });
  }
  const expectedHeld = new Set(
    expected.flatMap((e) => e.mappings.map((m) => `${e.endpointId} ${heldName(m)}`)),
  );
  for (const h of held) {
    if (expectedHeld.has(`${h.owner} ${heldName(h)}`)) continue;
    const e = expected.find((x) => x.endpointId === h.owner);
    out.push({
      endpointId: h.owner,
      networkId: e?.networkId ?? "",
      resource: "held-port",
      name: heldName(h),
      problem: "unexpected",
    });
  }
  return out;
}
