/**
 * The crash test's plan: its arguments, the deterministic windows (transient state × hook
 * point, bridge and overlay) with the directed commands that reach each, and the shuffled
 * rounds.
 *
 * @module
 */

import type { CrashPoint } from "../mod.ts";
import type { KillTarget, Op } from "./_crash_child.ts";

export const POINTS: CrashPoint[] = ["intent-appended", "effect-done", "outcome-appended"];

/** A deterministic window: a transient state of a kind (on a driver's networks). */
export type Window = Pick<KillTarget, "kind" | "state" | "driver">;

const BRIDGE: Window[] = [
  { kind: "network", state: "creating", driver: "bridge" },
  { kind: "network", state: "deleting", driver: "bridge" },
  { kind: "sandbox", state: "creating" },
  { kind: "sandbox", state: "deleting" },
  { kind: "endpoint", state: "creating", driver: "bridge" },
  { kind: "endpoint", state: "joining", driver: "bridge" },
  { kind: "endpoint", state: "leaving", driver: "bridge" },
  { kind: "endpoint", state: "deleting", driver: "bridge" },
];
/** The overlay's transient states: a global network's (its claims!), an overlay endpoint's. */
const OVERLAY: Window[] = [
  { kind: "network", state: "creating", driver: "overlay" },
  { kind: "network", state: "deleting", driver: "overlay" },
  { kind: "endpoint", state: "creating", driver: "overlay" },
  { kind: "endpoint", state: "joining", driver: "overlay" },
  { kind: "endpoint", state: "leaving", driver: "overlay" },
  { kind: "endpoint", state: "deleting", driver: "overlay" },
];

/** The windows of a run. */
export const windowsOf = (overlay: boolean): Window[] => [...BRIDGE, ...(overlay ? OVERLAY : [])];

export const windowKey = (t: Window) =>
  `${t.driver === "overlay" ? "overlay " : ""}${t.kind} ${t.state}`;

/** The run's arguments. */
export interface Args {
  trials: number;
  seed: number;
  workload: number;
  overlay: boolean;
  verbose: boolean;
}

/** Parses the command line. */
export function parseArgs(argv: string[]): Args {
  const a: Args = { trials: 10, seed: 1, workload: 3, overlay: true, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const num = () => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 0) throw new Error(`${k} needs a non-negative integer`);
      return v;
    };
    if (k === "--trials") a.trials = num();
    else if (k === "--seed") a.seed = num();
    else if (k === "--workload") a.workload = Math.max(1, num());
    else if (k === "--no-overlay") a.overlay = false;
    else if (k === "--verbose" || k === "-v") a.verbose = true;
    else {
      throw new Error(
        `unknown argument ${k} (--trials N --seed S --workload K --no-overlay --verbose)`,
      );
    }
  }
  return a;
}

/** One round: a random kill after a delay, or a self-kill at a window's point. */
export type Round =
  | { kind: "random"; delayMs: number }
  | { kind: "point"; target: KillTarget; retry: number };

/** The rounds of a run: random kills and every window at every point, shuffled. */
export function planRounds(args: Args, rnd: () => number): Round[] {
  const rounds: Round[] = [];
  for (let i = 0; i < args.trials; i++) {
    rounds.push({ kind: "random", delayMs: 50 + Math.floor(rnd() * 1200) });
  }
  for (const w of windowsOf(args.overlay)) {
    for (const point of POINTS) rounds.push({ kind: "point", target: { ...w, point }, retry: 0 });
  }
  for (let i = rounds.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [rounds[i], rounds[j]] = [rounds[j], rounds[i]];
  }
  return rounds;
}

/** Directed commands that reach `target` (after a few random ones). */
export function stepsFor(target: Window, tag: string, overlay: boolean): Op[] {
  const k = windowKey(target);
  if (target.driver === "overlay") {
    // Network windows: a network the survivor leaves alone (dn…: no endpoints from it), so
    // the delete finds none. Endpoint windows: one the survivor may join too (peers).
    const dn = `dnov${tag}`;
    const net = `dov${tag}`;
    const sb = `ds${tag}`;
    const ep = `deov${tag}`;
    if (k === "overlay network creating") {
      return [{ op: "createNetwork", name: dn, driver: "overlay" }];
    }
    if (k === "overlay network deleting") {
      return [
        { op: "createNetwork", name: dn, driver: "overlay" },
        { op: "deleteNetwork", name: dn },
      ];
    }
    const made: Op[] = [
      { op: "createNetwork", name: net, driver: "overlay" },
      { op: "createEndpoint", network: net, name: ep },
    ];
    if (k === "overlay endpoint creating") return made;
    const joined: Op[] = [
      made[0],
      { op: "createSandbox", name: sb },
      made[1],
      { op: "join", network: net, name: ep, sandbox: sb },
    ];
    if (k === "overlay endpoint joining") return joined;
    if (k === "overlay endpoint leaving") {
      return [...joined, { op: "leave", network: net, name: ep, sandbox: sb }];
    }
    return [...joined, { op: "deleteEndpoint", network: net, name: ep, force: true }];
  }
  // Its own network: the warm-up's random commands may delete any network that existed
  // before the child started, and the steps must not depend on one.
  const net = `d${tag}`;
  const pre: Op[] = [{ op: "createNetwork", name: net }];
  const sb = `ds${tag}`;
  const ep = `de${tag}`;
  // The directed endpoint publishes (ports cnm chooses: never refused): every kill of a join,
  // leave or delete is a kill mid-publish or mid-revoke.
  const ports = ["80", "127.0.0.1::53/udp"];
  if (k === "network creating") return [{ op: "createNetwork", name: `dn${tag}` }];
  if (k === "network deleting") {
    return [{ op: "createNetwork", name: `dn${tag}` }, { op: "deleteNetwork", name: `dn${tag}` }];
  }
  if (k === "sandbox creating") return [{ op: "createSandbox", name: sb }];
  const joined: Op[] = [
    ...pre,
    { op: "createSandbox", name: sb },
    { op: "createEndpoint", network: net, name: ep, ports },
    { op: "join", network: net, name: ep, sandbox: sb },
  ];
  if (k === "sandbox deleting") {
    // With the overlay: the sandbox is on an overlay network too (its delete leaves both).
    const ov: Op[] = overlay
      ? [
        { op: "createNetwork", name: `dov${tag}`, driver: "overlay" },
        { op: "createEndpoint", network: `dov${tag}`, name: `deov${tag}` },
        { op: "join", network: `dov${tag}`, name: `deov${tag}`, sandbox: sb },
      ]
      : [];
    return [...joined, ...ov, { op: "deleteSandbox", name: sb }];
  }
  if (k === "endpoint creating") {
    return [...pre, { op: "createEndpoint", network: net, name: ep, ports }];
  }
  if (k === "endpoint joining") return joined;
  if (k === "endpoint leaving") {
    return [...joined, { op: "leave", network: net, name: ep, sandbox: sb }];
  }
  return [...joined, { op: "deleteEndpoint", network: net, name: ep, force: true }];
}
