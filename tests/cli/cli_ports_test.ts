/**
 * Port publishing from the command line (needs root and nats-server): `cnm connect -p` through
 * a real `cnm serve`, `cnm port`, bad specs refused with Docker's words, and a `cnm serve`
 * killed with SIGKILL: its held sockets die with it, the next one holds them again at start.
 *
 * @module
 */

import assert from "node:assert/strict";
import { startEnv } from "../_harness/env.ts";
import { CNM, serveSetup, startServe } from "../_harness/cnm_serve.ts";
import { sh } from "../_harness/command.ts";

const dec = new TextDecoder();

Deno.test("cnm connect -p and cnm port (needs root, nats-server): published, listed, held again after kill -9 of cnm serve", async (t) => {
  const env = await startEnv("clp");
  const setup = serveSetup(env, ["-q"]);
  const run = async (...args: string[]) => {
    const o = await new Deno.Command(CNM, { args, env: setup.env }).output();
    return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
  };
  const held = async () =>
    (await sh(["ip", "netns", "exec", env.host.name, "ss", "-Hlntu"])).split("\n")
      .filter(Boolean).map((l) => l.trim().split(/\s+/)).map((f) => `${f[0]} ${f[4]}`).sort();
  let server = await startServe(setup).catch(async (err) => {
    await env.cleanup();
    throw err;
  });
  try {
    for (
      const args of [
        [
          "network",
          "create",
          "--ipv6",
          "--subnet",
          "172.30.0.0/24",
          "--subnet",
          "fd30::/64",
          "web",
        ],
        ["sandbox", "create", "c1"],
        ["connect", "-p", "8080:80", "-p", "127.0.0.1::53/udp", "web", "c1"],
      ]
    ) {
      const r = await run(...args);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.err}`);
    }
    await t.step("cnm port lists what the sandbox publishes, as docker port does", async () => {
      const r = await run("port", "c1");
      assert.equal(r.code, 0, r.err);
      const lines = r.out.trim().split("\n");
      assert.equal(lines.length, 3);
      assert.deepEqual(lines.slice(0, 2), ["80/tcp -> 0.0.0.0:8080", "80/tcp -> [::]:8080"]);
      assert.match(lines[2], /^53\/udp -> 127\.0\.0\.1:\d+$/);
      const one = await run("port", "c1", "80");
      assert.equal(one.out, "0.0.0.0:8080\n[::]:8080\n");
      const none = await run("port", "c1", "81");
      assert.equal(none.code, 1);
      assert.match(none.err, /No public port '81\/tcp' published for c1/);
      const js = JSON.parse((await run("port", "--format", "json", "c1")).out);
      assert.equal(js[0].hostPort, 8080);
    });
    await t.step(
      "a bad spec is a usage error with Docker's words; nothing is created",
      async () => {
        await run("sandbox", "create", "c2");
        const r = await run("connect", "-p", "80:80/sctp", "web", "c2");
        assert.equal(r.code, 2);
        assert.match(r.err, /invalid proto: sctp/);
        const taken = await run("connect", "-p", "8080:80", "web", "c2");
        assert.equal(taken.code, 1);
        assert.match(taken.err, /Bind for 0\.0\.0\.0:8080 failed: port is already allocated/);
        const eps = JSON.parse((await run("endpoint", "ls", "--format", "json")).out);
        assert.equal(eps.length, 1);
      },
    );
    await t.step(
      "kill -9 of cnm serve: its sockets die; the next one holds them again",
      async () => {
        const before = await held();
        assert.ok(before.includes("tcp 0.0.0.0:8080"), before.join(", "));
        await server.cleanup(); // SIGKILL
        assert.deepEqual(await held(), []);
        server = await startServe(setup);
        assert.deepEqual(await held(), before);
        assert.equal((await run("port", "c1", "80")).out, "0.0.0.0:8080\n[::]:8080\n");
      },
    );
    assert.equal(await server.stop(), 0);
  } finally {
    await server.cleanup();
    await env.cleanup();
  }
});
