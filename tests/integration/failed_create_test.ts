/**
 * A failed create keeps no name (issue 10, item 6): the failed object stays in the history
 * and in the list calls, but a retry under the same name works, as in libnetwork (which rolls
 * back). Fake kernel and a driver that fails on demand: needs nats-server, not root.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createController, DriverError } from "../../mod.ts";
import type { Driver } from "../../drivers/driver.ts";
import { startNats } from "../_harness/nats.ts";
import { fakeKernel, fakeOptions } from "../cli/_fake_kernel.ts";

/** A driver whose creates fail while `failing` says so. */
function flakyDriver(failing: { network: boolean; endpoint: boolean }): Driver {
  const fail = (what: string) => Promise.reject(new DriverError(`flaky: ${what} refused`));
  return {
    name: "flaky",
    capabilities: () => ({ dataScope: "local", connectivityScope: "local" }),
    createNetwork: () => failing.network ? fail("network") : Promise.resolve({}),
    deleteNetwork: () => Promise.resolve(),
    createEndpoint: () => failing.endpoint ? fail("endpoint") : Promise.resolve({}),
    deleteEndpoint: () => Promise.resolve(),
    join: () => Promise.resolve({}),
    leave: () => Promise.resolve(),
  };
}

Deno.test("controller (nats-server) a failed create keeps no name: the retry works, the failure stays in history", async (t) => {
  const nats = await startNats();
  const dir = await Deno.makeTempDir();
  const failing = { network: true, endpoint: true };
  const kernel = fakeKernel();
  kernel.netnsExists = (path) => Promise.resolve(!path.startsWith("/nope"));
  const cnm = await createController({
    ...fakeOptions(nats.url, "FC", "fc", dir),
    kernel,
    drivers: [flakyDriver(failing)],
  });
  try {
    await t.step("network: the retry under the failed one's name gets its pool too", async () => {
      await assert.rejects(
        () => cnm.createNetwork({ name: "web", driver: "flaky" }),
        (e: Error) => e instanceof DriverError && e.message === "flaky: network refused",
      );
      const failed = cnm.network("web")!;
      assert.equal(failed.state, "failed");
      failing.network = false;
      const net = await cnm.createNetwork({ name: "web", driver: "flaky" });
      assert.equal(net.state, "active");
      assert.deepEqual(net.ipam.config, failed.ipam.config);
      assert.equal(cnm.network("web")?.id, net.id, "the name finds the live network");
      assert.equal(cnm.network(failed.id)?.state, "failed", "the id still finds the failure");
      const listed = cnm.networks().filter((n) => n.name === "web").map((n) => n.state);
      assert.deepEqual(listed.sort(), ["active", "failed"]);
    });
    await t.step("endpoint: the retry under the failed one's name works", async () => {
      await assert.rejects(() => cnm.createEndpoint("web", { name: "e1" }));
      failing.endpoint = false;
      const ep = await cnm.createEndpoint("web", { name: "e1" });
      assert.equal(ep.state, "created");
      assert.deepEqual(cnm.endpoints({ network: "web" }).map((e) => e.state).sort(), [
        "created",
        "failed",
      ]);
    });
    await t.step("sandbox: the retry under the failed one's name works", async () => {
      await assert.rejects(
        () => cnm.createSandbox({ name: "fk", key: "/nope/ns" }),
        (e: Error) => e.message === "sandbox key /nope/ns is not a network namespace",
      );
      const failed = cnm.sandbox("fk")!;
      assert.equal(failed.state, "failed");
      const sb = await cnm.createSandbox({ name: "fk" });
      assert.equal(sb.state, "ready");
      assert.equal(cnm.sandbox("fk")?.id, sb.id);
      await cnm.deleteSandbox(failed.id);
      assert.equal(cnm.sandbox("fk")?.id, sb.id);
    });
    await t.step(
      "a failed network is deleted by id; its name keeps finding the live one",
      async () => {
        const failed = cnm.networks().find((n) => n.name === "web" && n.state === "failed")!;
        await cnm.deleteNetwork(failed.id);
        assert.deepEqual(cnm.networks().filter((n) => n.name === "web").map((n) => n.state), [
          "active",
        ]);
      },
    );
  } finally {
    await cnm.close();
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
