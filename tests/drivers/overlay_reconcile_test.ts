/**
 * The overlay driver against drift and crashes on the lab (needs root): reconcile of hand-made
 * kernel damage, every method re-run, partial state left by a crash, orphans holding a VNI
 * (this controller's removed, another's reported), two controllers on one host namespace,
 * and the refusals that must touch nothing.
 */

import assert from "node:assert/strict";
import { DriverError, InvalidArgumentError } from "../../src/errors.ts";
import { createOverlayDriver } from "../../drivers/overlay/mod.ts";
import { VNI_EXISTS } from "../../src/kernel/mod.ts";
import { sh } from "../_harness/command.ts";
import { ping } from "../_harness/multihost.ts";
import { kernelFdb, kernelNeighbors, overlayNs, withOverlayLab } from "./_overlay_lab.ts";

const withLab = withOverlayLab;

const VX = "vx-001000-0001a";
const bridge = (ns: string, ...args: string[]) => sh(["bridge", "-n", ns, "fdb", ...args]);

Deno.test("overlay setPeers repairs missing, stale, learned and misdirected entries (root)", async (t) => {
  await withLab(3, async (lab) => {
    const [h1, h2, h3] = lab.hosts;
    const net = lab.network(1);
    const a = await lab.attach(h1, net),
      b = await lab.attach(h2, net),
      c = await lab.attach(h3, net);
    const peers = [a.peer, b.peer, c.peer];
    await lab.setPeersEverywhere(net, peers);
    const ns = overlayNs(a);

    await t.step("damage by hand, seen by peerState", async () => {
      await sh(["ip", "-n", ns, "neigh", "del", b.peer.ip, "dev", VX]);
      await bridge(ns, "replace", b.peer.mac, "dev", VX, "dst", b.peer.vtep, "self", "dynamic");
      await bridge(ns, "replace", c.peer.mac, "dev", VX, "dst", "192.0.2.2", "self", "permanent");
      await sh([
        "ip",
        "-n",
        ns,
        "neigh",
        "replace",
        "10.0.1.99",
        "lladdr",
        "02:42:0a:00:01:63",
        "dev",
        VX,
        "nud",
        "permanent",
      ]);
      await bridge(
        ns,
        "replace",
        "02:42:0a:00:01:63",
        "dev",
        VX,
        "dst",
        "192.0.2.9",
        "self",
        "permanent",
      );
      assert.equal(await ping(a.sandbox, c.peer.ip), false, "misdirected: c is unreachable");
      const s = await h1.driver.peerState(net, h1.ctx);
      const show = (l: typeof s.missing) =>
        l.map((e) => `${e.kind} ${e.ip ?? e.mac} ${e.vtep ?? ""}`.trim()).sort();
      assert.deepEqual(show(s.missing), [`fdb ${c.peer.mac} 192.0.2.3`, `neighbor ${b.peer.ip}`]);
      assert.deepEqual(show(s.stale), [
        `fdb ${c.peer.mac} 192.0.2.2`,
        "fdb 02:42:0a:00:01:63 192.0.2.9",
        "neighbor 10.0.1.99",
      ]);
      assert.deepEqual(show(s.learned), [`fdb ${b.peer.mac} 192.0.2.2`]);
    });
    await t.step("setPeers with the same table makes the kernel match again", async () => {
      const r = await h1.driver.setPeers(net, peers, h1.ctx);
      assert.ok(r.changes >= 6, `changes ${r.changes}`);
      const s = await h1.driver.peerState(net, h1.ctx);
      assert.deepEqual([s.ok, s.missing, s.stale, s.learned], [4, [], [], []]);
      assert.deepEqual(
        await kernelFdb(ns, VX),
        [
          [b.peer.mac, b.peer.vtep, "permanent"],
          [c.peer.mac, c.peer.vtep, "permanent"],
        ].sort(),
      );
      assert.deepEqual(await kernelNeighbors(ns, VX), [[b.peer.ip, b.peer.mac], [
        c.peer.ip,
        c.peer.mac,
      ]]);
      assert.ok(await ping(a.sandbox, c.peer.ip));
      assert.ok(await ping(a.sandbox, b.peer.ip));
      assert.equal((await h1.driver.setPeers(net, peers, h1.ctx)).changes, 0, "nothing left to do");
    });
  });
});

Deno.test("overlay every method is an idempotent ensure, also after a crash (root)", async (t) => {
  await withLab(2, async (lab) => {
    const [h1, h2] = lab.hosts;
    const net = lab.network(1);
    await t.step("createNetwork and createEndpoint give the same facts twice", async () => {
      assert.deepEqual(
        await h1.driver.createNetwork(net, h1.ctx),
        await h1.driver.createNetwork(net, h1.ctx),
      );
      const ep = {
        id: "ee".repeat(32),
        networkId: net.id,
        options: {},
        ipv4Address: "10.0.1.9/24",
        facts: {},
      };
      assert.deepEqual(
        await h1.driver.createEndpoint(net, ep, h1.ctx),
        await h1.driver.createEndpoint(net, ep, h1.ctx),
      );
    });
    const a = await lab.attach(h1, net), b = await lab.attach(h2, net);
    await lab.setPeersEverywhere(net, [a.peer, b.peer]);
    const sb = { id: "sb", key: a.sandboxPath, ifname: "eth0", labels: {} };
    await t.step("join again: same facts, one veth, one address", async () => {
      const again = await h1.driver.join(net, a.endpoint, sb, h1.ctx);
      assert.deepEqual(again, a.facts);
      const links = await h1.kernel.listLinks(`/var/run/netns/${overlayNs(a)}`);
      assert.equal(links.filter((l) => l.kind === "veth").length, 1);
      const addrs = (await h1.kernel.listAddrs(a.sandboxPath)).filter((x) =>
        x.link === "eth0" && !x.address.includes(":")
      );
      assert.deepEqual(addrs.map((x) => x.address), ["10.0.1.2/24"]);
      assert.ok(await ping(a.sandbox, b.peer.ip));
    });
    await t.step("a fresh driver (restarted controller) re-runs join and setPeers", async () => {
      const fresh = createOverlayDriver({
        advertiseAddress: h1.lab.address,
        owner: `t${lab.lab.prefix.slice(2)}1`,
      });
      assert.deepEqual(await fresh.join(net, a.endpoint, sb, h1.ctx), a.facts);
      assert.equal((await fresh.setPeers(net, [a.peer, b.peer], h1.ctx)).changes, 0);
      assert.ok(await ping(a.sandbox, b.peer.ip));
    });
    await t.step(
      "a crash after the bridge, before the VXLAN device: join completes it",
      async () => {
        const ns = `/var/run/netns/${overlayNs(b)}`;
        await h2.kernel.deleteLink(VX, ns);
        await sh([
          "ip",
          "-n",
          overlayNs(b),
          "link",
          "add",
          VX,
          "type",
          "vxlan",
          "id",
          "77",
          "dstport",
          "4789",
        ]);
        const sb2 = { id: "sb", key: b.sandboxPath, ifname: "eth0", labels: {} };
        await h2.driver.join(net, b.endpoint, sb2, h2.ctx);
        const [vx] = await h2.kernel.listVxlans(ns);
        assert.deepEqual([vx.vni, vx.master, vx.socketInHost], [4096, "ov-001000-0001a", true]);
        assert.ok(await ping(b.sandbox, a.peer.ip));
      },
    );
    await t.step("leave, deleteEndpoint and deleteNetwork twice", async () => {
      await h1.driver.leave(net, a.endpoint, sb, h1.ctx);
      await h1.driver.leave(net, a.endpoint, sb, h1.ctx);
      await h1.driver.deleteEndpoint(net, a.endpoint, h1.ctx);
      await h1.driver.deleteEndpoint(net, a.endpoint, h1.ctx);
      await h1.driver.deleteNetwork(net, h1.ctx);
      await h1.driver.deleteNetwork(net, h1.ctx);
      assert.deepEqual(await h1.driver.ownedNamespaces(h1.ctx), []);
      assert.equal(
        (await h1.kernel.listLinks(a.sandboxPath)).some((l) => l.name === "eth0"),
        false,
      );
    });
  });
});

Deno.test("overlay removes its own orphan holding the VNI and reports another's (root)", async (t) => {
  await withLab(1, async (lab) => {
    const [h1] = lab.hosts;
    const owner = `t${lab.lab.prefix.slice(2)}1`;
    await t.step(
      "an orphan of this controller (a deleted network's namespace) is removed",
      async () => {
        const orphanNs = await h1.kernel.ensureNetns(
          `${h1.lab.namePrefix}ov-${owner}-deadbeef0000`,
        );
        await h1.kernel.ensureVxlan({
          name: "vx-001000-deadb",
          vni: 4096,
          netns: orphanNs,
          alias: `cnm:${owner}:overlay:deadbeef0000`,
        });
        const a = await lab.attach(h1, lab.network(1, { vni: 4096 }));
        assert.equal(a.facts.vni, 4096);
        assert.deepEqual((await h1.driver.ownedNamespaces(h1.ctx)).map((n) => n.networkId12), [
          "0001abababab",
        ]);
      },
    );
    await t.step("a device of anybody else holding the VNI is named and left alone", async () => {
      const foreign = await h1.kernel.ensureNetns(`${h1.lab.namePrefix}foreign`);
      await h1.kernel.ensureVxlan({
        name: "vxother",
        vni: 4100,
        netns: foreign,
        alias: "cnm:someoneelse:overlay:x",
      });
      await assert.rejects(
        lab.attach(h1, lab.network(2, { subnet: "10.0.2.0/24", vni: 4100 })),
        (e: Error) => {
          assert.ok(e instanceof DriverError);
          assert.ok(
            e.message.startsWith(
              `${VNI_EXISTS}: VXLAN id 4100 on port 4789 is held by vxother in ${foreign}, which this controller did not make`,
            ),
            e.message,
          );
          return true;
        },
      );
      assert.equal((await h1.kernel.listVxlans(foreign)).length, 1);
    });
  });
});

Deno.test("overlay two controllers on one host namespace keep to their own (root)", async () => {
  await withLab(1, async (lab) => {
    const [h1] = lab.hosts;
    const other = createOverlayDriver({ advertiseAddress: h1.lab.address, owner: "other0" });
    const otherCtx = { ...h1.ctx, effectId: "other" };
    const mine = await lab.attach(h1, lab.network(1, { vni: 4096 }));
    const theirNet = lab.network(2, { vni: 4097, subnet: "10.0.2.0/24" });
    const ep = {
      id: "ff".repeat(32),
      networkId: theirNet.id,
      options: {},
      ipv4Address: "10.0.2.5/24",
      facts: {},
    };
    ep.facts = (await other.createEndpoint(theirNet, ep, otherCtx)) ?? {};
    const sb = await h1.kernel.ensureNetns(`${h1.lab.namePrefix}theirs`);
    const theirs = await other.join(
      theirNet,
      ep,
      { id: "s", key: sb, ifname: "eth0", labels: {} },
      otherCtx,
    );
    const theirNs = String(theirs?.overlayNamespace);
    const snapshot = async () =>
      [
        await sh(["ip", "-n", theirNs, "-j", "addr"]),
        // Entries the bridges learn meanwhile (empty state) are traffic, not configuration.
        JSON.stringify(
          JSON.parse(await sh(["bridge", "-n", theirNs, "-j", "fdb"])).filter((e: any) => e.state),
        ),
        JSON.stringify(await h1.kernel.listVxlans(`/var/run/netns/${theirNs}`)),
      ].join("\n");
    const before = await snapshot();

    assert.deepEqual((await h1.driver.ownedNamespaces(h1.ctx)).map((n) => n.name), [
      overlayNs(mine),
    ]);
    await assert.rejects(
      h1.driver.removeOrphan(theirNs, h1.ctx),
      (e: Error) =>
        e instanceof InvalidArgumentError &&
        e.message.includes("is not an overlay namespace of this controller"),
    );
    await lab.detach(mine, lab.network(1, { vni: 4096 }));
    await h1.driver.deleteNetwork(lab.network(1, { vni: 4096 }), h1.ctx);
    assert.equal(await snapshot(), before, "the other controller's namespace is byte-identical");
  });
});

Deno.test("overlay refusals touch nothing; encrypted names what the kernel lacks (root)", async (t) => {
  await withLab(1, async (lab) => {
    const [h1] = lab.hosts;
    const enc = lab.network(1, { extra: { encrypted: "" } });
    const nothing = async () => assert.deepEqual(await h1.driver.ownedNamespaces(h1.ctx), []);
    await t.step("encrypted: refused at validate, create and join", async () => {
      const check = (e: Error) => {
        assert.ok(e instanceof InvalidArgumentError);
        assert.match(
          e.message,
          /^cannot join secure network: required modules to install IPSEC rules are missing on host: /,
        );
        assert.ok(
          e.message.includes("rfc4106(gcm(aes)) (Requested AEAD algorithm not found)"),
          e.message,
        );
        return true;
      };
      assert.throws(() => h1.driver.validateNetwork!(enc), check);
      await assert.rejects(h1.driver.createNetwork(enc, h1.ctx), check);
      await assert.rejects(lab.attach(h1, enc), check);
      await nothing();
    });
    await t.step("no VNI, a bad endpoint, bad peers", async () => {
      const noVni = lab.network(2, {
        extra: { "com.docker.network.driver.overlay.vxlanid_list": "" },
      });
      h1.driver.validateNetwork!(noVni); // the controller decides VNIs after validation
      await assert.rejects(
        h1.driver.createNetwork(noVni, h1.ctx),
        (e: Error) => e instanceof InvalidArgumentError && e.message === "no VNI provided",
      );
      const net = lab.network(3);
      await assert.rejects(
        lab.attach(h1, net, { ip: "10.9.9.9/24" }),
        (e: Error) =>
          e instanceof InvalidArgumentError &&
          e.message === `no matching subnet for IP "10.9.9.9/24" in network "${net.id}"`,
      );
      await assert.rejects(
        h1.driver.addPeers(net, [{ ip: "10.0.1.3", mac: "x", vtep: "192.0.2.2" }], h1.ctx),
        (e: Error) =>
          e instanceof InvalidArgumentError &&
          e.message === "invalid peer 0: mac: not a MAC address",
      );
      await nothing();
    });
    await t.step("driver options", () => {
      assert.throws(
        () => createOverlayDriver({ port: 80 }),
        (e: Error) =>
          e instanceof InvalidArgumentError &&
          e.message === "VXLAN UDP port number is not in valid range (1024-49151): 80",
      );
      assert.throws(
        () => createOverlayDriver({ advertiseAddress: "h1" }),
        (e: Error) =>
          e instanceof InvalidArgumentError &&
          e.message === 'invalid advertise address "h1": not an IPv4 address',
      );
    });
  });
});

Deno.test("overlay advertise address defaults to the default route's device (root)", async () => {
  await withLab(1, async (lab) => {
    const [h1] = lab.hosts;
    const driver = createOverlayDriver({ owner: "auto0" });
    const net = lab.network(1);
    const ep = {
      id: "aa".repeat(32),
      networkId: net.id,
      options: {},
      ipv4Address: "10.0.1.7/24",
      facts: {},
    };
    const sb = await h1.kernel.ensureNetns(`${h1.lab.namePrefix}auto`);
    const join = () =>
      driver.join(net, ep, { id: "s", key: sb, ifname: "eth0", labels: {} }, h1.ctx);
    await assert.rejects(
      join(),
      (e: Error) =>
        e instanceof DriverError && e.message.includes("cannot tell this host's advertise address"),
    );
    await sh([
      "ip",
      "-n",
      h1.lab.name,
      "route",
      "add",
      "default",
      "via",
      "192.0.2.254",
      "dev",
      "ul0",
    ]);
    assert.equal((await join())?.vtep, "192.0.2.1");
  });
});
