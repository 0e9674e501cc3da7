/**
 * The crash test's victim: a controller in its own process (so SIGKILL is real) that runs a
 * workload and reports every command on stdout as one JSON line — `begin` before it runs,
 * then `ack` (with what the controller returned) or `err`. With `kill` set it kills itself
 * with SIGKILL at that hook point the first time the given transient state passes it.
 *
 * Usage: `deno run -A scripts/_crash_child.ts '<ChildConfig as JSON>'`
 *
 * @module
 */

import { createController } from "../mod.ts";
import type { CnmEvent, Controller, CrashPoint } from "../mod.ts";
import { nextOp, type Op, runOp, type Workload } from "./_crash_workload.ts";

export type { Op } from "./_crash_workload.ts";

/** Where the child kills itself: the first event of `kind` in transient `state` at `point`. */
export interface KillTarget {
  point: CrashPoint;
  kind: "network" | "endpoint" | "sandbox";
  state: "creating" | "deleting" | "joining" | "leaving";
  /** Only networks of this driver, or endpoints on one (default: any). */
  driver?: "bridge" | "overlay";
  /** Only this object (a kill during recovery: the object whose effect is resumed). */
  objectId?: string;
}

/** What the parent passes to the child. */
export interface ChildConfig {
  nats: string;
  stream: string;
  prefix: string;
  hostId: string;
  hostNamespace: string;
  /** This host's VTEP (`advertiseAddress`), for overlay networks. */
  advertiseAddress?: string;
  namePrefix: string;
  stateDir: string;
  leaseTtlMs: number;
  seed: number;
  /** Commands run first, in order. */
  steps?: Op[];
  /** Random commands after the steps (default 0; -1 = until killed). */
  random?: number;
  /** Self-kill target (deterministic crash point); armed once the controller is ready. */
  kill?: KillTarget;
  /** Arm `kill` before the start-up recovery, to die while resuming an interrupted effect. */
  armAtStart?: boolean;
  /** Random commands run before `steps` (to vary the state the deterministic kill meets). */
  warmup?: number;
  /** Overlay networks and endpoints in the random workload too. */
  overlay?: boolean;
  /** Recently deleted names the workload sometimes reuses (must work again). */
  reuse?: Workload["reuse"];
  /** Limits that keep the state bounded. */
  limits?: Workload["limits"];
}

/** One stdout line. */
export type ChildLine =
  | { t: "ready"; ms: number; resumed: number; repairs: number }
  | { t: "begin"; i: number; op: Op }
  | { t: "ack"; i: number; op: Op; result?: unknown }
  | { t: "err"; i: number; op: Op; name: string; message: string }
  | { t: "kill"; point: CrashPoint; type: string; objectId: string }
  | { t: "done" };

const encoder = new TextEncoder();
function emit(line: ChildLine): void {
  // Synchronous, so a line written just before SIGKILL is in the pipe.
  const buf = encoder.encode(JSON.stringify(line) + "\n");
  let off = 0;
  while (off < buf.length) off += Deno.stdout.writeSync(buf.subarray(off));
}

/** mulberry32: a small seeded PRNG (the whole run is reproducible from one seed). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The transient state an event is about at a hook point (intent: `to`; outcome: `from`). */
export function windowOf(point: CrashPoint, e: CnmEvent): string | null {
  return point === "intent-appended" ? e.to : e.from;
}

/** The driver of the network an event is about (a network's, or an endpoint's network's). */
export function driverOf(cnm: Controller | undefined, e: CnmEvent): string | undefined {
  const d = (e.data ?? {}) as Record<string, unknown>;
  if (e.kind === "network") {
    return typeof d.driver === "string" ? d.driver : cnm?.network(e.objectId)?.driver;
  }
  if (e.kind !== "endpoint") return undefined;
  const networkId = typeof d.networkId === "string"
    ? d.networkId
    : cnm?.endpoint(e.objectId)?.networkId;
  return networkId ? cnm?.network(networkId)?.driver : undefined;
}

/** Whether `event` at `point` is the one `k` aims at. */
export function hits(
  k: KillTarget,
  point: CrashPoint,
  event: CnmEvent,
  cnm: Controller | undefined,
): boolean {
  if (point !== k.point || event.kind !== k.kind || windowOf(point, event) !== k.state) {
    return false;
  }
  if (k.objectId) return event.objectId === k.objectId;
  return !k.driver || driverOf(cnm, event) === k.driver;
}

async function main(): Promise<void> {
  const cfg = JSON.parse(Deno.args[0]) as ChildConfig;
  const rnd = prng(cfg.seed);
  let armed = cfg.armAtStart ?? false;
  // Set once ready (the hook runs during the start-up recovery too).
  const ready: { cnm?: Controller } = {};
  const started = performance.now();
  const cnm = await createController({
    nats: { servers: cfg.nats },
    stream: cfg.stream,
    prefix: cfg.prefix,
    hostId: cfg.hostId,
    kernel: { hostNamespace: cfg.hostNamespace },
    ...(cfg.advertiseAddress ? { advertiseAddress: cfg.advertiseAddress } : {}),
    namePrefix: cfg.namePrefix,
    stateDir: cfg.stateDir,
    defaultBridge: false,
    leaseTtlMs: cfg.leaseTtlMs,
    leaseWaitMs: cfg.leaseTtlMs * 4 + 5000,
    hooks: {
      point(point, event) {
        const k = cfg.kill;
        if (!armed || !k || !hits(k, point, event, ready.cnm)) return;
        emit({ t: "kill", point, type: event.type, objectId: event.objectId });
        Deno.kill(Deno.pid, "SIGKILL");
      },
    },
  });
  ready.cnm = cnm;
  emit({
    t: "ready",
    ms: Math.round(performance.now() - started),
    resumed: cnm.recovery.resumed.length,
    repairs: cnm.recovery.reconcile?.findings.length ?? 0,
  });
  armed = true;
  let i = 0;
  const run = async (op: Op) => {
    const n = i++;
    emit({ t: "begin", i: n, op });
    try {
      const result = await runOp(cnm, op);
      emit({ t: "ack", i: n, op, ...(result === undefined ? {} : { result }) });
    } catch (err) {
      const e = err as Error;
      emit({ t: "err", i: n, op, name: e.name, message: e.message });
    }
  };
  const work: Workload = {
    bridge: true,
    overlay: cfg.overlay ?? false,
    names: { net: "n", sb: "s", ep: "e" },
    ...(cfg.reuse ? { reuse: cfg.reuse } : {}),
    ...(cfg.limits ? { limits: cfg.limits } : {}),
  };
  for (let w = 0; w < (cfg.warmup ?? 0); w++) await run(nextOp(cnm, rnd, work));
  for (const op of cfg.steps ?? []) await run(op);
  const random = cfg.random ?? 0;
  for (let r = 0; random < 0 || r < random; r++) await run(nextOp(cnm, rnd, work));
  emit({ t: "done" });
  // Wait to be killed (the parent decides when); a clean close if nobody does.
  await new Promise((r) => setTimeout(r, 60_000));
  await cnm.close();
}

if (import.meta.main) await main();
