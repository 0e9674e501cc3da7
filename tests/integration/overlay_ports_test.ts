/**
 * Published ports of overlay endpoints through a real controller (root, nats-server, nft,
 * conntrack): an overlay-only sandbox publishes on its `cnm_gwbridge` endpoint (Docker's
 * `docker run --network myoverlay -p 8080:80`), reachable from a remote client and from the
 * host; host ports decided and held as for a bridge endpoint, conflicts up front with Docker's
 * words; a sandbox that also has a bridge network publishes there; leave, delete and restart
 * — reachability with br_netfilter's bridged-traffic hook off and on.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ConflictError, InvalidArgumentError, parsePortSpec } from "../../mod.ts";
import type { Controller, EndpointInfo } from "../../mod.ts";
import { GWBRIDGE } from "../../src/controller/gwbridge.ts";
import { connectTcp, serveTcp, type TcpServer } from "../_harness/tcp.ts";
import { requestUdp, serveUdp } from "../_harness/udp.ts";
import { HOST4, type PortsEnv, REMOTE4, withPortsEnv } from "../_harness/ports_env.ts";

const specs = (...s: string[]) => s.flatMap(parsePortSpec);
const base = (key: string) => key.slice(key.lastIndexOf("/") + 1);
const describe = (ep: EndpointInfo) =>
  ep.ports!.map((m) => `${m.hostIp} ${m.hostPort}->${m.containerPort}/${m.proto}`);

async function rejectsWith(p: Promise<unknown>, cls: new (...a: never[]) => Error, msg: string) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err}`);
    assert.equal((err as Error).message, msg);
    return true;
  });
}

/** An overlay network `ov` on the lab's controller (its VTEP: the host address). */
async function overlay(p: PortsEnv): Promise<void> {
  await p.cnm.configureDriver("overlay", { advertiseAddress: HOST4 });
  await p.cnm.createNetwork({ name: "ov", driver: "overlay" });
}

/** The sandbox's endpoint on the gateway bridge, if any. */
function gatewayEndpoint(cnm: Controller, sandboxId: string): EndpointInfo | undefined {
  return cnm.endpoints({ network: GWBRIDGE })
    .find((e) => e.name === `gateway_${sandboxId.slice(0, 12)}`);
}

/** Endpoints (id12) whose DNAT chains the firewall holds. */
async function publishers(p: PortsEnv): Promise<string[]> {
  const ids = (await p.portRules()).map((l) => /comment "cnm:([0-9a-f]{12}) /.exec(l)![1]);
  return [...new Set(ids)].sort();
}

for (const brNetfilter of [false, true]) {
  const mode = `br_netfilter ${brNetfilter ? "on" : "off"}`;

  Deno.test(`overlay ports (root, nats-server) an overlay-only sandbox publishes on cnm_gwbridge, ${mode}`, async (t) => {
    await withPortsEnv("op", brNetfilter, async (p) => {
      await overlay(p);
      const sb = await p.cnm.createSandbox({ name: "s1" });
      const ns = base(sb.key);
      let ep = await p.cnm.createEndpoint("ov", {
        name: "s1",
        portBindings: specs("8080:80", "127.0.0.1:8081:80", "5353:5353/udp"),
      });
      const stops: (() => Promise<void>)[] = [];
      try {
        const tcp = await serveTcp(ns, 80, "::", "s1");
        stops.push(() => tcp.close());
        const udp = await serveUdp(ns, 5353, "s1");
        stops.push(() => udp.stop());

        await t.step("the decisions are journaled, IPv4 only (the gateway bridge's)", async () => {
          assert.deepEqual(describe(ep), [
            "0.0.0.0 8080->80/tcp",
            "127.0.0.1 8081->80/tcp",
            "0.0.0.0 5353->5353/udp",
          ]);
          const intent = (await p.env.readAll()).find((e) => e.objectId === ep.id)!;
          assert.equal(intent.type, "endpoint.create.requested");
          assert.deepEqual(
            (intent.data.ports as { hostPort: number }[]).map((m) => m.hostPort),
            [8080, 8081, 5353],
          );
        });

        let gw!: EndpointInfo;
        await t.step("joined, it publishes on its gwbridge endpoint", async () => {
          ep = await p.cnm.join(ep.id, sb.id);
          assert.equal(ep.state, "joined");
          gw = gatewayEndpoint(p.cnm, sb.id)!;
          assert.equal(gw?.state, "joined");
          assert.deepEqual(await publishers(p), [gw.id.slice(0, 12)]);
          // DNAT to the sandbox's address on cnm_gwbridge, never to its overlay address.
          const rules = await p.portRules();
          const to = `dnat ip to ${gw.ipv4Address!.split("/")[0]}:`;
          assert.equal(rules.filter((l) => l.includes(to)).length, 3, rules.join("\n"));
          // The overlay endpoint shows its ports; the gateway endpoint asked for none.
          assert.deepEqual(describe(p.cnm.endpoint(ep.id)!), describe(ep));
          assert.equal(gw.ports, undefined);
        });

        await t.step("a remote client reaches it; the container sees its address", async () => {
          assert.equal(await connectTcp(p.remote, HOST4, 8080), `s1 ${REMOTE4}`);
          assert.equal(await requestUdp(p.remote, HOST4, 5353), `s1 ${REMOTE4}`);
        });
        await t.step("the host reaches it via its own address and via 127.0.0.1", async () => {
          const gw4 = p.cnm.network(GWBRIDGE)!.ipam.config[0].gateway!;
          assert.equal(await connectTcp(p.host, HOST4, 8080), `s1 ${HOST4}`);
          assert.equal(await connectTcp(p.host, "127.0.0.1", 8080), `s1 ${gw4}`);
          assert.equal(await connectTcp(p.host, "127.0.0.1", 8081), `s1 ${gw4}`);
          assert.equal(await connectTcp(p.remote, HOST4, 8081), null, "127.0.0.1 only");
        });
        await t.step("each host port is held by a socket of the controller", async () => {
          const vxlan = "udp 0.0.0.0:4789"; // the overlay's VXLAN device
          assert.deepEqual((await p.listening()).filter((l) => l !== vxlan), [
            "tcp 0.0.0.0:8080",
            "tcp 127.0.0.1:8081",
            "udp 0.0.0.0:5353",
          ]);
        });
        await t.step("reconcile finds nothing to repair", async () => {
          assert.deepEqual((await p.cnm.reconcile({ dryRun: true })).findings, []);
        });

        await t.step(
          "leave removes every rule, frees the ports, detaches cnm_gwbridge",
          async () => {
            await p.cnm.leave(ep.id, sb.id);
            assert.deepEqual(await p.portRules(), []);
            assert.deepEqual(await p.listening(), []);
            assert.equal(gatewayEndpoint(p.cnm, sb.id), undefined);
            assert.equal(await connectTcp(p.remote, HOST4, 8080), null);
            assert.deepEqual((await p.cnm.reconcile({ dryRun: true })).findings, []);
            // The ports stay the endpoint's: joined again, the same ones are published.
            await p.cnm.join(ep.id, sb.id);
            assert.deepEqual(describe(p.cnm.endpoint(ep.id)!), describe(ep));
            assert.equal(await connectTcp(p.remote, HOST4, 8080), `s1 ${REMOTE4}`);
          },
        );

        await t.step("a forced delete frees the ports for another endpoint", async () => {
          await p.cnm.deleteEndpoint(ep.id, { force: true });
          assert.deepEqual(await p.portRules(), []);
          assert.deepEqual(await p.listening(), []);
          const again = await p.cnm.createEndpoint("ov", {
            name: "again",
            portBindings: specs("8080:80"),
          });
          await p.cnm.join(again.id, sb.id);
          assert.equal(await connectTcp(p.remote, HOST4, 8080), `s1 ${REMOTE4}`);
          await p.cnm.deleteSandbox(sb.id);
          assert.deepEqual(await p.portRules(), []);
          assert.deepEqual(await p.listening(), []);
          assert.deepEqual((await p.cnm.reconcile({ dryRun: true })).findings, []);
        });
      } finally {
        for (const stop of stops) await stop();
      }
    });
  });
}

Deno.test("overlay ports (root, nats-server) conflicts, the gateway choice, restart", async (t) => {
  await withPortsEnv("oc", false, async (p) => {
    await overlay(p);
    const servers: TcpServer[] = [];
    try {
      await t.step("a port another process holds: the join fails, nothing is left", async () => {
        const service = await serveTcp(p.host, 9090, "0.0.0.0", "host");
        const sb = await p.cnm.createSandbox({ name: "s2" });
        const ep = await p.cnm.createEndpoint("ov", { name: "s2", portBindings: specs("9090:80") });
        try {
          await assert.rejects(p.cnm.join(ep.id, sb.id), (err: unknown) => {
            assert.ok(err instanceof ConflictError, `expected ConflictError, got ${err}`);
            assert.match(
              err.message,
              new RegExp(
                `^container ${sb.id}: endpoint join on GW Network failed: driver failed ` +
                  `programming external connectivity on endpoint gateway_${
                    sb.id.slice(0, 12)
                  } \\([0-9a-f]{64}\\): failed to bind host port 0\\.0\\.0\\.0:9090/tcp: ` +
                  "address already in use$",
              ),
            );
            return true;
          });
          const after = p.cnm.endpoint(ep.id)!;
          assert.equal(after.state, "created");
          assert.equal(after.sandboxId, null);
          assert.equal(gatewayEndpoint(p.cnm, sb.id), undefined);
          assert.deepEqual(await p.portRules(), []);
          assert.deepEqual(await p.listening(), ["tcp 0.0.0.0:9090"]); // the service's only
          assert.equal(await connectTcp(p.remote, HOST4, 9090), `host ${REMOTE4}`);
          assert.deepEqual((await p.cnm.reconcile({ dryRun: true })).findings, []);
        } finally {
          await service.close();
        }
        // The port is the endpoint's: once free, the join publishes it.
        await p.cnm.join(ep.id, sb.id);
        servers.push(await serveTcp(base(sb.key), 80, "::", "s2"));
        assert.equal(await connectTcp(p.remote, HOST4, 9090), `s2 ${REMOTE4}`);
      });

      await t.step("one host port for two endpoints, overlay or bridge: refused", async () => {
        const before = (await p.env.readAll()).length;
        for (const net of ["ov", "web"]) {
          await rejectsWith(
            p.cnm.createEndpoint(net, { name: "b", portBindings: specs("9090:80") }),
            ConflictError,
            "Bind for 0.0.0.0:9090 failed: port is already allocated",
          );
        }
        await rejectsWith(
          p.cnm.createEndpoint("ov", { name: "b", portBindings: specs("[::]:9091:80") }),
          InvalidArgumentError,
          "invalid port binding 80/tcp: hostIp ::: the network has no IPv6",
        );
        await p.cnm.createNetwork({ name: "inner", driver: "overlay", internal: true });
        const count = (await p.env.readAll()).length;
        await rejectsWith(
          p.cnm.createEndpoint("inner", { name: "b", portBindings: specs("9092:80") }),
          InvalidArgumentError,
          "network inner is internal: it publishes no ports",
        );
        assert.ok(count > before);
        assert.equal((await p.env.readAll()).length, count, "refused commands journal nothing");
      });

      await t.step("publishAll on an overlay endpoint: a chosen port, published", async () => {
        const sb = await p.cnm.createSandbox({ name: "s3" });
        const ep = await p.cnm.createEndpoint("ov", {
          name: "s3",
          exposedPorts: [{ port: 80 }],
          publishAll: true,
        });
        const [m] = ep.ports!;
        const [low, high] = (await p.inHost(["cat", "/proc/sys/net/ipv4/ip_local_port_range"]))
          .trim().split(/\s+/).map(Number);
        assert.equal(m.hostIp, "0.0.0.0");
        assert.ok(m.hostPort >= low && m.hostPort <= high, `${m.hostPort} in ${low}-${high}`);
        await p.cnm.join(ep.id, sb.id);
        servers.push(await serveTcp(base(sb.key), 80, "::", "s3"));
        assert.equal(await connectTcp(p.remote, HOST4, m.hostPort), `s3 ${REMOTE4}`);
      });

      await t.step("with a bridge network too, the bridge endpoint publishes", async () => {
        const s2 = p.cnm.sandbox("s2")!;
        const web = await p.cnm.createEndpoint("web", { name: "s2web" });
        await p.cnm.join(web.id, s2.id);
        assert.equal(gatewayEndpoint(p.cnm, s2.id), undefined, "cnm_gwbridge detached");
        const s3gw = gatewayEndpoint(p.cnm, p.cnm.sandbox("s3")!.id)!;
        assert.deepEqual(await publishers(p), [web.id.slice(0, 12), s3gw.id.slice(0, 12)].sort());
        assert.equal(await connectTcp(p.remote, HOST4, 9090), `s2 ${REMOTE4}`);
        // The bridge network goes: the gateway bridge is back and publishes again.
        await p.cnm.leave(web.id, s2.id);
        const gw = gatewayEndpoint(p.cnm, s2.id)!;
        assert.equal(gw.state, "joined");
        assert.deepEqual(await publishers(p), [gw.id.slice(0, 12), s3gw.id.slice(0, 12)].sort());
        assert.equal(await connectTcp(p.remote, HOST4, 9090), `s2 ${REMOTE4}`);
        assert.deepEqual((await p.cnm.reconcile({ dryRun: true })).findings, []);
      });

      await t.step("after a restart: published again from the journal", async () => {
        const before = await p.listening();
        const rules = await p.portRules();
        await p.restart();
        assert.deepEqual(p.cnm.recovery.warnings, []);
        assert.deepEqual(await p.listening(), before);
        assert.deepEqual(await p.portRules(), rules);
        assert.equal(await connectTcp(p.remote, HOST4, 9090), `s2 ${REMOTE4}`);
        assert.deepEqual((await p.cnm.reconcile({ dryRun: true })).findings, []);
        for (const s of p.cnm.sandboxes()) await p.cnm.deleteSandbox(s.id);
        assert.deepEqual(await p.portRules(), []);
        assert.deepEqual(await p.listening(), []);
        assert.deepEqual((await p.cnm.reconcile({ dryRun: true })).findings, []);
      });
    } finally {
      for (const s of servers) await s.close();
    }
  });
});
