/**
 * Port publishing through the bridge driver (root): conflicts, chosen and ranged ports,
 * re-programming, a restarted controller, unpublish, leave and network delete — each with
 * br_netfilter's bridged-traffic hook off and on in the test's host namespace.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createBridgeDriver } from "../../drivers/bridge/mod.ts";
import { ConflictError, InvalidArgumentError, UnavailableError } from "../../src/errors.ts";
import { createKernel } from "../../src/kernel/mod.ts";
import { createPortAllocator } from "../../src/ports/allocator.ts";
import type { PortMapping } from "../../src/ports/binding.ts";
import { readEphemeralPorts } from "../../src/ports/range.ts";
import { connectTcp, serveTcp } from "../_harness/tcp.ts";
import {
  HOST4,
  HOST6,
  mapping,
  type PortsLab,
  REMOTE4,
  REMOTE6,
  withPortsLab,
} from "./_ports_lab.ts";

async function rejectsWith(p: Promise<unknown>, cls: new (...a: never[]) => Error, msg: string) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err}`);
    assert.equal((err as Error).message, msg);
    return true;
  });
}

/** What the kernel and the firewall hold for an endpoint. */
async function holdings(p: PortsLab, endpointId: string) {
  const rules = (await p.lab.exec(["nft", "list", "ruleset"])).split("\n")
    .filter((l) => l.includes(`cnm:${endpointId.slice(0, 12)} `)).length;
  const held = (await p.kernel.heldPorts()).filter((h) => h.owner === endpointId)
    .map((h) => `${h.proto} ${h.hostIp} ${h.hostPort}`);
  return { rules, held };
}

/** Runs `f` with a TCP server on `port` in the host namespace (a service of the host's). */
async function withHostService(p: PortsLab, port: number, f: () => Promise<void>) {
  const s = await serveTcp(p.host, port, "0.0.0.0", "host");
  try {
    await f();
  } finally {
    await s.close();
  }
}

for (const brNetfilter of [false, true]) {
  const mode = `br_netfilter ${brNetfilter ? "on" : "off"}`;

  Deno.test(`bridge ports (root) conflicts, chosen ports, ranges, ${mode}`, async (t) => {
    await withPortsLab(brNetfilter, 3, async (p) => {
      const [s1, s2, s3] = p.boxes;
      const servers = await Promise.all(
        p.boxes.map((b, i) => serveTcp(b.ns, 80, "::", `s${i + 1}`)),
      );
      try {
        await t.step(
          "a port another process holds: Docker's words, nothing programmed",
          async () => {
            await withHostService(p, 9090, async () => {
              await rejectsWith(
                p.program(s2, [mapping("0.0.0.0", 9090, 80)]),
                ConflictError,
                "failed to bind host port 0.0.0.0:9090/tcp: address already in use",
              );
              assert.deepEqual(await holdings(p, s2.ep.id), { rules: 0, held: [] });
              assert.equal(await connectTcp(p.remote, HOST4, 9090), `host ${REMOTE4}`);
            });
          },
        );
        await t.step("a port another endpoint publishes: port is already allocated", async () => {
          await p.program(s1, [mapping("0.0.0.0", 8080, 80)]);
          await rejectsWith(
            p.program(s2, [mapping("0.0.0.0", 8080, 80)]),
            ConflictError,
            "Bind for 0.0.0.0:8080 failed: port is already allocated",
          );
          assert.deepEqual(await holdings(p, s2.ep.id), { rules: 0, held: [] });
          assert.equal(await connectTcp(p.remote, HOST4, 8080), `s1 ${REMOTE4}`);
        });
        const ports = await readEphemeralPortsOf(p, "40000 40009");
        const alloc = createPortAllocator(ports);
        const mine = new Map<string, PortMapping[]>();
        const decide = (box: typeof s1, b: Parameters<typeof alloc.allocate>[1]) => {
          const m = [
            ...(mine.get(box.ep.id) ?? []),
            ...alloc.allocate(box.ep.id, b, { ipv6: true }),
          ];
          mine.set(box.ep.id, m);
          return m;
        };
        await t.step(
          "chosen ports come from the host namespace's ip_local_port_range",
          async () => {
            assert.deepEqual(ports.range, { start: 40000, end: 40009 });
            const m = decide(s2, [{ containerPort: 80 }]);
            assert.deepEqual(m.map((x) => `${x.hostIp} ${x.hostPort}`), [
              "0.0.0.0 40000",
              ":: 40000",
            ]);
            assert.equal((await p.program(s2, m)).length, 2);
            assert.equal(await connectTcp(p.remote, HOST4, 40000), `s2 ${REMOTE4}`);
            assert.equal(await connectTcp(p.remote, HOST6, 40000), `s2 ${REMOTE6}`);
          },
        );
        await t.step(
          "a host range gives one port each to three endpoints; a fourth is refused",
          async () => {
            const range = [{ containerPort: 80, hostPort: 8000, hostPortEnd: 8002 }];
            mine.set(s1.ep.id, [mapping("0.0.0.0", 8080, 80)]);
            for (const box of [s1, s2, s3]) await p.program(box, decide(box, range));
            for (const [port, name] of [[8000, "s1"], [8001, "s2"], [8002, "s3"]] as const) {
              assert.equal(await connectTcp(p.remote, HOST4, port), `${name} ${REMOTE4}`);
              assert.equal(await connectTcp(p.remote, HOST6, port), `${name} ${REMOTE6}`);
            }
            assert.throws(() => alloc.allocate("a-fourth-endpoint", range), (err: unknown) => {
              assert.ok(err instanceof UnavailableError);
              assert.equal((err as Error).message, "all ports are allocated");
              return true;
            });
          },
        );
        await t.step(
          "programming again changes nothing; a shorter list frees the rest",
          async () => {
            const before = await holdings(p, s1.ep.id);
            await p.program(s1, mine.get(s1.ep.id)!);
            assert.deepEqual(await holdings(p, s1.ep.id), before);
            assert.equal(before.rules, 3); // 0.0.0.0:8080, 0.0.0.0:8000, [::]:8000
            await p.program(s1, mine.get(s1.ep.id)!.filter((m) => m.hostPort === 8000));
            assert.deepEqual(await holdings(p, s1.ep.id), {
              rules: 2,
              held: ["tcp 0.0.0.0 8000", "tcp :: 8000"],
            });
            await withHostService(p, 8080, async () => {
              assert.equal(await connectTcp(p.remote, HOST4, 8080), `host ${REMOTE4}`);
            });
          },
        );
        await t.step("mappings move with the gateway endpoint: revoke, then program", async () => {
          const moving = mine.get(s3.ep.id)!; // 8002 on 0.0.0.0 and ::
          await p.revoke(s3, moving);
          const s1Now = mine.get(s1.ep.id)!.filter((m) => m.hostPort === 8000);
          mine.set(s1.ep.id, [...s1Now, ...moving]);
          mine.set(s3.ep.id, []);
          await p.program(s1, mine.get(s1.ep.id)!);
          assert.equal(await connectTcp(p.remote, HOST4, 8002), `s1 ${REMOTE4}`);
          assert.equal(await connectTcp(p.remote, HOST6, 8002), `s1 ${REMOTE6}`);
          assert.deepEqual(await holdings(p, s3.ep.id), { rules: 0, held: [] });
        });
        await t.step("unpublish frees everything at once", async () => {
          await p.revoke(s2, mine.get(s2.ep.id));
          assert.deepEqual(await holdings(p, s2.ep.id), { rules: 0, held: [] });
          await withHostService(p, 40000, async () => {
            assert.equal(await connectTcp(p.remote, HOST4, 40000), `host ${REMOTE4}`);
          });
          assert.equal(await connectTcp(p.remote, HOST4, 8001), null);
        });
        await t.step("leave removes the endpoint's rules and ports", async () => {
          await p.program(s3, [mapping("0.0.0.0", 7070, 80)]);
          assert.equal(await connectTcp(p.remote, HOST4, 7070), `s3 ${REMOTE4}`);
          await p.driver.leave(
            p.net,
            s3.ep,
            { id: "sb3", key: "", ifname: "eth0", labels: {} },
            p.ctx,
          );
          assert.deepEqual(await holdings(p, s3.ep.id), { rules: 0, held: [] });
        });
        await t.step("internal networks publish nothing: refused", async () => {
          await rejectsWith(
            p.driver.programExternalConnectivity!({ ...p.net, internal: true }, s2.ep, [
              mapping("0.0.0.0", 7000, 80),
            ], p.ctx),
            InvalidArgumentError,
            `network ${p.net.id.slice(0, 12)} is internal: it publishes no ports`,
          );
          assert.deepEqual(await holdings(p, s2.ep.id), { rules: 0, held: [] });
        });
      } finally {
        for (const s of servers) await s.close();
      }
    });
  });

  Deno.test(`bridge ports (root) a restarted controller takes its ports again, ${mode}`, async (t) => {
    await withPortsLab(brNetfilter, 1, async (p) => {
      const [s1] = p.boxes;
      const server = await serveTcp(s1.ns, 80, "::", "s1");
      const m = [mapping("0.0.0.0", 8000, 80), mapping("0.0.0.0", 8001, 80)];
      try {
        await p.program(s1, m);
        const before = await holdings(p, s1.ep.id);
        await p.kernel.close(); // the controller dies: its sockets go, the rules stay
        const kernel = await createKernel({ hostNamespace: `/var/run/netns/${p.host}` });
        try {
          const driver = createBridgeDriver();
          const ctx = { ...p.ctx, kernel };
          await t.step("programming from the journal re-takes every port", async () => {
            await driver.programExternalConnectivity!(p.net, s1.ep, m, ctx);
            const held = (await kernel.heldPorts()).map((h) => `${h.owner} ${h.hostPort}`);
            assert.deepEqual(held, [`${s1.ep.id} 8000`, `${s1.ep.id} 8001`]);
            assert.equal((await holdings(p, s1.ep.id)).rules, before.rules);
            assert.equal(await connectTcp(p.remote, HOST4, 8000), `s1 ${REMOTE4}`);
          });
          await t.step("a port taken meanwhile: refused, and nothing stays published", async () => {
            await kernel.close();
            const k2 = await createKernel({ hostNamespace: `/var/run/netns/${p.host}` });
            try {
              await withHostService(p, 8001, async () => {
                await rejectsWith(
                  createBridgeDriver().programExternalConnectivity!(p.net, s1.ep, m, {
                    ...p.ctx,
                    kernel: k2,
                  }),
                  ConflictError,
                  "failed to bind host port 0.0.0.0:8001/tcp: address already in use",
                );
                // No DNAT shadows the host's service, and no rule is left for 8000 either.
                assert.equal(await connectTcp(p.remote, HOST4, 8001), `host ${REMOTE4}`);
                assert.equal(await connectTcp(p.remote, HOST4, 8000), null);
                assert.deepEqual(await k2.heldPorts(), []);
              });
            } finally {
              await k2.close();
            }
          });
        } finally {
          await kernel.close();
        }
      } finally {
        await server.close();
      }
    });
  });
}

Deno.test("bridge ports (root) deleting the network removes every port rule and port", async () => {
  await withPortsLab(false, 2, async (p) => {
    const [s1, s2] = p.boxes;
    await p.program(s1, [mapping("0.0.0.0", 8000, 80), mapping("127.0.0.1", 8001, 80)]);
    await p.program(s2, [mapping("::", 8000, 80)]);
    assert.match(await p.lab.exec(["nft", "list", "ruleset"]), /pdnat-/);
    await p.driver.deleteNetwork(p.net, p.ctx);
    const text = await p.lab.exec(["nft", "list", "ruleset"]);
    assert.doesNotMatch(text, /pdnat-|cnm:[0-9a-f]{12} \S+->/);
    assert.deepEqual(await p.kernel.heldPorts(), []);
  });
});

async function readEphemeralPortsOf(p: PortsLab, range: string) {
  await p.inHost(["sysctl", "-qw", `net.ipv4.ip_local_port_range=${range}`]);
  return await readEphemeralPorts(p.kernel);
}
