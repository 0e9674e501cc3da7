/**
 * Several controllers (hosts) on one stream and a global-scope driver with no kernel work:
 * global networks are seen everywhere, their names, subnets, VNIs and addresses are unique
 * across hosts under concurrency, deletes respect endpoints on other hosts, and a restart
 * rebuilds all of it from the stream. Needs root (throwaway namespaces) and nats-server.
 */

import assert from "node:assert/strict";
import { ConflictError, ForbiddenError } from "../../mod.ts";
import type { Controller } from "../../mod.ts";
import { startEnv, type TestEnv } from "../_harness/env.ts";
import { createTestHost, type TestHost } from "../_harness/netns.ts";
import { globalNoopDriver } from "../cli/_fake_kernel.ts";

const VNI_OPTION = "com.docker.network.driver.overlay.vxlanid_list";

const globalDriver = () => globalNoopDriver("gtest");

interface Cluster {
  env: TestEnv;
  hosts: TestHost[];
  open(i: number): Promise<Controller>;
  cleanup(): Promise<void>;
}

async function startCluster(n: number): Promise<Cluster> {
  const env = await startEnv("mh");
  const hosts: TestHost[] = [];
  try {
    for (let i = 0; i < n; i++) hosts.push(await createTestHost(`mh${i}`));
  } catch (err) {
    for (const h of hosts) await h.cleanup().catch(() => {});
    await env.cleanup();
    throw err;
  }
  return {
    env,
    hosts,
    open: (i) =>
      env.open({
        hostId: `h${i + 1}`,
        kernel: { hostNamespace: hosts[i].path },
        namePrefix: `${hosts[i].prefix}-`,
        predefined: false,
        drivers: [globalDriver()],
      }),
    async cleanup() {
      const errors: unknown[] = [];
      await env.cleanup().catch((e) => errors.push(e));
      for (const h of hosts) await h.cleanup().catch((e) => errors.push(e));
      if (errors.length) throw new AggregateError(errors, "cluster cleanup failed");
    },
  };
}

async function until<T>(f: () => T | undefined, ms = 2000): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    if (performance.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 2));
  }
}

Deno.test("global networks across hosts (needs root and nats-server)", async (t) => {
  const c = await startCluster(2);
  try {
    const h1 = await c.open(0);
    const h2 = await c.open(1);

    await t.step("a network made on h1 is found on h2 at once, by name and id", async () => {
      const t0 = performance.now();
      const net = await h1.createNetwork({ name: "ov", driver: "gtest" });
      // Its intent may be folded on h2 before its outcome: found once it is active there.
      const seen = await until(() => {
        const n = h2.network("ov");
        return n?.state === "active" ? n : undefined;
      }, 1000);
      const ms = performance.now() - t0;
      assert.equal(seen.id, net.id);
      assert.equal(seen.scope, "global");
      assert.equal(seen.state, "active");
      assert.equal(seen.ipam.config[0].subnet, "10.0.0.0/24");
      assert.equal(seen.options[VNI_OPTION], "4096");
      assert.ok(ms < 1000, `visible after ${ms} ms`);
    });

    await t.step("concurrent creates of one name on two hosts yield one network", async () => {
      const results = await Promise.allSettled([
        h1.createNetwork({ name: "race", driver: "gtest" }),
        h2.createNetwork({ name: "race", driver: "gtest" }),
      ]);
      const ok = results.filter((r) => r.status === "fulfilled");
      const bad = results.filter((r) => r.status === "rejected") as PromiseRejectedResult[];
      assert.equal(ok.length, 1);
      assert.equal(bad.length, 1);
      assert.ok(bad[0].reason instanceof ConflictError);
      assert.equal(bad[0].reason.message, "network with name race already exists");
      await until(() => h1.network("race") && h2.network("race"));
      assert.equal(h1.network("race")!.id, h2.network("race")!.id);
    });

    await t.step("concurrent creates on two hosts get distinct subnets and VNIs", async () => {
      const made = await Promise.all(
        Array.from(
          { length: 8 },
          (_, i) => (i % 2 ? h2 : h1).createNetwork({ name: `n${i}`, driver: "gtest" }),
        ),
      );
      const subnets = made.map((n) => n.ipam.config[0].subnet);
      const vnis = made.map((n) => n.options[VNI_OPTION]);
      assert.equal(new Set(subnets).size, 8, subnets.join(" "));
      assert.equal(new Set(vnis).size, 8, vnis.join(" "));
      for (const v of vnis) assert.ok(Number(v) >= 4096);
    });

    await t.step("a requested VNI in use is refused; an explicit one is used", async () => {
      await assert.rejects(
        h2.createNetwork({ name: "dup", driver: "gtest", options: { [VNI_OPTION]: "4096" } }),
        (err: Error) =>
          err instanceof ForbiddenError &&
          /could not assign vxlan id 4096 to pool/.test(err.message),
      );
      const n = await h2.createNetwork({
        name: "vx",
        driver: "gtest",
        options: { [VNI_OPTION]: "7000" },
      });
      assert.equal(n.options[VNI_OPTION], "7000");
    });

    await t.step("endpoints made concurrently on two hosts get unique addresses", async () => {
      const eps = await Promise.all(
        Array.from(
          { length: 30 },
          (_, i) => (i % 2 ? h2 : h1).createEndpoint("ov", { name: `e${i}` }),
        ),
      );
      const ips = eps.map((e) => e.ipv4Address);
      assert.equal(new Set(ips).size, 30, ips.join(" "));
      for (const ip of ips) assert.match(ip!, /^10\.0\.0\.\d+\/24$/);
    });

    await t.step("a network with endpoints on another host cannot be deleted", async () => {
      await until(() => h1.endpoints().length === 15 || undefined);
      const id = h2.network("ov")!.id;
      const eps = h1.endpoints({ network: id });
      assert.equal(eps.length, 15);
      await assert.rejects(
        h2.deleteNetwork("ov"),
        (err: Error) =>
          err instanceof ForbiddenError && /^network ov has active endpoints/.test(err.message),
      );
      for (const e of h2.endpoints({ network: id })) await h2.deleteEndpoint(e.id);
      await assert.rejects(h2.deleteNetwork("ov"), ForbiddenError);
      for (const e of eps) await h1.deleteEndpoint(e.id);
      // Once h2 has folded h1's deletes (within a millisecond or so) the delete goes through.
      const deadline = performance.now() + 1000;
      for (;;) {
        try {
          await h2.deleteNetwork("ov");
          break;
        } catch (err) {
          if (!(err instanceof ForbiddenError) || performance.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 2));
        }
      }
      await until(() => h1.network("ov") === undefined || undefined);
    });

    await t.step(
      "a network deletes right after its host deleted its last endpoint (the world may lag)",
      async () => {
        // h2 keeps the stream busy meanwhile, so h1's world folds behind h1's own commands.
        const busy = await h2.createNetwork({ name: "busy", driver: "gtest" });
        let stop = false;
        const noise = Promise.all(Array.from({ length: 4 }, async (_, k) => {
          for (let j = 0; !stop; j++) {
            const e = await h2.createEndpoint(busy.id, { name: `b${k}-${j}` });
            await h2.deleteEndpoint(e.id);
          }
        }));
        try {
          for (let i = 0; i < 50; i++) {
            const net = await h1.createNetwork({ name: `quick${i}`, driver: "gtest" });
            const ep = await h1.createEndpoint(net.id, { name: "a" });
            await h1.deleteEndpoint(ep.id);
            await h1.deleteNetwork(net.id);
            assert.equal(h1.network(`quick${i}`), undefined);
          }
        } finally {
          stop = true;
          await noise;
        }
        await until(() => h1.endpoints({ network: busy.id }).length === 0 || undefined);
        await h2.deleteNetwork(busy.id);
      },
    );

    await t.step("a restarted host rebuilds the global view and the IPAM", async () => {
      const e1 = await h1.createEndpoint("race", { name: "a" });
      await h2.close();
      const again = await c.open(1);
      assert.equal(again.network("race")!.id, h1.network("race")!.id);
      assert.equal(again.network("ov"), undefined);
      const e2 = await again.createEndpoint("race", { name: "b" });
      assert.notEqual(e2.ipv4Address, e1.ipv4Address);
      // The name freed by the delete can be used again.
      const reused = await again.createNetwork({ name: "ov", driver: "gtest" });
      assert.equal(reused.ipam.config[0].subnet, "10.0.0.0/24");
    });
  } finally {
    await c.cleanup();
  }
});
