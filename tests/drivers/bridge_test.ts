import assert from "node:assert/strict";
import { ForbiddenError, InvalidArgumentError, UnavailableError } from "../../mod.ts";
import { sh, startEnv } from "../_harness/env.ts";
import { newEventId, newObjectId } from "../../src/ids.ts";
import { connectTcp, serveTcp } from "../_harness/tcp.ts";

const nsOf = (key: string) => key.split("/").pop()!;
const ipOf = (cidr: string) => cidr.split("/")[0];

async function routes(netns: string): Promise<string[]> {
  return (await sh(["ip", "-n", netns, "route"])).trim().split("\n").filter(Boolean).map((l) =>
    l.trim()
  );
}

Deno.test("bridge (root, nats-server) connects sandboxes of one network and isolates networks", async (t) => {
  const env = await startEnv("br");
  try {
    const cnm = await env.open();
    const front = await cnm.createNetwork({ name: "front" });
    const back = await cnm.createNetwork({ name: "back" });
    const sbs = await Promise.all(["a", "b", "c"].map((name) => cnm.createSandbox({ name })));
    const [a, b, c] = sbs;
    const ea = await cnm.createEndpoint("front", { name: "a" });
    const eb = await cnm.createEndpoint("front", { name: "b" });
    const ec = await cnm.createEndpoint("back", { name: "c" });
    await cnm.join(ea.id, a.id);
    await cnm.join(eb.id, b.id);
    await cnm.join(ec.id, c.id);
    await t.step("addresses come from the next default pools, gateways first", () => {
      assert.deepEqual(front.ipam.config, [{ subnet: "172.18.0.0/16", gateway: "172.18.0.1" }]);
      assert.deepEqual(back.ipam.config, [{ subnet: "172.19.0.0/16", gateway: "172.19.0.1" }]);
      assert.equal(ea.ipv4Address, "172.18.0.2/16");
      assert.equal(eb.ipv4Address, "172.18.0.3/16");
      assert.equal(ec.ipv4Address, "172.19.0.2/16");
      assert.match(ea.macAddress!, /^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/);
    });
    await t.step(
      "the sandbox has eth0 with the address, MAC and a default route via the gateway",
      async () => {
        const link =
          JSON.parse(await sh(["ip", "-n", nsOf(a.key), "-j", "addr", "show", "eth0"]))[0];
        assert.equal(link.address, ea.macAddress);
        assert.ok(link.addr_info.some((i: { local: string }) => i.local === "172.18.0.2"));
        assert.ok((await routes(nsOf(a.key))).includes("default via 172.18.0.1 dev eth0"));
      },
    );
    const server = await serveTcp(nsOf(a.key), 8080);
    try {
      await t.step("two sandboxes on one bridge network exchange TCP traffic", async () => {
        assert.equal(
          await connectTcp(nsOf(b.key), ipOf(ea.ipv4Address!), 8080),
          "ok ::ffff:172.18.0.3",
        );
      });
      await t.step("a sandbox on another bridge network cannot reach them", async () => {
        assert.equal(await connectTcp(nsOf(c.key), ipOf(ea.ipv4Address!), 8080), null);
      });
    } finally {
      await server.close();
    }
    await t.step(
      "leave removes the interface and the route; delete releases the address",
      async () => {
        await cnm.leave(eb.id, b.id);
        const links = await sh(["ip", "-n", nsOf(b.key), "-br", "link"]);
        assert.doesNotMatch(links, /eth0/);
        await cnm.deleteEndpoint(eb.id);
        const again = await cnm.createEndpoint("front", { name: "b2" });
        assert.equal(again.ipv4Address, "172.18.0.3/16");
      },
    );
    await t.step("deleting a network removes its bridge and firewall rules", async () => {
      await cnm.deleteSandbox(c.id);
      await cnm.deleteNetwork("back");
      const links = await sh(["ip", "-n", env.host.name, "-br", "link"]);
      assert.doesNotMatch(links, new RegExp(`br-${back.id.slice(0, 12)}`));
      const rules = await sh(["ip", "netns", "exec", env.host.name, "nft", "list", "ruleset"]);
      assert.doesNotMatch(rules, new RegExp(back.id.slice(0, 12)));
      assert.match(rules, new RegExp(front.id.slice(0, 12)));
    });
  } finally {
    await env.cleanup();
  }
});

Deno.test("bridge (root, nats-server) internal networks and ICC off", async (t) => {
  const env = await startEnv("bri");
  try {
    const cnm = await env.open({ defaultBridge: false });
    await cnm.createNetwork({ name: "priv", internal: true });
    await cnm.createNetwork({
      name: "noicc",
      options: { "com.docker.network.bridge.enable_icc": "false" },
    });
    const [a, b, c, d] = await Promise.all(
      ["a", "b", "c", "d"].map((name) => cnm.createSandbox({ name })),
    );
    const ea = await cnm.createEndpoint("priv", { name: "a" });
    const eb = await cnm.createEndpoint("priv", { name: "b" });
    const ec = await cnm.createEndpoint("noicc", { name: "c" });
    const ed = await cnm.createEndpoint("noicc", { name: "d" });
    for (const [e, s] of [[ea, a], [eb, b], [ec, c], [ed, d]] as const) await cnm.join(e.id, s.id);
    await t.step("an internal network has no default route", async () => {
      assert.deepEqual(await routes(nsOf(a.key)), [
        "172.17.0.0/16 dev eth0 proto kernel scope link src 172.17.0.2",
      ]);
      assert.equal(cnm.endpoint(ea.id)?.gateway, undefined);
    });
    const sa = await serveTcp(nsOf(a.key), 8080);
    const sc = await serveTcp(nsOf(c.key), 8080);
    try {
      await t.step("endpoints of an internal network reach each other", async () => {
        assert.equal(
          await connectTcp(nsOf(b.key), ipOf(ea.ipv4Address!), 8080),
          "ok ::ffff:172.17.0.3",
        );
      });
      await t.step("ICC off blocks traffic between endpoints of one bridge", async () => {
        assert.equal(await connectTcp(nsOf(d.key), ipOf(ec.ipv4Address!), 8080), null);
      });
      await t.step("nothing leaves the internal subnet", async () => {
        assert.equal(await connectTcp(nsOf(a.key), ipOf(ec.ipv4Address!), 8080), null);
      });
    } finally {
      await sa.close();
      await sc.close();
    }
  } finally {
    await env.cleanup();
  }
});

Deno.test("bridge (root, nats-server) IPAM: static addresses, refusals, IPv6, exhaustion", async (t) => {
  const env = await startEnv("bip");
  try {
    const cnm = await env.open({ defaultBridge: false });
    const net = await cnm.createNetwork({
      name: "lab",
      enableIPv6: true,
      ipam: {
        config: [
          { subnet: "10.77.0.0/24", ipRange: "10.77.0.128/25", gateway: "10.77.0.254" },
          { subnet: "fd00:77::/64" },
        ],
      },
    });
    await t.step("the network has the requested subnets and gateways", () => {
      assert.deepEqual(net.ipam.config, [
        { subnet: "10.77.0.0/24", ipRange: "10.77.0.128/25", gateway: "10.77.0.254" },
        { subnet: "fd00:77::/64", gateway: "fd00:77::1" },
      ]);
    });
    await t.step("automatic addresses come from the ip range; IPv6 too", async () => {
      const e = await cnm.createEndpoint("lab", { name: "auto" });
      assert.equal(e.ipv4Address, "10.77.0.128/24");
      assert.equal(e.ipv6Address, "fd00:77::2/64");
    });
    await t.step("a static address is honoured and then in use", async () => {
      const e = await cnm.createEndpoint("lab", { name: "static", ipv4Address: "10.77.0.10" });
      assert.equal(e.ipv4Address, "10.77.0.10/24");
      await assert.rejects(
        () => cnm.createEndpoint("lab", { name: "again", ipv4Address: "10.77.0.10" }),
        (err: Error) => err instanceof ForbiddenError && err.message === "Address already in use",
      );
    });
    await t.step("an address outside every subnet is refused", async () => {
      await assert.rejects(
        () => cnm.createEndpoint("lab", { name: "out", ipv4Address: "10.78.0.1" }),
        (err: Error) =>
          err instanceof InvalidArgumentError &&
          err.message ===
            "invalid address 10.78.0.1: It does not belong to any of this network's subnets",
      );
    });
    await t.step("overlapping subnets are refused", async () => {
      await assert.rejects(
        () => cnm.createNetwork({ name: "lab2", ipam: { config: [{ subnet: "10.77.0.0/16" }] } }),
        (err: Error) =>
          err instanceof ForbiddenError &&
          err.message === "Pool overlaps with other one on this address space",
      );
      assert.equal(cnm.network("lab2"), undefined);
    });
    await t.step("a small pool runs out with libnetwork's message", async () => {
      await cnm.createNetwork({ name: "tiny", ipam: { config: [{ subnet: "10.79.0.0/29" }] } });
      const made = [];
      for (let i = 0; i < 5; i++) made.push(await cnm.createEndpoint("tiny", { name: `t${i}` }));
      assert.deepEqual(made.map((e) => e.ipv4Address), [
        "10.79.0.2/29",
        "10.79.0.3/29",
        "10.79.0.4/29",
        "10.79.0.5/29",
        "10.79.0.6/29",
      ]);
      await assert.rejects(
        () => cnm.createEndpoint("tiny", { name: "t5" }),
        (err: Error) =>
          err instanceof UnavailableError &&
          err.message === "no available IPv4 addresses on this network's address pools",
      );
    });
    const live = cnm.endpoints().map((e) => e.ipv4Address).filter(Boolean);
    await cnm.close();
    await t.step("after a restart the next allocation collides with no live endpoint", async () => {
      const again = await env.open({ defaultBridge: false });
      await again.deleteEndpoint(again.endpoints({ network: "tiny" })[0].id);
      const next = await again.createEndpoint("lab", { name: "after" });
      assert.ok(!live.includes(next.ipv4Address), `${next.ipv4Address} is already in use`);
      assert.equal(next.ipv4Address, "10.77.0.129/24");
      const reused = await again.createEndpoint("tiny", { name: "reuse" });
      assert.equal(reused.ipv4Address, "10.79.0.2/29");
    });
  } finally {
    await env.cleanup();
  }
});

Deno.test("bridge (root, nats-server) traffic keeps flowing across a restart and nothing is recreated", async (t) => {
  const env = await startEnv("brr");
  try {
    const cnm = await env.open({ defaultBridge: false });
    await cnm.createNetwork({ name: "front" });
    const a = await cnm.createSandbox({
      name: "a",
      hostname: "web",
      dns: ["10.0.0.53"],
      extraHosts: ["db:10.1.1.1"],
    });
    const b = await cnm.createSandbox({ name: "b" });
    const ea = await cnm.createEndpoint("front", { name: "a" });
    const eb = await cnm.createEndpoint("front", { name: "b" });
    await cnm.join(ea.id, a.id);
    await cnm.join(eb.id, b.id);
    const hostLinks = await sh(["ip", "-n", env.host.name, "-j", "link"]);
    const rules = await sh(["ip", "netns", "exec", env.host.name, "nft", "-j", "list", "ruleset"]);
    const server = await serveTcp(nsOf(a.key), 8080);
    try {
      assert.ok(await connectTcp(nsOf(b.key), ipOf(ea.ipv4Address!), 8080));
      await cnm.close();
      await t.step("traffic flows while no controller runs", async () => {
        assert.ok(await connectTcp(nsOf(b.key), ipOf(ea.ipv4Address!), 8080));
      });
      const again = await env.open({ defaultBridge: false });
      await t.step("a restart neither recreates nor duplicates links or rules", async () => {
        assert.deepEqual(again.recovery.resumed, []);
        assert.equal(await sh(["ip", "-n", env.host.name, "-j", "link"]), hostLinks);
        assert.equal(
          await sh(["ip", "netns", "exec", env.host.name, "nft", "-j", "list", "ruleset"]),
          rules,
        );
        assert.ok(await connectTcp(nsOf(b.key), ipOf(ea.ipv4Address!), 8080));
      });
      await t.step("hosts and resolv.conf follow the sandbox's options and endpoints", async () => {
        const sb = again.sandbox("a")!;
        const hosts = await Deno.readTextFile(sb.hostsPath);
        assert.match(hosts, /^10\.1\.1\.1\tdb$/m);
        assert.match(hosts, /^172\.17\.0\.2\tweb a$/m);
        // A user-defined network: the embedded resolver, forwarding to the sandbox's own dns.
        const resolv = await Deno.readTextFile(sb.resolvConfPath);
        assert.match(resolv, /^nameserver 127\.0\.0\.11$/m);
        assert.match(resolv, /^# ExtServers: \[sandbox\(10\.0\.0\.53\)\]$/m);
        const second = await again.createEndpoint("none", { name: "a-none" });
        await again.createNetwork({ name: "side" });
        const side = await again.createEndpoint("side", { name: "a-side" });
        await again.join(side.id, a.id);
        assert.equal(again.endpoint(side.id)?.ifname, "eth1");
        assert.match(await Deno.readTextFile(sb.hostsPath), /^172\.18\.0\.2\tweb a$/m);
        // libnetwork's choice among two gateways: network name order ("front" < "side").
        assert.ok((await routes(nsOf(a.key))).includes("default via 172.17.0.1 dev eth0"));
        await again.leave(ea.id, a.id);
        assert.ok((await routes(nsOf(a.key))).includes("default via 172.18.0.1 dev eth1"));
        assert.doesNotMatch(await Deno.readTextFile(sb.hostsPath), /172\.17\.0\.2/);
        await again.deleteEndpoint(second.id);
      });
    } finally {
      await server.close();
    }
  } finally {
    await env.cleanup();
  }
});

Deno.test("bridge (root, nats-server) an existing bridge is the user's: used, and kept on delete", async () => {
  const env = await startEnv("bru");
  try {
    await sh(["ip", "-n", env.host.name, "link", "add", "userbr", "type", "bridge"]);
    const cnm = await env.open({ defaultBridge: false });
    const net = await cnm.createNetwork({
      name: "mine",
      options: { "com.docker.network.bridge.name": "userbr" },
      ipam: { config: [{ subnet: "10.66.0.0/24" }] },
    });
    assert.equal(net.driverInfo.userOwned, true);
    const addrs = await sh(["ip", "-n", env.host.name, "-br", "addr", "show", "userbr"]);
    assert.match(addrs, /10\.66\.0\.1\/24/);
    await cnm.deleteNetwork("mine");
    const after = await sh(["ip", "-n", env.host.name, "-br", "addr", "show", "userbr"]);
    assert.match(after, /^userbr\s/);
    assert.doesNotMatch(after, /10\.66\.0\.1/);
    await assert.rejects(
      () => cnm.createNetwork({ name: "bad", options: { "com.docker.network.driver.mtu": "9x" } }),
      (e: Error) =>
        e instanceof InvalidArgumentError &&
        e.message === 'invalid option com.docker.network.driver.mtu: "9x" is not an MTU (68-65535)',
    );
  } finally {
    await env.cleanup();
  }
});

Deno.test("bridge (root, nats-server) a crash between making the bridge and marking it does not make it the user's", async () => {
  const env = await startEnv("brk");
  try {
    const cnm = await env.open({ defaultBridge: false });
    await cnm.close();
    // What a kill inside the create effect leaves: the intent, and a bridge without our mark.
    const id = newObjectId();
    await env.withJournal((j) =>
      j.append({
        v: 1,
        eventId: newEventId(),
        effectId: newEventId(),
        kind: "network",
        objectId: id,
        type: "network.create.requested",
        from: null,
        to: "creating",
        at: new Date().toISOString(),
        host: "h1",
        data: {
          name: "half",
          driver: "bridge",
          scope: "local",
          internal: false,
          enableIPv6: false,
          labels: {},
          options: {},
          ipam: {
            driver: "default",
            ipv4: [{
              poolId: "LocalDefault/10.55.0.0/24",
              pool: "10.55.0.0/24",
              gateway: "10.55.0.1/24",
              auxAddresses: {},
            }],
            ipv6: [],
          },
        },
      }, 0)
    );
    const bridge = `br-${id.slice(0, 12)}`;
    await sh(["ip", "-n", env.host.name, "link", "add", bridge, "type", "bridge"]);
    const again = await env.open({ defaultBridge: false });
    const net = again.network("half")!;
    assert.equal(net.state, "active");
    assert.equal(net.driverInfo.userOwned, false);
    await again.deleteNetwork("half");
    assert.doesNotMatch(await sh(["ip", "-n", env.host.name, "-br", "link"]), new RegExp(bridge));
  } finally {
    await env.cleanup();
  }
});

Deno.test("bridge (root, nats-server) deleting a network whose create failed removes exactly what the create made", async (t) => {
  const env = await startEnv("brf");
  const host = env.host.name;
  const link = async (name: string) =>
    JSON.parse(await sh(["ip", "-n", host, "-j", "addr", "show"])).find((l: { ifname: string }) =>
      l.ifname === name
    );
  const failedFacts = async (id: string) =>
    (await env.readAll()).find((e) => e.objectId === id && e.type === "network.create.failed")!
      .data.facts as Record<string, unknown>;
  try {
    const cnm = await env.open({ defaultBridge: false });
    await cnm.createNetwork({ name: "ok" }); // the firewall's base exists from here on
    const nft = (args: string[]) => sh(["ip", "netns", "exec", host, "nft", ...args]);
    await nft(["add", "chain", "inet", "cnm", "planted"]);
    for (const s of ["10.67.0.0/24", "10.69.0.0/24"]) {
      // Makes the network's firewall transaction fail after its bridge work.
      await nft(["add", "element", "inet", "cnm", "cnm_nat4", `{ ${s} : jump planted }`]);
    }
    await t.step("a user's veth named as the bridge: refused, and kept by the delete", async () => {
      await sh(["ip", "-n", host, "link", "add", "wdum0", "type", "veth", "peer", "name", "wdum1"]);
      await assert.rejects(
        () =>
          cnm.createNetwork({
            name: "onveth",
            options: { "com.docker.network.bridge.name": "wdum0" },
          }),
        (e: Error) =>
          e instanceof InvalidArgumentError &&
          e.message ===
            "invalid option com.docker.network.bridge.name: wdum0 exists and is not a bridge",
      );
      const net = cnm.network("onveth")!;
      assert.equal(net.state, "failed");
      assert.deepEqual((await failedFacts(net.id)).made, []);
      await cnm.deleteNetwork("onveth");
      assert.ok(await link("wdum0"), "wdum0 was deleted");
      assert.ok(await link("wdum1"));
    });
    await t.step("a user's bridge: the delete takes back only the address it added", async () => {
      await sh(["ip", "-n", host, "link", "add", "userbr2", "type", "bridge"]);
      await sh(["ip", "-n", host, "addr", "add", "10.68.0.1/24", "dev", "userbr2"]);
      await assert.rejects(() =>
        cnm.createNetwork({
          name: "onbridge",
          options: { "com.docker.network.bridge.name": "userbr2" },
          ipam: { config: [{ subnet: "10.67.0.0/24" }] },
        })
      );
      const net = cnm.network("onbridge")!;
      assert.deepEqual((await failedFacts(net.id)).made, [
        { address: "10.67.0.1/24", link: "userbr2" },
      ]);
      await cnm.deleteNetwork("onbridge");
      const l = await link("userbr2");
      assert.ok(l, "userbr2 was deleted");
      assert.deepEqual(
        l.addr_info.filter((a: { family: string }) => a.family === "inet").map((
          a: { local: string },
        ) => a.local),
        ["10.68.0.1"],
      );
    });
    await t.step("a bridge the create made is deleted", async () => {
      await assert.rejects(() =>
        cnm.createNetwork({ name: "own", ipam: { config: [{ subnet: "10.69.0.0/24" }] } })
      );
      const net = cnm.network("own")!;
      const bridge = `br-${net.id.slice(0, 12)}`;
      assert.deepEqual((await failedFacts(net.id)).made, [{ link: bridge }]);
      assert.ok(await link(bridge));
      await cnm.deleteNetwork("own");
      assert.equal(await link(bridge), undefined);
    });
  } finally {
    await env.cleanup();
  }
});
