/**
 * Kernel access for overlays against the real kernel (needs root): bridges inside a
 * namespace, VXLAN devices born in an overlay namespace with their socket in the host
 * namespace, permanent neighbour and `self` FDB entries, and the batch. Every test runs in a
 * throwaway host namespace (per-run prefix) and deletes every namespace of that prefix.
 */

import assert from "node:assert/strict";
import { DriverError, InvalidArgumentError } from "../../src/errors.ts";
import { createKernel, type Kernel, VNI_EXISTS } from "../../src/kernel/mod.ts";
import { output, sh } from "../_harness/command.ts";
import { createTestHost, listPrefixed, requireRoot, type TestHost } from "../_harness/netns.ts";

/** Runs `fn` with a host namespace, an overlay namespace in it and a kernel bound to the host. */
async function withOverlayNs(
  fn: (k: Kernel, host: TestHost, ov: string, ovName: string) => Promise<void>,
): Promise<void> {
  requireRoot();
  const host = await createTestHost("kvx");
  let kernel: Kernel | undefined;
  try {
    kernel = await createKernel({ hostNamespace: host.path });
    const ovName = `${host.prefix}-ov`;
    const ov = await kernel.ensureNetns(ovName);
    await fn(kernel, host, ov, ovName);
  } finally {
    await kernel?.close();
    await host.cleanup();
    assert.deepEqual(await listPrefixed(host.prefix), [], "namespaces left behind");
  }
}

const ipj = async (ns: string, ...args: string[]) =>
  JSON.parse(await sh(["ip", "-n", ns, "-j", ...args]));
const bridgeFdb = async (ns: string, dev: string) =>
  JSON.parse(await sh(["bridge", "-n", ns, "-j", "fdb", "show", "dev", dev])) as {
    mac: string;
    dst?: string;
    flags: string[];
    state?: string;
    master?: string;
  }[];

const vxSpec = (ov: string) => ({
  name: "vx0",
  vni: 4097,
  netns: ov,
  master: "br0",
  mtu: 1450,
  l2miss: true,
  l3miss: true,
  alias: "cnm:test:vx",
});

Deno.test("kernel ensureBridge inside a namespace (root)", async () => {
  await withOverlayNs(async (k, host, ov, ovName) => {
    const spec = {
      name: "br0",
      netns: ov,
      mtu: 1450,
      mac: "02:42:0a:00:01:01",
      addresses: ["10.0.1.1/24"],
      alias: "cnm:test:br",
    };
    await k.ensureBridge(spec);
    await k.ensureBridge(spec);
    const [br] = await ipj(ovName, "-d", "addr", "show", "br0");
    assert.equal(br.linkinfo.info_kind, "bridge");
    assert.equal(br.mtu, 1450);
    assert.equal(br.address, "02:42:0a:00:01:01");
    assert.equal(br.ifalias, "cnm:test:br");
    assert.deepEqual(
      br.addr_info.filter((a: any) => a.family === "inet").map((a: any) => a.local),
      ["10.0.1.1"],
    );
    assert.equal((await k.listLinks()).some((l) => l.name === "br0"), false, "not in the host");
    assert.equal((await ipj(host.name, "link")).some((l: any) => l.ifname === "br0"), false);
  });
});

Deno.test("kernel ensureVxlan keeps the socket in the host namespace (root)", async (t) => {
  await withOverlayNs(async (k, host, ov, ovName) => {
    await k.ensureBridge({ name: "br0", netns: ov, addresses: ["10.0.1.1/24"] });
    await k.ensureVxlan(vxSpec(ov));

    await t.step("the device lives in the overlay namespace, on the bridge, up", async () => {
      const [vx] = await ipj(ovName, "-d", "link", "show", "vx0");
      const d = vx.linkinfo.info_data;
      assert.deepEqual(
        [d.id, d.port, d.learning, d.proxy, d.l2miss, d.l3miss],
        [4097, 4789, false, true, true, true],
      );
      assert.equal(vx.master, "br0");
      assert.equal(vx.mtu, 1450);
      assert.equal(vx.ifalias, "cnm:test:vx");
      assert.ok(vx.flags.includes("UP"));
      assert.equal(vx.link_netnsid, 0, "its socket lives in another namespace");
    });
    await t.step("its UDP socket is bound in the host namespace, not the overlay's", async () => {
      const inHost = await sh(["ip", "netns", "exec", host.name, "ss", "-uanH"]);
      const inOv = await sh(["ip", "netns", "exec", ovName, "ss", "-uanH"]);
      assert.match(inHost, /0\.0\.0\.0:4789/);
      assert.doesNotMatch(inOv, /:4789/);
    });
    await t.step("the module reports it, and finds it by VNI", async () => {
      const [info] = await k.listVxlans(ov);
      assert.deepEqual(
        [info.name, info.vni, info.port, info.learning, info.proxy, info.master, info.alias],
        ["vx0", 4097, 4789, false, true, "br0", "cnm:test:vx"],
      );
      assert.equal(info.socketInHost, true);
      const found = await k.findVxlans(4097);
      assert.deepEqual(found.map((x) => [x.name, x.netns]), [["vx0", ov]]);
      assert.deepEqual(await k.findVxlans(4097, { port: 8472 }), []);
      assert.deepEqual(await k.findVxlans(4098), []);
    });
    await t.step("re-running keeps the device; a detached, down device is repaired", async () => {
      const [before] = await ipj(ovName, "link", "show", "vx0");
      await k.ensureVxlan(vxSpec(ov));
      await sh(["ip", "-n", ovName, "link", "set", "vx0", "nomaster", "down", "mtu", "1400"]);
      await k.ensureVxlan(vxSpec(ov));
      const [after] = await ipj(ovName, "link", "show", "vx0");
      assert.equal(after.ifindex, before.ifindex);
      assert.equal(after.master, "br0");
      assert.equal(after.mtu, 1450);
      assert.ok(after.flags.includes("UP"));
    });
    await t.step("a second device with the VNI is refused, naming the holder", async () => {
      const other = await k.ensureNetns(`${host.prefix}-ov2`);
      await assert.rejects(k.ensureVxlan({ name: "vx9", vni: 4097, netns: other }), (e: Error) => {
        assert.ok(e instanceof DriverError);
        assert.ok(e.message.includes(VNI_EXISTS), e.message);
        assert.ok(e.message.includes(`held by vx0 in ${ov}`), e.message);
        return true;
      });
      // Another port is another socket: the same VNI is free there.
      await k.ensureVxlan({ name: "vx9", vni: 4097, port: 4790, netns: other });
    });
    await t.step("a device of that name with another VNI is not silently reused", async () => {
      await assert.rejects(
        k.ensureVxlan({ ...vxSpec(ov), vni: 4098 }),
        (e: Error) =>
          e instanceof DriverError &&
          e.message.includes("a different VXLAN device of that name exists (VNI 4097, not 4098)"),
      );
    });
    await t.step("bad input changes nothing", async () => {
      await assert.rejects(
        k.ensureVxlan({ ...vxSpec(ov), name: "vx1", vni: 1 << 24 }),
        (e: Error) =>
          e instanceof InvalidArgumentError && e.message.includes("invalid VXLAN id 16777216"),
      );
      await assert.rejects(
        k.ensureVxlan({ ...vxSpec(ov), name: "vx1", vni: 7, master: "nosuchbr" }),
        (e: Error) => e instanceof DriverError && e.message.includes("master nosuchbr"),
      );
      assert.equal((await k.listLinks(ov)).some((l) => l.name === "vx1"), false);
    });
  });
});

Deno.test("kernel neighbour and FDB entries are permanent, self and replaced (root)", async (t) => {
  await withOverlayNs(async (k, _host, ov, ovName) => {
    await k.ensureBridge({ name: "br0", netns: ov, addresses: ["10.0.1.1/24"] });
    await k.ensureVxlan({ ...vxSpec(ov), learning: true });
    const mac = "02:42:0a:00:01:03";

    await t.step("ensureNeighbor twice: one permanent entry", async () => {
      await k.ensureNeighbor({ dev: "vx0", ip: "10.0.1.3", mac }, ov);
      await k.ensureNeighbor({ dev: "vx0", ip: "10.0.1.3", mac }, ov);
      const shown = await ipj(ovName, "neigh", "show", "dev", "vx0", "10.0.1.3");
      assert.deepEqual(shown.map((n: any) => [n.lladdr, n.state]), [[mac, ["PERMANENT"]]]);
      const listed = (await k.listNeighbors(ov, "vx0")).filter((n) => n.ip === "10.0.1.3");
      assert.deepEqual(listed, [{
        dev: "vx0",
        ip: "10.0.1.3",
        mac,
        state: ["permanent"],
        permanent: true,
      }]);
    });
    await t.step("ensureFdb writes the VXLAN's own table, and replace moves it", async () => {
      await k.ensureFdb({ dev: "vx0", mac, dst: "192.0.2.2" }, ov);
      await k.ensureFdb({ dev: "vx0", mac, dst: "192.0.2.3" }, ov);
      const mine = (await bridgeFdb(ovName, "vx0")).filter((e) => e.mac === mac);
      assert.deepEqual(mine.map((e) => [e.dst, e.flags.includes("self"), e.state]), [
        ["192.0.2.3", true, "permanent"],
      ]);
      const listed = (await k.listFdb(ov, "vx0")).filter((e) => e.mac === mac);
      assert.deepEqual(listed, [{
        dev: "vx0",
        mac,
        self: true,
        permanent: true,
        state: ["permanent"],
        dst: "192.0.2.3",
      }]);
    });
    await t.step("a learned entry: `bridge fdb add` fails, ensureFdb replaces it", async () => {
      const other = "02:42:0a:00:01:09";
      const fdbCmd = (
        verb: string,
        state: string,
      ) => [
        "bridge",
        "-n",
        ovName,
        "fdb",
        verb,
        other,
        "dev",
        "vx0",
        "dst",
        "192.0.2.9",
        "self",
        state,
      ];
      await sh(fdbCmd("replace", "dynamic"));
      const learned = (await k.listFdb(ov, "vx0")).find((e) => e.mac === other);
      assert.equal(learned?.permanent, false);
      const add = await output(fdbCmd("add", "permanent"));
      assert.notEqual(add.code, 0);
      assert.match(add.stderr, /File exists/);
      await k.ensureFdb({ dev: "vx0", mac: other, dst: "192.0.2.9" }, ov);
      assert.equal((await k.listFdb(ov, "vx0")).find((e) => e.mac === other)?.permanent, true);
    });
    await t.step("deletes are idempotent and use the same family and flags", async () => {
      await k.deleteFdb({ dev: "vx0", mac }, ov);
      await k.deleteFdb({ dev: "vx0", mac }, ov);
      await k.deleteNeighbor({ dev: "vx0", ip: "10.0.1.3" }, ov);
      await k.deleteNeighbor({ dev: "vx0", ip: "10.0.1.3" }, ov);
      assert.equal((await bridgeFdb(ovName, "vx0")).some((e) => e.mac === mac), false);
      assert.deepEqual(await ipj(ovName, "neigh", "show", "dev", "vx0", "10.0.1.3"), []);
    });
    await t.step("bad input is refused before anything is sent", async () => {
      await assert.rejects(
        k.ensureFdb({ dev: "vx0", mac: "zz", dst: "192.0.2.2" }, ov),
        (e: Error) => e instanceof InvalidArgumentError && e.message.includes('"zz"'),
      );
      await assert.rejects(
        k.ensureNeighbor({ dev: "nodev", ip: "10.0.1.4", mac }, ov),
        (e: Error) => e instanceof DriverError && e.message.includes("device nodev does not exist"),
      );
    });
  });
});

Deno.test("kernel applyNeighbors programs thousands of entries in few datagrams (root)", async (t) => {
  await withOverlayNs(async (k, _host, ov, ovName) => {
    await k.ensureBridge({ name: "br0", netns: ov, addresses: ["10.0.0.1/16"] });
    await k.ensureVxlan({ ...vxSpec(ov), name: "vx0" });
    const N = 1500;
    const ip = (i: number) => `10.0.${(i + 2) >> 8}.${(i + 2) & 0xff}`;
    const mac = (i: number) =>
      `02:42:0a:00:${((i + 2) >> 8).toString(16).padStart(2, "0")}:${
        ((i + 2) & 0xff).toString(16).padStart(2, "0")
      }`;
    const vtep = (i: number) => `192.0.2.${(i % 250) + 2}`;
    const adds = Array.from({ length: N }, (_, i) => [
      { op: "add" as const, neighbor: { dev: "vx0", ip: ip(i), mac: mac(i) } },
      { op: "add" as const, fdb: { dev: "vx0", mac: mac(i), dst: vtep(i) } },
    ]).flat();

    await t.step("3000 changes, every one in the kernel", async () => {
      const r = await k.applyNeighbors(adds, ov);
      assert.equal(r.applied, 2 * N);
      assert.ok(r.datagrams >= 2 && r.datagrams <= 4, `datagrams ${r.datagrams}`);
      const neigh = await ipj(ovName, "neigh", "show", "dev", "vx0", "nud", "permanent");
      assert.equal(neigh.length, N);
      const fdb = (await bridgeFdb(ovName, "vx0")).filter((e) => e.dst);
      assert.equal(fdb.length, N);
      assert.equal(fdb.find((e) => e.mac === mac(7))?.dst, vtep(7));
      // Re-applying is replace: still N of each.
      await k.applyNeighbors(adds, ov);
      assert.equal((await k.listNeighbors(ov, "vx0")).filter((n) => n.permanent).length, N);
    });
    await t.step("one refused change fails alone and is named; the rest apply", async () => {
      await assert.rejects(
        k.applyNeighbors([
          { op: "delete", fdb: { dev: "vx0", mac: mac(0) } },
          { op: "add", fdb: { dev: "vx0", mac: "02:42:0a:63:00:01", dst: "fd00::1" } },
          { op: "delete", neighbor: { dev: "vx0", ip: ip(0) } },
        ], ov),
        (e: Error) => {
          assert.ok(e instanceof DriverError);
          assert.match(
            e.message,
            /^1 of 3 neighbour\/FDB changes refused: fdb replace 02:42:0a:63:00:01 dev vx0 dst fd00::1 self: /,
          );
          return true;
        },
      );
      assert.equal((await k.listFdb(ov, "vx0")).some((e) => e.mac === mac(0)), false);
      assert.equal((await k.listNeighbors(ov, "vx0")).some((n) => n.ip === ip(0)), false);
    });
    await t.step("batched deletes remove everything, absent ones included", async () => {
      const dels = Array.from({ length: N }, (_, i) => [
        { op: "delete" as const, fdb: { dev: "vx0", mac: mac(i) } },
        { op: "delete" as const, neighbor: { dev: "vx0", ip: ip(i) } },
      ]).flat();
      const r = await k.applyNeighbors(dels, ov);
      assert.equal(r.applied, 2 * N);
      assert.equal((await k.listFdb(ov, "vx0")).filter((e) => e.self).length, 0);
      assert.equal((await k.listNeighbors(ov, "vx0")).filter((n) => n.permanent).length, 0);
    });
  });
});

Deno.test("kernel ensureVeth puts the host end in another namespace (root)", async () => {
  await withOverlayNs(async (k, host, ov, ovName) => {
    await k.ensureBridge({ name: "br0", netns: ov, mtu: 1450, addresses: ["10.0.1.1/24"] });
    const sbName = `${host.prefix}-c1`;
    const sb = await k.ensureNetns(sbName);
    const spec = {
      hostName: "vethabc",
      hostNetns: ov,
      master: "br0",
      mtu: 1450,
      netns: sb,
      peerName: "eth0",
      peerMac: "02:42:0a:00:01:02",
      addresses: ["10.0.1.2/24"],
    };
    await k.ensureVeth(spec);
    await k.ensureVeth(spec);
    const [hostEnd] = await ipj(ovName, "link", "show", "vethabc");
    assert.equal(hostEnd.master, "br0");
    assert.equal((await k.listLinks()).some((l) => l.name === "vethabc"), false);
    await sh(["ip", "netns", "exec", sbName, "ping", "-c1", "-W1", "10.0.1.1"]);
    await k.deleteLink("vethabc", ov);
    assert.equal((await k.listLinks(sb)).some((l) => l.name === "eth0"), false);
  });
});
