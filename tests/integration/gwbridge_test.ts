/**
 * The gateway bridge follows a sandbox's networks through every way an endpoint leaves it
 * (root, nats-server): a join of an overlay-only sandbox attaches `cnm_gwbridge`, and a
 * leave — or a forced delete of the joined endpoint, which is a leave too (libnetwork's
 * `sbLeave`) — of its last overlay endpoint detaches it. The forced delete kept it attached
 * for good on a host that never restarted; and a gwbridge endpoint that is not joined (a
 * crash between its steps) was not found again, so it leaked (both found by the crash test,
 * docs/crash.md; the crash itself is in tests/crash/overlay_crash_test.ts).
 */

import assert from "node:assert/strict";
import { createController } from "../../mod.ts";
import type { Controller, SandboxInfo } from "../../mod.ts";
import { sh } from "../_harness/command.ts";
import { createLab } from "../_harness/multihost.ts";
import { startNats } from "../_harness/nats.ts";

const nsOf = (sb: SandboxInfo) => sb.key.slice(sb.key.lastIndexOf("/") + 1);

Deno.test("gwbridge is detached by a leave and by a forced delete of the last overlay endpoint (root, nats-server)", async (t) => {
  const lab = await createLab({ hosts: 1, label: "gwb" });
  const nats = await startNats();
  const stateDir = await Deno.makeTempDir({ prefix: `cnm-${lab.prefix}-` });
  const h = lab.hosts[0];
  let cnm: Controller | undefined;
  try {
    cnm = await createController({
      nats: { servers: nats.url },
      stream: `T_${lab.prefix}`.toUpperCase(),
      prefix: lab.prefix,
      hostId: "h1",
      kernel: { hostNamespace: h.path },
      advertiseAddress: h.address,
      namePrefix: h.namePrefix,
      stateDir,
      defaultBridge: false,
    });
    const c = cnm;
    await c.createNetwork({ name: "ov", driver: "overlay" });
    const gateways = (sb: SandboxInfo) =>
      c.endpoints({ network: "cnm_gwbridge" }).filter((e) => e.sandboxId === sb.id);
    const defaultRoutes = async (sb: SandboxInfo) =>
      JSON.parse(await sh(["ip", "-n", nsOf(sb), "-j", "route", "show", "default"]) || "[]");

    for (const how of ["leave", "forced delete"] as const) {
      await t.step(`${how} of the last overlay endpoint`, async () => {
        const sb = await c.createSandbox({ name: `s-${how.replace(" ", "-")}` });
        const ep = await c.createEndpoint("ov", { name: `e-${how.replace(" ", "-")}` });
        await c.join(ep.id, sb.id);
        assert.equal(gateways(sb).length, 1, "attached after the join");
        assert.equal(gateways(sb)[0].state, "joined");
        assert.equal((await defaultRoutes(sb)).length, 1);
        if (how === "leave") await c.leave(ep.id, sb.id);
        else await c.deleteEndpoint(ep.id, { force: true });
        assert.deepEqual(gateways(sb), [], "detached");
        assert.deepEqual(await defaultRoutes(sb), []);
        assert.deepEqual((await c.reconcile({ dryRun: true })).findings, []);
        await c.deleteSandbox(sb.id);
      });
    }
    await t.step(
      "a gwbridge endpoint that is not joined is found by its name: joined again while needed, deleted after",
      async () => {
        const sb = await c.createSandbox({ name: "s-left" });
        const ep = await c.createEndpoint("ov", { name: "e-left" });
        await c.join(ep.id, sb.id);
        const [gw] = gateways(sb);
        // Left by hand (as a crash between two steps leaves it): the sandbox still needs it.
        await c.leave(gw.id, sb.id);
        assert.equal(c.endpoint(gw.id)?.state, "joined", "joined again");
        assert.equal((await defaultRoutes(sb)).length, 1);
        await c.leave(ep.id, sb.id);
        assert.equal(c.endpoint(gw.id), undefined, "deleted with the last overlay endpoint");
        assert.deepEqual(await defaultRoutes(sb), []);
        await c.deleteSandbox(sb.id);
      },
    );
  } finally {
    await cnm?.close();
    await nats.cleanup();
    await lab.cleanup();
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
  }
  assert.deepEqual(await lab.namespaces(), []);
});
