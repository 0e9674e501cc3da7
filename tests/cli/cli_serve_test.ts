/**
 * `cnm serve` as a real process (needs root and nats-server): the controller runs inside a
 * throwaway host namespace; the real `./cnm` creates and connects a sandbox through it, and
 * with `--docker-socket` the real `docker` CLI manages its networks.
 */
import assert from "node:assert/strict";
import { sh, startEnv } from "../_harness/env.ts";
import { startNats } from "../_harness/nats.ts";
import { createTestHost } from "../_harness/netns.ts";
import { dockerCli } from "../_harness/docker.ts";
import { CNM, serveSetup, startServe } from "../_harness/cnm_serve.ts";
import { ownerId } from "../../src/ids.ts";

const dec = new TextDecoder();

Deno.test("cnm serve (needs root, nats-server) answers commands, logs what matters, reconciles, stops on SIGTERM", async () => {
  const env = await startEnv("cli");
  const setup = serveSetup(env, []);
  const server = await startServe(setup).catch(async (err) => {
    await env.cleanup();
    throw err;
  });
  const waitLog = (re: RegExp, _what?: string) => server.waitFor(re, 10_000);
  try {
    assert.match(
      server.log(),
      new RegExp(
        `cnm serve: host h1, stream ${env.stream}: answering on ${env.prefix}-api\\.h1\\.\\*`,
      ),
    );
    await waitLog(/reconcile: kernel matches the journal/);
    const run = async (...args: string[]) => {
      const o = await new Deno.Command(CNM, { args, env: setup.env }).output();
      return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
    };
    let r = await run("sandbox", "create", "c1");
    assert.equal(r.code, 0, r.err);
    await waitLog(/createSandbox name c1: ok \(\d/);
    assert.equal((await env.sandboxesInKernel()).length, 1);
    r = await run("connect", "none", "c1");
    assert.equal(r.code, 0, r.err);
    r = await run("history", "c1");
    assert.match(r.out, /endpoint\.joined/);
    r = await run("sandbox", "rm", "c1");
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(await env.sandboxesInKernel(), []);

    // An orphan carrying the controller's mark: reported, then removed, then in the history.
    const orphan = `${env.host.prefix}-${ownerId(env.stream, "h1")}-0123456789ab`;
    await sh(["ip", "netns", "add", orphan]);
    r = await run("reconcile", "--dry-run");
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^reconcile: 1 difference, 0 repaired/);
    assert.match(
      r.out,
      new RegExp(
        `host\\s+netns\\s+${orphan}\\s+unexpected\\s+not repaired \\(dry run\\)`,
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
        `host\\.reconciled.*repaired: netns ${orphan} \\(orphan, removed\\)`,
      ),
    );

    // NATS goes away and comes back: both are logged.
    await env.nats.stop();
    await waitLog(/nats: disconnected \(controller\)/, "the disconnect is logged");
    await env.nats.start();
    await waitLog(/nats: reconnected \(controller\)/, "the reconnect is logged");
    assert.equal(await server.stop(), 0);
  } finally {
    await server.cleanup();
    await env.cleanup();
  }
});

Deno.test("cnm serve --docker-socket (needs root, nats-server, docker CLI) answers the docker CLI", async () => {
  const cli = await dockerCli();
  const env = await startEnv("cld");
  const dir = await Deno.makeTempDir({ prefix: "cnm-docker-" });
  const sock = `${dir}/docker.sock`;
  const server = await startServe(serveSetup(env, ["--docker-socket", sock])).catch(
    async (err) => {
      await env.cleanup();
      throw err;
    },
  );
  const docker = async (...args: string[]) => {
    const o = await new Deno.Command(cli, {
      args,
      env: { DOCKER_HOST: `unix://${sock}`, DOCKER_CONFIG: dir, TZ: "UTC" },
    }).output();
    return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
  };
  try {
    assert.match(server.log(), new RegExp(`; Docker API on ${sock.replace(/[.]/g, "\\.")}\n`));
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
    await server.waitFor(/docker POST \/v1\.41\/networks\/create 201 [\d.]+ms/);
    assert.equal(await server.stop(), 0);
    assert.equal(await Deno.lstat(sock).then(() => true, () => false), false);
  } finally {
    await server.cleanup();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
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
    assert.match(
      second.log,
      /\(recovered \d+ objects to #\d+ in \d+ ms, (folding \d+ events|from the snapshot at #\d+ \+ \d+ events)\)$/m,
    );
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
