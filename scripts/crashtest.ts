/**
 * Crash test: kill -9 a controller at random moments and at every hook point of every
 * transient state, restart, and check that the journal, the kernel and what was
 * acknowledged agree — on the crashed host and, for overlay networks, on a second host whose
 * controller is never killed. See docs/crash.md.
 *
 * Usage: `sudo deno run -A scripts/crashtest.ts [--trials N] [--seed S] [--workload K]
 * [--no-overlay] [--verbose]`
 *
 * - `--trials N` (10): random kills (the parent sends SIGKILL after a seeded delay).
 *   On top, every run kills once at each deterministic window: 8 transient states × 3 hook
 *   points, and with the overlay 6 more (a global network creating/deleting, an overlay
 *   endpoint creating/joining/leaving/deleting) × 3: 42 windows.
 * - `--seed S` (1): makes the workload, the kill delays and the round order reproducible.
 * - `--workload K` (3): size of the live state: up to K bridge and K overlay networks, K+1
 *   sandboxes, 2K+2 endpoints on the crashed host (K sandboxes, 2K endpoints on the other).
 * - `--no-overlay`: one host, bridge networks only (the run before the overlay existed).
 *
 * Exits 1 on any divergence or leak, or when a deterministic window was not reached.
 *
 * @module
 */

import { connect, type NatsConnection } from "@nats-io/transport-node";
import { createController } from "../mod.ts";
import type { Controller, ControllerOptions } from "../mod.ts";
import { type Journal, openJournal } from "../src/journal/journal.ts";
import { startNats, type TestNats } from "../tests/_harness/nats.ts";
import { createLab, type Lab } from "../tests/_harness/multihost.ts";
import type { ChildConfig } from "./_crash_child.ts";
import { prng } from "./_crash_child.ts";
import { cleanupOld, probe } from "./_crash_check.ts";
import { type Child, killRound, waitLease } from "./_crash_process.ts";
import { compareKernel } from "./_crash_kernel.ts";
import { compareModel } from "./_crash_compare.ts";
import { judgeRefusal } from "./_crash_rejections.ts";
import {
  apply,
  inFlight,
  mayDelete,
  newModel,
  resync,
  settleDuplicates,
  type Stamped,
  type Verdict,
} from "./_crash_model.ts";
import { compareOverlay, globalNets, labSites, type OverlaySite } from "./_crash_overlay.ts";
import { compareClaims } from "./_crash_claims.ts";
import { probeOverlay } from "./_crash_traffic.ts";
import { createSurvivor, type Survivor } from "./_crash_survivor.ts";
import { userEndpoints, userNetworks } from "./_crash_workload.ts";
import { parseArgs, planRounds, stepsFor, windowKey } from "./_crash_rounds.ts";
import { newTally, report, summarize } from "./_crash_report.ts";

const LEASE_TTL_MS = 1500;
const CLEAN_EVERY = 6;
const HOSTS = ["h1", "h2"];
/** A restart taking longer than this is reported as hung. */
const RESTART_LIMIT_MS = 60_000;
/** Peers and claims must have converged this long after a restart. */
const CONVERGE_MS = 2000;

async function main(): Promise<number> {
  const args = parseArgs(Deno.args);
  const rnd = prng(args.seed * 7919 + 17);
  const rounds = planRounds(args, rnd);

  let stop = false;
  const onInt = () => (stop = true);
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onInt);

  let lab: Lab | undefined;
  let nats: TestNats | undefined;
  let nc: NatsConnection | undefined;
  let ctl: Controller | undefined;
  let peer: Controller | undefined;
  let survivor: Survivor | undefined;
  let live: Child | undefined;
  let stateDir: string | undefined;
  const tally = newTally();
  const { n, coverage, restartMs, convergeMs } = tally;
  const started = performance.now();
  try {
    lab = await createLab({ hosts: args.overlay ? 2 : 1, label: "crs" });
    nats = await startNats();
    nc = await connect({ servers: nats.url });
    stateDir = await Deno.makeTempDir({ prefix: `cnm-${lab.prefix}-` });
    const stream = `CRASH_${lab.prefix}`.toUpperCase();
    const prefix = lab.prefix;
    const sites = labSites(lab.hosts, HOSTS, stateDir, stream);
    const optionsOf = (i: number): ControllerOptions => ({
      nats: { servers: nats!.url },
      stream,
      prefix,
      hostId: HOSTS[i],
      kernel: { hostNamespace: lab!.hosts[i].path },
      advertiseAddress: lab!.hosts[i].address,
      namePrefix: sites[i].namePrefix,
      stateDir: sites[i].stateDir,
      defaultBridge: false,
      leaseTtlMs: LEASE_TTL_MS,
      leaseWaitMs: LEASE_TTL_MS * 4 + 5000,
      log: (line) => args.verbose && console.log(`  ${HOSTS[i]}: ${line}`),
    });
    const journal: Journal = await openJournal(nc, { stream, prefix });
    const limits = {
      networks: args.workload,
      sandboxes: args.workload + 1,
      endpoints: 2 * args.workload + 2,
    };
    if (args.overlay) {
      peer = await createController(optionsOf(1));
      survivor = createSurvivor(peer, {
        limits: { networks: args.workload, sandboxes: args.workload, endpoints: 2 * args.workload },
      });
    }
    const overlaySites = (): OverlaySite[] =>
      peer ? [{ ...sites[0], ctl: ctl! }, { ...sites[1], ctl: peer }] : [];
    const model = newModel();
    let oldIds = new Set<string>();
    let deadBefore = new Set<string>();
    for (let r = 0; r < rounds.length && !stop; r++) {
      const round = rounds[r];
      const tag = `${r}`;
      const v: Verdict = { divergences: [], leaks: [] };
      const reuse = { networks: model.deletedNets, endpoints: model.deletedEps };
      const cfg: ChildConfig = {
        nats: nats.url,
        stream,
        prefix,
        hostId: HOSTS[0],
        hostNamespace: lab.hosts[0].path,
        advertiseAddress: lab.hosts[0].address,
        namePrefix: sites[0].namePrefix,
        stateDir: sites[0].stateDir,
        leaseTtlMs: LEASE_TTL_MS,
        seed: args.seed * 100_003 + r,
        overlay: args.overlay,
        reuse,
        limits,
        ...(round.kind === "point"
          ? {
            kill: round.target,
            warmup: Math.floor(rnd() * 4),
            steps: stepsFor(round.target, tag, args.overlay),
            random: 3,
          }
          : { random: -1 }),
      };
      const phase: [string, number][] = [["start", performance.now()]];
      const mark = (name: string) => phase.push([name, performance.now()]);
      survivor?.start(args.seed * 200_003 + r, reuse);
      const k = await killRound(cfg, round, () => rnd() < 0.5, (c) => (live = c));
      const { lines, killLine } = k;
      let how = k.how;
      v.divergences.push(...k.problems);
      n.kills += k.kills;
      if (round.kind === "random" && k.kills) n.random++;
      if (k.recoveryKill) n.recovery++;
      if (round.kind === "point") {
        const t = round.target;
        if (killLine) {
          const key = `${windowKey(t)} @ ${t.point}`;
          coverage.set(key, (coverage.get(key) ?? 0) + 1);
        } else {
          n.missed++;
          how = `window ${windowKey(t)} @ ${t.point} not reached`;
          if (round.retry < 2) rounds.push({ ...round, retry: round.retry + 1 });
        }
      }
      const flight = inFlight(lines);

      // Restart on the same stream (the other host keeps working meanwhile): half of the
      // time once the dead controller's lease has lapsed, else at once (the new controller
      // takes the lease over: its holder provably died).
      mark("child");
      if (rnd() < 0.5) await waitLease(nc, stream, prefix, HOSTS[0]);
      mark("lease");
      const restartedAt = Date.now();
      const t0 = performance.now();
      try {
        // A restart that hangs is a failure too (the run stops; `finally` cleans up).
        let timer: ReturnType<typeof setTimeout> | undefined;
        ctl = await Promise.race([
          createController(optionsOf(0)).finally(() => clearTimeout(timer)),
          new Promise<never>((_, reject) =>
            timer = setTimeout(
              () => reject(new Error(`no controller after ${RESTART_LIMIT_MS / 1000} s (hung)`)),
              RESTART_LIMIT_MS,
            )
          ),
        ]);
      } catch (err) {
        v.divergences.push(`restart failed: ${(err as Error).name}: ${(err as Error).message}`);
        await survivor?.stop();
        report(r, round, how, v, tally, args.verbose);
        break;
      }
      restartMs.push(performance.now() - t0);
      mark("restart");
      const peerLines = (await survivor?.stop()) ?? [];
      const settledAt = Date.now();
      n.resumed += ctl.recovery.resumed.length;
      if (ctl.recovery.leaseTakeover) n.takeovers++;
      n.claims += ctl.recovery.claimsReleased.length;
      for (const w of ctl.recovery.warnings) {
        v.divergences.push(`recovery warning: ${JSON.stringify(w)}`);
      }
      const startFindings = ctl.recovery.reconcile?.findings ?? [];
      n.repairs += startFindings.length;
      for (const f of startFindings) {
        if (!f.repaired) v.divergences.push(`start-up repair failed: ${JSON.stringify(f)}`);
        else if (args.verbose) console.log(`  start-up repair: ${JSON.stringify(f)}`);
      }
      if (args.verbose && ctl.recovery.claimsReleased.length) {
        console.log(`  claims released at start: ${ctl.recovery.claimsReleased.join(", ")}`);
      }

      // Peers, namespaces and claims must have converged within CONVERGE_MS.
      const hosts = overlaySites();
      let dead = new Set<string>();
      if (hosts.length) {
        const ms = await compareOverlay(hosts, v, settledAt, settledAt + CONVERGE_MS);
        if (ms !== undefined) convergeMs.push(ms);
        dead = await compareClaims(nc, journal, hosts, restartedAt, v);
      }

      mark("overlay+claims");
      // Every host's acknowledged commands, in the order the parent saw them.
      const childLines: Stamped[] = lines.map((l) => ({ ...l, host: HOSTS[0] }));
      const deadClaims = new Set([...deadBefore, ...dead]);
      deadBefore = dead;
      const merged = [...childLines, ...peerLines].sort((a, b) => a.at - b.at);
      for (const l of merged) {
        const mine = l.host === HOSTS[0];
        if (l.t === "ack") mine ? n.acked++ : n.peerAcked++;
        if (l.t === "err") mine ? n.refused++ : n.peerRefused++;
        const bad = l.t === "err"
          ? judgeRefusal(model, l, { others: mine ? peerLines : childLines, deadClaims, prefix })
          : apply(model, l);
        if (bad) v.divergences.push(bad);
      }
      v.divergences.push(...settleDuplicates(model, mayDelete(model, flight, HOSTS[0])));

      const drift = await ctl.reconcile({ dryRun: true });
      for (const f of drift.findings) {
        v.divergences.push(
          `reconcile after restart: ${f.kind} ${f.resource} ${f.name} ${f.problem}`,
        );
      }
      if (peer) {
        for (const f of (await peer.reconcile({ dryRun: true })).findings) {
          v.divergences.push(`reconcile on h2: ${f.kind} ${f.resource} ${f.name} ${f.problem}`);
        }
      }
      compareModel(ctl, model, flight, v, HOSTS[0]);
      await compareKernel(ctl, sites[0], v);
      if (peer) {
        compareModel(peer, model, undefined, v, HOSTS[1], flight ? [flight] : []);
        await compareKernel(peer, sites[1], v);
      }
      resync(model, ctl, HOSTS[0]);
      if (peer) resync(model, peer, HOSTS[1]);
      mark("model+kernel");
      await probe(ctl, tag, v, sites[0].hostNs);
      mark("probe");
      if (hosts.length) await probeOverlay(hosts, tag, v, dead, prefix);
      mark("overlay probe");
      if ((r + 1) % CLEAN_EVERY === 0) {
        const empty = (net: { id: string }) =>
          [ctl!, ...(peer ? [peer] : [])].every((x) => !x.endpoints({ network: net.id }).length);
        if (peer) {
          for (const e of await cleanupOld(peer, oldIds, () => false)) v.divergences.push(e);
        }
        for (const e of await cleanupOld(ctl, oldIds, empty)) v.divergences.push(e);
        oldIds = new Set([
          ...userNetworks(ctl).map((x) => x.id),
          ...[ctl, ...(peer ? [peer] : [])].flatMap((x) => [
            ...x.sandboxes().map((s) => s.id),
            ...userEndpoints(x).map((e) => e.id),
          ]),
        ]);
        await compareKernel(ctl, sites[0], v);
        if (peer) await compareKernel(peer, sites[1], v);
        if (hosts.length) await compareOverlay(hosts, v, Date.now(), Date.now() + CONVERGE_MS);
      }
      resync(model, ctl, HOSTS[0]);
      if (peer) resync(model, peer, HOSTS[1]);
      await ctl.close();
      ctl = undefined;
      mark("close");
      if (args.verbose) {
        console.log(
          `  ms: ${
            phase.slice(1).map(([k, t], i) => `${k} ${Math.round(t - phase[i][1])}`).join(", ")
          }`,
        );
      }
      if (flight && args.verbose) console.log(`  in flight: ${JSON.stringify(flight)}`);
      if (args.verbose && peer) {
        console.log(`  global networks: ${globalNets(peer).map((x) => x.name).join(" ")}`);
      }
      report(r, round, how, v, tally, args.verbose);
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onInt);
    Deno.removeSignalListener("SIGTERM", onInt);
    const errors: unknown[] = [];
    if (live) {
      live.kill();
      await live.status.catch(() => {});
    }
    await survivor?.stop().catch((e) => errors.push(e));
    if (ctl) await ctl.close().catch((e) => errors.push(e));
    if (peer) await peer.close().catch((e) => errors.push(e));
    if (nc) await nc.close().catch((e) => errors.push(e));
    if (nats) await nats.cleanup().catch((e) => errors.push(e));
    if (lab) await lab.cleanup().catch((e) => errors.push(e));
    if (stateDir) await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    for (const e of errors) console.error(`cleanup: ${(e as Error).message}`);
  }

  const failed = summarize(args, tally, (performance.now() - started) / 1000);
  return failed || stop ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
