/**
 * Overlay driver configuration on two hosts, one `cnm serve` process each on one stream
 * (needs root and nats-server), checked in the kernel: `vxlanPort` gives a new network's VXLAN
 * devices that port on every host (the network records it) while an existing network keeps
 * its port, also when its device is made again; `advertiseAddress` reaches the next joins,
 * of existing networks too — the journaled join carries it and the other host programs it —
 * and set back to null the next join's VTEP is auto-detected again, without a restart.
 */

import assert from "node:assert/strict";
import type { ApiClient, EndpointInfo, NetworkInfo, SandboxInfo } from "../../mod.ts";
import { history } from "../../mod.ts";
import { ownerId } from "../../src/ids.ts";
import { sh } from "../_harness/command.ts";
import { ping } from "../_harness/multihost.ts";
import { createOverlayLab, ipOf, nsOf, type OverlayLab, until } from "../_harness/overlay_lab.ts";

/** The overlay namespace of `net` on host i. */
const overlayNs = (lab: OverlayLab, i: number, net: NetworkInfo) => {
  const h = lab.hosts[i];
  return `${h.namePrefix}ov-${ownerId(lab.stream, h.hostId)}-${net.id.slice(0, 12)}`;
};

/** `dstport` of every VXLAN device of `net` on host i, as `ip -d link show` prints it. */
async function dstPorts(lab: OverlayLab, i: number, net: NetworkInfo): Promise<number[]> {
  const out = await sh(["ip", "-n", overlayNs(lab, i, net), "-d", "link", "show", "type", "vxlan"]);
  return [...out.matchAll(/ dstport (\d+) /g)].map((m) => Number(m[1]));
}

/** UDP ports listened on in host i's own namespace (where the VXLAN sockets stay). */
async function udpPorts(lab: OverlayLab, i: number): Promise<Set<number>> {
  const out = await sh(["ip", "netns", "exec", lab.hosts[i].ns, "ss", "-H", "-uln"]);
  return new Set(
    out.split("\n").filter(Boolean).map((l) => Number(l.trim().split(/\s+/)[3].split(":").pop())),
  );
}

/** The remote FDB entries (`mac dst`) of `net`'s VXLAN devices on host i. */
async function fdb(lab: OverlayLab, i: number, net: NetworkInfo): Promise<string[]> {
  const rows = JSON.parse(
    await sh(["bridge", "-n", overlayNs(lab, i, net), "-j", "fdb", "show"]) || "[]",
  ) as { mac: string; dst?: string; ifname?: string }[];
  return rows.filter((r) => r.dst).map((r) => `${r.mac} ${r.dst}`).sort();
}

/** The VTEP the journal recorded for the endpoint's last join. */
async function journaledVtep(lab: OverlayLab, ep: EndpointInfo): Promise<unknown> {
  const h = await history(ep.id, {
    nats: { servers: lab.urls },
    stream: lab.stream,
    prefix: lab.prefix,
  });
  const joined = h.transitions.filter((x) => x.type === "endpoint.joined").at(-1);
  return (joined?.event.data as { facts?: { vtep?: unknown } } | undefined)?.facts?.vtep;
}

Deno.test("overlay configuration (root, nats-server): vxlanPort reaches new networks, advertiseAddress the next joins", async (t) => {
  // No --advertise-addr: each host finds its VTEP from its default route (on the lab's ul0).
  const lab = await createOverlayLab({ hosts: 2, label: "ovc", advertise: false });
  const api = (i: number): ApiClient => lab.hosts[i].api;
  try {
    for (const h of lab.hosts) {
      await sh(["ip", "-n", h.ns, "route", "add", "default", "dev", "ul0"]);
    }
    const sandbox = async (i: number, name: string) => {
      const sb = await api(i).createSandbox({ name });
      return { sb, ns: nsOf(sb.key) };
    };
    const joinNew = async (i: number, net: string, sb: SandboxInfo, name: string) => {
      const ep = await api(i).createEndpoint(net, { name });
      return await api(i).join(ep.id, sb.id);
    };
    const seen = (i: number, name: string) => async () => !!(await api(i).network(name));

    let old!: NetworkInfo;
    let c1!: { sb: SandboxInfo; ns: string; ep: EndpointInfo };
    let c2!: { sb: SandboxInfo; ns: string; ep: EndpointInfo };

    await t.step("a network made under the defaults uses port 4789 on both hosts", async () => {
      old = await api(0).createNetwork({ name: "old", driver: "overlay" });
      assert.equal(old.driverConfig?.vxlanPort, 4789);
      await until("h2 sees old", seen(1, "old"));
      const s1 = await sandbox(0, "c1");
      const s2 = await sandbox(1, "c2");
      c1 = { ...s1, ep: await joinNew(0, "old", s1.sb, "c1") };
      c2 = { ...s2, ep: await joinNew(1, "old", s2.sb, "c2") };
      for (const i of [0, 1]) {
        assert.deepEqual(await dstPorts(lab, i, old), [4789], `h${i + 1}`);
        assert.ok((await udpPorts(lab, i)).has(4789), `h${i + 1} listens on UDP 4789`);
      }
      assert.equal(await journaledVtep(lab, c1.ep), lab.hosts[0].vtep, "auto-detected");
      await until("c1 -> c2", () => ping(c1.ns, ipOf(c2.ep.ipv4Address)));
    });

    let fresh!: NetworkInfo;
    await t.step("vxlanPort 4800 on h1: a new network's devices use it on both hosts", async () => {
      // h1's old network has no endpoint meanwhile: its namespace and device go away.
      await api(0).leave(c1.ep.id, c1.sb.id);
      assert.equal((await udpPorts(lab, 0)).has(4789), false, "h1 has no device of old now");
      const r = await api(0).configureDriver("overlay", { vxlanPort: 4800 });
      assert.equal(r.journaled, true);
      assert.deepEqual(r.config, { vxlanPort: 4800 });
      assert.deepEqual(r.changed.vxlanPort, { from: null, to: 4800, appliesTo: "new networks" });
      fresh = await api(0).createNetwork({ name: "fresh", driver: "overlay" });
      assert.equal(fresh.driverConfig?.vxlanPort, 4800);
      await until("h2 sees fresh", seen(1, "fresh"));
      const c3 = await sandbox(0, "c3");
      const c4 = await sandbox(1, "c4");
      await joinNew(0, "fresh", c3.sb, "c3");
      const e4 = await joinNew(1, "fresh", c4.sb, "c4");
      // h2 was not configured: the port is the one the network was created under.
      for (const i of [0, 1]) {
        assert.deepEqual(await dstPorts(lab, i, fresh), [4800], `h${i + 1}`);
        assert.ok((await udpPorts(lab, i)).has(4800), `h${i + 1} listens on UDP 4800`);
      }
      await until("c3 -> c4 over port 4800", () => ping(c3.ns, ipOf(e4.ipv4Address)));
    });

    await t.step(
      "the existing network keeps 4789, also when its device is made again",
      async () => {
        c1.ep = await api(0).join(c1.ep.id, c1.sb.id);
        for (const i of [0, 1]) assert.deepEqual(await dstPorts(lab, i, old), [4789], `h${i + 1}`);
        assert.ok((await udpPorts(lab, 0)).has(4789), "h1 listens on UDP 4789 again");
        await until("c1 -> c2 over port 4789", () => ping(c1.ns, ipOf(c2.ep.ipv4Address)));
      },
    );

    const second = "192.0.2.101";
    await t.step("advertiseAddress reaches the next join of an existing network", async () => {
      await sh(["ip", "-n", lab.hosts[0].ns, "addr", "add", `${second}/24`, "dev", "ul0"]);
      const r = await api(0).configureDriver("overlay", { advertiseAddress: second });
      assert.deepEqual(r.config, { vxlanPort: 4800, advertiseAddress: second });
      assert.deepEqual(r.changed, {
        advertiseAddress: { from: null, to: second, appliesTo: "next joins" },
      });
      assert.deepEqual(r.warnings, [
        "advertiseAddress applies to the next joins, of existing overlay networks too: " +
        "endpoints joined before keep what they joined with until they join again",
      ]);
      const c5 = await sandbox(0, "c5");
      const e5 = await joinNew(0, "old", c5.sb, "c5");
      assert.equal(await journaledVtep(lab, e5), second, "the journaled join carries it");
      // h2 programs it; c1, joined before the change, stays at the address it joined with.
      await until("h2 sends c5 to 192.0.2.101", async () => {
        const got = await fdb(lab, 1, old);
        return got.includes(`${e5.macAddress} ${second}`) &&
          got.includes(`${c1.ep.macAddress} ${lab.hosts[0].vtep}`);
      });
      await until("c2 -> c5 via 192.0.2.101", () => ping(c2.ns, ipOf(e5.ipv4Address)));
      assert.equal(await journaledVtep(lab, c1.ep), lab.hosts[0].vtep);
    });

    await t.step(
      "advertiseAddress null: the next join is auto-detected again, no restart",
      async () => {
        const r = await api(0).configureDriver("overlay", { advertiseAddress: null });
        assert.deepEqual(r.config, { vxlanPort: 4800 });
        assert.deepEqual(r.changed, {
          advertiseAddress: { from: second, to: null, appliesTo: "next joins" },
        });
        const c6 = await sandbox(0, "c6");
        const e6 = await joinNew(0, "old", c6.sb, "c6");
        assert.equal(
          await journaledVtep(lab, e6),
          lab.hosts[0].vtep,
          "the default route's address",
        );
        await until(
          "h2 sends c6 to 192.0.2.1",
          async () => (await fdb(lab, 1, old)).includes(`${e6.macAddress} ${lab.hosts[0].vtep}`),
        );
        await until("c2 -> c6 via 192.0.2.1", () => ping(c2.ns, ipOf(e6.ipv4Address)));
      },
    );

    await t.step(
      "a restart keeps an endpoint joined under the old address local: no FDB entry to it on its own host",
      async () => {
        // c5 joined with 192.0.2.101 on h1; h1 now detects 192.0.2.1. Recovery hands the driver
        // the whole peer table: c5 is h1's own endpoint, whatever VTEP it joined with.
        await lab.kill(0);
        await lab.start(0);
        const e5 = (await api(0).endpoints()).find((e) => e.name === "c5")!;
        const own = await fdb(lab, 0, old);
        assert.ok(
          !own.some((row) => row.startsWith(`${e5.macAddress} `)),
          `h1 programs its own c5 as a remote peer: ${own.join(", ")}`,
        );
        assert.ok((await fdb(lab, 1, old)).includes(`${e5.macAddress} ${second}`));
        assert.deepEqual((await api(0).reconcile({ dryRun: true })).findings, []);
      },
    );
  } finally {
    await lab.cleanup();
  }
  const left = await lab.lab.namespaces();
  assert.deepEqual(left, [], "namespaces left behind");
});
