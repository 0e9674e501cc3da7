/**
 * A remote plugin's driver configuration (needs nats-server; do-nothing kernel): cnm's call
 * timeout and retry budget, journaled, applied to the plugin client at once and again after
 * a restart; nothing of it is sent to the plugin (its protocol has no configuration call).
 */
import assert from "node:assert/strict";
import { createController, DriverError } from "../../mod.ts";
import { startNats } from "../_harness/nats.ts";
import { fakeOptions } from "../cli/_fake_kernel.ts";
import { startPlugin } from "./_plugin/start.ts";

Deno.test("remote driver configuration (needs nats-server) bounds plugin calls, also after a restart", async (t) => {
  const nats = await startNats();
  const dir = await Deno.makeTempDir({ prefix: "cnm-rcfg-" });
  // A plugin that answers the handshake and then hangs on every call.
  const plugin = await startPlugin({ dir, name: "tp", mode: "slow" });
  const options = {
    ...fakeOptions(nats.url, "RCFG", "rcfg", dir),
    pluginDirs: [dir],
    pluginOptions: { retryTimeout: 1000, callTimeout: 20_000 },
  };
  try {
    let cnm = await createController(options);
    await t.step("the plugin's defaults are the controller's pluginOptions", async () => {
      const r = await cnm.configureDriver("tp", {});
      assert.deepEqual(r.config, { callTimeoutMs: 20_000, retryTimeoutMs: 1000 });
      assert.equal(r.journaled, false);
    });
    await t.step("a shorter call timeout reaches the next call at once", async () => {
      const r = await cnm.configureDriver("tp", { callTimeoutMs: 300 });
      assert.deepEqual(r.changed.callTimeoutMs, {
        from: null,
        to: 300,
        appliesTo: "all networks",
      });
      assert.deepEqual(r.warnings, []);
      const t0 = Date.now();
      await assert.rejects(
        cnm.createNetwork({ name: "slow", driver: "tp" }),
        (e: Error) =>
          e instanceof DriverError &&
          e.message ===
            'remote: NetworkDriver.CreateNetwork: plugin "tp" did not answer within 300 ms',
      );
      assert.ok(Date.now() - t0 < 5_000, `took ${Date.now() - t0} ms`);
      assert.deepEqual(cnm.network("slow")?.driverConfig, {
        callTimeoutMs: 300,
        retryTimeoutMs: 1000,
      });
    });
    await t.step("nothing of the configuration is sent to the plugin", async () => {
      const sent = (await plugin.requests()).map((r) => JSON.stringify(r.body));
      assert.ok(sent.every((b) => !b.includes("callTimeoutMs")), sent.join("\n"));
      assert.ok(!(await plugin.methods()).some((m) => /Config/i.test(m)));
    });
    await cnm.close();
    await t.step(
      "a restart resolves the plugin and applies its journaled configuration",
      async () => {
        cnm = await createController(options);
        const t0 = Date.now();
        await assert.rejects(
          cnm.createNetwork({ name: "slow2", driver: "tp" }),
          /did not answer within 300 ms/,
        );
        assert.ok(Date.now() - t0 < 5_000, `took ${Date.now() - t0} ms`);
        await cnm.close();
      },
    );
  } finally {
    await plugin.stop();
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
