/**
 * Kernel access against the real kernel (needs root): every test runs in a throwaway host
 * namespace with a per-run prefix and deletes every namespace of that prefix afterwards.
 */

import assert from "node:assert/strict";
import { DriverError, InvalidArgumentError } from "../../src/errors.ts";
import { createKernel, type Kernel, type VethSpec } from "../../src/kernel/mod.ts";
import { createTestHost, listPrefixed, requireRoot, type TestHost } from "../_harness/netns.ts";

async function sh(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

/** The name of a namespace given by path (`ip -n` wants names). */
function base(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** `ip -n NS -j addr` as [ifname, "addr/len"] pairs: an independent view of the kernel. */
async function ipAddrs(ns: string): Promise<string[]> {
  const ifaces = JSON.parse(await sh("ip", ["-n", base(ns), "-j", "addr"])) as {
    ifname: string;
    addr_info: { local: string; prefixlen: number }[];
  }[];
  return ifaces.flatMap((i) => i.addr_info.map((a) => `${i.ifname} ${a.local}/${a.prefixlen}`));
}

async function ipLink(ns: string, dev: string): Promise<Record<string, any>> {
  return JSON.parse(await sh("ip", ["-n", base(ns), "-j", "-d", "link", "show", dev]))[0];
}

/** Runs `fn` with a fresh host namespace and a kernel bound to it; always cleans up. */
async function withHost(fn: (k: Kernel, host: TestHost) => Promise<void>): Promise<void> {
  requireRoot();
  const host = await createTestHost();
  let kernel: Kernel | undefined;
  try {
    kernel = await createKernel({ hostNamespace: host.path });
    await fn(kernel, host);
  } finally {
    await kernel?.close();
    await host.cleanup();
    await host.cleanup(); // safe to call twice
    assert.deepEqual(await listPrefixed(host.prefix), [], "namespaces left behind");
  }
}

function vethSpec(host: TestHost, i: number, netns: string): VethSpec {
  return {
    hostName: `${host.prefix}v${i}`,
    master: "br0",
    mtu: 1450,
    netns,
    peerName: "eth0",
    peerMac: `02:42:0a:58:00:0${i}`,
    addresses: [`10.88.0.${i}/24`],
    routes: [{ dst: "default", via: "10.88.0.1" }],
    alias: `ep${i}`,
  };
}

Deno.test("kernel ensureNetns and deleteNetns are idempotent (root)", async (t) => {
  await withHost(async (k, host) => {
    const name = `${host.prefix}-sb`;
    await t.step("ensureNetns twice returns the path with lo up", async () => {
      const path = await k.ensureNetns(name);
      assert.equal(path, `/var/run/netns/${name}`);
      assert.equal(await k.ensureNetns(name), path);
      assert.equal(await k.netnsExists(path), true);
      const lo = (await k.listLinks(path)).find((l) => l.name === "lo");
      assert.equal(lo?.up, true);
      assert.deepEqual(await k.listNetns(host.prefix), [name, host.name].sort());
    });
    await t.step("deleteNetns twice leaves nothing", async () => {
      await k.deleteNetns(name);
      await k.deleteNetns(name);
      assert.equal(await k.netnsExists(`/var/run/netns/${name}`), false);
      assert.deepEqual(await k.listNetns(host.prefix), [host.name]);
    });
    await t.step("a bad name is refused before anything runs", async () => {
      await assert.rejects(k.ensureNetns("../etc"), InvalidArgumentError);
    });
  });
});

Deno.test("kernel ensureBridge twice keeps one address (root)", async () => {
  await withHost(async (k, host) => {
    const spec = { name: "br0", addresses: ["10.88.0.1/24", "fd88::1/64"], alias: "cnm:n1" };
    await k.ensureBridge(spec);
    await k.ensureBridge(spec);
    const br = (await k.listLinks()).find((l) => l.name === "br0");
    assert.equal(br?.kind, "bridge");
    assert.equal(br?.up, true);
    assert.equal(br?.alias, "cnm:n1");
    const mine = (await ipAddrs(host.name)).filter((a) => !a.includes("fe80"));
    assert.deepEqual(
      mine.sort(),
      ["br0 10.88.0.1/24", "br0 fd88::1/64", "lo 127.0.0.1/8", "lo ::1/128"].sort(),
    );
    // A bridge set down and stripped of an address is repaired.
    await sh("ip", ["-n", host.name, "addr", "del", "10.88.0.1/24", "dev", "br0"]);
    await sh("ip", ["-n", host.name, "link", "set", "br0", "down"]);
    await k.ensureBridge(spec);
    assert.ok((await ipAddrs(host.name)).includes("br0 10.88.0.1/24"));
    assert.ok((await ipLink(host.name, "br0")).flags.includes("UP"));
  });
});

Deno.test("kernel ensureVeth attaches a sandbox (root)", async (t) => {
  await withHost(async (k, host) => {
    await k.ensureBridge({ name: "br0", addresses: ["10.88.0.1/24"] });
    const sb = await k.ensureNetns(`${host.prefix}-c1`);
    const spec = vethSpec(host, 2, sb);
    await k.ensureVeth(spec);

    await t.step("the module reports the pair, address and route", async () => {
      const hostEnd = (await k.listLinks()).find((l) => l.name === spec.hostName);
      assert.deepEqual(
        { kind: hostEnd?.kind, master: hostEnd?.master, up: hostEnd?.up, mtu: hostEnd?.mtu },
        { kind: "veth", master: "br0", up: true, mtu: 1450 },
      );
      assert.equal(hostEnd?.alias, "ep2");
      const peer = (await k.listLinks(sb)).find((l) => l.name === "eth0");
      assert.deepEqual(
        { kind: peer?.kind, mac: peer?.mac, up: peer?.up, mtu: peer?.mtu },
        { kind: "veth", mac: "02:42:0a:58:00:02", up: true, mtu: 1450 },
      );
      assert.ok(
        (await k.listAddrs(sb)).some((a) => a.link === "eth0" && a.address === "10.88.0.2/24"),
      );
      assert.ok(
        (await k.listRoutes(sb)).some((r) =>
          r.dst === "default" && r.via === "10.88.0.1" && r.dev === "eth0"
        ),
      );
    });

    await t.step("iproute2 sees the same", async () => {
      const eth0 = await ipLink(base(sb), "eth0");
      assert.equal(eth0.address, "02:42:0a:58:00:02");
      assert.equal(eth0.mtu, 1450);
      assert.equal(eth0.operstate, "UP");
      assert.ok((await ipAddrs(base(sb))).includes("eth0 10.88.0.2/24"));
      const routes = JSON.parse(await sh("ip", ["-n", base(sb), "-j", "route"]));
      assert.ok(routes.some((r: any) => r.dst === "default" && r.gateway === "10.88.0.1"));
      const hostEnd = await ipLink(host.name, spec.hostName);
      assert.equal(hostEnd.master, "br0");
      assert.equal(hostEnd.operstate, "UP");
    });

    await t.step("re-running ensureVeth is a no-op", async () => {
      const before = await ipLink(host.name, spec.hostName);
      await k.ensureVeth(spec);
      const after = await ipLink(host.name, spec.hostName);
      assert.equal(after.ifindex, before.ifindex);
      assert.equal((await ipAddrs(base(sb))).filter((a) => a.startsWith("eth0 10.")).length, 1);
      const defaults = JSON.parse(
        await sh("ip", ["-n", base(sb), "-j", "route", "show", "default"]),
      );
      assert.equal(defaults.length, 1);
    });

    await t.step("deleteLink is idempotent and takes the peer with it", async () => {
      await k.deleteLink(spec.hostName);
      await k.deleteLink(spec.hostName);
      assert.equal((await k.listLinks()).some((l) => l.name === spec.hostName), false);
      assert.equal((await k.listLinks(sb)).some((l) => l.name === "eth0"), false);
    });
  });
});

Deno.test("kernel ensureVeth repairs partial state (root)", async (t) => {
  await withHost(async (k, host) => {
    await k.ensureBridge({ name: "br0", addresses: ["10.88.0.1/24"] });
    const sb = await k.ensureNetns(`${host.prefix}-c1`);
    const spec = vethSpec(host, 3, sb);

    await t.step("host end exists but its peer is not in the sandbox", async () => {
      await sh("ip", [
        "-n",
        host.name,
        "link",
        "add",
        spec.hostName,
        "type",
        "veth",
        "peer",
        "name",
        `${host.prefix}p`,
      ]);
      await k.ensureVeth(spec);
      assert.equal((await ipLink(base(sb), "eth0")).address, spec.peerMac);
      assert.equal((await ipLink(host.name, spec.hostName)).master, "br0");
      assert.equal((await k.listLinks()).some((l) => l.name === `${host.prefix}p`), false);
    });

    await t.step("pair exists but is down, detached and unaddressed", async () => {
      await sh("ip", ["-n", host.name, "link", "set", spec.hostName, "nomaster", "down"]);
      await sh("ip", ["-n", base(sb), "addr", "flush", "dev", "eth0"]);
      await sh("ip", ["-n", base(sb), "link", "set", "eth0", "down"]);
      await k.ensureVeth(spec);
      const hostEnd = await ipLink(host.name, spec.hostName);
      assert.equal(hostEnd.master, "br0");
      assert.ok(hostEnd.flags.includes("UP"));
      assert.ok((await ipLink(base(sb), "eth0")).flags.includes("UP"));
      assert.ok((await ipAddrs(base(sb))).includes("eth0 10.88.0.3/24"));
      const routes = JSON.parse(await sh("ip", ["-n", base(sb), "-j", "route", "show", "default"]));
      assert.equal(routes[0]?.gateway, "10.88.0.1");
    });
  });
});

Deno.test("kernel two sandboxes on one bridge ping each other (root)", async () => {
  await withHost(async (k, host) => {
    await k.ensureBridge({ name: "br0", addresses: ["10.88.0.1/24"] });
    const a = await k.ensureNetns(`${host.prefix}-a`);
    const b = await k.ensureNetns(`${host.prefix}-b`);
    await k.ensureVeth(vethSpec(host, 4, a));
    await k.ensureVeth(vethSpec(host, 5, b));
    await sh("ip", ["netns", "exec", `${host.prefix}-a`, "ping", "-c1", "-W1", "10.88.0.5"]);
    await sh("ip", ["netns", "exec", `${host.prefix}-b`, "ping", "-c1", "-W1", "10.88.0.4"]);
    await sh("ip", ["netns", "exec", `${host.prefix}-a`, "ping", "-c1", "-W1", "10.88.0.1"]);
  });
});

Deno.test("kernel deleteLink runs concurrently and inside a namespace (root)", async () => {
  await withHost(async (k, host) => {
    await k.ensureBridge({ name: "br0", addresses: ["10.88.0.1/24"] });
    const sbs = await Promise.all([1, 2, 3, 4].map((i) => k.ensureNetns(`${host.prefix}-d${i}`)));
    for (const [i, sb] of sbs.entries()) await k.ensureVeth(vethSpec(host, i + 1, sb));
    // Three host ends at once (each on its own socket, off the event loop) ...
    await Promise.all([1, 2, 3].map((i) => k.deleteLink(`${host.prefix}v${i}`)));
    const left = (await k.listLinks()).filter((l) => l.kind === "veth").map((l) => l.name);
    assert.deepEqual(left, [`${host.prefix}v4`]);
    // ... and a peer from inside its namespace, which takes the host end with it.
    await k.deleteLink("eth0", sbs[3]);
    await k.deleteLink("eth0", sbs[3]);
    assert.equal((await k.listLinks()).some((l) => l.kind === "veth"), false);
    // A namespace that is gone has no links left to delete.
    await k.deleteLink("eth0", `/var/run/netns/${host.prefix}-gone`);
  });
});

Deno.test("kernel ensureVeth configures IPv6 (root)", async () => {
  await withHost(async (k, host) => {
    await k.ensureBridge({ name: "br0", addresses: ["fd88::1/64"] });
    const sb = await k.ensureNetns(`${host.prefix}-c6`);
    await k.ensureVeth({
      hostName: `${host.prefix}v6`,
      master: "br0",
      netns: sb,
      peerName: "eth0",
      addresses: ["fd88::6/64"],
      routes: [{ dst: "default", via: "fd88::1" }],
    });
    assert.ok((await ipAddrs(base(sb))).includes("eth0 fd88::6/64"));
    assert.ok((await k.listAddrs(sb)).some((a) => a.address === "fd88::6/64"));
    const routes = JSON.parse(
      await sh("ip", ["-n", base(sb), "-6", "-j", "route", "show", "default"]),
    );
    assert.equal(routes[0]?.gateway, "fd88::1");
    assert.ok(
      (await k.listRoutes(sb)).some((r) => r.dst === "default" && r.via === "fd88::1"),
    );
    await sh("ip", ["netns", "exec", `${host.prefix}-c6`, "ping", "-6", "-c1", "-W2", "fd88::1"]);
  });
});

Deno.test("kernel routes ensure/delete idempotently (root)", async () => {
  await withHost(async (k, host) => {
    await k.ensureBridge({ name: "br0", addresses: ["10.88.0.1/24"] });
    const route = { dst: "10.99.0.0/16", via: "10.88.0.254" };
    await k.ensureRoute(route);
    await k.ensureRoute(route);
    const shown = JSON.parse(
      await sh("ip", ["-n", host.name, "-j", "route", "show", "10.99.0.0/16"]),
    );
    assert.equal(shown.length, 1);
    assert.equal(shown[0].gateway, "10.88.0.254");
    await k.deleteRoute(route);
    await k.deleteRoute(route);
    assert.equal((await k.listRoutes()).some((r) => r.dst === "10.99.0.0/16"), false);
  });
});

Deno.test("kernel errors name the object (root)", async (t) => {
  await withHost(async (k, host) => {
    const sb = await k.ensureNetns(`${host.prefix}-c1`);
    await t.step("missing master", async () => {
      await assert.rejects(
        k.ensureVeth({ ...vethSpec(host, 7, sb), master: "nosuchbr" }),
        (err: Error) => {
          assert.ok(err instanceof DriverError);
          assert.match(err.message, new RegExp(`link add ${host.prefix}v7: master nosuchbr`));
          assert.match(err.message, /ENODEV/);
          return true;
        },
      );
      assert.equal((await k.listLinks()).some((l) => l.name === `${host.prefix}v7`), false);
    });
    await t.step("kernel refusal carries errno and name", async () => {
      await k.ensureBridge({ name: "br0" });
      await assert.rejects(
        k.ensureRoute({ dst: "10.99.0.0/16", via: "10.77.0.1" }),
        (err: Error) =>
          err instanceof DriverError && /route replace 10\.99\.0\.0\/16/.test(err.message) &&
          /ENETUNREACH/.test(err.message),
      );
    });
    await t.step("bad input is an InvalidArgumentError naming the value", async () => {
      await assert.rejects(
        k.ensureVeth({ ...vethSpec(host, 8, sb), addresses: ["10.88.0.300/24"] }),
        (err: Error) =>
          err instanceof InvalidArgumentError && err.message.includes("10.88.0.300/24"),
      );
      await assert.rejects(
        k.ensureVeth({ ...vethSpec(host, 8, sb), hostName: "a-name-that-is-too-long" }),
        InvalidArgumentError,
      );
    });
    await t.step("missing namespace", async () => {
      await assert.rejects(
        k.ensureVeth(vethSpec(host, 9, `/var/run/netns/${host.prefix}-nope`)),
        (err: Error) => err instanceof DriverError && err.message.includes(`${host.prefix}-nope`),
      );
    });
  });
});

Deno.test("kernel exec runs inside the host namespace (root)", async () => {
  await withHost(async (k, host) => {
    await k.ensureBridge({ name: "br0" });
    const out = await k.exec(["ip", "-j", "link", "show", "br0"]);
    assert.equal(JSON.parse(out)[0].ifname, "br0");
    assert.equal(await k.exec(["cat"], { stdin: "hello" }), "hello");
    await assert.rejects(k.exec(["ip", "link", "show", "nosuchdev"]), /nosuchdev/);
    const sb = await k.ensureNetns(`${host.prefix}-c1`);
    const inSb = await k.exec(["ip", "-j", "link"], { netns: sb });
    assert.equal(JSON.parse(inSb).some((l: any) => l.ifname === "br0"), false);
  });
});
