/**
 * Port publishing through a real controller (root, nats-server): conflicts up front with
 * Docker's words and nothing half-programmed, ports cnm chooses (from the host namespace's
 * ephemeral range, stable across a restart), a host range shared by three endpoints, and
 * reconcile of port rules — each with br_netfilter's bridged-traffic hook off and on.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ConflictError, parsePortSpec, UnavailableError } from "../../mod.ts";
import { hostVethName } from "../../drivers/bridge/mod.ts";
import { connectTcp, serveTcp, type TcpServer } from "../_harness/tcp.ts";
import { type Box, HOST4, HOST6, REMOTE4, REMOTE6, withPortsEnv } from "../_harness/ports_env.ts";

const specs = (...s: string[]) => s.flatMap(parsePortSpec);

async function rejectsWith(p: Promise<unknown>, cls: new (...a: never[]) => Error, msg: string) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err}`);
    assert.equal((err as Error).message, msg);
    return true;
  });
}

for (const brNetfilter of [false, true]) {
  const mode = `br_netfilter ${brNetfilter ? "on" : "off"}`;

  Deno.test(`ports (root, nats-server) conflicts fail up front with Docker's words, ${mode}`, async (t) => {
    await withPortsEnv("pc", brNetfilter, async (p) => {
      await t.step("a port another process holds: the join fails, nothing is left", async () => {
        const service = await serveTcp(p.host, 9090, "0.0.0.0", "host");
        const sb = await p.cnm.createSandbox({ name: "s2" });
        const ep = await p.cnm.createEndpoint("web", {
          name: "s2",
          portBindings: specs("9090:80"),
        });
        try {
          await rejectsWith(
            p.cnm.join(ep.id, sb.id),
            ConflictError,
            `driver failed programming external connectivity on endpoint s2 (${ep.id}): ` +
              "failed to bind host port 0.0.0.0:9090/tcp: address already in use",
          );
          const after = p.cnm.endpoint(ep.id)!;
          assert.equal(after.state, "created");
          assert.equal(after.sandboxId, null);
          assert.deepEqual(await p.portRules(), []);
          assert.deepEqual(await p.listening(), ["tcp 0.0.0.0:9090"]); // the service's only
          const links = await p.inHost(["ip", "-br", "link"]);
          assert.ok(!links.includes(hostVethName(ep.id)), links);
          assert.equal(await connectTcp(p.remote, HOST4, 9090), `host ${REMOTE4}`);
          assert.deepEqual((await p.cnm.reconcile({ dryRun: true })).findings, []);
        } finally {
          await service.close();
        }
        // The port is the endpoint's: once free, the join publishes it.
        await p.cnm.join(ep.id, sb.id);
        const server = await serveTcp(sb.key.slice(sb.key.lastIndexOf("/") + 1), 80, "::", "s2");
        try {
          assert.equal(await connectTcp(p.remote, HOST4, 9090), `s2 ${REMOTE4}`);
        } finally {
          await server.close();
        }
      });
      await t.step(
        "two endpoints on one port: port is already allocated, nothing journaled",
        async () => {
          await p.box("a", specs("8082:80"));
          const before = (await p.env.readAll()).length;
          await rejectsWith(
            p.cnm.createEndpoint("web", { name: "b", portBindings: specs("8082:80") }),
            ConflictError,
            "Bind for 0.0.0.0:8082 failed: port is already allocated",
          );
          await rejectsWith(
            p.cnm.createEndpoint("web", { name: "b", portBindings: specs(`${HOST4}:8082:80`) }),
            ConflictError,
            "Bind for 0.0.0.0:8082 failed: port is already allocated",
          );
          assert.equal((await p.env.readAll()).length, before);
          // Another protocol is another port.
          const udp = await p.cnm.createEndpoint("web", {
            name: "b",
            portBindings: specs("8082:80/udp"),
          });
          assert.equal(udp.ports![0].hostPort, 8082);
        },
      );
    });
  });

  Deno.test(`ports (root, nats-server) chosen ports come from the range and survive a restart; a range serves three endpoints, ${mode}`, async (t) => {
    await withPortsEnv("pp", brNetfilter, async (p) => {
      const servers: TcpServer[] = [];
      try {
        const boxes: Box[] = [];
        await t.step("no host port: the low end of ip_local_port_range, in order", async () => {
          for (const name of ["c1", "c2"]) {
            const b = await p.box(name, specs("80"));
            boxes.push(b);
            servers.push(await serveTcp(b.ns, 80, "::", name));
          }
          const ports = boxes.map((b) =>
            p.cnm.endpoint(b.endpointId)!.ports!.map((m) => `${m.hostIp}:${m.hostPort}`)
          );
          assert.deepEqual(ports, [["0.0.0.0:40000", ":::40000"], ["0.0.0.0:40001", ":::40001"]]);
          assert.equal(await connectTcp(p.remote, HOST4, 40001), `c2 ${REMOTE4}`);
          assert.equal(await connectTcp(p.remote, HOST6, 40000), `c1 ${REMOTE6}`);
        });
        await t.step(
          "a host range gives one port each to three endpoints; a fourth is refused",
          async () => {
            for (const [i, name] of ["r1", "r2", "r3"].entries()) {
              const b = await p.box(name, specs("8000-8002:80"));
              servers.push(await serveTcp(b.ns, 80, "::", name));
              assert.equal(p.cnm.endpoint(b.endpointId)!.ports![0].hostPort, 8000 + i);
            }
            for (const [port, name] of [[8000, "r1"], [8001, "r2"], [8002, "r3"]] as const) {
              assert.equal(await connectTcp(p.remote, HOST4, port), `${name} ${REMOTE4}`);
            }
            await rejectsWith(
              p.cnm.createEndpoint("web", { name: "r4", portBindings: specs("8000-8002:80") }),
              UnavailableError,
              "all ports are allocated",
            );
          },
        );
        await t.step("after a restart: the same ports, held again, reachable", async () => {
          const before = p.cnm.endpoints().map((e) => [e.name, e.ports]);
          const held = await p.listening();
          const cnm = await p.restart();
          assert.deepEqual(cnm.recovery.warnings, []);
          assert.deepEqual(cnm.recovery.reconcile?.findings, []);
          assert.deepEqual(cnm.endpoints().map((e) => [e.name, e.ports]), before);
          assert.deepEqual(await p.listening(), held);
          assert.equal(await connectTcp(p.remote, HOST4, 40000), `c1 ${REMOTE4}`);
          assert.equal(await connectTcp(p.remote, HOST4, 8002), `r3 ${REMOTE4}`);
          // The next choice continues where the journal left it.
          const next = await cnm.createEndpoint("web", { name: "c3", portBindings: specs("80") });
          assert.equal(next.ports![0].hostPort, 40002);
        });
        await t.step("reconcile puts back a port chain deleted by hand", async () => {
          const ep = p.cnm.endpoints().find((e) => e.name === "r2")!;
          const net12 = ep.networkId.slice(0, 12), ep12 = ep.id.slice(0, 12);
          const chain = `pdnat-${net12}-${ep12}`;
          await p.inHost([
            "sh",
            "-c",
            `nft delete element inet cnm cnm_dnat4_any '{ tcp . 8001 }' && ` +
            `nft delete element inet cnm cnm_dnat6_any '{ tcp . 8001 }' && ` +
            `nft flush chain inet cnm ${chain} && nft delete chain inet cnm ${chain}`,
          ]);
          assert.equal(await connectTcp(p.remote, HOST4, 8001), null);
          const drift = await p.cnm.reconcile({ dryRun: true });
          assert.deepEqual(
            drift.findings.map((f) =>
              `${f.kind} ${f.objectId} ${f.resource} ${f.name} ${f.problem}`
            ).sort(),
            [
              `endpoint ${ep.id} port-rule 0.0.0.0:8001->80/tcp missing`,
              `endpoint ${ep.id} port-rule [::]:8001->80/tcp missing`,
            ],
          );
          const fixed = await p.cnm.reconcile();
          assert.ok(fixed.findings.every((f) => f.repaired), JSON.stringify(fixed.findings));
          assert.equal(await connectTcp(p.remote, HOST4, 8001), `r2 ${REMOTE4}`);
          assert.equal(await connectTcp(p.remote, HOST6, 8001), `r2 ${REMOTE6}`);
          assert.deepEqual((await p.cnm.reconcile({ dryRun: true })).findings, []);
          const events = (await p.env.readAll()).filter((e) => e.type === "endpoint.reconciled");
          assert.equal(events.at(-1)?.objectId, ep.id);
        });
        await t.step("reconcile removes a port chain no endpoint explains", async () => {
          const net12 = p.cnm.network("web")!.id.slice(0, 12);
          const chain = `pdnat-${net12}-${"ab".repeat(6)}`;
          await p.inHost([
            "sh",
            "-c",
            `nft add chain inet cnm ${chain} && nft add rule inet cnm ${chain} ` +
            `meta nfproto ipv4 tcp dport 8999 dnat ip to 172.30.0.250:80 ` +
            `comment '"cnm:${"ab".repeat(6)} 0.0.0.0:8999->80/tcp"' && ` +
            `nft add element inet cnm cnm_dnat4_any '{ tcp . 8999 : jump ${chain} }'`,
          ]);
          const drift = await p.cnm.reconcile({ dryRun: true });
          assert.deepEqual(
            drift.findings.map((f) => `${f.kind} ${f.resource} ${f.name} ${f.problem}`),
            [`host port-rule ${chain} unexpected`],
          );
          const fixed = await p.cnm.reconcile();
          const left = (await p.portRules()).filter((r) => r.includes("8999"));
          assert.deepEqual(left, [], `reconcile said ${JSON.stringify(fixed.findings)}`);
          assert.deepEqual((await p.cnm.reconcile({ dryRun: true })).findings, []);
        });
      } finally {
        for (const s of servers) await s.close();
      }
    }, { portRange: "40000 40009" });
  });
}
