/**
 * The remote driver's error paths against a real plugin process: `Err`/`Error`, 404s, slow,
 * dead and late plugins, malformed JSON and wrong field types.
 */

import assert from "node:assert/strict";
import {
  createRemoteDriver,
  createRemoteIpamDriver,
  NotImplementedError,
} from "../../drivers/remote/mod.ts";
import { DriverError } from "../../src/errors.ts";
import { ep, FAST, net, NO_KERNEL, rejects, startPlugin, withPlugin } from "./_plugin/start.ts";

Deno.test("remote errors: Err and Error become `remote: …` DriverErrors", async () => {
  await withPlugin({ mode: "err" }, async (_plugin, dir) => {
    const driver = await createRemoteDriver("tp", { ...FAST, pluginDirs: [dir] });
    const ipam = await createRemoteIpamDriver("tp", { ...FAST, pluginDirs: [dir] });
    try {
      await rejects(
        driver.createNetwork(net(), NO_KERNEL),
        DriverError,
        /^remote: plugin says no to NetworkDriver\.CreateNetwork$/,
      );
      // IPAM's `Error`, here in an HTTP 500 answer.
      await rejects(
        ipam.requestPool({ addressSpace: "x", options: {}, v6: false }),
        DriverError,
        /^remote: plugin says no to IpamDriver\.RequestPool$/,
      );
    } finally {
      driver.close();
      ipam.close();
    }
  });
});

Deno.test("remote errors: 404 is fine for optional calls and an error for required ones", async () => {
  await withPlugin({ mode: "404" }, async (_plugin, dir) => {
    const driver = await createRemoteDriver("tp", { ...FAST, pluginDirs: [dir] });
    const ipam = await createRemoteIpamDriver("tp", { ...FAST, pluginDirs: [dir] });
    try {
      assert.deepEqual(await driver.endpointOperInfo(net(), ep("e1")), {});
      assert.deepEqual(await ipam.capabilities!(), {
        requiresMACAddress: false,
        requiresRequestReplay: false,
      });
      await rejects(
        driver.createNetwork(net(), NO_KERNEL),
        NotImplementedError,
        /^remote: NetworkDriver\.CreateNetwork: not implemented by plugin "tp"$/,
      );
      await rejects(
        driver.join(net(), ep("e1"), { id: "s", key: "/x", ifname: "eth0", labels: {} }, NO_KERNEL),
        NotImplementedError,
        /NetworkDriver\.Join: not implemented/,
      );
      await rejects(
        ipam.getDefaultAddressSpaces(),
        NotImplementedError,
        /IpamDriver\.GetDefaultAddressSpaces: not implemented/,
      );
    } finally {
      driver.close();
      ipam.close();
    }
  });
});

Deno.test("remote errors: a hanging plugin times out within the bound", async () => {
  await withPlugin({ mode: "slow" }, async (_plugin, dir) => {
    const driver = await createRemoteDriver("tp", { ...FAST, callTimeout: 300, pluginDirs: [dir] });
    try {
      const t0 = Date.now();
      await rejects(
        driver.createNetwork(net(), NO_KERNEL),
        DriverError,
        /^remote: NetworkDriver\.CreateNetwork: plugin "tp" did not answer within 300 ms$/,
      );
      assert.ok(Date.now() - t0 < 2_000, `took ${Date.now() - t0} ms`);
    } finally {
      driver.close();
    }
  });
});

Deno.test("remote errors: a dead plugin is retried with backoff, then a clear error", async () => {
  await withPlugin({ mode: "dead" }, async (plugin, dir) => {
    assert.ok((await Deno.stat(plugin.socket)).isSocket, "the dead plugin's socket stays behind");
    const t0 = Date.now();
    await rejects(
      createRemoteDriver("tp", { ...FAST, retryTimeout: 500, pluginDirs: [dir] }),
      DriverError,
      /^remote: Plugin\.Activate: plugin "tp" at unix:\/\/.*tp\.sock is unreachable \(([3-9]|\d\d+) attempt\(s\) in \d+ ms\): /,
    );
    const took = Date.now() - t0;
    assert.ok(took >= 500 && took < 2_000, `took ${took} ms`);
  });
});

Deno.test("remote client retries until a late plugin comes up", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cnm-remote-late-" });
  let plugin: Awaited<ReturnType<typeof startPlugin>> | undefined;
  try {
    await Deno.writeTextFile(`${dir}/tp.spec`, `unix://${dir}/tp.sock\n`);
    const pending = createRemoteDriver("tp", { ...FAST, retryTimeout: 10_000, pluginDirs: [dir] });
    await new Promise((r) => setTimeout(r, 300));
    plugin = await startPlugin({ dir });
    const driver = await pending;
    driver.close();
    assert.deepEqual(await plugin.methods(), ["Plugin.Activate", "NetworkDriver.GetCapabilities"]);
  } finally {
    await plugin?.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("remote errors: malformed JSON names the call", async () => {
  await withPlugin({ mode: "malformed" }, async (_plugin, dir) => {
    await rejects(
      createRemoteDriver("tp", { ...FAST, pluginDirs: [dir] }),
      DriverError,
      /^remote: NetworkDriver\.GetCapabilities: plugin "tp" answered malformed JSON \(HTTP 200\): \{"Scope": "local",$/,
    );
    const ipam = await createRemoteIpamDriver("tp", { ...FAST, pluginDirs: [dir] });
    try {
      await rejects(
        ipam.releasePool("p"),
        DriverError,
        /^remote: IpamDriver\.ReleasePool: plugin "tp" answered malformed JSON/,
      );
    } finally {
      ipam.close();
    }
  });
});

Deno.test("remote errors: wrong field types name the call and the field", async () => {
  await withPlugin({ mode: "badtypes" }, async (_plugin, dir) => {
    const driver = await createRemoteDriver("tp", { ...FAST, pluginDirs: [dir] });
    const ipam = await createRemoteIpamDriver("tp", { ...FAST, pluginDirs: [dir] });
    const sb = { id: "s", key: "/x", ifname: "eth0", labels: {} };
    const bad = "answered an invalid response: response";
    try {
      await rejects(
        driver.createEndpoint(net(), ep("e1"), NO_KERNEL),
        DriverError,
        new RegExp(
          `^remote: NetworkDriver\\.CreateEndpoint: plugin "tp" ${bad}\\.Interface\\.Address: `,
        ),
      );
      await rejects(
        driver.join(net(), ep("e1"), sb, NO_KERNEL),
        DriverError,
        new RegExp(`^remote: NetworkDriver\\.Join: plugin "tp" ${bad}\\.InterfaceName\\.SrcName: `),
      );
      await rejects(
        driver.createNetwork(net(), NO_KERNEL),
        DriverError,
        /CreateNetwork: .*response: /,
      );
      await rejects(
        ipam.getDefaultAddressSpaces(),
        DriverError,
        /GetDefaultAddressSpaces: .*response\.LocalDefaultAddressSpace: /,
      );
      await rejects(
        ipam.requestPool({ addressSpace: "x", options: {}, v6: false }),
        DriverError,
        /RequestPool: .*response\.Pool: expected an address with a prefix length/,
      );
      await rejects(
        ipam.requestAddress("p", { options: {} }),
        DriverError,
        /RequestAddress: .*response\.Address: expected an address with a prefix length/,
      );
    } finally {
      driver.close();
      ipam.close();
    }
  });
});
