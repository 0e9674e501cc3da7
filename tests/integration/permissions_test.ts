/**
 * The shipped permission layout (docs/nats-permissions.conf) on a real nats-server: the
 * controller works end to end with its restricted user (a fake kernel: no root), operators
 * command it, readers only read, and a stranger can neither command it nor subscribe to its
 * API subjects to answer in its place. Also: `serve` refuses to start when something already
 * answers for the host.
 */
import assert from "node:assert/strict";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { createController } from "../../mod.ts";
import type { Controller } from "../../mod.ts";
import { ConflictError } from "../../src/errors.ts";
import { serve, type Server } from "../../src/api/serve.ts";
import { output } from "../_harness/command.ts";
import { startNats, type TestNats } from "../_harness/nats.ts";
import { fakeOptions } from "../cli/_fake_kernel.ts";

const CNM = new URL("../../cnm", import.meta.url).pathname;
const LAYOUT = new URL("../../docs/nats-permissions.conf", import.meta.url).pathname;
const PASSWORDS = {
  vm: "vm-pw-1",
  reader: "reader-pw-2",
  operator: "op-pw-3",
  stranger: "st-pw-4",
};

/** The shipped file, with passwords, plus a user of another application. */
async function config(): Promise<string> {
  const text = (await Deno.readTextFile(LAYOUT))
    .replaceAll("$CNM_VM_PASSWORD", `"${PASSWORDS.vm}"`)
    .replaceAll("$CNM_READER_PASSWORD", `"${PASSWORDS.reader}"`)
    .replaceAll("$CNM_OPERATOR_PASSWORD", `"${PASSWORDS.operator}"`);
  // The stranger has no permissions block: the layout's default_permissions apply.
  return text.replace(
    /users: \[\n/,
    `users: [\n    { user: stranger, password: "${PASSWORDS.stranger}" }\n`,
  );
}

const as = (user: keyof typeof PASSWORDS, servers: string) => ({
  servers,
  user: user === "vm" ? "cnm-vm" : user === "stranger" ? user : `cnm-${user}`,
  pass: PASSWORDS[user],
});

async function cnm(nats: TestNats, user: keyof typeof PASSWORDS, ...args: string[]) {
  const o = await output([CNM, ...args], {
    env: {
      NATS_URL: nats.url,
      NATS_USER: as(user, nats.url).user,
      NATS_PASSWORD: PASSWORDS[user],
      CNM_HOST_ID: "vm",
      CNM_STREAM: "CNM",
      CNM_PREFIX: "cnm",
    },
  });
  return { code: o.code, out: o.stdout, err: o.stderr };
}

/** Permission violations the server logged for `user`: `Publish <subject>`, … */
async function violations(nats: TestNats, user: string): Promise<string[]> {
  const re = new RegExp(`(\\w+) Violation - User "${user}", Subject "([^"]+)"`);
  return (await nats.log()).split("\n").map((l) => re.exec(l)).filter((m) => m !== null)
    .map((m) => `${m![1]} ${m![2]}`);
}

Deno.test("the NATS permission layout (needs nats-server): controller, operator, reader, stranger", async (t) => {
  const nats = await startNats({ config: await config(), log: true });
  const dir = await Deno.makeTempDir();
  let controller: Controller | undefined;
  let server: Server | undefined;
  const opened: NatsConnection[] = [];
  try {
    await t.step(
      "the controller starts, recovers and serves with its restricted user",
      async () => {
        const options = {
          ...fakeOptions(nats.url, "CNM", "cnm", dir, "vm"),
          nats: as("vm", nats.url),
        };
        controller = await createController(options);
        server = await serve(controller, { nats: as("vm", nats.url) });
        await server.close();
        await controller.close();
        // Again, on the stream it made: recovery reads it back through a consumer.
        controller = await createController(options);
        server = await serve(controller, { nats: as("vm", nats.url) });
      },
    );
    await t.step("an operator commands it end to end through the CLI", async () => {
      let r = await cnm(nats, "operator", "sandbox", "create", "c1");
      assert.equal(r.code, 0, r.err);
      r = await cnm(nats, "operator", "connect", "none", "c1");
      assert.equal(r.code, 0, r.err);
      r = await cnm(nats, "operator", "history", "c1");
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /endpoint\.joined/);
      r = await cnm(nats, "operator", "sandbox", "rm", "c1");
      assert.equal(r.code, 0, r.err);
    });
    await t.step("a reader reads the journal", async () => {
      const seq = String(
        JSON.parse((await cnm(nats, "reader", "state", "--format", "json")).out).seq,
      );
      for (
        const args of [
          ["network", "ls"],
          ["events"],
          ["events", "--follow", "--since", "1", "--until", seq],
          ["history", "c1"],
          ["state", "--at", "2"],
          ["state", "--at", new Date().toISOString()],
          ["network", "inspect", "none"],
          ["diff", "--from", "1", "--to", seq],
          ["export"],
        ]
      ) {
        const r = await cnm(nats, "reader", ...args);
        assert.equal(r.code, 0, `${args.join(" ")}: ${r.err}`);
      }
      const r = await cnm(nats, "reader", "events", "--format", "json");
      assert.match(r.out, /"type":"sandbox\.deleted"/);
    });
    await t.step("a reader cannot mutate: no command, no append, no purge", async () => {
      const r = await cnm(nats, "reader", "sandbox", "create", "c2");
      assert.equal(r.code, 1, r.err);
      assert.match(
        r.err,
        /^cnm sandbox create: ForbiddenError: createSandbox on host vm: NATS does not let this user publish to cnm-api\.vm\.createSandbox/,
      );
      const nc = await connect(as("reader", nats.url));
      opened.push(nc);
      const jsm = await jetstreamManager(nc);
      const before = (await jsm.streams.info("CNM")).state.messages;
      await assert.rejects(jsm.streams.purge("CNM"), /Permissions Violation|timeout/i);
      await assert.rejects(jsm.streams.deleteMessage("CNM", 1), /Permissions Violation|timeout/i);
      nc.publish("cnm.sandbox.forged", "{}");
      await nc.flush();
      assert.equal((await jsm.streams.info("CNM")).state.messages, before);
      assert.deepEqual(await violations(nats, "cnm-reader"), [
        "Publish cnm-api.vm.createSandbox",
        "Publish $JS.API.STREAM.PURGE.CNM",
        "Publish $JS.API.STREAM.MSG.DELETE.CNM",
        "Publish cnm.sandbox.forged",
      ]);
    });
    await t.step("a stranger cannot subscribe to the API subjects nor command", async () => {
      const nc = await connect(as("stranger", nats.url));
      opened.push(nc);
      const errors: string[] = [];
      (async () => {
        for await (const s of nc.status()) if (s.type === "error") errors.push(String(s.error));
      })();
      const sub = nc.subscribe("cnm-api.vm.*", { queue: "cnm-api-vm" });
      let stolen = 0;
      (async () => {
        for await (const m of sub) {
          stolen++;
          m.respond("{}");
        }
      })().catch(() => {});
      await nc.flush();
      await new Promise((r) => setTimeout(r, 100)); // the server's -ERR follows the SUB
      assert.ok(
        errors.some((e) => /Permissions Violation for Subscription to "cnm-api\.vm\.\*"/.test(e)),
        errors.join("; "),
      );
      // Every request still reaches the real controller.
      for (let i = 0; i < 5; i++) {
        const r = await cnm(nats, "operator", "network", "inspect", "none");
        assert.equal(r.code, 0, r.err);
      }
      assert.equal(stolen, 0);
      await assert.rejects(
        nc.request("cnm-api.vm.ping", "{}", { timeout: 2000 }),
        /Permissions Violation for Publish to "cnm-api\.vm\.ping"/,
      );
      const r = await cnm(nats, "stranger", "network", "ls");
      assert.notEqual(r.code, 0, "a stranger reads nothing either");
      const seen = await violations(nats, "stranger");
      assert.ok(seen.includes("Subscription cnm-api.vm.*"), seen.join("; "));
      assert.ok(seen.includes("Publish cnm-api.vm.ping"), seen.join("; "));
    });
    await t.step("the controller and the operator met no permission error", async () => {
      assert.deepEqual(await violations(nats, "cnm-vm"), []);
      assert.deepEqual(await violations(nats, "cnm-operator"), []);
    });
  } finally {
    for (const nc of opened) await nc.close();
    await server?.close();
    await controller?.close();
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serve (needs nats-server) refuses to start when something answers for the host", async () => {
  const nats = await startNats();
  const dir = await Deno.makeTempDir();
  const controllers: Controller[] = [];
  let server: Server | undefined;
  const nc = await connect({ servers: nats.url });
  try {
    const a = await createController(fakeOptions(nats.url, "A", "cnm", dir, "h1"));
    controllers.push(a);
    // An impostor answers on h1's API: serve refuses, whatever it answers.
    for (
      const [answer, says] of [
        [
          '{"result":{"hostId":"h1","stream":"X","prefix":"cnm"}}',
          "a server answered ping: host h1, stream X, prefix cnm",
        ],
        ["hello", 'something answered ping with "hello"'],
      ]
    ) {
      const sub = nc.subscribe("cnm-api.h1.ping", {
        callback: (_e, m) => void m.respond(answer),
      });
      await nc.flush();
      await assert.rejects(serve(a, { nats: { servers: nats.url } }), (err: Error) => {
        assert.ok(err instanceof ConflictError, String(err));
        assert.equal(
          err.message,
          `host h1 is already served on cnm-api.h1.* (${says}); stop that server first`,
        );
        return true;
      });
      sub.unsubscribe();
    }
    // A silent subscriber (nats sub '>') is no server: serve starts.
    const silent = nc.subscribe(">");
    server = await serve(a, { nats: { servers: nats.url } });
    silent.unsubscribe();
    // A second cnm serve for h1 on the same stream is refused at once, before its controller
    // starts (the lease would only refuse it after 12 s, with another message).
    // (A namespace that does not exist: were the check missing, nothing real is touched.)
    const args = ["--host", "h1", "--stream", "A", "--namespace", "/nonexistent/cnm-ns"];
    const o = await output([CNM, "serve", ...args, "--name-prefix", "zz-", "--state-dir", dir], {
      env: { CNM_NATS_URL: nats.url },
    });
    assert.equal(o.code, 1, o.stderr);
    assert.match(
      o.stderr,
      /^cnm serve: ConflictError: host h1 is already served on cnm-api\.h1\.\* \(a server answered ping: host h1, stream A, prefix cnm\); stop that server first/,
    );
  } finally {
    await nc.close();
    await server?.close();
    for (const c of controllers) await c.close();
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
