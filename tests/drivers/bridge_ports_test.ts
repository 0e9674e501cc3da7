/**
 * Port publishing through the bridge driver (root): who reaches a published port from where,
 * with br_netfilter's bridged-traffic hook off and on in the test's host namespace. Needs
 * root, nft, ip, conntrack; fails (is not skipped) without them.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connectTcp, serveTcp } from "../_harness/tcp.ts";
import { requestUdp, sendUdpForever, serveUdp } from "../_harness/udp.ts";
import { run } from "./_fw_netns.ts";
import {
  GW4,
  GW6,
  HOST4,
  HOST6,
  mapping,
  type PortsLab,
  REMOTE4,
  REMOTE6,
  within,
  withPortsLab,
} from "./_ports_lab.ts";

for (const brNetfilter of [false, true]) {
  const mode = `br_netfilter ${brNetfilter ? "on" : "off"}`;

  Deno.test(`bridge ports (root) reachability, ${mode}`, async (t) => {
    await withPortsLab(brNetfilter, 2, async (p) => {
      const [s1] = p.boxes;
      const stops: (() => Promise<void>)[] = [];
      try {
        const tcp1 = await serveTcp(s1.ns, 80, "::", "s1");
        stops.push(() => tcp1.close());
        const udp1 = await serveUdp(s1.ns, 5353, "s1");
        stops.push(() => udp1.stop());
        const published = await p.program(s1, [
          mapping("0.0.0.0", 8080, 80),
          mapping("::", 8080, 80),
          mapping("127.0.0.1", 8081, 80),
          mapping("0.0.0.0", 5353, 5353, "udp"),
          mapping("127.0.0.1", 5354, 5353, "udp"),
          mapping(HOST4, 8082, 80),
          mapping(HOST6, 8082, 80),
        ]);
        assert.equal(published.length, 7);
        await checks(t, p, udp1);
      } finally {
        for (const stop of stops) await stop();
      }
    });
  });

  Deno.test(`bridge ports (root) an already-sending UDP client reaches the container within 1 s, ${mode}`, async () => {
    await withPortsLab(brNetfilter, 1, async (p) => {
      const [s1] = p.boxes;
      const server = await serveUdp(s1.ns, 5353, "s1");
      const sender = await sendUdpForever(p.remote, HOST4, 5355, { sourcePort: 40000 });
      try {
        // Before publishing, the sender's datagrams create an un-NATed conntrack entry that it
        // keeps refreshing; without a flush they would never reach the container.
        await new Promise((r) => setTimeout(r, 500));
        assert.match(
          await p.inHost(["conntrack", "-L", "-p", "udp", "--orig-port-dst", "5355"]),
          /UNREPLIED/,
        );
        await p.program(s1, [mapping("0.0.0.0", 5355, 5353, "udp")]);
        const ms = await within(1000, () => server.received().length > 0);
        assert.notEqual(ms, null, "no datagram reached the container within 1 s");
        assert.equal(server.received()[0], `${REMOTE4} 40000`);
      } finally {
        await sender.stop();
        await server.stop();
      }
    });
  });
}

async function checks(t: Deno.TestContext, p: PortsLab, udp1: { received(): string[] }) {
  const [s1, s2] = p.boxes;
  await t.step(
    "a remote client reaches the port; the container sees its real address",
    async () => {
      assert.equal(await connectTcp(p.remote, HOST4, 8080), `s1 ${REMOTE4}`);
      assert.equal(await requestUdp(p.remote, HOST4, 5353), `s1 ${REMOTE4}`);
    },
  );
  await t.step("a remote client cannot reach the container directly", async () => {
    assert.equal(await connectTcp(p.remote, s1.ipv4, 80), null);
    assert.equal(await connectTcp(p.remote, s1.ipv6, 80), null);
  });
  await t.step("the host reaches it via its own address and via 127.0.0.1", async () => {
    assert.equal(await connectTcp(p.host, HOST4, 8080), `s1 ${HOST4}`);
    assert.equal(await connectTcp(p.host, GW4, 8080), `s1 ${GW4}`);
    assert.equal(await connectTcp(p.host, "127.0.0.1", 8080), `s1 ${GW4}`);
    assert.equal(await requestUdp(p.host, "127.0.0.1", 5353), `s1 ${GW4}`);
  });
  await t.step("another container and the container itself reach it via the host", async () => {
    for (const [box, host] of [[s2, HOST4], [s2, GW4], [s1, HOST4], [s1, GW4]] as const) {
      assert.equal(await connectTcp(box.ns, host, 8080), `s1 ${GW4}`, `${box.ns} → ${host}`);
    }
    assert.equal(await connectTcp(s2.ns, HOST6, 8080), `s1 ${GW6}`);
  });
  await t.step("a 127.0.0.1 binding is reachable only from the host itself", async () => {
    assert.equal(await connectTcp(p.host, "127.0.0.1", 8081), `s1 ${GW4}`);
    assert.equal(await connectTcp(p.remote, HOST4, 8081), null);
    assert.equal(await connectTcp(s2.ns, GW4, 8081), null);
    assert.equal(await connectTcp(s2.ns, "127.0.0.1", 8081), null);
    assert.equal(await requestUdp(p.host, "127.0.0.1", 5354), `s1 ${GW4}`);
  });
  await t.step("crafted packets to 127.0.0.1 from the LAN never reach the container", async () => {
    // The remote rewrites its datagrams to the host's MAC into "to 127.0.0.1:5354".
    await run(["ip", "netns", "exec", p.remote, "nft", "-f", "-"], craftLoopback(HOST4, 5354));
    const before = udp1.received().length;
    const sender = await sendUdpForever(p.remote, HOST4, 5354, { sourcePort: 40001 });
    try {
      await new Promise((r) => setTimeout(r, 600));
    } finally {
      await sender.stop();
    }
    const counters = await run([
      "ip",
      "netns",
      "exec",
      p.remote,
      "nft",
      "list",
      "table",
      "netdev",
      "craft",
    ]);
    assert.match(counters, /packets [1-9]/, "the crafted packets were not sent");
    assert.deepEqual(udp1.received().slice(before), []);
  });
  await t.step("a binding on one host address answers on that address only", async () => {
    assert.equal(await connectTcp(p.remote, HOST4, 8082), `s1 ${REMOTE4}`);
    assert.equal(await connectTcp(p.remote, HOST6, 8082), `s1 ${REMOTE6}`);
    assert.equal(await connectTcp(p.host, HOST4, 8082), `s1 ${HOST4}`);
    assert.equal(await connectTcp(p.host, GW4, 8082), null);
    assert.equal(await connectTcp(s2.ns, GW4, 8082), null);
  });
  await t.step("IPv6: a remote client reaches [::]:8080 and is seen with its address", async () => {
    assert.equal(await connectTcp(p.remote, HOST6, 8080), `s1 ${REMOTE6}`);
    assert.equal(await connectTcp(p.host, HOST6, 8080), `s1 ${HOST6}`);
  });
}

/** A netdev egress rule on the remote's eth0 that rewrites UDP to host:port into 127.0.0.1. */
function craftLoopback(host: string, port: number): string {
  return `table netdev craft {
  chain egress {
    type filter hook egress device "eth0" priority 0;
    ip daddr ${host} udp dport ${port} counter ip daddr set 127.0.0.1
  }
}
`;
}
