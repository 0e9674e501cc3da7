/**
 * The remote driver against a real plugin process (tests/drivers/_plugin/plugin.ts) on a unix
 * socket: discovery, the exact requests of Docker's protocol, TLS, and (needs root) a join
 * end to end inside a throwaway host namespace. Error paths: remote_errors_test.ts.
 */

import assert from "node:assert/strict";
import type { EffectContext } from "../../drivers/driver.ts";
import {
  createPluginResolver,
  createRemoteDriver,
  createRemoteIpamDriver,
  discoverPlugin,
} from "../../drivers/remote/mod.ts";
import { DriverError, InvalidArgumentError } from "../../src/errors.ts";
import { createKernel } from "../../src/kernel/mod.ts";
import type { Kernel } from "../../src/kernel/types.ts";
import { createTestHost } from "../_harness/netns.ts";
import { makeTestCerts } from "../_harness/tls.ts";
import {
  ep,
  FAST,
  freePort,
  net,
  NO_KERNEL,
  rejects,
  startPlugin,
  withPlugin,
} from "./_plugin/start.ts";

Deno.test("discoverPlugin follows Docker's precedence: .sock, then .spec, then .json", async () => {
  const root = await Deno.makeTempDir({ prefix: "cnm-discovery-" });
  const [a, b] = [`${root}/a`, `${root}/b`];
  const listeners: Deno.Listener[] = [];
  try {
    await Deno.mkdir(`${b}/p`, { recursive: true });
    await Deno.mkdir(`${a}/p`, { recursive: true });
    await Deno.writeTextFile(
      `${a}/p.json`,
      JSON.stringify({ Name: "p", Addr: "tcp://127.0.0.1:9" }),
    );
    await Deno.writeTextFile(`${a}/p/p.spec`, "unix:///run/p-nested.sock\n");
    await Deno.writeTextFile(`${a}/p.sock`, "not a socket"); // a plain file is not a socket
    listeners.push(Deno.listen({ transport: "unix", path: `${b}/p/p.sock` }));
    const dirs = { pluginDirs: [a, b] };

    // A socket anywhere beats spec files in earlier directories.
    assert.deepEqual(await discoverPlugin("p", dirs), {
      name: "p",
      addr: `unix://${b}/p/p.sock`,
      source: `${b}/p/p.sock`,
    });
    listeners.pop()!.close(); // Deno unlinks the socket file on close
    // Then `.spec` (here `<name>/<name>.spec`) before `.json` in the same directory.
    assert.equal((await discoverPlugin("p", dirs))?.addr, "unix:///run/p-nested.sock");
    await Deno.remove(`${a}/p/p.spec`);
    assert.equal((await discoverPlugin("p", dirs))?.addr, "tcp://127.0.0.1:9");
    // `.json` with TLS settings reads the PEM files.
    await Deno.writeTextFile(`${root}/ca.pem`, "CA PEM");
    await Deno.writeTextFile(
      `${a}/p.json`,
      JSON.stringify({
        Name: "p",
        Addr: "https://127.0.0.1:9",
        TLSConfig: { InsecureSkipVerify: false, CAFile: `${root}/ca.pem` },
      }),
    );
    assert.deepEqual((await discoverPlugin("p", dirs))?.tls, {
      insecureSkipVerify: false,
      caCert: "CA PEM",
    });
    // Nothing found: undefined (the resolver reports an unknown driver).
    assert.equal(await discoverPlugin("q", dirs), undefined);
    await Deno.writeTextFile(`${b}/bad.spec`, "/no/scheme.sock");
    await rejects(
      discoverPlugin("bad", dirs),
      DriverError,
      /bad\.spec: address "\/no\/scheme\.sock" needs unix:\/\//,
    );
    await rejects(
      discoverPlugin("../etc", dirs),
      InvalidArgumentError,
      /invalid plugin name "\.\.\/etc"/,
    );
  } finally {
    for (const l of listeners) l.close();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("remote driver sends exactly the documented NetworkDriver requests", async () => {
  await withPlugin({}, async (plugin, dir) => {
    const driver = await createRemoteDriver("tp", { ...FAST, pluginDirs: [dir] });
    try {
      assert.deepEqual(driver.capabilities(), { dataScope: "local", connectivityScope: "global" });
      assert.deepEqual(await driver.createNetwork(net(), NO_KERNEL), {});
      // The plugin fills in only what was empty: here the MAC.
      assert.deepEqual(
        await driver.createEndpoint(net(), ep("e1", { ipv4Address: "10.200.0.5/24" }), NO_KERNEL),
        { macAddress: "02:42:0a:c8:00:31" },
      );
      assert.deepEqual(await driver.createEndpoint(net(), ep("e2"), NO_KERNEL), {
        ipv4Address: "10.200.0.50/24",
        macAddress: "02:42:0a:c8:00:32",
      });
      assert.deepEqual(await driver.endpointOperInfo(net(), ep("e1")), { plugin: "test" });
      await driver.deleteEndpoint(net(), ep("e1"), NO_KERNEL);
      await driver.deleteNetwork(net(), NO_KERNEL);
      const reqs = await plugin.requests();
      assert.ok(reqs.every((r) => r.accept === "application/vnd.docker.plugins.v1.2+json"));
      const ids = { NetworkID: "n1", EndpointID: "e1" };
      assert.deepEqual(reqs.map((r) => [r.method, r.body]), [
        ["Plugin.Activate", {}],
        ["NetworkDriver.GetCapabilities", {}],
        ["NetworkDriver.CreateNetwork", {
          NetworkID: "n1",
          Options: {
            "com.docker.network.generic": { "test.k": "v" },
            "com.docker.network.enable_ipv6": false,
          },
          IPv4Data: [{
            AddressSpace: "plugin-local",
            Pool: "10.200.0.0/24",
            Gateway: "10.200.0.1/24",
            AuxAddresses: { r: "10.200.0.254/24" },
          }],
          IPv6Data: [],
        }],
        ["NetworkDriver.CreateEndpoint", {
          ...ids,
          Options: { "com.docker.network.endpoint.exposedports": "" },
          Interface: { Address: "10.200.0.5/24", AddressIPv6: "", MacAddress: "" },
        }],
        ["NetworkDriver.CreateEndpoint", {
          NetworkID: "n1",
          EndpointID: "e2",
          Options: { "com.docker.network.endpoint.exposedports": "" },
          Interface: { Address: "", AddressIPv6: "", MacAddress: "" },
        }],
        ["NetworkDriver.EndpointOperInfo", ids],
        ["NetworkDriver.DeleteEndpoint", ids],
        ["NetworkDriver.DeleteNetwork", { NetworkID: "n1" }],
      ]);
    } finally {
      driver.close();
    }
  });
});

Deno.test("remote IPAM driver sends exactly the documented IpamDriver requests", async () => {
  await withPlugin({}, async (plugin, dir) => {
    const ipam = await createRemoteIpamDriver("tp", { ...FAST, pluginDirs: [dir] });
    try {
      assert.deepEqual(await ipam.capabilities!(), {
        requiresMACAddress: false,
        requiresRequestReplay: true,
      });
      assert.deepEqual(await ipam.getDefaultAddressSpaces(), {
        local: "plugin-local",
        global: "plugin-global",
      });
      const pool = await ipam.requestPool({ addressSpace: "plugin-local", options: {}, v6: false });
      assert.deepEqual(pool, {
        poolId: "plugin-local/10.200.0.0/24",
        pool: "10.200.0.0/24",
        meta: { "com.docker.network.gateway": "10.200.0.1/24" },
      });
      const gw = { RequestAddressType: "com.docker.network.gateway" };
      assert.equal(await ipam.requestAddress(pool.poolId, { options: gw }), "10.200.0.1/24");
      assert.equal(await ipam.requestAddress(pool.poolId, { options: {} }), "10.200.0.2/24");
      assert.equal(
        await ipam.requestAddress(pool.poolId, { address: "10.200.0.7", options: {} }),
        "10.200.0.7/24",
      );
      await rejects(
        ipam.requestAddress(pool.poolId, { address: "10.200.0.7", options: {} }),
        DriverError,
        /^remote: Address already in use$/,
      );
      await ipam.releaseAddress(pool.poolId, "10.200.0.7/24");
      await ipam.releasePool(pool.poolId);
      const id = "plugin-local/10.200.0.0/24";
      assert.deepEqual((await plugin.requests()).map((r) => [r.method, r.body]), [
        ["Plugin.Activate", {}],
        ["IpamDriver.GetCapabilities", {}],
        ["IpamDriver.GetDefaultAddressSpaces", {}],
        ["IpamDriver.RequestPool", {
          AddressSpace: "plugin-local",
          Pool: "",
          SubPool: "",
          Options: {},
          V6: false,
        }],
        ["IpamDriver.RequestAddress", { PoolID: id, Address: "", Options: gw }],
        ["IpamDriver.RequestAddress", { PoolID: id, Address: "", Options: {} }],
        ["IpamDriver.RequestAddress", { PoolID: id, Address: "10.200.0.7", Options: {} }],
        ["IpamDriver.RequestAddress", { PoolID: id, Address: "10.200.0.7", Options: {} }],
        ["IpamDriver.ReleaseAddress", { PoolID: id, Address: "10.200.0.7" }],
        ["IpamDriver.ReleasePool", { PoolID: id }],
      ]);
    } finally {
      ipam.close();
    }
  });
});

Deno.test("createPluginResolver discovers lazily, activates once and caches", async () => {
  await withPlugin({ implements: ["NetworkDriver"] }, async (plugin, dir) => {
    const plugins = createPluginResolver({ ...FAST, pluginDirs: [dir] });
    try {
      assert.deepEqual(await plugin.methods(), []); // nothing happens before first use
      const d1 = await plugins.driver("tp");
      assert.equal(d1?.name, "tp");
      assert.equal(await plugins.driver("tp"), d1);
      assert.equal(await plugins.ipam("tp"), undefined); // does not implement IpamDriver
      assert.equal(await plugins.driver("absent"), undefined);
      assert.deepEqual(await plugin.methods(), [
        "Plugin.Activate",
        "NetworkDriver.GetCapabilities",
      ]);
    } finally {
      plugins.close();
    }
  });
});

Deno.test("remote client speaks TLS to an https:// plugin from a .json spec", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cnm-remote-tls-" });
  const cleanups: (() => Promise<void>)[] = [];
  let plugin: Awaited<ReturnType<typeof startPlugin>> | undefined;
  try {
    const certs = await makeTestCerts();
    cleanups.push(certs.cleanup);
    const port = freePort();
    plugin = await startPlugin({ dir, port, cert: certs.serverCert, key: certs.serverKey });
    const spec = (tls: Record<string, unknown>) =>
      Deno.writeTextFile(
        `${dir}/tp.json`,
        JSON.stringify({ Name: "tp", Addr: `https://127.0.0.1:${port}`, TLSConfig: tls }),
      );
    await spec({ InsecureSkipVerify: false, CAFile: certs.ca });
    const driver = await createRemoteDriver("tp", { ...FAST, pluginDirs: [dir] });
    driver.close();
    await spec({ InsecureSkipVerify: false }); // the system's CAs do not know ours
    await rejects(
      createRemoteDriver("tp", { ...FAST, pluginDirs: [dir] }),
      DriverError,
      /^remote: Plugin\.Activate: plugin "tp" at https:\/\/127\.0\.0\.1:\d+ is unreachable \(1 attempt\(s\)/,
    );
  } finally {
    await plugin?.stop();
    for (const c of cleanups) await c();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("remote driver join moves the plugin's link into the sandbox (needs root, netns)", async () => {
  const host = await createTestHost("rmt");
  const dir = await Deno.makeTempDir({ prefix: "cnm-remote-join-" });
  let plugin: Awaited<ReturnType<typeof startPlugin>> | undefined;
  let kernel: Kernel | undefined;
  let driver: Awaited<ReturnType<typeof createRemoteDriver>> | undefined;
  try {
    kernel = await createKernel({ hostNamespace: host.path });
    const ctx: EffectContext = { effectId: "e1", kernel, prefix: host.prefix };
    plugin = await startPlugin({ dir, namespace: host.path });
    driver = await createRemoteDriver("tp", { ...FAST, pluginDirs: [dir] });
    const key = await kernel.ensureNetns(`${host.prefix}-sb1`);
    const sandbox = { id: "sb1", key, ifname: "eth0", labels: { "com.example.app": "web" } };
    const n1 = net("n1");
    await driver.createNetwork(n1, ctx);
    const e1 = ep("e1aaaaaaaaaa", { ipv4Address: "10.200.0.5/24" });
    e1.facts = (await driver.createEndpoint(n1, e1, ctx)) ?? {};
    await plugin.clearLog();

    const joined = await driver.join(n1, e1, sandbox, ctx);
    assert.deepEqual(joined, {
      gateway: "10.200.0.1",
      staticRoutes: [
        { destination: "10.201.0.0/24", routeType: 0, nextHop: "10.200.0.254" },
        { destination: "10.202.0.0/24", routeType: 1 },
      ],
      disableGatewayService: false,
      srcName: "pbe1aaaaaaaa",
      ifname: "eth0",
    });
    const isLinkLocal = (a: string) => a.startsWith("fe80:");
    const inside = async () => {
      const links = (await kernel!.listLinks(key)).filter((l) => l.name !== "lo");
      return {
        links: links.map((l) => [l.name, l.mac, l.up]),
        addrs: (await kernel!.listAddrs(key)).filter((a) =>
          a.link !== "lo" && !isLinkLocal(a.address)
        )
          .map((a) => `${a.link} ${a.address}`),
        routes: (await kernel!.listRoutes(key)).filter((r) => !isLinkLocal(r.dst)).map((r) =>
          `${r.dst}${r.via ? ` via ${r.via}` : ""} dev ${r.dev}`
        ).sort(),
      };
    };
    const expected = {
      links: [["eth0", e1.facts.macAddress, true]],
      addrs: ["eth0 10.200.0.5/24"],
      routes: [
        "10.200.0.0/24 dev eth0",
        "10.201.0.0/24 via 10.200.0.254 dev eth0",
        "10.202.0.0/24 dev eth0",
        "default via 10.200.0.1 dev eth0",
      ],
    };
    assert.deepEqual(await inside(), expected);
    const hostLinks = async () => (await kernel!.listLinks()).map((l) => l.name).sort();
    assert.deepEqual(await hostLinks(), ["lo", "pae1aaaaaaaa"]);

    // A re-run (crash in `joining`) calls the plugin again and finds the link already moved.
    await driver.join(n1, e1, sandbox, ctx);
    assert.deepEqual(await inside(), expected);

    await driver.leave(n1, e1, sandbox, ctx);
    assert.deepEqual((await inside()).links, []);
    assert.deepEqual(await hostLinks(), ["lo", "pae1aaaaaaaa", "pbe1aaaaaaaa"]);
    await driver.leave(n1, e1, sandbox, ctx); // leave is an ensure too
    await driver.deleteEndpoint(n1, e1, ctx);
    assert.deepEqual(await hostLinks(), ["lo"]);

    // External connectivity is the gateway's, told by the controller (remote_ports_test.ts):
    // join and leave alone send none of it.
    const ids = { NetworkID: "n1", EndpointID: "e1aaaaaaaaaa" };
    const labels = { "com.example.app": "web" };
    const join = ["NetworkDriver.Join", { ...ids, SandboxKey: key, Options: labels }];
    const leave = ["NetworkDriver.Leave", ids];
    assert.deepEqual((await plugin.requests()).map((r) => [r.method, r.body]), [
      join,
      join,
      leave,
      leave,
      ["NetworkDriver.DeleteEndpoint", ids],
    ]);

    // DstName wins over the controller's choice.
    const n2 = net("n2", { "test.dstname": "ext0" });
    await driver.createNetwork(n2, ctx);
    const e2 = ep("e2bbbbbbbbbb", { networkId: "n2", ipv4Address: "10.200.0.6/24" });
    await driver.createEndpoint(n2, e2, ctx);
    assert.equal((await driver.join(n2, e2, sandbox, ctx))?.ifname, "ext0");
    // DstPrefix + lowest free index when the controller's name does not fit the prefix.
    const e3 = ep("e3cccccccccc", {
      ipv4Address: "10.200.0.7/24",
      macAddress: "02:42:0a:c8:00:07",
    });
    await driver.createEndpoint(n1, e3, ctx);
    const e4 = ep("e4dddddddddd", { ipv4Address: "10.200.0.8/24" });
    await driver.createEndpoint(n1, e4, ctx);
    assert.equal((await driver.join(n1, e3, { ...sandbox, ifname: "" }, ctx))?.ifname, "eth0");
    assert.equal((await driver.join(n1, e4, { ...sandbox, ifname: "eth0" }, ctx))?.ifname, "eth1");
    const links = await kernel.listLinks(key);
    assert.equal(links.find((l) => l.name === "eth0")?.mac, "02:42:0a:c8:00:07");
    for (const [n, e] of [[n2, e2], [n1, e3], [n1, e4]] as const) {
      await driver.leave(n, e, sandbox, ctx);
      await driver.deleteEndpoint(n, e, ctx);
    }
    assert.deepEqual(await hostLinks(), ["lo"]);

    // A join whose kernel work fails is rolled back: the plugin hears Leave.
    await plugin.clearLog();
    const gone = { ...sandbox, key: `/var/run/netns/${host.prefix}-nosuch` };
    await assert.rejects(driver.join(n1, e1, gone, ctx), DriverError);
    assert.deepEqual(await plugin.methods(), ["NetworkDriver.Join", "NetworkDriver.Leave"]);
    await driver.deleteEndpoint(n1, e1, ctx);
  } finally {
    driver?.close();
    await plugin?.stop();
    await kernel?.close();
    await host.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
