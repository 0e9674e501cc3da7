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

import { createController, parsePortSpec } from "../mod.ts";
import type { CnmEvent, Controller, CrashPoint, EndpointInfo } from "../mod.ts";

/** One workload command. Objects are named; endpoints by network and name. */
export type Op =
  | { op: "createNetwork"; name: string; subnet?: string; ipv6?: boolean }
  | { op: "deleteNetwork"; name: string }
  | { op: "createSandbox"; name: string }
  | { op: "deleteSandbox"; name: string }
  | { op: "createEndpoint"; network: string; name: string; ipv4?: string; ports?: string[] }
  | { op: "deleteEndpoint"; network: string; name: string; force?: boolean }
  | { op: "join"; network: string; name: string; sandbox: string }
  | { op: "leave"; network: string; name: string; sandbox: string };

/** Where the child kills itself: the first event of `kind` in transient `state` at `point`. */
export interface KillTarget {
  point: CrashPoint;
  kind: "network" | "endpoint" | "sandbox";
  state: "creating" | "deleting" | "joining" | "leaving";
}

/** What the parent passes to the child. */
export interface ChildConfig {
  nats: string;
  stream: string;
  prefix: string;
  hostId: string;
  hostNamespace: string;
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
  /** Recently deleted names the workload sometimes reuses (must work again). */
  reuse?: { networks: string[]; endpoints: { network: string; name: string }[] };
  /** Limits that keep the state bounded. */
  limits?: { networks: number; sandboxes: number; endpoints: number };
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

function findEndpoint(cnm: Controller, network: string, name: string): EndpointInfo {
  const ep = cnm.endpoints({ network }).find((e) => e.name === name);
  if (!ep) throw new Error(`workload: endpoint ${name} of ${network} not found`);
  return ep;
}

/** Runs one command; returns what the parent needs to update its model. */
export async function runOp(cnm: Controller, o: Op): Promise<unknown> {
  switch (o.op) {
    case "createNetwork": {
      const n = await cnm.createNetwork({
        name: o.name,
        ...(o.ipv6 ? { enableIPv6: true } : {}),
        ...(o.subnet ? { ipam: { config: [{ subnet: o.subnet }] } } : {}),
      });
      return { id: n.id, subnets: n.ipam.config.map((c) => c.subnet), bridge: n.driverInfo.bridge };
    }
    case "deleteNetwork":
      return await cnm.deleteNetwork(o.name);
    case "createSandbox": {
      const s = await cnm.createSandbox({ name: o.name });
      return { id: s.id, key: s.key };
    }
    case "deleteSandbox":
      return await cnm.deleteSandbox(o.name);
    case "createEndpoint": {
      const e = await cnm.createEndpoint(o.network, {
        name: o.name,
        ...(o.ipv4 ? { ipv4Address: o.ipv4 } : {}),
        ...(o.ports ? { portBindings: o.ports.flatMap(parsePortSpec) } : {}),
      });
      return {
        id: e.id,
        networkId: e.networkId,
        ipv4Address: e.ipv4Address,
        ipv6Address: e.ipv6Address,
        ...(e.ports ? { ports: e.ports } : {}),
      };
    }
    case "deleteEndpoint":
      return await cnm.deleteEndpoint(findEndpoint(cnm, o.network, o.name).id, {
        force: o.force ?? false,
      });
    case "join": {
      const e = await cnm.join(findEndpoint(cnm, o.network, o.name).id, o.sandbox);
      return { id: e.id, sandboxId: e.sandboxId, ifname: e.ifname };
    }
    case "leave":
      return await cnm.leave(findEndpoint(cnm, o.network, o.name).id, o.sandbox);
  }
}

/**
 * Port bindings for a new endpoint, sometimes: fixed ports from a small pool (so that two
 * endpoints ask for one port and the second is refused), ports cnm chooses, a two-port range
 * (exhausted now and then).
 */
export const PORT_POOL = ["8080:80", "8081:53/udp", "127.0.0.1:8082:80"];
function publishing(rnd: () => number): { ports?: string[] } {
  const r = rnd();
  if (r < 0.2) return { ports: [PORT_POOL[Math.floor(rnd() * PORT_POOL.length)]] };
  if (r < 0.35) return { ports: ["80", "127.0.0.1::53/udp"] };
  if (r < 0.45) return { ports: ["9000-9001:80"] };
  return {};
}

const hex = (rnd: () => number, n: number) =>
  Array.from({ length: n }, () => Math.floor(rnd() * 16).toString(16)).join("");

/**
 * Picks the next random command from the controller's current state: mostly valid ones,
 * some that libnetwork refuses (a network with endpoints, a joined endpoint without force,
 * a fixed IP in use), and names and addresses of deleted objects reused.
 */
export function nextOp(cnm: Controller, rnd: () => number, cfg: ChildConfig): Op {
  const lim = cfg.limits ?? { networks: 3, sandboxes: 4, endpoints: 8 };
  const nets = cnm.networks().filter((n) => n.driver === "bridge" && n.state === "active");
  const sbs = cnm.sandboxes().filter((s) => s.state === "ready");
  const eps = cnm.endpoints();
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
  const choices: [number, () => Op | undefined][] = [
    [nets.length < lim.networks ? 2 : 0.2, () => {
      const reuse = cfg.reuse?.networks.filter((n) => !nets.some((x) => x.name === n)) ?? [];
      const name = reuse.length && rnd() < 0.3 ? pick(reuse) : `n${hex(rnd, 5)}`;
      const r = rnd();
      if (r < 0.4) {
        return {
          op: "createNetwork",
          name,
          subnet: `10.${100 + Math.floor(rnd() * 8)}.${Math.floor(rnd() * 4)}.0/24`,
        };
      }
      return { op: "createNetwork", name, ...(r > 0.8 ? { ipv6: true } : {}) };
    }],
    [nets.length ? 0.7 : 0, () => ({ op: "deleteNetwork", name: pick(nets).name })],
    [
      sbs.length < lim.sandboxes ? 2 : 0.2,
      () => ({ op: "createSandbox", name: `s${hex(rnd, 5)}` }),
    ],
    [sbs.length ? 0.8 : 0, () => ({ op: "deleteSandbox", name: pick(sbs).name })],
    [nets.length && eps.length < lim.endpoints ? 3 : 0, () => {
      const net = pick(nets);
      const reuse = (cfg.reuse?.endpoints ?? []).filter((e) =>
        e.network === net.name && !eps.some((x) => x.networkId === net.id && x.name === e.name)
      );
      const name = reuse.length && rnd() < 0.3 ? pick(reuse).name : `e${hex(rnd, 5)}`;
      const v4 = net.ipam.config.find((c) => !c.subnet.includes(":"));
      const ports = publishing(rnd);
      if (v4 && rnd() < 0.35) {
        // A fixed address low in the subnet: often one that is (or was) taken.
        const [a, b, c] = v4.subnet.split("/")[0].split(".");
        return {
          op: "createEndpoint",
          network: net.name,
          name,
          ipv4: `${a}.${b}.${c}.${2 + Math.floor(rnd() * 6)}`,
          ...ports,
        };
      }
      return { op: "createEndpoint", network: net.name, name, ...ports };
    }],
    [eps.length ? 2 : 0, () => {
      const e = pick(eps.filter((x) => x.state === "created" || x.state === "joined"));
      if (!e) return undefined;
      const net = cnm.network(e.networkId)!;
      const force = e.state === "joined" ? rnd() < 0.8 : rnd() < 0.2;
      return { op: "deleteEndpoint", network: net.name, name: e.name, force };
    }],
    [eps.length && sbs.length ? 3 : 0, () => {
      const e = pick(eps.filter((x) => x.state === "created"));
      if (!e) return undefined;
      // One endpoint per network in a sandbox (two addresses of one subnet in one namespace
      // are legal, but not what a container runtime does).
      const free = sbs.filter((s) =>
        !eps.some((x) => x.sandboxId === s.id && x.networkId === e.networkId)
      );
      if (!free.length) return undefined;
      return {
        op: "join",
        network: cnm.network(e.networkId)!.name,
        name: e.name,
        sandbox: pick(free).name,
      };
    }],
    [eps.length ? 2 : 0, () => {
      const e = pick(eps.filter((x) => x.state === "joined"));
      if (!e) return undefined;
      return {
        op: "leave",
        network: cnm.network(e.networkId)!.name,
        name: e.name,
        sandbox: cnm.sandbox(e.sandboxId!)!.name,
      };
    }],
  ];
  for (let attempt = 0; attempt < 20; attempt++) {
    const total = choices.reduce((s, [w]) => s + w, 0);
    let r = rnd() * total;
    for (const [w, f] of choices) {
      r -= w;
      if (r <= 0) {
        const op = w > 0 ? f() : undefined;
        if (op) return op;
        break;
      }
    }
  }
  return { op: "createSandbox", name: `s${hex(rnd, 5)}` };
}

async function main(): Promise<void> {
  const cfg = JSON.parse(Deno.args[0]) as ChildConfig;
  const rnd = prng(cfg.seed);
  let armed = cfg.armAtStart ?? false;
  const started = performance.now();
  const cnm = await createController({
    nats: { servers: cfg.nats },
    stream: cfg.stream,
    prefix: cfg.prefix,
    hostId: cfg.hostId,
    kernel: { hostNamespace: cfg.hostNamespace },
    namePrefix: cfg.namePrefix,
    stateDir: cfg.stateDir,
    defaultBridge: false,
    leaseTtlMs: cfg.leaseTtlMs,
    leaseWaitMs: cfg.leaseTtlMs * 4 + 5000,
    hooks: {
      point(point, event) {
        const k = cfg.kill;
        if (!armed || !k || point !== k.point || event.kind !== k.kind) return;
        if (windowOf(point, event) !== k.state) return;
        emit({ t: "kill", point, type: event.type, objectId: event.objectId });
        Deno.kill(Deno.pid, "SIGKILL");
      },
    },
  });
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
  for (let w = 0; w < (cfg.warmup ?? 0); w++) await run(nextOp(cnm, rnd, cfg));
  for (const op of cfg.steps ?? []) await run(op);
  const random = cfg.random ?? 0;
  for (let r = 0; random < 0 || r < random; r++) await run(nextOp(cnm, rnd, cfg));
  emit({ t: "done" });
  // Wait to be killed (the parent decides when); a clean close if nobody does.
  await new Promise((r) => setTimeout(r, 60_000));
  await cnm.close();
}

if (import.meta.main) await main();
