/**
 * The overlay driver's data plane on three lab hosts (needs root), driven as a controller
 * would drive it but without one: networks, endpoints and joins on each host, the peers of
 * every host handed to every other explicitly.
 */

import assert from "node:assert/strict";
import { ping } from "../_harness/multihost.ts";
import { connectTcp, serveTcp } from "../_harness/tcp.ts";
import { sh } from "../_harness/command.ts";
import {
  type Attached,
  kernelFdb,
  kernelNeighbors,
  type OverlayLab,
  overlayNs,
  withOverlayLab,
} from "./_overlay_lab.ts";

const withLab = (fn: (lab: OverlayLab) => Promise<void>) => withOverlayLab(3, fn);

const ipOf = (a: Attached) => a.peer.ip;

Deno.test("overlay containers on three hosts reach each other over VXLAN (root)", async (t) => {
  await withLab(async (lab) => {
    const net = lab.network(1);
    const eps: Attached[] = [];
    for (const h of lab.hosts) eps.push(await lab.attach(h, net));
    await lab.setPeersEverywhere(net, eps.map((e) => e.peer));

    await t.step("the join facts carry the peer record and the devices", () => {
      const f = eps[0].facts;
      assert.deepEqual(
        [f.ip, f.mac, f.vtep, f.vni, f.bridge, f.vxlan, f.mtu],
        [
          "10.0.1.2",
          "02:42:0a:00:01:02",
          "192.0.2.1",
          4096,
          "ov-001000-0001a",
          "vx-001000-0001a",
          1450,
        ],
      );
      assert.equal(f.gateway, undefined, "an overlay gives no default gateway (libnetwork)");
    });
    await t.step("ping between every pair", async () => {
      for (const from of eps) {
        for (const to of eps) {
          if (from === to) continue;
          assert.ok(await ping(from.sandbox, ipOf(to)), `${from.sandbox} -> ${ipOf(to)}`);
        }
      }
    });
    await t.step("TCP between every pair", async () => {
      const servers = await Promise.all(eps.map((e) => serveTcp(e.sandbox, 7001)));
      try {
        for (const from of eps) {
          for (const to of eps) {
            if (from === to) continue;
            assert.equal(await connectTcp(from.sandbox, ipOf(to), 7001), `ok ::ffff:${ipOf(from)}`);
          }
        }
      } finally {
        for (const s of servers) await s.close();
      }
    });
    await t.step("the gateway is the local bridge on every host", async () => {
      for (const e of eps) assert.ok(await ping(e.sandbox, "10.0.1.1"));
    });
    await t.step("the traffic is VXLAN on UDP 4789 between the underlay addresses", async () => {
      const counters = await sh(["ip", "netns", "exec", lab.hosts[1].lab.name, "ss", "-uanH"]);
      assert.match(counters, /0\.0\.0\.0:4789/);
      const [vx] = JSON.parse(
        await sh(["ip", "-n", overlayNs(eps[1]), "-s", "-j", "link", "show", "vx-001000-0001a"]),
      );
      assert.ok(vx.stats64.rx.packets > 0 && vx.stats64.tx.packets > 0);
    });
  });
});

Deno.test("overlay MTU: 1422 bytes with DF pass, 1423 do not; the option is honoured (root)", async (t) => {
  await withLab(async (lab) => {
    await t.step("default: 1450 inside", async () => {
      const net = lab.network(1);
      const a = await lab.attach(lab.hosts[0], net);
      const b = await lab.attach(lab.hosts[1], net);
      await lab.setPeersEverywhere(net, [a.peer, b.peer]);
      assert.equal(await ping(a.sandbox, ipOf(b), { size: 1422, dontFragment: true }), true);
      assert.equal(await ping(a.sandbox, ipOf(b), { size: 1423, dontFragment: true }), false);
      const [eth0] = JSON.parse(await sh(["ip", "-n", a.sandbox, "-j", "link", "show", "eth0"]));
      assert.equal(eth0.mtu, 1450);
    });
    await t.step("com.docker.network.driver.mtu=1400: 1350 inside", async () => {
      const net = lab.network(2, {
        subnet: "10.0.2.0/24",
        extra: { "com.docker.network.driver.mtu": "1400" },
      });
      const a = await lab.attach(lab.hosts[0], net);
      const b = await lab.attach(lab.hosts[2], net);
      await lab.setPeersEverywhere(net, [a.peer, b.peer]);
      assert.equal(a.facts.mtu, 1350);
      assert.equal(await ping(a.sandbox, ipOf(b), { size: 1322, dontFragment: true }), true);
      assert.equal(await ping(a.sandbox, ipOf(b), { size: 1323, dontFragment: true }), false);
    });
  });
});

Deno.test("overlay programs one neighbour and one FDB entry per remote endpoint, none for local ones (root)", async (t) => {
  await withLab(async (lab) => {
    const net = lab.network(1);
    const [h1, h2, h3] = lab.hosts;
    // Two endpoints on h1, one each on h2 and h3.
    const eps = [
      await lab.attach(h1, net),
      await lab.attach(h1, net, { ip: "10.0.1.12/24" }),
      await lab.attach(h2, net),
      await lab.attach(h3, net),
    ];
    await lab.setPeersEverywhere(net, eps.map((e) => e.peer));
    const vx = "vx-001000-0001a";

    await t.step("every host holds exactly the remote ones", async () => {
      for (const h of lab.hosts) {
        const remote = eps.filter((e) => e.host !== h);
        const ns = overlayNs(eps.find((e) => e.host === h)!);
        assert.deepEqual(
          await kernelNeighbors(ns, vx),
          remote.map((e) => [e.peer.ip, e.peer.mac]).sort(),
        );
        assert.deepEqual(
          await kernelFdb(ns, vx),
          remote.map((e) => [e.peer.mac, e.peer.vtep, "permanent"]).sort(),
        );
        const state = await h.driver.peerState(net, h.ctx);
        assert.deepEqual([state.remotePeers, state.ok, state.missing, state.stale, state.learned], [
          remote.length,
          2 * remote.length,
          [],
          [],
          [],
        ]);
      }
    });
    await t.step("the two local endpoints of h1 talk over the bridge", async () => {
      assert.ok(await ping(eps[0].sandbox, "10.0.1.12"));
    });
    await t.step("removing peers removes their entries", async () => {
      const gone = eps[3].peer;
      for (const h of [h1, h2]) await h.driver.removePeers(net, [gone], h.ctx);
      const ns = overlayNs(eps[0]);
      assert.deepEqual(await kernelNeighbors(ns, vx), [[eps[2].peer.ip, eps[2].peer.mac]]);
      assert.deepEqual(await kernelFdb(ns, vx), [[eps[2].peer.mac, eps[2].peer.vtep, "permanent"]]);
      assert.equal(await ping(eps[0].sandbox, gone.ip), false);
      assert.ok(await ping(eps[0].sandbox, eps[2].peer.ip));
      // A second removal is a no-op.
      const again = await h1.driver.removePeers(net, [gone], h1.ctx);
      assert.equal((await kernelNeighbors(ns, vx)).length, 1);
      assert.ok(again.namespace);
    });
  });
});

Deno.test("overlay a moved IP ends on the new VTEP everywhere (root)", async (t) => {
  await withLab(async (lab) => {
    const net = lab.network(1);
    const [h1, h2, h3] = lab.hosts;
    const a = await lab.attach(h1, net);
    const b = await lab.attach(h2, net, { ip: "10.0.1.50/24" });
    const c = await lab.attach(h3, net);
    await lab.setPeersEverywhere(net, [a.peer, b.peer, c.peer]);
    assert.ok(await ping(a.sandbox, "10.0.1.50"));

    await t.step("the endpoint is deleted on h2 and the same address joins on h3", async () => {
      await lab.detach(b, net);
      // h3 has not seen the delete yet when the address joins there.
      for (const h of [h1, h2]) await h.driver.removePeers(net, [b.peer], h.ctx);
      assert.deepEqual(
        (await kernelNeighbors(overlayNs(c), "vx-001000-0001a")).find(([ip]) => ip === "10.0.1.50"),
        ["10.0.1.50", b.peer.mac],
      );
      const moved = await lab.attach(h3, net, { ip: "10.0.1.50/24" });
      assert.equal(moved.peer.mac, b.peer.mac, "same IP, same derived MAC");
      assert.equal(moved.peer.vtep, "192.0.2.3");
      for (const h of lab.hosts) await h.driver.addPeers(net, [moved.peer], h.ctx);
      assert.ok(await ping(a.sandbox, "10.0.1.50"));
      assert.ok(await ping(moved.sandbox, ipOf(a)));
      assert.deepEqual(
        (await kernelFdb(overlayNs(a), "vx-001000-0001a")).find((e) => e[0] === b.peer.mac),
        [b.peer.mac, "192.0.2.3", "permanent"],
      );
      // On h3 the address is local now: no remote entry for it.
      assert.equal(
        (await kernelNeighbors(overlayNs(c), "vx-001000-0001a")).some(([ip]) => ip === "10.0.1.50"),
        false,
      );
      assert.equal(
        (await kernelFdb(overlayNs(c), "vx-001000-0001a")).some(([mac]) => mac === b.peer.mac),
        false,
      );
      // ... and the late delete there changes nothing.
      await h3.driver.removePeers(net, [b.peer], h3.ctx);
      assert.ok(await ping(c.sandbox, "10.0.1.50"));
      assert.ok(await ping(a.sandbox, "10.0.1.50"));
    });
    await t.step("an add with a new VTEP alone (no delete seen) also moves the entry", async () => {
      const fake = { ip: "10.0.1.60", mac: "02:42:0a:00:01:3c", vtep: "192.0.2.2" };
      await h1.driver.addPeers(net, [fake], h1.ctx);
      await h1.driver.addPeers(net, [{ ...fake, vtep: "192.0.2.3" }], h1.ctx);
      const fdb = (await kernelFdb(overlayNs(a), "vx-001000-0001a")).filter((e) =>
        e[0] === fake.mac
      );
      assert.deepEqual(fdb, [[fake.mac, "192.0.2.3", "permanent"]]);
      // A late removal of the old location changes nothing.
      await h1.driver.removePeers(net, [fake], h1.ctx);
      assert.equal(
        (await kernelFdb(overlayNs(a), "vx-001000-0001a")).filter((e) => e[0] === fake.mac).length,
        1,
      );
    });
  });
});

Deno.test("overlay networks with overlapping subnets stay apart (root)", async () => {
  await withLab(async (lab) => {
    const [h1, h2] = lab.hosts;
    const blue = lab.network(1, { subnet: "10.0.1.0/24", vni: 4096 });
    const red = lab.network(2, { subnet: "10.0.1.0/24", vni: 4097 });
    const b1 = await lab.attach(h1, blue), b2 = await lab.attach(h2, blue);
    const r1 = await lab.attach(h1, red), r2 = await lab.attach(h2, red);
    assert.equal(b2.peer.ip, r2.peer.ip, "the same address in both networks");
    await lab.setPeersEverywhere(blue, [b1.peer, b2.peer]);
    await lab.setPeersEverywhere(red, [r1.peer, r2.peer]);
    const blueServer = await serveTcp(b2.sandbox, 7001);
    const redServer = await serveTcp(r2.sandbox, 7002);
    try {
      assert.ok(await connectTcp(b1.sandbox, b2.peer.ip, 7001));
      assert.ok(await connectTcp(r1.sandbox, r2.peer.ip, 7002));
      assert.equal(await connectTcp(b1.sandbox, b2.peer.ip, 7002), null, "blue reached red");
      assert.equal(await connectTcp(r1.sandbox, r2.peer.ip, 7001), null, "red reached blue");
    } finally {
      await blueServer.close();
      await redServer.close();
    }
  });
});

Deno.test("overlay namespace comes with the first local join and goes with the last (root)", async (t) => {
  await withLab(async (lab) => {
    const [h1] = lab.hosts;
    const net = lab.network(1);
    const nsOf = async () =>
      (await lab.lab.namespaces()).filter((n) => n.startsWith(`${h1.lab.namePrefix}ov-`));

    await t.step("createNetwork and createEndpoint touch no kernel", async () => {
      const facts = await h1.driver.createNetwork(net, h1.ctx);
      assert.deepEqual(facts, {
        vnis: [4096],
        mtu: 1450,
        port: 4789,
        subnets: [{
          pool: "10.0.1.0/24",
          vni: 4096,
          bridge: "ov-001000-0001a",
          vxlan: "vx-001000-0001a",
        }],
      });
      assert.deepEqual(await nsOf(), []);
    });
    let first: Attached, second: Attached;
    await t.step("the first join makes it, named with the owner and network id", async () => {
      first = await lab.attach(h1, net);
      const owner = `t${lab.lab.prefix.slice(2)}1`;
      assert.deepEqual(await nsOf(), [`${h1.lab.namePrefix}ov-${owner}-${net.id.slice(0, 12)}`]);
      const links = await h1.kernel.listLinks(`/var/run/netns/${overlayNs(first)}`);
      const br = links.find((l) => l.kind === "bridge");
      assert.equal(br?.alias, `cnm:${owner}:overlay:${net.id.slice(0, 12)}`);
      assert.equal(
        links.find((l) => l.kind === "veth")?.alias,
        `cnm:${owner}:endpoint:${first.endpoint.id.slice(0, 12)}`,
      );
      second = await lab.attach(h1, net, { ip: "10.0.1.30/24" });
    });
    await t.step("it stays while an endpoint is left, and goes with the last", async () => {
      await lab.detach(first, net);
      assert.equal((await nsOf()).length, 1);
      await lab.detach(second, net);
      assert.deepEqual(await nsOf(), []);
    });
    await t.step("the VNI is free at once: a new network takes it", async () => {
      const again = lab.network(9, { vni: 4096 });
      const a = await lab.attach(h1, again);
      assert.equal(a.facts.vni, 4096);
      await h1.driver.deleteNetwork(again, h1.ctx);
      assert.deepEqual(await nsOf(), [], "deleteNetwork removes it too");
    });
  });
});

Deno.test("overlay a network with two subnets routes between them through the gateways (root)", async () => {
  await withLab(async (lab) => {
    const [h1, h2] = lab.hosts;
    const two = lab.network(1);
    two.options["com.docker.network.driver.overlay.vxlanid_list"] = "4096,4097";
    two.ipv4.push({
      addressSpace: "GlobalDefault",
      pool: "10.0.2.0/24",
      gateway: "10.0.2.1/24",
      auxAddresses: {},
    });
    const a = await lab.attach(h1, two, { ip: "10.0.1.2/24" });
    const b = await lab.attach(h2, two, { ip: "10.0.2.3/24" });
    await lab.setPeersEverywhere(two, [a.peer, b.peer]);
    assert.deepEqual(a.facts.staticRoutes, [
      { destination: "10.0.2.0/24", routeType: 0, nextHop: "10.0.1.1" },
    ]);
    assert.equal(b.facts.vni, 4097);
    assert.equal(b.facts.vxlan, "vx-001001-0001a");
    const routes = JSON.parse(await sh(["ip", "-n", a.sandbox, "-j", "route"]));
    assert.ok(routes.some((r: any) => r.dst === "10.0.2.0/24" && r.gateway === "10.0.1.1"));
    assert.ok(await ping(a.sandbox, "10.0.2.3"), "10.0.1.2 -> 10.0.2.3");
    assert.ok(await ping(b.sandbox, "10.0.1.2"), "10.0.2.3 -> 10.0.1.2");
  });
});
