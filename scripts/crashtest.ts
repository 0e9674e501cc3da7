/**
 * Crash test: kill -9 a controller at random moments and at every hook point of every
 * transient state, restart, and check that the journal, the kernel and what was
 * acknowledged agree. See docs/crash.md.
 *
 * Usage: `sudo deno run -A scripts/crashtest.ts [--trials N] [--seed S] [--workload K] [--verbose]`
 *
 * - `--trials N` (10): random kills (the parent sends SIGKILL after a seeded delay).
 *   On top, every run kills once at each of the 24 deterministic windows (8 transient states
 *   × 3 hook points), so each window is covered on every run.
 * - `--seed S` (1): makes the workload, the kill delays and the round order reproducible.
 * - `--workload K` (3): size of the live state: up to K networks, K+1 sandboxes, 2K+2
 *   endpoints.
 *
 * Exits 1 on any divergence or leak, or when a deterministic window was not reached.
 *
 * @module
 */

import { connect, type NatsConnection } from "@nats-io/transport-node";
import { createController } from "../mod.ts";
import type { Controller, ControllerOptions, CrashPoint } from "../mod.ts";
import { startNats, type TestNats } from "../tests/_harness/nats.ts";
import { createTestHost, type TestHost } from "../tests/_harness/netns.ts";
import type { ChildConfig, KillTarget, Op } from "./_crash_child.ts";
import { prng } from "./_crash_child.ts";
import { cleanupOld, probe } from "./_crash_check.ts";
import { type Child, killAndRead, spawnChild, waitLease } from "./_crash_process.ts";
import { compareKernel } from "./_crash_kernel.ts";
import {
  apply,
  compareModel,
  inFlight,
  newModel,
  resync,
  userNetworks,
  type Verdict,
} from "./_crash_model.ts";

const POINTS: CrashPoint[] = ["intent-appended", "effect-done", "outcome-appended"];
const WINDOWS: Pick<KillTarget, "kind" | "state">[] = [
  { kind: "network", state: "creating" },
  { kind: "network", state: "deleting" },
  { kind: "sandbox", state: "creating" },
  { kind: "sandbox", state: "deleting" },
  { kind: "endpoint", state: "creating" },
  { kind: "endpoint", state: "joining" },
  { kind: "endpoint", state: "leaving" },
  { kind: "endpoint", state: "deleting" },
];
const LEASE_TTL_MS = 1500;
const CLEAN_EVERY = 6;
const HOST_ID = "crash";

interface Args {
  trials: number;
  seed: number;
  workload: number;
  verbose: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { trials: 10, seed: 1, workload: 3, verbose: false };
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
    else if (k === "--verbose" || k === "-v") a.verbose = true;
    else throw new Error(`unknown argument ${k} (--trials N --seed S --workload K --verbose)`);
  }
  return a;
}

type Round =
  | { kind: "random"; delayMs: number }
  | { kind: "point"; target: KillTarget; retry: number };

const windowKey = (t: Pick<KillTarget, "kind" | "state">) => `${t.kind} ${t.state}`;

/** Directed commands that reach `target` (after a few random ones). */
function stepsFor(target: KillTarget, tag: string): Op[] {
  // Its own network: the warm-up's random commands may delete any network that existed
  // before the child started, and the steps must not depend on one.
  const net = `d${tag}`;
  const pre: Op[] = [{ op: "createNetwork", name: net }];
  const sb = `ds${tag}`;
  const ep = `de${tag}`;
  // The directed endpoint publishes (ports cnm chooses: never refused): every kill of a join,
  // leave or delete is a kill mid-publish or mid-revoke.
  const ports = ["80", "127.0.0.1::53/udp"];
  const k = windowKey(target);
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
  if (k === "sandbox deleting") return [...joined, { op: "deleteSandbox", name: sb }];
  if (k === "endpoint creating") {
    return [...pre, { op: "createEndpoint", network: net, name: ep, ports }];
  }
  if (k === "endpoint joining") return joined;
  if (k === "endpoint leaving") {
    return [...joined, { op: "leave", network: net, name: ep, sandbox: sb }];
  }
  return [...joined, { op: "deleteEndpoint", network: net, name: ep, force: true }];
}

const median = (xs: number[]) => {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main(): Promise<number> {
  const args = parseArgs(Deno.args);
  const rnd = prng(args.seed * 7919 + 17);
  const rounds: Round[] = [];
  for (let i = 0; i < args.trials; i++) {
    rounds.push({ kind: "random", delayMs: 50 + Math.floor(rnd() * 1200) });
  }
  for (const w of WINDOWS) {
    for (const point of POINTS) rounds.push({ kind: "point", target: { ...w, point }, retry: 0 });
  }
  for (let i = rounds.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [rounds[i], rounds[j]] = [rounds[j], rounds[i]];
  }

  let stop = false;
  const onInt = () => (stop = true);
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onInt);

  let host: TestHost | undefined;
  let nats: TestNats | undefined;
  let nc: NatsConnection | undefined;
  let ctl: Controller | undefined;
  let live: Child | undefined;
  let stateDir: string | undefined;
  const problems: { round: number; what: string; kind: "divergence" | "leak" }[] = [];
  const coverage = new Map<string, number>();
  const restartMs: number[] = [];
  let kills = 0;
  let randomKills = 0;
  let recoveryKills = 0;
  let repairs = 0;
  let resumed = 0;
  let acked = 0;
  let refused = 0;
  let missed = 0;
  const started = performance.now();
  try {
    host = await createTestHost("crs");
    nats = await startNats();
    nc = await connect({ servers: nats.url });
    stateDir = await Deno.makeTempDir({ prefix: `cnm-${host.prefix}-` });
    const stream = `CRASH_${host.prefix}`.toUpperCase();
    const site = { hostNs: host.name, namePrefix: `${host.prefix}-`, stateDir };
    const options: ControllerOptions = {
      nats: { servers: nats.url },
      stream,
      prefix: host.prefix,
      hostId: HOST_ID,
      kernel: { hostNamespace: host.path },
      namePrefix: site.namePrefix,
      stateDir,
      defaultBridge: false,
      leaseTtlMs: LEASE_TTL_MS,
      leaseWaitMs: LEASE_TTL_MS * 4 + 5000,
    };
    const model = newModel();
    let oldIds = new Set<string>();
    for (let r = 0; r < rounds.length && !stop; r++) {
      const round = rounds[r];
      const tag = `${r}`;
      const v: Verdict = { divergences: [], leaks: [] };
      const cfg: ChildConfig = {
        nats: nats.url,
        stream,
        prefix: host.prefix,
        hostId: HOST_ID,
        hostNamespace: host.path,
        namePrefix: site.namePrefix,
        stateDir,
        leaseTtlMs: LEASE_TTL_MS,
        seed: args.seed * 100_003 + r,
        reuse: { networks: model.deletedNets, endpoints: model.deletedEps },
        limits: {
          networks: args.workload,
          sandboxes: args.workload + 1,
          endpoints: 2 * args.workload + 2,
        },
        ...(round.kind === "point"
          ? {
            kill: round.target,
            warmup: Math.floor(rnd() * 4),
            steps: stepsFor(round.target, tag),
            random: 3,
          }
          : { random: -1 }),
      };
      const c = spawnChild(cfg);
      live = c;
      let how = "";
      if (round.kind === "random") {
        if (!(await c.waitFor("ready", 60_000))) {
          v.divergences.push(`child did not start: ${(await killAndRead(c)).slice(-2000)}`);
        } else {
          await new Promise((res) => setTimeout(res, round.delayMs));
          c.kill();
          how = `random kill after ${round.delayMs} ms`;
        }
      } else {
        const hit = await Promise.race([
          c.status.then(() => true),
          new Promise<boolean>((res) => setTimeout(() => res(false), 90_000)),
        ]);
        if (!hit) c.kill();
      }
      const status = await c.status;
      await c.reading;
      const stderr = await c.stderr;
      live = undefined;
      const lines = c.lines;
      const killLine = lines.find((l) => l.t === "kill");
      if (round.kind === "point") {
        const t = round.target;
        if (killLine) {
          const key = `${windowKey(t)} @ ${t.point}`;
          coverage.set(key, (coverage.get(key) ?? 0) + 1);
          how = `self-kill at ${t.point} of ${killLine.type}`;
        } else {
          missed++;
          how = `window ${windowKey(t)} @ ${t.point} not reached`;
          if (round.retry < 2) rounds.push({ ...round, retry: round.retry + 1 });
        }
      }
      if (status.signal === "SIGKILL") {
        kills++;
        if (round.kind === "random") randomKills++;
      } else if (!lines.some((l) => l.t === "ready")) {
        v.divergences.push(`child exited ${status.code} before ready: ${stderr.slice(-2000)}`);
      }
      for (const l of lines) {
        if (l.t === "ack") acked++;
        if (l.t === "err") refused++;
        const bad = apply(model, l);
        if (bad) v.divergences.push(bad);
      }
      const flight = inFlight(lines);

      // Half of the kills right after an intent are followed by a second controller that is
      // killed while its start-up recovery resumes that effect (a crash during recovery).
      if (
        round.kind === "point" && round.target.point === "intent-appended" && killLine &&
        rnd() < 0.5
      ) {
        const again = spawnChild({
          ...cfg,
          kill: { ...round.target, point: "effect-done" },
          armAtStart: true,
          warmup: 0,
          steps: [],
          random: 0,
        });
        live = again;
        const ok = await Promise.race([
          again.status.then(() => true),
          again.waitFor("done", 60_000).then(() => false),
        ]);
        if (!ok) again.kill();
        const st = await again.status;
        await again.reading;
        live = undefined;
        if (again.lines.some((l) => l.t === "kill")) {
          recoveryKills++;
          how += ", then killed again while recovery resumed it";
        }
        if (st.signal === "SIGKILL") kills++;
        else {v.divergences.push(
            `second child exited ${st.code}: ${(await again.stderr).slice(-2000)}`,
          );}
      }

      // Restart on the same stream, once the dead controller's lease has lapsed.
      await waitLease(nc, stream, host.prefix, HOST_ID);
      const t0 = performance.now();
      try {
        ctl = await createController(options);
      } catch (err) {
        v.divergences.push(`restart failed: ${(err as Error).name}: ${(err as Error).message}`);
        report(r, round, how, v, problems, args.verbose);
        break;
      }
      restartMs.push(performance.now() - t0);
      resumed += ctl.recovery.resumed.length;
      for (const w of ctl.recovery.warnings) {
        v.divergences.push(`recovery warning: ${JSON.stringify(w)}`);
      }
      const startFindings = ctl.recovery.reconcile?.findings ?? [];
      repairs += startFindings.length;
      for (const f of startFindings) {
        if (!f.repaired) v.divergences.push(`start-up repair failed: ${JSON.stringify(f)}`);
        else if (args.verbose) console.log(`  start-up repair: ${JSON.stringify(f)}`);
      }
      const drift = await ctl.reconcile({ dryRun: true });
      for (const f of drift.findings) {
        v.divergences.push(
          `reconcile after restart: ${f.kind} ${f.resource} ${f.name} ${f.problem}`,
        );
      }
      compareModel(ctl, model, flight, v);
      await compareKernel(ctl, site, v);
      resync(model, ctl);
      await probe(ctl, tag, v, host.name);
      if ((r + 1) % CLEAN_EVERY === 0) {
        for (const e of await cleanupOld(ctl, oldIds)) v.divergences.push(e);
        oldIds = new Set([
          ...userNetworks(ctl).map((n) => n.id),
          ...ctl.sandboxes().map((s) => s.id),
          ...ctl.endpoints().map((e) => e.id),
        ]);
        await compareKernel(ctl, site, v);
      }
      resync(model, ctl);
      await ctl.close();
      ctl = undefined;
      if (flight && args.verbose) console.log(`  in flight: ${JSON.stringify(flight)}`);
      report(r, round, how, v, problems, args.verbose);
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onInt);
    Deno.removeSignalListener("SIGTERM", onInt);
    const errors: unknown[] = [];
    if (live) {
      live.kill();
      await live.status.catch(() => {});
    }
    if (ctl) await ctl.close().catch((e) => errors.push(e));
    if (nc) await nc.close().catch((e) => errors.push(e));
    if (nats) await nats.cleanup().catch((e) => errors.push(e));
    if (host) await host.cleanup().catch((e) => errors.push(e));
    if (stateDir) await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    for (const e of errors) console.error(`cleanup: ${(e as Error).message}`);
  }

  const divergences = problems.filter((p) => p.kind === "divergence").length;
  const leaks = problems.filter((p) => p.kind === "leak").length;
  const uncovered = WINDOWS.flatMap((w) => POINTS.map((p) => `${windowKey(w)} @ ${p}`))
    .filter((k) => !coverage.get(k));
  const ms = (x: number) => `${Math.round(x)} ms`;
  const rows: [string, string][] = [
    ["seed", String(args.seed)],
    ["trials (random kills)", `${args.trials} (${randomKills} killed)`],
    ["kills (random + deterministic)", String(kills)],
    ["kills during start-up recovery", String(recoveryKills)],
    ["acknowledged / refused commands", `${acked} / ${refused}`],
    ["effects resumed on restart", String(resumed)],
    ["start-up repairs", String(repairs)],
    ["divergences", String(divergences)],
    ["leaks", String(leaks)],
    ["restart time median", ms(median(restartMs))],
    ["restart time max", ms(Math.max(0, ...restartMs))],
    ["windows covered", `${24 - uncovered.length}/24 (${missed} attempts missed, retried)`],
    ["wall time", `${((performance.now() - started) / 1000).toFixed(1)} s`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  console.log(`\n| ${"crash test".padEnd(w)} | result |\n|${"-".repeat(w + 2)}|--------|`);
  for (const [k, val] of rows) console.log(`| ${k.padEnd(w)} | ${val} |`);
  console.log(`\n| window | ${POINTS.join(" | ")} |\n|---|${POINTS.map(() => "---").join("|")}|`);
  for (const win of WINDOWS) {
    const cells = POINTS.map((p) => String(coverage.get(`${windowKey(win)} @ ${p}`) ?? 0));
    console.log(`| ${windowKey(win)} | ${cells.join(" | ")} |`);
  }
  if (problems.length) {
    console.log(`\nproblems (seed ${args.seed}):`);
    for (const p of problems) console.log(`  round ${p.round} ${p.kind}: ${p.what}`);
  }
  if (uncovered.length) console.log(`\nnot covered: ${uncovered.join(", ")}`);
  return divergences || leaks || uncovered.length || stop ? 1 : 0;
}

function report(
  r: number,
  round: Round,
  how: string,
  v: Verdict,
  problems: { round: number; what: string; kind: "divergence" | "leak" }[],
  verbose: boolean,
): void {
  for (const d of v.divergences) {
    problems.push({ round: r, what: `${how}: ${d}`, kind: "divergence" });
  }
  for (const l of v.leaks) problems.push({ round: r, what: `${how}: ${l}`, kind: "leak" });
  if (verbose || v.divergences.length || v.leaks.length) {
    const label = round.kind === "random" ? "random" : `${windowKey(round.target)}`;
    const bad = v.divergences.length + v.leaks.length;
    console.log(`round ${r} ${label}: ${how}${bad ? ` — ${bad} problem(s)` : ""}`);
    for (const d of [...v.divergences, ...v.leaks]) console.log(`  ${d}`);
  }
}

if (import.meta.main) Deno.exit(await main());
