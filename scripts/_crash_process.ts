/**
 * The crash test's child controller process, as the parent sees it: spawned with its
 * configuration, its stdout read as JSON lines, killed with SIGKILL; and the wait for the
 * lease a killed controller held to lapse.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { leaseBucketOf } from "../src/controller/lease.ts";
import type { ChildConfig, ChildLine } from "./_crash_child.ts";

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
  const lines: ChildLine[] = [];
  let notify = () => {};
  const reading = (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const text = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (text.trim()) lines.push(JSON.parse(text));
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
