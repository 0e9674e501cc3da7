/**
 * `cnm serve` as a real process (needs root and nats-server): the controller runs inside a
 * throwaway host namespace; the real `./cnm` creates and connects a sandbox through it.
 */
import assert from "node:assert/strict";
import { sh, startEnv } from "../_harness/env.ts";

const CNM = new URL("../../cnm", import.meta.url).pathname;
const dec = new TextDecoder();

Deno.test("cnm serve (needs root, nats-server) answers commands, logs what matters, reconciles, stops on SIGTERM", async () => {
  const env = await startEnv("cli");
  const vars = {
    CNM_NATS_URL: env.nats.url,
    CNM_STREAM: env.stream,
    CNM_PREFIX: env.prefix,
    CNM_HOST_ID: "h1",
  };
  const server = new Deno.Command(CNM, {
    args: [
      "serve",
      "--namespace",
      env.host.path,
      "--name-prefix",
      `${env.host.prefix}-`,
      "--state-dir",
      env.stateDir,
    ],
    env: vars,
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = server.stderr.getReader();
  let log = "";
  const reading = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      log += dec.decode(value);
    }
  })();
  const waitLog = async (re: RegExp, what: string) => {
    for (let i = 0; i < 200 && !re.test(log); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(log, re, `${what}; log so far:\n${log}`);
  };
  try {
    await waitLog(/answering on/, "cnm serve started");
    assert.match(
      log,
      new RegExp(
        `cnm serve: host h1, stream ${env.stream}: answering on ${env.prefix}-api\\.h1\\.\\*`,
      ),
    );
    assert.match(log, /reconcile: kernel matches the journal/);
    const run = async (...args: string[]) => {
      const o = await new Deno.Command(CNM, { args, env: vars }).output();
      return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
    };
    let r = await run("sandbox", "create", "c1");
    assert.equal(r.code, 0, r.err);
    await waitLog(/createSandbox name c1: ok \(\d/, "the request is logged with its object");
    assert.equal((await env.sandboxesInKernel()).length, 1);
    r = await run("connect", "none", "c1");
    assert.equal(r.code, 0, r.err);
    r = await run("history", "c1");
    assert.match(r.out, /endpoint\.joined/);
    r = await run("sandbox", "rm", "c1");
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(await env.sandboxesInKernel(), []);

    // An orphan carrying the controller's mark: reported, then removed, then in the history.
    await sh(["ip", "netns", "add", `${env.host.prefix}-orphan`]);
    r = await run("reconcile", "--dry-run");
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^reconcile: 1 difference, 0 repaired/);
    assert.match(
      r.out,
      new RegExp(
        `host\\s+netns\\s+${env.host.prefix}-orphan\\s+unexpected\\s+not repaired \\(dry run\\)`,
      ),
    );
    r = await run("reconcile");
    assert.match(r.out, /repaired: removed \(an orphan with cnm's mark\)/);
    assert.deepEqual(await env.sandboxesInKernel(), []);
    r = await run("history", "--host", "h1");
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^host h1 "h1"/);
    assert.match(
      r.out,
      new RegExp(
        `host\\.reconciled.*repaired: netns ${env.host.prefix}-orphan \\(orphan, removed\\)`,
      ),
    );

    // NATS goes away and comes back: both are logged.
    await env.nats.stop();
    await waitLog(/nats: disconnected \(controller\)/, "the disconnect is logged");
    await env.nats.start();
    await waitLog(/nats: reconnected \(controller\)/, "the reconnect is logged");
    server.kill("SIGTERM");
    const status = await server.status;
    assert.equal(status.code, 0);
  } finally {
    try {
      server.kill("SIGKILL");
    } catch { /* already exited */ }
    await server.status;
    await reading.catch(() => {});
    reader.releaseLock();
    await env.cleanup();
  }
});
