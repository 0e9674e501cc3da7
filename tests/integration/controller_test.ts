import assert from "node:assert/strict";
import { ConflictError, ForbiddenError, InvalidArgumentError, NotFoundError } from "../../mod.ts";
import { startEnv } from "../_harness/env.ts";

async function linkUp(netns: string, name: string): Promise<boolean> {
  const out = await new Deno.Command("ip", {
    args: ["-n", netns, "-j", "link", "show", name],
    stdout: "piped",
  }).output();
  const [link] = JSON.parse(new TextDecoder().decode(out.stdout));
  return link.flags.includes("UP");
}

Deno.test("controller (root, nats-server) keeps ids and states across a restart", async (t) => {
  const env = await startEnv("ctl");
  try {
    const cnm = await env.open();
    let sbId = "", epId = "", netns = "";
    await t.step("predefined networks none, host and bridge exist after the first start", () => {
      const names = cnm.networks().map((n) => `${n.name}/${n.driver}/${n.state}`).sort();
      assert.deepEqual(names, ["bridge/bridge/active", "host/host/active", "none/null/active"]);
      assert.deepEqual(cnm.network("bridge")?.ipam.config, [
        { subnet: "172.17.0.0/16", gateway: "172.17.0.1" },
      ]);
      assert.equal(cnm.network("bridge")?.driverInfo.bridge, "cnm0");
    });
    await t.step("a sandbox is a real namespace with loopback up", async () => {
      const sb = await cnm.createSandbox({ name: "c1", labels: { app: "web" } });
      sbId = sb.id;
      assert.equal(sb.state, "ready");
      netns = sb.key.split("/").pop()!;
      assert.deepEqual(await env.sandboxesInKernel(), [netns]);
      assert.equal(await linkUp(netns, "lo"), true);
    });
    await t.step("an endpoint on none joins the sandbox as eth0", async () => {
      const ep = await cnm.createEndpoint("none", { name: "c1-none" });
      epId = ep.id;
      assert.equal(ep.state, "created");
      const joined = await cnm.join(ep.id, "c1");
      assert.equal(joined.state, "joined");
      assert.equal(joined.sandboxId, sbId);
      assert.equal(joined.ifname, "eth0");
      assert.deepEqual(cnm.sandbox("c1")?.endpointIds, [epId]);
    });
    const before = {
      networks: cnm.networks(),
      endpoints: cnm.endpoints(),
      sandboxes: cnm.sandboxes(),
    };
    const eventsBefore = (await env.readAll()).length;
    await cnm.close();

    const again = await env.open();
    await t.step("a new controller on the same stream sees the same ids in the same states", () => {
      assert.deepEqual(again.networks(), before.networks);
      assert.deepEqual(again.endpoints(), before.endpoints);
      assert.deepEqual(again.sandboxes(), before.sandboxes);
      assert.deepEqual(again.recovery.resumed, []);
      assert.deepEqual(again.recovery.warnings, []);
    });
    await t.step("the restart wrote nothing and re-ran nothing", async () => {
      assert.equal((await env.readAll()).length, eventsBefore);
    });
    await t.step(
      "the stream holds one event per transition, each join intent before its outcome",
      async () => {
        const events = await env.readAll();
        for (const e of events) {
          for (
            const f of [
              "v",
              "eventId",
              "kind",
              "objectId",
              "type",
              "from",
              "to",
              "at",
              "host",
              "data",
            ]
          ) {
            assert.ok(f in e, `${e.type} lacks ${f}`);
          }
          assert.equal(e.host, "h1");
        }
        const ep = events.filter((e) => e.objectId === epId).map((e) =>
          `${e.from}->${e.to} ${e.type}`
        );
        assert.deepEqual(ep, [
          "null->creating endpoint.create.requested",
          "creating->created endpoint.created",
          "created->joining endpoint.join.requested",
          "joining->joined endpoint.joined",
        ]);
        const intent = events.find((e) => e.type === "endpoint.join.requested")!;
        const outcome = events.find((e) => e.type === "endpoint.joined")!;
        assert.ok(intent.seq < outcome.seq);
        assert.equal(outcome.cause, intent.eventId);
        assert.equal(outcome.effectId, intent.effectId);
        assert.equal(new Set(events.map((e) => e.eventId)).size, events.length);
      },
    );
    await t.step(
      "deleting the sandbox leaves and deletes its endpoints and removes the namespace",
      async () => {
        await again.deleteSandbox(sbId);
        assert.equal(again.sandbox(sbId), undefined);
        assert.equal(again.endpoint(epId), undefined);
        assert.deepEqual(await env.sandboxesInKernel(), []);
        const types = (await env.readAll()).slice(eventsBefore).map((e) => e.type);
        assert.deepEqual(types, [
          "endpoint.leave.requested",
          "endpoint.left",
          "endpoint.delete.requested",
          "endpoint.deleted",
          "sandbox.delete.requested",
          "sandbox.deleted",
        ]);
      },
    );
  } finally {
    await env.cleanup();
  }
});

Deno.test("controller (root, nats-server) refuses what libnetwork refuses, with its messages", async (t) => {
  const env = await startEnv("ref");
  try {
    const cnm = await env.open();
    const sb = await cnm.createSandbox({ name: "c1" });
    const ep = await cnm.createEndpoint("none", { name: "a" });
    await cnm.join(ep.id, sb.id);
    const count = (await env.readAll()).length;
    const refuse = async (
      name: string,
      f: () => Promise<unknown>,
      cls: new (...a: never[]) => Error,
      message: string | RegExp,
    ) => {
      await t.step(name, async () => {
        await assert.rejects(f, (e: Error) => {
          assert.ok(e instanceof cls, `${e.name}: ${e.message}`);
          if (typeof message === "string") assert.equal(e.message, message);
          else assert.match(e.message, message);
          return true;
        });
      });
    };
    await refuse(
      "empty network name",
      () => cnm.createNetwork({ name: "" }),
      InvalidArgumentError,
      "invalid name: name is empty",
    );
    await refuse(
      "unknown field",
      () => cnm.createNetwork({ name: "x", colour: "red" } as never),
      InvalidArgumentError,
      "invalid network options: colour: unknown field",
    );
    await refuse(
      "wrong type",
      () => cnm.createEndpoint("none", { name: 7 } as never),
      InvalidArgumentError,
      /^invalid endpoint options: name: /,
    );
    await refuse(
      "duplicate network name",
      () => cnm.createNetwork({ name: "host", driver: "null" }),
      ConflictError,
      "network with name host already exists",
    );
    await refuse(
      "unknown network",
      () => cnm.createEndpoint("nope", { name: "x" }),
      NotFoundError,
      "network nope not found",
    );
    await refuse(
      "unknown driver",
      () => cnm.createNetwork({ name: "x", driver: "warp" }),
      NotFoundError,
      'unknown driver "warp"',
    );
    await refuse(
      "second null network",
      () => cnm.createNetwork({ name: "void", driver: "null" }),
      ForbiddenError,
      'only one instance of "null" network is allowed',
    );
    await refuse(
      "second host network",
      () => cnm.createNetwork({ name: "h2", driver: "host" }),
      ForbiddenError,
      'only one instance of "host" network is allowed',
    );
    await refuse(
      "delete host",
      () => cnm.deleteNetwork("host"),
      ForbiddenError,
      'network of type "host" cannot be deleted',
    );
    await refuse(
      "delete none",
      () => cnm.deleteNetwork("none"),
      ForbiddenError,
      'network of type "null" cannot be deleted',
    );
    await refuse(
      "duplicate endpoint name",
      () => cnm.createEndpoint("none", { name: "a" }),
      ForbiddenError,
      "endpoint with name a already exists in network none",
    );
    await refuse(
      "join a joined endpoint",
      () => cnm.join(ep.id, sb.id),
      ForbiddenError,
      "another container is attached to the same network endpoint",
    );
    await refuse(
      "delete a joined endpoint",
      () => cnm.deleteEndpoint(ep.id),
      ForbiddenError,
      `endpoint with name a id ${ep.id} has active containers`,
    );
    await refuse(
      "second sandbox for a container",
      () => cnm.createSandbox({ name: "c1" }),
      ForbiddenError,
      `container c1 is already present in sandbox ${sb.id}`,
    );
    await refuse(
      "unknown sandbox",
      () => cnm.join(ep.id, "nope"),
      NotFoundError,
      "sandbox nope not found",
    );
    await refuse(
      "unknown endpoint",
      () => cnm.deleteEndpoint("nope"),
      NotFoundError,
      "endpoint nope not found",
    );
    await t.step("refused commands wrote nothing", async () => {
      assert.equal((await env.readAll()).length, count);
    });
    await cnm.leave(ep.id, sb.id);
    await refuse(
      "leave with no sandbox",
      () => cnm.leave(ep.id, sb.id),
      ForbiddenError,
      "cannot leave endpoint with no attached sandbox",
    );
    await t.step("a forced delete of a joined endpoint leaves first", async () => {
      await cnm.join(ep.id, sb.id);
      await cnm.deleteEndpoint(ep.id, { force: true });
      assert.equal(cnm.endpoint(ep.id), undefined);
      assert.deepEqual(cnm.sandbox(sb.id)?.endpointIds, []);
    });
  } finally {
    await env.cleanup();
  }
});
