/**
 * Port bindings on remote (plugin) networks, against the test plugin process: the exact bodies
 * the plugin receives — CreateEndpoint's and ProgramExternalConnectivity's `Options` in
 * libnetwork's shapes (`com.docker.network.portmap`, `…endpoint.exposedports`), the bindings as
 * asked — and, through the controller (needs root and nats-server), that only the sandbox's
 * gateway endpoint is told, that the gateway moving revokes and tells, that a restart calls the
 * plugin for no completed work, and that refusals change nothing.
 */

import assert from "node:assert/strict";
import { DriverError, InvalidArgumentError } from "../../src/errors.ts";
import { createRemoteDriver } from "../../drivers/remote/mod.ts";
import { parsePortSpec } from "../../src/ports/binding.ts";
import { startEnv } from "../_harness/env.ts";
import { ep, FAST, net, NO_KERNEL, rejects, startPlugin, withPlugin } from "./_plugin/start.ts";

const PORTMAP = "com.docker.network.portmap";
const EXPOSED = "com.docker.network.endpoint.exposedports";

Deno.test("remote driver hands port bindings to the plugin as asked, in libnetwork's shapes", async () => {
  await withPlugin({}, async (plugin, dir) => {
    const driver = await createRemoteDriver("tp", { ...FAST, pluginDirs: [dir] });
    try {
      await driver.createNetwork(net(), NO_KERNEL);
      const portBindings = [
        ...parsePortSpec("8080:80"),
        ...parsePortSpec("127.0.0.1::53/udp"),
        ...parsePortSpec("[::]:8000-8010:443"),
      ];
      const exposedPorts = [{ port: 80, proto: "tcp" as const }, {
        port: 9000,
        proto: "udp" as const,
      }];
      const e1 = ep("e1", {
        options: { "com.example.o": "v" },
        ipv4Address: "10.200.0.5/24",
        macAddress: "02:42:0a:c8:00:05",
        portBindings,
        exposedPorts,
      });
      const e2 = ep("e2", {
        options: { "com.example.o": "v" },
        ipv4Address: "10.200.0.6/24",
        macAddress: "02:42:0a:c8:00:06",
      });
      await driver.createEndpoint(net(), e1, NO_KERNEL);
      await driver.createEndpoint(net(), e2, NO_KERNEL);
      const labels = { "com.example.app": "web" };
      await driver.programGatewayConnectivity!(
        net(),
        e1,
        { labels, portBindings, exposedPorts },
        NO_KERNEL,
      );
      await driver.revokeGatewayConnectivity!(net(), e1, NO_KERNEL);
      await driver.programGatewayConnectivity!(
        net(),
        e2,
        { labels: {}, portBindings: [], exposedPorts: [] },
        NO_KERNEL,
      );

      const portmap = [
        { Proto: 6, IP: "", Port: 80, HostIP: "", HostPort: 8080, HostPortEnd: 8080 },
        { Proto: 17, IP: "", Port: 53, HostIP: "127.0.0.1", HostPort: 0, HostPortEnd: 0 },
        { Proto: 6, IP: "", Port: 443, HostIP: "::", HostPort: 8000, HostPortEnd: 8010 },
      ];
      const exposed = [{ Proto: 6, Port: 80 }, { Proto: 17, Port: 9000 }];
      const ids1 = { NetworkID: "n1", EndpointID: "e1" };
      const ids2 = { NetworkID: "n1", EndpointID: "e2" };
      const iface = (address: string, mac: string) => ({
        Address: address,
        AddressIPv6: "",
        MacAddress: mac,
      });
      assert.deepEqual((await plugin.requests()).slice(3).map((r) => [r.method, r.body]), [
        ["NetworkDriver.CreateEndpoint", {
          ...ids1,
          Options: { "com.example.o": "v", [PORTMAP]: portmap, [EXPOSED]: exposed },
          Interface: iface("10.200.0.5/24", "02:42:0a:c8:00:05"),
        }],
        // No bindings: the endpoint's options alone, as libnetwork without port options.
        ["NetworkDriver.CreateEndpoint", {
          ...ids2,
          Options: { "com.example.o": "v" },
          Interface: iface("10.200.0.6/24", "02:42:0a:c8:00:06"),
        }],
        ["NetworkDriver.ProgramExternalConnectivity", {
          ...ids1,
          Options: { ...labels, [PORTMAP]: portmap, [EXPOSED]: exposed },
        }],
        ["NetworkDriver.RevokeExternalConnectivity", ids1],
        // A gateway with nothing to publish is told too (the keys are always there, as in
        // Docker's sandbox options).
        ["NetworkDriver.ProgramExternalConnectivity", {
          ...ids2,
          Options: { [PORTMAP]: [], [EXPOSED]: [] },
        }],
      ]);

      // A plugin without the optional calls (404) is fine; its refusal is `remote: …`.
      const quiet = net("n2", { "test.noext": "true" });
      await driver.createNetwork(quiet, NO_KERNEL);
      const request = { labels: {}, portBindings, exposedPorts: [] };
      await driver.programGatewayConnectivity!(quiet, ep("e3"), request, NO_KERNEL);
      await driver.revokeGatewayConnectivity!(quiet, ep("e3"), NO_KERNEL);
      const refusing = net("n3", { "test.pecerr": "true" });
      await driver.createNetwork(refusing, NO_KERNEL);
      await rejects(
        driver.programGatewayConnectivity!(refusing, ep("e4"), request, NO_KERNEL),
        DriverError,
        /^remote: port 8080 is taken on this plugin's host$/,
      );
    } finally {
      driver.close();
    }
  });
});

const driverCalls = (methods: string[]) =>
  methods.filter((m) => m.startsWith("NetworkDriver.") && m !== "NetworkDriver.GetCapabilities");

Deno.test("remote plugin ports (root, nats-server): told to the sandbox's gateway as asked, journal-driven", async (t) => {
  const env = await startEnv("rpp");
  const dir = await Deno.makeTempDir({ prefix: "cnm-plugins-" });
  const plugin = await startPlugin({ dir, name: "tp", namespace: env.host.path });
  const options = { defaultBridge: false, pluginDirs: [dir] };
  const calls = async () =>
    (await plugin.requests()).filter((r) => driverCalls([r.method]).length)
      .map((r) => [r.method, r.body]);
  try {
    const cnm = await env.open(options);
    const bnet = await cnm.createNetwork({ name: "bnet", driver: "tp", ipam: { driver: "tp" } });
    const sb = await cnm.createSandbox({ name: "a", labels: { "com.example.app": "web" } });
    const labels = { "com.example.app": "web" };

    await t.step("a bad binding is refused, and nothing is journaled or sent", async () => {
      const before = (await env.readAll()).length;
      await plugin.clearLog();
      const bad = (portBindings: unknown[]) =>
        cnm.createEndpoint("bnet", { name: "bad", portBindings } as never);
      await assert.rejects(
        () => bad([{ containerPort: 80, hostPort: 8010, hostPortEnd: 8000 }]),
        (e: Error) =>
          e instanceof InvalidArgumentError && e.message === "invalid port range: 8010-8000",
      );
      await assert.rejects(
        () => bad([{ containerPort: 80, proto: "sctp" }]),
        (e: Error) => e instanceof InvalidArgumentError && /portBindings\.0\.proto/.test(e.message),
      );
      assert.equal((await env.readAll()).length, before);
      // Only the IPAM capabilities were read (does it want a MAC?): nothing was asked for.
      assert.deepEqual(await plugin.methods(), ["IpamDriver.GetCapabilities"]);
    });

    const asked = [...parsePortSpec("8080:80"), ...parsePortSpec("127.0.0.1::53/udp")];
    const e1 = await cnm.createEndpoint("bnet", {
      name: "a",
      portBindings: asked,
      exposedPorts: [{ port: 80 }, { port: 9000, proto: "udp" }],
    });
    const map1 = [
      { Proto: 6, IP: "", Port: 80, HostIP: "", HostPort: 8080, HostPortEnd: 8080 },
      { Proto: 17, IP: "", Port: 53, HostIP: "127.0.0.1", HostPort: 0, HostPortEnd: 0 },
    ];
    const exposed1 = [{ Proto: 6, Port: 80 }, { Proto: 17, Port: 9000 }];
    await t.step("CreateEndpoint carries the bindings as asked; nothing is decided", async () => {
      const create = (await plugin.requests()).find((r) =>
        r.method === "NetworkDriver.CreateEndpoint"
      )!;
      assert.deepEqual(create.body.Options, { [PORTMAP]: map1, [EXPOSED]: exposed1 });
      const intent = (await env.readAll()).find((e) =>
        e.type === "endpoint.create.requested" && e.objectId === e1.id
      )!;
      const data = intent.data as Record<string, unknown>;
      assert.deepEqual(data.portBindings, asked);
      assert.equal(data.ports, undefined);
      assert.deepEqual(e1.ports, [
        { proto: "tcp", containerPort: 80, hostIp: "", hostPort: 8080, requested: true },
        { proto: "udp", containerPort: 53, hostIp: "127.0.0.1", hostPort: 0, requested: true },
      ]);
      // The plugin decides conflicts: cnm holds no port for it.
      const twin = await cnm.createEndpoint("bnet", { name: "twin", portBindings: asked });
      await cnm.deleteEndpoint(twin.id);
    });

    await t.step("join: the gateway endpoint is told the sandbox's options", async () => {
      await plugin.clearLog();
      await cnm.join(e1.id, sb.id);
      const ids = { NetworkID: bnet.id, EndpointID: e1.id };
      assert.deepEqual(await calls(), [
        ["NetworkDriver.Join", { ...ids, SandboxKey: sb.key, Options: labels }],
        ["NetworkDriver.ProgramExternalConnectivity", {
          ...ids,
          Options: { ...labels, [PORTMAP]: map1, [EXPOSED]: exposed1 },
        }],
      ]);
    });

    const anet = await cnm.createNetwork({ name: "anet", driver: "tp", ipam: { driver: "tp" } });
    const e2 = await cnm.createEndpoint("anet", {
      name: "a",
      portBindings: parsePortSpec("9090:90"),
    });
    const map2 = [{ Proto: 6, IP: "", Port: 90, HostIP: "", HostPort: 9090, HostPortEnd: 9090 }];
    const ids1 = { NetworkID: bnet.id, EndpointID: e1.id };
    const ids2 = { NetworkID: anet.id, EndpointID: e2.id };
    await t.step(
      "the gateway moves to a network that sorts first: revoked, then told",
      async () => {
        await plugin.clearLog();
        await cnm.join(e2.id, sb.id);
        const union = e1.id < e2.id ? [...map1, ...map2] : [...map2, ...map1];
        assert.deepEqual(await calls(), [
          ["NetworkDriver.Join", { ...ids2, SandboxKey: sb.key, Options: labels }],
          ["NetworkDriver.RevokeExternalConnectivity", ids1],
          ["NetworkDriver.ProgramExternalConnectivity", {
            ...ids2,
            Options: { ...labels, [PORTMAP]: union, [EXPOSED]: exposed1 },
          }],
        ]);
      },
    );

    await cnm.close();
    await plugin.clearLog();
    const again = await env.open(options);
    await t.step("a restart calls the plugin for no completed work", async () => {
      // (The plugin kept running, so the IPAM replay finds its addresses taken: harmless.)
      assert.deepEqual(again.recovery.warnings.filter((w) => w.type !== "ipam.replay"), []);
      assert.deepEqual(driverCalls(await plugin.methods()), []);
      assert.deepEqual(again.endpoint(e1.id)?.ports, e1.ports);
    });

    await t.step("leave of the gateway: revoked, then the next one is told", async () => {
      await again.leave(e2.id, sb.id);
      assert.deepEqual(await calls(), [
        ["NetworkDriver.RevokeExternalConnectivity", ids2],
        ["NetworkDriver.Leave", ids2],
        ["NetworkDriver.ProgramExternalConnectivity", {
          ...ids1,
          Options: { ...labels, [PORTMAP]: map1, [EXPOSED]: exposed1 },
        }],
      ]);
      await plugin.clearLog();
      await again.leave(e1.id, sb.id);
      assert.deepEqual(await calls(), [
        ["NetworkDriver.RevokeExternalConnectivity", ids1],
        ["NetworkDriver.Leave", ids1],
      ]);
    });

    await t.step(
      "a plugin refusing to publish fails the join with Docker's words, undone",
      async () => {
        const cnet = await again.createNetwork({
          name: "cnet",
          driver: "tp",
          ipam: { driver: "tp" },
          options: { "test.pecerr": "true" },
        });
        const e3 = await again.createEndpoint("cnet", { name: "a", portBindings: asked });
        await plugin.clearLog();
        await assert.rejects(
          () => again.join(e3.id, sb.id),
          (e: Error) =>
            e instanceof DriverError &&
            e.message === `driver failed programming external connectivity on endpoint a ` +
                `(${e3.id}): remote: port 8080 is taken on this plugin's host`,
        );
        const ids3 = { NetworkID: cnet.id, EndpointID: e3.id };
        assert.deepEqual((await calls()).map(([m]) => m), [
          "NetworkDriver.Join",
          "NetworkDriver.ProgramExternalConnectivity",
          "NetworkDriver.RevokeExternalConnectivity",
          "NetworkDriver.Leave",
        ]);
        assert.deepEqual((await calls()).at(-1), ["NetworkDriver.Leave", ids3]);
        assert.equal(again.endpoint(e3.id)?.sandboxId, null);
      },
    );
  } finally {
    await plugin.stop();
    await env.cleanup();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
