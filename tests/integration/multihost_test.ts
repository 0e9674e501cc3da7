/**
 * The multi-host lab as phase 2 will use it (root, nats-server): each lab host runs a
 * controller of its own with the host's namespace as `kernel.hostNamespace` and the host's
 * name prefix, everything it makes lands in that host, and the hosts reach each other over the
 * underlay. (Separate streams: sharing one stream across hosts is phase 2.)
 */

import assert from "node:assert/strict";
import { createController } from "../../mod.ts";
import type { Controller } from "../../mod.ts";
import { sh } from "../_harness/command.ts";
import { createLab, ping } from "../_harness/multihost.ts";
import { startNats } from "../_harness/nats.ts";

Deno.test("multihost lab hosts one controller per host (root, nats-server)", async (t) => {
  const lab = await createLab({ hosts: 2, label: "mh" });
  const nats = await startNats();
  const stateDir = await Deno.makeTempDir({ prefix: `cnm-${lab.prefix}-` });
  const controllers: Controller[] = [];
  try {
    await t.step("the underlay connects the hosts, and only them", async () => {
      assert.ok(await ping(lab.hosts[0].name, "192.0.2.2"));
      assert.ok(await ping(lab.hosts[1].name, "192.0.2.1"));
      const routes = await sh(["ip", "-n", lab.hosts[0].name, "route"]);
      assert.doesNotMatch(routes, /default/, "no way out of the lab");
    });
    for (const h of lab.hosts) {
      controllers.push(
        await createController({
          nats: { servers: nats.url },
          stream: `T_${lab.prefix}_${h.index}`.toUpperCase(),
          prefix: `${lab.prefix}${h.index}`,
          hostId: `h${h.index}`,
          kernel: { hostNamespace: h.path },
          namePrefix: h.namePrefix,
          stateDir: `${stateDir}/h${h.index}`,
          defaultBridge: false,
        }),
      );
    }
    await t.step("what a controller makes lands in its host", async () => {
      for (const [i, cnm] of controllers.entries()) {
        const h = lab.hosts[i];
        const net = await cnm.createNetwork({
          name: "front",
          options: { "com.docker.network.bridge.name": "brfront" },
        });
        await cnm.createSandbox({ name: "web" });
        const ep = await cnm.createEndpoint(net.id, { name: "web" });
        const joined = await cnm.join(ep.id, "web");
        const links = JSON.parse(await sh(["ip", "-n", h.name, "-j", "link", "show", "brfront"]));
        assert.equal(links[0].ifname, "brfront");
        const sb = cnm.sandbox("web")!.key.split("/").pop()!;
        assert.ok(sb.startsWith(h.namePrefix), sb);
        assert.ok(joined.gateway, "a gateway");
        assert.ok(await ping(sb, joined.gateway));
      }
      const rootLinks = await sh(["ip", "-j", "link"]);
      assert.doesNotMatch(rootLinks, /"brfront"/, "nothing in the root namespace");
    });
  } finally {
    for (const c of controllers) await c.close();
    await nats.cleanup();
    await lab.cleanup();
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
  }
  assert.deepEqual(await lab.namespaces(), []);
});
