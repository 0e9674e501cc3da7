/**
 * `cnm serve` as a real process (needs root and nats-server): the controller runs inside a
 * throwaway host namespace; the real `./cnm` creates and connects a sandbox through it.
 */
import assert from "node:assert/strict";
import { startEnv } from "../_harness/env.ts";
import { dockerCli } from "../_harness/docker.ts";

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

Deno.test("cnm serve --docker-socket (needs root, nats-server, docker CLI) answers the docker CLI", async () => {
  const cli = await dockerCli();
  const env = await startEnv("cld");
  const dir = await Deno.makeTempDir({ prefix: "cnm-docker-" });
  const sock = `${dir}/docker.sock`;
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
      "--docker-socket",
      sock,
    ],
    env: vars,
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = server.stderr.getReader();
  let log = "";
  const docker = async (...args: string[]) => {
    const o = await new Deno.Command(cli, {
      args,
      env: { DOCKER_HOST: `unix://${sock}`, DOCKER_CONFIG: dir, TZ: "UTC" },
    }).output();
    return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
  };
  try {
    while (!/answering on/.test(log)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`cnm serve exited early: ${log}`);
      log += dec.decode(value);
    }
    assert.match(log, new RegExp(`; Docker API on ${sock.replace(/[.]/g, "\\.")}\n`));
    assert.equal(Deno.statSync(sock).mode! & 0o777, 0o660);
    const since = Math.floor(Date.now() / 1000) - 60;
    let r = await docker("network", "create", "--subnet", "10.61.0.0/24", "web");
    assert.equal(r.code, 0, r.err);
    const id = r.out.trim();
    r = await docker("network", "ls", "--filter", "name=web", "--format", "{{.ID}} {{.Name}}");
    assert.deepEqual([r.code, r.out], [0, `${id.slice(0, 12)} web\n`]);
    r = await docker(
      "events",
      "--since",
      String(since),
      "--until",
      String(Math.ceil(Date.now() / 1000) + 1),
      "--filter",
      "event=create",
      "--filter",
      "network=web",
      "--format",
      "{{.Actor.ID}}",
    );
    assert.deepEqual([r.code, r.out], [0, `${id}\n`]);
    // The request log names each Docker call.
    let more = "";
    while (!/docker POST \/v1\.41\/networks\/create 201/.test(log + more)) {
      const { value, done } = await reader.read();
      if (done) break;
      more += dec.decode(value);
    }
    assert.match(log + more, /docker POST \/v1\.41\/networks\/create 201 [\d.]+ms/);
    server.kill("SIGTERM");
    assert.equal((await server.status).code, 0);
    assert.equal(await Deno.lstat(sock).then(() => true, () => false), false);
  } finally {
    try {
      server.kill("SIGKILL");
    } catch { /* already exited */ }
    await server.status;
    reader.releaseLock();
    await server.stderr.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await env.cleanup();
  }
});
