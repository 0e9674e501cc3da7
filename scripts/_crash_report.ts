/**
 * The crash test's output: what a run counts ({@link Tally}), each round's problems as they
 * are found, and the result table with the window coverage at the end.
 *
 * @module
 */

import type { Verdict } from "./_crash_model.ts";
import {
  type Args,
  POINTS,
  type Round,
  type Window,
  windowKey,
  windowsOf,
} from "./_crash_rounds.ts";

/** One problem of a round: a divergence (state disagrees) or a leak (something left behind). */
export interface Problem {
  round: number;
  what: string;
  kind: "divergence" | "leak";
}

/** What a run counts. */
export interface Tally {
  n: {
    kills: number;
    random: number;
    recovery: number;
    repairs: number;
    claims: number;
    resumed: number;
    acked: number;
    refused: number;
    peerAcked: number;
    peerRefused: number;
    missed: number;
    takeovers: number;
  };
  problems: Problem[];
  /** Kills per window (`<window> @ <point>`). */
  coverage: Map<string, number>;
  restartMs: number[];
  convergeMs: number[];
}

/** An empty tally. */
export function newTally(): Tally {
  return {
    n: {
      kills: 0,
      random: 0,
      recovery: 0,
      repairs: 0,
      claims: 0,
      resumed: 0,
      acked: 0,
      refused: 0,
      peerAcked: 0,
      peerRefused: 0,
      missed: 0,
      takeovers: 0,
    },
    problems: [],
    coverage: new Map(),
    restartMs: [],
    convergeMs: [],
  };
}

/** Records a round's verdict; prints the round when it found problems (or `verbose`). */
export function report(
  r: number,
  round: Round,
  how: string,
  v: Verdict,
  tally: Tally,
  verbose: boolean,
): void {
  const { problems } = tally;
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

/**
 * Prints the result table, the problems and the windows not covered; returns how many
 * divergences, leaks and uncovered windows there were (0: the run passed).
 */
export function summarize(args: Args, tally: Tally, wallSeconds: number): number {
  const { n, problems, coverage, restartMs, convergeMs } = tally;
  const windows = windowsOf(args.overlay);
  const divergences = problems.filter((p) => p.kind === "divergence").length;
  const leaks = problems.filter((p) => p.kind === "leak").length;
  const all = windows.flatMap((w) => POINTS.map((p) => `${windowKey(w)} @ ${p}`));
  const uncovered = all.filter((k) => !coverage.get(k));
  const ms = (x: number) => `${Math.round(x)} ms`;
  const rows: [string, string][] = [
    ["seed", String(args.seed)],
    ["hosts", args.overlay ? "2 (h1 killed, h2 survives)" : "1"],
    ["trials (random kills)", `${args.trials} (${n.random} killed)`],
    ["kills (random + deterministic)", String(n.kills)],
    ["kills during start-up recovery", String(n.recovery)],
    ["acknowledged / refused commands", `${n.acked} / ${n.refused}`],
    ...(args.overlay
      ? [["acknowledged / refused on h2", `${n.peerAcked} / ${n.peerRefused}`] as [
        string,
        string,
      ]]
      : []),
    [
      "restarts: lease taken over / waited for",
      `${n.takeovers} / ${restartMs.length - n.takeovers}`,
    ],
    ["effects resumed on restart", String(n.resumed)],
    ["start-up repairs", String(n.repairs)],
    ["claims released at start", String(n.claims)],
    ["divergences", String(divergences)],
    ["leaks", String(leaks)],
    ["restart time median", ms(median(restartMs))],
    ["restart time max", ms(Math.max(0, ...restartMs))],
    ...(args.overlay
      ? [[
        "overlay converged median / max",
        `${ms(median(convergeMs))} / ${ms(Math.max(0, ...convergeMs))}`,
      ] as [string, string]]
      : []),
    [
      "windows covered",
      `${all.length - uncovered.length}/${all.length} (${n.missed} attempts missed, retried)`,
    ],
    ["wall time", `${wallSeconds.toFixed(1)} s`],
  ];
  printTable(rows, windows, coverage);
  if (problems.length) {
    console.log(`\nproblems (seed ${args.seed}):`);
    for (const p of problems) console.log(`  round ${p.round} ${p.kind}: ${p.what}`);
  }
  if (uncovered.length) console.log(`\nnot covered: ${uncovered.join(", ")}`);
  return divergences + leaks + uncovered.length;
}

export const median = (xs: number[]) => {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Prints the result table and the window coverage. */
export function printTable(
  rows: [string, string][],
  windows: Window[],
  coverage: Map<string, number>,
): void {
  const w = Math.max(...rows.map(([k]) => k.length));
  console.log(`\n| ${"crash test".padEnd(w)} | result |\n|${"-".repeat(w + 2)}|--------|`);
  for (const [k, val] of rows) console.log(`| ${k.padEnd(w)} | ${val} |`);
  console.log(`\n| window | ${POINTS.join(" | ")} |\n|---|${POINTS.map(() => "---").join("|")}|`);
  for (const win of windows) {
    const cells = POINTS.map((p) => String(coverage.get(`${windowKey(win)} @ ${p}`) ?? 0));
    console.log(`| ${windowKey(win)} | ${cells.join(" | ")} |`);
  }
}
