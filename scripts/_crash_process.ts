/**
 * The crash test's child controller process, as the parent sees it: spawned with its
 * configuration, its stdout read as JSON lines, killed with SIGKILL (one round's kill, and
 * the second kill during recovery); and the wait for the lease a killed controller held to
 * lapse.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { leaseBucketOf } from "../src/controller/lease.ts";
import type { ChildConfig, ChildLine } from "./_crash_child.ts";
import type { Round } from "./_crash_rounds.ts";

/** A spawned child. */
export type Child = ReturnType<typeof spawnChild>;

/** The child process, its stdout as lines, and a way to wait for a line. */
export function spawnChild(cfg: ChildConfig) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./_crash_child.ts", import.meta.url).pathname,
      JSON.stringify(cfg),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  /** Each line stamped with when the parent read it (ms since the epoch). */
  const lines: (ChildLine & { at: number })[] = [];
  let notify = () => {};
  const reading = (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const text = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (text.trim()) lines.push({ ...JSON.parse(text), at: Date.now() });
      }
      notify();
    }
    notify();
  })();
  const stderr = (async () => {
    let s = "";
    for await (const c of child.stderr.pipeThrough(new TextDecoderStream())) s += c;
    return s;
  })();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    notify();
    return s;
  });
  return {
    child,
    lines,
    status,
    stderr,
    reading,
    /** Resolves when a line of type `t` arrived or the child exited; false on timeout. */
    async waitFor(t: ChildLine["t"], ms: number): Promise<boolean> {
      const deadline = Date.now() + ms;
      while (!lines.some((l) => l.t === t)) {
        if (exited || Date.now() > deadline) return false;
        await new Promise<void>((r) => {
          notify = r;
          setTimeout(r, 100);
        });
      }
      return true;
    },
    kill() {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
    },
  };
}

/** Waits until the lease a killed controller held has expired (a restart would wait too). */
export async function waitLease(
  nc: NatsConnection,
  stream: string,
  prefix: string,
  hostId: string,
): Promise<number> {
  const t0 = performance.now();
  const kv = await new Kvm(nc).open(leaseBucketOf(stream));
  for (;;) {
    const e = await kv.get(`${prefix}.${hostId}`);
    if (!e || e.operation !== "PUT" || !e.value.length) break;
    const rec = JSON.parse(new TextDecoder().decode(e.value)) as { expiresAt: string };
    const left = Date.parse(rec.expiresAt) - Date.now();
    if (left < 0) break;
    await new Promise((r) => setTimeout(r, Math.min(left + 20, 250)));
  }
  return performance.now() - t0;
}

/** Kills the child and returns what it wrote to stderr. */
export async function killAndRead(c: Child): Promise<string> {
  c.kill();
  await c.status;
  return await c.stderr;
}

/** What the child (or children) of one round did. */
export interface RoundKill {
  /** The first child's lines, stamped when read. */
  lines: (ChildLine & { at: number })[];
  /** Its self-kill line, when the window was reached. */
  killLine?: ChildLine & { t: "kill" };
  /** How it died, for the report. */
  how: string;
  /** Children that died of SIGKILL. */
  kills: number;
  /** A second child was killed while its start-up recovery resumed the effect. */
  recoveryKill: boolean;
  problems: string[];
}

/**
 * Runs a round's child: killed after the round's delay, or killing itself at its window.
 * After a kill right after an intent, `again()` decides whether a second controller starts
 * and is killed while its recovery resumes that effect (a crash during recovery). `track`
 * is told the child alive at each moment (for clean-up after a failure).
 */
export async function killRound(
  cfg: ChildConfig,
  round: Round,
  again: () => boolean,
  track: (c: Child | undefined) => void,
): Promise<RoundKill> {
  const out: RoundKill = { lines: [], how: "", kills: 0, recoveryKill: false, problems: [] };
  const c = spawnChild(cfg);
  track(c);
  if (round.kind === "random") {
    if (!(await c.waitFor("ready", 60_000))) {
      out.problems.push(`child did not start: ${(await killAndRead(c)).slice(-2000)}`);
    } else {
      await new Promise((res) => setTimeout(res, round.delayMs));
      c.kill();
      out.how = `random kill after ${round.delayMs} ms`;
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
  track(undefined);
  out.lines = c.lines;
  out.killLine = c.lines.find((l) => l.t === "kill") as RoundKill["killLine"];
  if (round.kind === "point" && out.killLine) {
    out.how = `self-kill at ${round.target.point} of ${out.killLine.type}`;
  }
  if (status.signal === "SIGKILL") out.kills++;
  else if (!c.lines.some((l) => l.t === "ready")) {
    out.problems.push(`child exited ${status.code} before ready: ${stderr.slice(-2000)}`);
  }
  if (
    round.kind === "point" && round.target.point === "intent-appended" && out.killLine &&
    again()
  ) {
    const second = spawnChild({
      ...cfg,
      kill: { ...round.target, point: "effect-done", objectId: out.killLine.objectId },
      armAtStart: true,
      warmup: 0,
      steps: [],
      random: 0,
    });
    track(second);
    const died = await Promise.race([
      second.status.then(() => true),
      second.waitFor("done", 60_000).then(() => false),
    ]);
    if (!died) second.kill();
    const st = await second.status;
    await second.reading;
    track(undefined);
    if (second.lines.some((l) => l.t === "kill")) {
      out.recoveryKill = true;
      out.how += ", then killed again while recovery resumed it";
    }
    if (st.signal === "SIGKILL") out.kills++;
    else out.problems.push(`second child exited ${st.code}: ${(await second.stderr).slice(-2000)}`);
  }
  return out;
}
