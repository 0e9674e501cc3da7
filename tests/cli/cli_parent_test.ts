/**
 * `deno task cnm serve` is two processes: the task runner and the server it starts. A SIGKILL
 * of the runner (a supervisor's last word) cannot be passed on; the server must notice its
 * parent died and stop, instead of running on with PPID 1 and the host's lease (needs root,
 * nats-server: the server runs in a throwaway host namespace).
 */
import assert from "node:assert/strict";
import { startEnv } from "../_harness/env.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const dec = new TextDecoder();

function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z/.test(stat); // a zombie is dead
  } catch {
    return false;
  }
}

Deno.test("deno task cnm serve (needs root, nats-server) stops when the task runner is killed", async () => {
  const env = await startEnv("par");
  const task = new Deno.Command("deno", {
    args: [
      "task",
      "--quiet",
      "cnm",
      "serve",
      "--namespace",
      env.host.path,
      "--name-prefix",
      `${env.host.prefix}-`,
      "--state-dir",
      env.stateDir,
    ],
    cwd: ROOT,
    env: {
      CNM_NATS_URL: env.nats.url,
      CNM_STREAM: env.stream,
      CNM_PREFIX: env.prefix,
      CNM_HOST_ID: "h1",
    },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = task.stderr.getReader();
  let log = "";
  let server = 0;
  try {
    while (!/answering on/.test(log)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`cnm serve exited early: ${log}`);
      log += dec.decode(value);
    }
    const children = Deno.readTextFileSync(`/proc/${task.pid}/task/${task.pid}/children`)
      .trim().split(/\s+/).map(Number).filter(Boolean);
    assert.equal(children.length, 1, `one server process under the task runner: ${children}`);
    server = children[0];
    task.kill("SIGKILL");
    await task.status;
    const deadline = Date.now() + 5000;
    while (alive(server) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (alive(server)) {
      // What it said after the kill tells why (the log is cut when the runner died).
      let stat = "";
      try {
        stat = Deno.readTextFileSync(`/proc/${server}/stat`) + " wchan " +
          Deno.readTextFileSync(`/proc/${server}/wchan`);
      } catch { /* gone meanwhile */ }
      assert.fail(`the server (pid ${server}) still runs after its parent was killed: ${stat}`);
    }
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      log += dec.decode(value);
    }
    assert.match(log, /cnm serve: stopping on the death of its parent process/);
  } finally {
    try {
      task.kill("SIGKILL");
    } catch { /* gone */ }
    if (server && alive(server)) Deno.kill(server, "SIGKILL");
    await task.status;
    reader.releaseLock();
    await task.stderr.cancel().catch(() => {});
    await env.cleanup();
  }
});
