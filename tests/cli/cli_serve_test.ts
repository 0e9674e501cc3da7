/**
 * `cnm serve` as a real process (needs root and nats-server): the controller runs inside a
 * throwaway host namespace; the real `./cnm` creates and connects a sandbox through it.
 */
import assert from "node:assert/strict";
import { startEnv } from "../_harness/env.ts";

const CNM = new URL("../../cnm", import.meta.url).pathname;
const dec = new TextDecoder();

Deno.test("cnm serve (needs root, nats-server) answers commands and stops on SIGTERM", async () => {
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
      "-q",
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
  try {
    while (!/answering on/.test(log)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`cnm serve exited early: ${log}`);
      log += dec.decode(value);
    }
    assert.match(
      log,
      new RegExp(
        `cnm serve: host h1, stream ${env.stream}: answering on ${env.prefix}-api\\.h1\\.\\*`,
      ),
    );
    const run = async (...args: string[]) => {
      const o = await new Deno.Command(CNM, { args, env: vars }).output();
      return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
    };
    let r = await run("sandbox", "create", "c1");
    assert.equal(r.code, 0, r.err);
    assert.equal((await env.sandboxesInKernel()).length, 1);
    r = await run("connect", "none", "c1");
    assert.equal(r.code, 0, r.err);
    r = await run("history", "c1");
    assert.match(r.out, /endpoint\.joined/);
    r = await run("sandbox", "rm", "c1");
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(await env.sandboxesInKernel(), []);
    server.kill("SIGTERM");
    const status = await server.status;
    assert.equal(status.code, 0);
  } finally {
    try {
      server.kill("SIGKILL");
    } catch { /* already exited */ }
    await server.status;
    reader.releaseLock();
    await server.stderr.cancel().catch(() => {});
    await env.cleanup();
  }
});

Deno.test("cnm serve (needs root, nats-server) after kill -9 the next one takes over at once, and the CLI says why nobody answers meanwhile", async () => {
  const env = await startEnv("clk");
  const vars = {
    CNM_NATS_URL: env.nats.url,
    CNM_STREAM: env.stream,
    CNM_PREFIX: env.prefix,
    CNM_HOST_ID: "h1",
  };
  const servers: Deno.ChildProcess[] = [];
  /** Starts `cnm serve`; resolves with what it printed once it answers. */
  const serve = async () => {
    const server = new Deno.Command(CNM, {
      args: [
        "serve",
        "-q",
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
    servers.push(server);
    const reader = server.stderr.getReader();
    let log = "";
    while (!/answering on/.test(log)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`cnm serve exited early: ${log}`);
      log += dec.decode(value);
    }
    reader.releaseLock();
    server.stderr.cancel().catch(() => {});
    return { server, log };
  };
  try {
    const first = await serve();
    first.server.kill("SIGKILL");
    await first.server.status;
    const o = await new Deno.Command(CNM, { args: ["sandbox", "create", "x"], env: vars }).output();
    assert.equal(o.code, 4);
    assert.match(
      dec.decode(o.stderr),
      new RegExp(
        `no controller answers for host h1: the last one \\(pid ${first.server.pid} on \\S+\\) ` +
          "died; its lease lapses in \\d+ s, but a new `cnm serve` takes over at once",
      ),
    );
    const second = await serve();
    assert.match(
      second.log,
      new RegExp(
        `^cnm serve: took over the lease of host h1 from pid ${first.server.pid} on \\S+, ` +
          "which died$",
        "m",
      ),
    );
    assert.match(second.log, /\(recovered \d+ objects from \d+ events in \d+ ms\)$/m);
    assert.doesNotMatch(second.log, /waiting|waited/);
  } finally {
    for (const s of servers) {
      try {
        s.kill("SIGKILL");
      } catch { /* already exited */ }
      await s.status;
    }
    await env.cleanup();
  }
});
