/**
 * Cluster-wide claims are given back when their object is gone, also across a stop or a
 * crash (needs root for the throwaway namespaces, and nats-server): a clean close right after
 * a delete leaves no claim behind, and claims whose holder the journal says is gone (its
 * controller died between the durable delete and the release), or whose holder never reached
 * the journal and is older than a minute, are released at the next start — found by the
 * crash test (docs/crash.md). The kill itself is in tests/crash/overlay_crash_test.ts.
 */

import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import type { Controller } from "../../mod.ts";
import { claimBucketOf, claimKey } from "../../src/controller/claims.ts";
import { newObjectId } from "../../src/ids.ts";
import { startEnv, type TestEnv } from "../_harness/env.ts";
import { globalNoopDriver } from "../cli/_fake_kernel.ts";

const VNI_OPTION = "com.docker.network.driver.overlay.vxlanid_list";

const globalDriver = () => globalNoopDriver("gtest");

const open = (env: TestEnv, hostId = "h1"): Promise<Controller> =>
  env.open({ hostId, predefined: false, drivers: [globalDriver()] });

/** The claims bucket: read every claim, put one by hand. */
async function bucket(env: TestEnv) {
  const nc = await connect({ servers: env.nats.url });
  const kv = await new Kvm(nc).open(claimBucketOf(env.stream));
  return {
    async all(): Promise<Record<string, string>> {
      const out: Record<string, string> = {};
      for await (const k of await kv.keys(`${env.prefix}.>`)) {
        const e = await kv.get(k);
        if (e?.operation === "PUT" && e.value.length) {
          out[k] = e.json<{ objectId: string }>().objectId;
        }
      }
      return out;
    },
    async put(key: string, objectId: string, at = new Date()) {
      await kv.put(key, JSON.stringify({ objectId, host: "h1", at: at.toISOString() }));
    },
    async drop(key: string) {
      await kv.delete(key);
    },
    close: () => nc.close(),
  };
}

Deno.test("global claims are released when their object is gone, across stops and crashes (root, nats-server)", async (t) => {
  const env = await startEnv("gcl");
  const kv = await bucket(env);
  try {
    await t.step("a clean close right after the deletes leaves no claim behind", async () => {
      for (let i = 0; i < 5; i++) {
        const cnm = await open(env);
        await cnm.createNetwork({ name: "ov", driver: "gtest" });
        const ep = await cnm.createEndpoint("ov", { name: "a" });
        await cnm.deleteEndpoint(ep.id);
        await cnm.deleteNetwork("ov");
        await cnm.close();
        assert.deepEqual(await kv.all(), {}, `after close ${i + 1}`);
      }
    });

    await t.step("claims of objects the journal says are gone are released at start", async () => {
      const cnm = await open(env);
      const net = await cnm.createNetwork({
        name: "gone",
        driver: "gtest",
        ipam: { config: [{ subnet: "10.9.0.0/24" }] },
        options: { [VNI_OPTION]: "5000" },
      });
      const ep = await cnm.createEndpoint("gone", { name: "a", ipv4Address: "10.9.0.7" });
      const held = await kv.all();
      const keys = [
        claimKey.networkName(env.prefix, "gone"),
        claimKey.subnet(env.prefix, "10.9.0.0/24"),
        claimKey.vni(env.prefix, 5000),
        claimKey.address(env.prefix, net.id, "10.9.0.7"),
      ];
      assert.deepEqual(Object.keys(held).sort(), [...keys].sort());
      await cnm.deleteEndpoint(ep.id);
      await cnm.deleteNetwork("gone");
      await cnm.close();
      // As if the controller had died between the durable deletes and the releases.
      for (const k of keys.slice(0, 3)) await kv.put(k, net.id);
      await kv.put(keys[3], ep.id);
      const again = await open(env);
      try {
        assert.deepEqual([...again.recovery.claimsReleased].sort(), [...keys].sort());
        assert.deepEqual(await kv.all(), {});
        // Another host can take the name, the subnet, the VNI and the address now.
        const h2 = await open(env, "h2");
        const n2 = await h2.createNetwork({
          name: "gone",
          driver: "gtest",
          ipam: { config: [{ subnet: "10.9.0.0/24" }] },
          options: { [VNI_OPTION]: "5000" },
        });
        const e2 = await h2.createEndpoint(n2.id, { name: "b", ipv4Address: "10.9.0.7" });
        assert.equal(e2.ipv4Address, "10.9.0.7/24");
        await h2.deleteEndpoint(e2.id);
        await h2.deleteNetwork(n2.id);
        await h2.close();
      } finally {
        await again.close();
      }
    });

    await t.step(
      "a claim of an object never journaled is released at start after a minute, not before",
      async () => {
        const old = claimKey.vni(env.prefix, 6000);
        const young = claimKey.vni(env.prefix, 6001);
        await kv.put(old, newObjectId(), new Date(Date.now() - 61_000));
        const youngId = newObjectId();
        await kv.put(young, youngId);
        const cnm = await open(env);
        try {
          assert.deepEqual(cnm.recovery.claimsReleased, [old]);
          assert.deepEqual(await kv.all(), { [young]: youngId });
        } finally {
          await cnm.close();
        }
      },
    );

    await t.step(
      "an address or subnet a dead object's claim held is free here again once it is released",
      async () => {
        const cnm = await open(env);
        try {
          // The lowest free subnet, then a claim on it by an object that never reached the
          // journal (a create killed between its claims and its intent), or one deleted
          // whose release had not landed yet.
          const probe = await cnm.createNetwork({ name: "probe", driver: "gtest" });
          const subnet = probe.ipam.config[0].subnet;
          await cnm.deleteNetwork(probe.id);
          const subnetKey = claimKey.subnet(env.prefix, subnet);
          await kv.put(subnetKey, newObjectId());
          const other = await cnm.createNetwork({ name: "other", driver: "gtest" });
          assert.notEqual(other.ipam.config[0].subnet, subnet);
          await kv.drop(subnetKey);
          await cnm.deleteNetwork(other.id);
          const net = await cnm.createNetwork({ name: "held", driver: "gtest" });
          assert.equal(net.ipam.config[0].subnet, subnet, "the subnet is not kept taken here");

          const first = `${subnet.split(".").slice(0, 3).join(".")}.2`;
          const addressKey = claimKey.address(env.prefix, net.id, first);
          await kv.put(addressKey, newObjectId());
          const a = await cnm.createEndpoint(net.id, { name: "a" });
          assert.notEqual(a.ipv4Address?.split("/")[0], first);
          await kv.drop(addressKey);
          await cnm.deleteEndpoint(a.id);
          const b = await cnm.createEndpoint(net.id, { name: "b" });
          assert.equal(b.ipv4Address?.split("/")[0], first, "the address is not kept taken here");
          await cnm.deleteEndpoint(b.id);
          await cnm.deleteNetwork(net.id);
        } finally {
          await cnm.close();
        }
      },
    );
  } finally {
    await kv.close();
    await env.cleanup();
  }
});
