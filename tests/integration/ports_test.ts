/**
 * Port publishing through a real controller (root, nats-server, nft, conntrack): who reaches
 * a published port from where, the already-sending UDP client, mappings following the
 * sandbox's gateway endpoint, and leave freeing everything — each with br_netfilter's
 * bridged-traffic hook off and on in the test's host namespace.
 *
 * @module
 */

import assert from "node:assert/strict";
import { InvalidArgumentError, parsePortSpec } from "../../mod.ts";
import { connectTcp, serveTcp } from "../_harness/tcp.ts";
import { requestUdp, sendUdpForever, serveUdp } from "../_harness/udp.ts";
import {
  GW4,
  GW6,
  HOST4,
  HOST6,
  type PortsEnv,
  REMOTE4,
  REMOTE6,
  within,
  withPortsEnv,
} from "../_harness/ports_env.ts";

const specs = (...s: string[]) => s.flatMap(parsePortSpec);

for (const brNetfilter of [false, true]) {
  const mode = `br_netfilter ${brNetfilter ? "on" : "off"}`;

  Deno.test(`ports (root, nats-server) reachability through the controller, ${mode}`, async (t) => {
    await withPortsEnv("pr", brNetfilter, async (p) => {
      const s1 = await p.box(
        "s1",
        specs("8080:80", "127.0.0.1:8081:80", "5353:5353/udp", `${HOST4}:8082:80`),
      );
      const s2 = await p.box("s2");
      const stops: (() => Promise<void>)[] = [];
      try {
        const tcp1 = await serveTcp(s1.ns, 80, "::", "s1");
        stops.push(() => tcp1.close());
        const udp1 = await serveUdp(s1.ns, 5353, "s1");
        stops.push(() => udp1.stop());
        await t.step("EndpointInfo shows each binding with its host address and port", () => {
          const ports = p.cnm.endpoint(s1.endpointId)!.ports!.map((m) =>
            `${m.hostIp} ${m.hostPort}->${m.containerPort}/${m.proto}`
          );
          assert.deepEqual(ports, [
            "0.0.0.0 8080->80/tcp",
            ":: 8080->80/tcp",
            "127.0.0.1 8081->80/tcp",
            "0.0.0.0 5353->5353/udp",
            ":: 5353->5353/udp",
            `${HOST4} 8082->80/tcp`,
          ]);
        });
        await t.step(
          "a remote client reaches it; the container sees its real address",
          async () => {
            assert.equal(await connectTcp(p.remote, HOST4, 8080), `s1 ${REMOTE4}`);
            assert.equal(await requestUdp(p.remote, HOST4, 5353), `s1 ${REMOTE4}`);
            assert.equal(await connectTcp(p.remote, HOST6, 8080), `s1 ${REMOTE6}`);
          },
        );
        await t.step("a remote client cannot reach the container directly", async () => {
          assert.equal(await connectTcp(p.remote, s1.ipv4, 80), null);
          assert.equal(await connectTcp(p.remote, s1.ipv6!, 80), null);
        });
        await t.step("the host reaches it via its own address and via 127.0.0.1", async () => {
          assert.equal(await connectTcp(p.host, HOST4, 8080), `s1 ${HOST4}`);
          assert.equal(await connectTcp(p.host, "127.0.0.1", 8080), `s1 ${GW4}`);
          assert.equal(await requestUdp(p.host, "127.0.0.1", 5353), `s1 ${GW4}`);
          assert.equal(await connectTcp(p.host, HOST6, 8080), `s1 ${HOST6}`);
        });
        await t.step("another container and the container itself, via the host", async () => {
          for (const [box, host] of [[s2, HOST4], [s2, GW4], [s1, HOST4], [s1, GW4]] as const) {
            assert.equal(await connectTcp(box.ns, host, 8080), `s1 ${GW4}`, `${box.ns} → ${host}`);
          }
          assert.equal(await connectTcp(s2.ns, HOST6, 8080), `s1 ${GW6}`);
        });
        await t.step("a 127.0.0.1 binding is reachable only from the host itself", async () => {
          assert.equal(await connectTcp(p.host, "127.0.0.1", 8081), `s1 ${GW4}`);
          assert.equal(await connectTcp(p.remote, HOST4, 8081), null);
          assert.equal(await connectTcp(s2.ns, GW4, 8081), null);
        });
        await t.step("a binding on one host address answers there only", async () => {
          assert.equal(await connectTcp(p.remote, HOST4, 8082), `s1 ${REMOTE4}`);
          assert.equal(await connectTcp(p.host, GW4, 8082), null);
        });
        await t.step("each host port is held by a socket of the controller", async () => {
          const held = await p.listening();
          for (
            const want of [
              "tcp 0.0.0.0:8080",
              "tcp [::]:8080",
              "tcp 127.0.0.1:8081",
              "udp 0.0.0.0:5353",
              "udp [::]:5353",
              `tcp ${HOST4}:8082`,
            ]
          ) assert.ok(held.includes(want), `${want} not in ${held.join(", ")}`);
        });
        await t.step("reconcile finds nothing to repair", async () => {
          assert.deepEqual((await p.cnm.reconcile({ dryRun: true })).findings, []);
        });
      } finally {
        for (const stop of stops) await stop();
      }
    });
  });

  Deno.test(`ports (root, nats-server) an already-sending UDP client reaches the container within 1 s, ${mode}`, async () => {
    await withPortsEnv("pu", brNetfilter, async (p) => {
      const s1 = await p.box("s1");
      const server = await serveUdp(s1.ns, 5353, "s1");
      const sender = await sendUdpForever(p.remote, HOST4, 5355, { sourcePort: 40000 });
      try {
        await new Promise((r) => setTimeout(r, 500));
        assert.match(
          await p.inHost(["conntrack", "-L", "-p", "udp", "--orig-port-dst", "5355"]),
          /UNREPLIED/,
        );
        // The server listens before the endpoint joins; the mapping is s2's, not s1's.
        const sb = await p.cnm.createSandbox({ name: "s2" });
        const server2 = await serveUdp(sb.key.slice(sb.key.lastIndexOf("/") + 1), 5353, "s2");
        try {
          const ep = await p.cnm.createEndpoint("web", {
            name: "s2",
            portBindings: specs("5355:5353/udp"),
          });
          await p.cnm.join(ep.id, sb.id);
          const ms = await within(1000, () => server2.received().length > 0);
          assert.notEqual(ms, null, "no datagram reached the container within 1 s");
          assert.equal(server2.received()[0], `${REMOTE4} 40000`);
        } finally {
          await server2.stop();
        }
        assert.deepEqual(server.received(), []);
      } finally {
        await sender.stop();
        await server.stop();
      }
    });
  });

  Deno.test(`ports (root, nats-server) mappings follow the gateway endpoint; leave frees everything, ${mode}`, async (t) => {
    await withPortsEnv("pg", brNetfilter, async (p) => {
      await p.cnm.createNetwork({ name: "aaa", ipam: { config: [{ subnet: "172.31.0.0/24" }] } });
      const s1 = await p.box("s1", specs("8080:80"));
      const server = await serveTcp(s1.ns, 80, "::", "s1");
      try {
        const chains = async () =>
          (await p.portRules()).map((r) => r.match(/comment "cnm:([0-9a-f]{12}) /)![1]);
        const ep12 = s1.endpointId.slice(0, 12);
        assert.deepEqual(await chains(), [ep12, ep12]);
        let other = "";
        await t.step("a network that sorts first becomes the gateway: the ports move", async () => {
          const ep = await p.cnm.createEndpoint("aaa", { name: "s1-aaa" });
          await p.cnm.join(ep.id, s1.sandbox.id);
          other = ep.id;
          // IPv4 only on aaa: the `::` mapping has no address to go to.
          assert.deepEqual(await chains(), [ep.id.slice(0, 12)]);
          assert.equal(await connectTcp(p.remote, HOST4, 8080), `s1 ${REMOTE4}`);
          assert.deepEqual((await p.cnm.reconcile({ dryRun: true })).findings, []);
        });
        await t.step("it leaves: the ports move back", async () => {
          await p.cnm.leave(other, s1.sandbox.id);
          assert.deepEqual(await chains(), [ep12, ep12]);
          assert.equal(await connectTcp(p.remote, HOST4, 8080), `s1 ${REMOTE4}`);
          assert.equal(await connectTcp(p.remote, HOST6, 8080), `s1 ${REMOTE6}`);
        });
        await t.step(
          "leave frees everything at once; the decision stays with the endpoint",
          async () => {
            await p.cnm.leave(s1.endpointId, s1.sandbox.id);
            assert.deepEqual(await p.portRules(), []);
            assert.deepEqual((await p.listening()).filter((l) => l.endsWith(":8080")), []);
            assert.equal(await connectTcp(p.remote, HOST4, 8080), null);
            // A host process may take the port now…
            const hostService = await serveTcp(p.host, 8080, "0.0.0.0", "host");
            try {
              assert.equal(await connectTcp(p.remote, HOST4, 8080), `host ${REMOTE4}`);
            } finally {
              await hostService.close();
            }
            // …while cnm keeps it for the endpoint until it is deleted.
            assert.equal(p.cnm.endpoint(s1.endpointId)!.ports![0].hostPort, 8080);
            await p.cnm.deleteEndpoint(s1.endpointId);
            const again = await p.cnm.createEndpoint("web", {
              name: "again",
              portBindings: specs("8080:80"),
            });
            assert.equal(again.ports![0].hostPort, 8080);
            assert.deepEqual((await p.cnm.reconcile({ dryRun: true })).findings, []);
          },
        );
      } finally {
        await server.close();
      }
    });
  });
}

Deno.test("ports (root, nats-server) internal networks and drivers that cannot publish are refused", async (t) => {
  await withPortsEnv("pi", false, async (p: PortsEnv) => {
    const before = (await p.env.readAll()).length;
    await p.cnm.createNetwork({ name: "inner", internal: true });
    const count = (await p.env.readAll()).length;
    assert.equal(count, before + 2);
    for (
      const [net, msg] of [
        ["inner", "network inner is internal: it publishes no ports"],
        ["none", "network none (driver null) publishes no ports: its driver cannot"],
      ]
    ) {
      await t.step(net, async () => {
        await assert.rejects(
          () => p.cnm.createEndpoint(net, { name: "x", portBindings: specs("8080:80") }),
          (err: Error) => err instanceof InvalidArgumentError && err.message === msg,
        );
      });
    }
    await t.step("bad bindings name the field", async () => {
      await assert.rejects(
        () => p.cnm.createEndpoint("web", { name: "x", portBindings: [{ containerPort: 0 }] }),
        (err: Error) =>
          err instanceof InvalidArgumentError &&
          err.message === "invalid endpoint options: portBindings.0.containerPort: must be 1-65535",
      );
      await assert.rejects(
        () =>
          p.cnm.createEndpoint("web", {
            name: "x",
            portBindings: [{ containerPort: 80, hostPort: 8010, hostPortEnd: 8000 }],
          }),
        (err: Error) =>
          err instanceof InvalidArgumentError && err.message === "invalid port range: 8010-8000",
      );
    });
    assert.equal((await p.env.readAll()).length, count, "refused commands journal nothing");
    await t.step("publishAll publishes the exposed ports no binding publishes", async () => {
      const ep = await p.cnm.createEndpoint("web", {
        name: "all",
        portBindings: specs("8080:80"),
        exposedPorts: [{ port: 80 }, { port: 53, proto: "udp" }],
        publishAll: true,
      });
      const ports = ep.ports!.map((m) =>
        `${m.hostIp}:${m.hostPort}->${m.containerPort}/${m.proto}`
      );
      assert.equal(ports.length, 4);
      assert.deepEqual(ports.slice(0, 2), ["0.0.0.0:8080->80/tcp", ":::8080->80/tcp"]);
      assert.match(ports[2], /^0\.0\.0\.0:\d+->53\/udp$/);
      const events = await p.env.readAll();
      const intent = events.find((e) => e.objectId === ep.id)!;
      assert.equal(intent.type, "endpoint.create.requested");
      assert.deepEqual(intent.data.exposedPorts, [{ port: 80, proto: "tcp" }, {
        port: 53,
        proto: "udp",
      }]);
      assert.equal((intent.data.portBindings as unknown[]).length, 2);
      // The decisions are journaled; ports cnm chose say where from (the allocator's restore).
      const journaled = intent.data.ports as { hostPort: number; chosenFrom?: unknown }[];
      assert.deepEqual(journaled.map((m) => m.hostPort), ep.ports!.map((m) => m.hostPort));
      assert.deepEqual(journaled.map((m) => m.chosenFrom !== undefined), [
        false,
        false,
        true,
        true,
      ]);
    });
    await t.step("host_binding_ipv4 is the default host address of the network", async () => {
      await p.cnm.createNetwork({
        name: "local",
        options: { "com.docker.network.bridge.host_binding_ipv4": "127.0.0.1" },
        ipam: { config: [{ subnet: "172.29.0.0/24" }] },
      });
      const ep = await p.cnm.createEndpoint("local", { name: "x", portBindings: specs("8090:80") });
      assert.deepEqual(ep.ports, [{
        proto: "tcp",
        containerPort: 80,
        hostIp: "127.0.0.1",
        hostPort: 8090,
      }]);
    });
  });
});
