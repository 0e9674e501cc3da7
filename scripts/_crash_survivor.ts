/**
 * The crash test's second host: a controller in the parent on another lab host, on the same
 * stream, that is never killed. While the child runs (and is killed, and restarts) it runs
 * its own seeded overlay workload — overlay networks made and deleted, sandboxes with
 * endpoints joined to every overlay network, on the crashed host's networks too — so peers
 * must converge both ways after every restart, and cross-host races (a delete on one host,
 * an endpoint made on the other) happen while a controller dies. Its lines are recorded
 * like the child's, stamped when they happened.
 *
 * @module
 */

import type { Controller } from "../mod.ts";
import { prng } from "./_crash_child.ts";
import type { Stamped } from "./_crash_model.ts";
import { nextOp, runOp, type Workload } from "./_crash_workload.ts";

/** The surviving host's workload. */
export interface Survivor {
  readonly ctl: Controller;
  readonly hostId: string;
  /** Starts the workload of one round (until {@link Survivor.stop}). */
  start(seed: number, reuse?: Workload["reuse"]): void;
  /** Stops after the command in flight; returns the round's lines. */
  stop(): Promise<Stamped[]>;
}

/** Options of {@link createSurvivor}. */
export interface SurvivorOptions {
  limits: NonNullable<Workload["limits"]>;
  /** Pause between two commands, ms (seeded within [min, max]). */
  pauseMs?: [number, number];
}

/** A survivor on a running controller. */
export function createSurvivor(ctl: Controller, options: SurvivorOptions): Survivor {
  const [lo, hi] = options.pauseMs ?? [30, 250];
  let running: Promise<void> | undefined;
  let stopping = false;
  let lines: Stamped[] = [];
  const host = ctl.hostId;
  return {
    ctl,
    hostId: host,
    start(seed, reuse) {
      if (running) throw new Error("survivor: already running");
      stopping = false;
      lines = [];
      const rnd = prng(seed);
      const work: Workload = {
        bridge: false,
        overlay: true,
        names: { net: "p", sb: "t", ep: "f" },
        // The child's directed networks (d…) and the probes' are not the survivor's to delete;
        // those of network windows (dn…) get no endpoints from it either (their delete must
        // find none).
        keepNetworks: /^(d|probe)/,
        noEndpoints: /^(dn|probe)/,
        limits: options.limits,
        ...(reuse ? { reuse } : {}),
      };
      running = (async () => {
        for (let i = 0; !stopping; i++) {
          const op = nextOp(ctl, rnd, work);
          lines.push({ t: "begin", i, op, at: Date.now(), host });
          try {
            const result = await runOp(ctl, op);
            lines.push({
              t: "ack",
              i,
              op,
              ...(result === undefined ? {} : { result }),
              at: Date.now(),
              host,
            });
          } catch (err) {
            const e = err as Error;
            lines.push({ t: "err", i, op, name: e.name, message: e.message, at: Date.now(), host });
          }
          await new Promise((r) => setTimeout(r, lo + Math.floor(rnd() * (hi - lo))));
        }
      })();
    },
    async stop() {
      stopping = true;
      await running;
      running = undefined;
      return lines;
    },
  };
}
