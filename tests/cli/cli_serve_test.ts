/**
 * `cnm serve` as a real process (needs root and nats-server): the controller runs inside a
 * throwaway host namespace; the real `./cnm` creates and connects a sandbox through it.
 */
import assert from "node:assert/strict";
import { startEnv } from "../_harness/env.ts";
import { startNats } from "../_harness/nats.ts";
import { createTestHost } from "../_harness/netns.ts";

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

Deno.test("cnm serve (needs root, nats-server) runs with its restricted user of docs/nats-permissions.conf", async () => {
  const host = await createTestHost("csec");
  const layout = await Deno.readTextFile(
    new URL("../../docs/nats-permissions.conf", import.meta.url),
  );
  const nats = await startNats({
    config: layout.replaceAll("$CNM_VM_PASSWORD", '"vm-pw"')
      .replaceAll("$CNM_READER_PASSWORD", '"rd-pw"')
      .replaceAll("$CNM_OPERATOR_PASSWORD", '"op-pw"'),
  });
  const stateDir = await Deno.makeTempDir({ prefix: `cnm-${host.prefix}-` });
  // The layout is written for stream CNM, prefix cnm, host vm: this server is the test's own.
  const base = { NATS_URL: nats.url, CNM_HOST_ID: "vm" };
  const server = new Deno.Command(CNM, {
    args: [
      "serve",
      "--namespace",
      host.path,
      "--name-prefix",
      `${host.prefix}-`,
      "--state-dir",
      stateDir,
    ],
    env: { ...base, NATS_USER: "cnm-vm", NATS_PASSWORD: "vm-pw" },
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
    const run = async (user: string, pw: string, ...args: string[]) => {
      const o = await new Deno.Command(CNM, {
        args,
        env: { ...base, NATS_USER: user, NATS_PASSWORD: pw },
      }).output();
      return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
    };
    let r = await run("cnm-operator", "op-pw", "sandbox", "create", "c1");
    assert.equal(r.code, 0, r.err);
    r = await run("cnm-operator", "op-pw", "connect", "none", "c1");
    assert.equal(r.code, 0, r.err);
    r = await run("cnm-reader", "rd-pw", "history", "c1");
    assert.match(r.out, /endpoint\.joined/);
    r = await run("cnm-reader", "rd-pw", "sandbox", "rm", "c1");
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /ForbiddenError: .*NATS does not let this user publish/);
    r = await run("cnm-operator", "op-pw", "sandbox", "rm", "c1");
    assert.equal(r.code, 0, r.err);
    server.kill("SIGTERM");
    assert.equal((await server.status).code, 0);
    assert.doesNotMatch(log, /vm-pw/);
  } finally {
    try {
      server.kill("SIGKILL");
    } catch { /* already exited */ }
    await server.status;
    reader.releaseLock();
    await server.stderr.cancel().catch(() => {});
    await nats.cleanup();
    await host.cleanup();
    await Deno.remove(stateDir, { recursive: true });
  }
});
