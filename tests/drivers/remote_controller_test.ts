import assert from "node:assert/strict";
import { DriverError, NotFoundError } from "../../mod.ts";
import { sh, startEnv } from "../_harness/env.ts";
import { startPlugin } from "./_plugin/start.ts";

const nsOf = (key: string) => key.split("/").pop()!;

const lifecycle = (methods: string[]) =>
  methods.filter((m) =>
    !/^(Plugin\.Activate|.*GetCapabilities|IpamDriver\.GetDefaultAddressSpaces)$/.test(m)
  );

Deno.test("remote plugin (root, nats-server) serves a network and its IPAM through the controller", async (t) => {
  const env = await startEnv("rpl");
  const dir = await Deno.makeTempDir({ prefix: "cnm-plugins-" });
  let plugin = await startPlugin({ dir, name: "tp", namespace: env.host.path });
  const options = {
    defaultBridge: false,
    pluginDirs: [dir],
    pluginOptions: { retryTimeout: 2000, callTimeout: 5000 },
  };
  try {
    const cnm = await env.open(options);
    await t.step("an unknown driver is refused before anything is journaled", async () => {
      await assert.rejects(
        () => cnm.createNetwork({ name: "x", driver: "nosuchplugin" }),
        (e: Error) => e instanceof NotFoundError && e.message === 'unknown driver "nosuchplugin"',
      );
    });
    const net = await cnm.createNetwork({ name: "rnet", driver: "tp", ipam: { driver: "tp" } });
    const sb = await cnm.createSandbox({ name: "a" });
    const ep = await cnm.createEndpoint("rnet", { name: "a" });
    await t.step("the plugin's IPAM assigns the pool, the gateway and the address", () => {
      assert.equal(net.state, "active");
      assert.deepEqual(net.ipam, {
        driver: "tp",
        config: [{ subnet: "10.200.0.0/24", gateway: "10.200.0.1" }],
      });
      assert.equal(ep.ipv4Address, "10.200.0.2/24");
    });
    await t.step("join moves the plugin's link into the sandbox as eth0, with routes", async () => {
      const joined = await cnm.join(ep.id, sb.id);
      assert.equal(joined.state, "joined");
      assert.equal(joined.gateway, "10.200.0.1");
      const addr =
        JSON.parse(await sh(["ip", "-n", nsOf(sb.key), "-j", "addr", "show", "eth0"]))[0];
      assert.ok(addr.addr_info.some((i: { local: string }) => i.local === "10.200.0.2"));
      const routes = await sh(["ip", "-n", nsOf(sb.key), "route"]);
      assert.match(routes, /^default via 10\.200\.0\.1 dev eth0/m);
      assert.match(routes, /^10\.201\.0\.0\/24 via 10\.200\.0\.254 dev eth0/m);
    });
    await cnm.close();
    // The plugin restarts too and loses its state (it asks for replay: RequiresRequestReplay).
    await plugin.stop();
    await Deno.remove(`${dir}/tp.sock`).catch(() => {});
    plugin = await startPlugin({ dir, name: "tp", namespace: env.host.path });
    const again = await env.open(options);
    await t.step(
      "a restart calls the plugin for no completed work, and replays IPAM to it",
      async () => {
        assert.equal(again.endpoint(ep.id)?.state, "joined");
        assert.deepEqual(lifecycle(await plugin.methods()), [
          "IpamDriver.RequestPool",
          "IpamDriver.RequestAddress",
          "IpamDriver.RequestAddress",
        ]);
        assert.deepEqual(again.recovery.warnings, []);
        const next = await again.createEndpoint("rnet", { name: "b" });
        assert.equal(next.ipv4Address, "10.200.0.3/24");
        await again.deleteEndpoint(next.id);
        await plugin.clearLog();
      },
    );
    {
      await t.step(
        "leave and delete go to the plugin with exactly the documented calls",
        async () => {
          await again.leave(ep.id, sb.id);
          await again.deleteEndpoint(ep.id);
          await again.deleteNetwork("rnet");
          assert.deepEqual(lifecycle(await plugin.methods()), [
            "NetworkDriver.RevokeExternalConnectivity",
            "NetworkDriver.Leave",
            "NetworkDriver.DeleteEndpoint",
            "IpamDriver.ReleaseAddress",
            "NetworkDriver.DeleteNetwork",
            "IpamDriver.ReleaseAddress",
            "IpamDriver.ReleasePool",
          ]);
          const reqs = await plugin.requests();
          const del = reqs.find((r) => r.method === "NetworkDriver.DeleteEndpoint")!;
          assert.deepEqual(del.body, { NetworkID: net.id, EndpointID: ep.id });
          const rel = reqs.find((r) => r.method === "IpamDriver.ReleaseAddress")!;
          assert.deepEqual(rel.body, {
            PoolID: "plugin-local/10.200.0.0/24",
            Address: "10.200.0.2",
          });
        },
      );
    }
  } finally {
    await plugin.stop();
    await env.cleanup();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("remote plugin (root, nats-server) a plugin error leaves a failed network with the plugin's message", async () => {
  const env = await startEnv("rpe");
  const dir = await Deno.makeTempDir({ prefix: "cnm-plugins-" });
  const plugin = await startPlugin({ dir, name: "tp", mode: "err", namespace: env.host.path });
  try {
    const cnm = await env.open({ defaultBridge: false, pluginDirs: [dir] });
    await assert.rejects(
      () => cnm.createNetwork({ name: "bad", driver: "tp" }),
      (e: Error) => /^remote: /.test(e.message),
    );
    const net = cnm.network("bad")!;
    assert.equal(net.state, "failed");
    assert.match(net.error!.message, /^remote: /);
  } finally {
    await plugin.stop();
    await env.cleanup();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("remote plugin (root, nats-server) chooses the MAC when none is given, and it is applied in the sandbox", async (t) => {
  const env = await startEnv("rmc");
  const dir = await Deno.makeTempDir({ prefix: "cnm-plugins-" });
  const plugin = await startPlugin({ dir, name: "tp", namespace: env.host.path });
  const options = { defaultBridge: false, pluginDirs: [dir] };
  try {
    const cnm = await env.open(options);
    await cnm.createNetwork({ name: "rnet", driver: "tp", ipam: { driver: "tp" } });
    const sb = await cnm.createSandbox({ name: "a" });
    const ep = await cnm.createEndpoint("rnet", { name: "a" });
    const reqs = await plugin.requests();
    const create = reqs.find((r) => r.method === "NetworkDriver.CreateEndpoint")!;
    await t.step("like libnetwork, CreateEndpoint carries no MAC the user did not give", () => {
      assert.equal((create.body.Interface as { MacAddress: string }).MacAddress, "");
    });
    await t.step(
      "the plugin's MAC is the endpoint's, and the sandbox's interface has it",
      async () => {
        assert.match(ep.macAddress ?? "", /^02:42:0a:c8:00:[0-9a-f]{2}$/);
        await cnm.join(ep.id, sb.id);
        const link =
          JSON.parse(await sh(["ip", "-n", nsOf(sb.key), "-j", "link", "show", "eth0"]))[0];
        assert.equal(link.address, ep.macAddress);
      },
    );
    await t.step("a MAC the user gives is sent and kept", async () => {
      const given = await cnm.createEndpoint("rnet", {
        name: "b",
        macAddress: "02:00:00:00:00:07",
      });
      assert.equal(given.macAddress, "02:00:00:00:00:07");
      const sent = (await plugin.requests()).filter((r) =>
        r.method === "NetworkDriver.CreateEndpoint"
      ).at(-1)!;
      assert.equal((sent.body.Interface as { MacAddress: string }).MacAddress, "02:00:00:00:00:07");
    });
    await t.step(
      "a multicast, broadcast or zero MAC from the plugin is refused, naming its answer",
      async () => {
        const refused = [
          ["01:00:5e:00:00:01", "a multicast address"],
          ["ff:ff:ff:ff:ff:ff", "the broadcast address"],
          ["00:00:00:00:00:00", "the zero address"],
        ];
        for (const [i, [mac, what]] of refused.entries()) {
          await cnm.createNetwork({
            name: `badmac${i}`,
            driver: "tp",
            ipam: { driver: "tp" },
            options: { "test.mac": mac },
          });
          await plugin.clearLog();
          const message = 'remote: NetworkDriver.CreateEndpoint: plugin "tp" answered an ' +
            `unusable Interface.MacAddress: ${mac} is ${what}`;
          await assert.rejects(
            () => cnm.createEndpoint(`badmac${i}`, { name: `m${i}` }),
            (e: Error) => e instanceof DriverError && e.message === message,
          );
          const failed = cnm.endpoints({ network: `badmac${i}` }).find((e) => e.name === `m${i}`)!;
          assert.equal(failed.state, "failed");
          assert.equal(failed.error?.message, message);
          assert.equal(failed.macAddress, undefined, "the plugin's answer is not the endpoint's");
          // Rolled back as libnetwork does: the plugin forgets the endpoint it made.
          assert.deepEqual(
            (await plugin.methods()).filter((m) => m.endsWith("Endpoint")),
            ["NetworkDriver.CreateEndpoint", "NetworkDriver.DeleteEndpoint"],
          );
        }
      },
    );
    await t.step("a restart keeps the plugin's MAC (it is journaled)", async () => {
      await cnm.close();
      const again = await env.open(options);
      assert.equal(again.endpoint(ep.id)?.macAddress, ep.macAddress);
    });
  } finally {
    await plugin.stop();
    await env.cleanup();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
