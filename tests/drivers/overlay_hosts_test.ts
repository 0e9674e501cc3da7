/**
 * Overlay networks across three hosts, one `cnm serve` process per host on one stream
 * (needs root and nats-server): containers on all hosts reach each other over VXLAN, the
 * kernel holds exactly one neighbour and one FDB entry per remote endpoint, leaves and deletes
 * remove them everywhere, a moved IP ends at its new VTEP, reconcile repairs a hand-deleted
 * entry, a port published by an overlay-only container (on its cnm_gwbridge endpoint) is
 * reachable over the underlay, and a controller killed with SIGKILL leaves the others'
 * traffic alone and converges on restart.
 */

import assert from "node:assert/strict";
import { parsePortSpec } from "../../mod.ts";
import type { ApiClient, EndpointInfo, NetworkInfo } from "../../mod.ts";
import { ownerId } from "../../src/ids.ts";
import { sh } from "../_harness/command.ts";
import { ping } from "../_harness/multihost.ts";
import { createOverlayLab, type OverlayLab } from "../_harness/overlay_lab.ts";
import { CNM } from "../_harness/cnm_serve.ts";
import { connectTcp, serveTcp } from "../_harness/tcp.ts";

const ipOf = (cidr?: string) => cidr!.split("/")[0];
const nsOf = (key: string) => key.slice(key.lastIndexOf("/") + 1);

async function until(what: string, f: () => Promise<boolean>, ms = 1000): Promise<number> {
  const t0 = performance.now();
  while (!(await f())) {
    if (performance.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return performance.now() - t0;
}

/** Permanent neighbour and FDB entries on a network's VXLAN device on one host. */
async function entries(lab: OverlayLab, i: number, net: NetworkInfo) {
  const h = lab.hosts[i];
  const ns = `${h.namePrefix}ov-${ownerId(lab.stream, h.hostId)}-${net.id.slice(0, 12)}`;
  const vni = Number(net.options["com.docker.network.driver.overlay.vxlanid_list"]);
  const dev = `vx-${vni.toString(16).padStart(6, "0")}-${net.id.slice(0, 5)}`;
  const exists = (await sh(["ip", "netns", "list"])).split("\n").some((l) => l.startsWith(ns));
  if (!exists) return { ns, neigh: [] as string[], fdb: [] as string[] };
  const neigh = (await lab.ipJson(ns, "neigh", "show", "dev", dev))
    .filter((n) => (n.state ?? []).includes("PERMANENT"))
    .map((n) => `${n.dst} ${n.lladdr}`).sort();
  const fdb = (JSON.parse(await sh(["bridge", "-n", ns, "-j", "fdb", "show", "dev", dev]) || "[]"))
    .filter((f: { dst?: string }) => f.dst)
    .map((f: { mac: string; dst: string }) => `${f.mac} ${f.dst}`).sort();
  return { ns, neigh, fdb };
}

Deno.test("overlay across three hosts, one controller process each (root, nats-server)", async (t) => {
  const lab = await createOverlayLab({ hosts: 3 });
  const api = (i: number): ApiClient => lab.hosts[i].api;
  try {
    let net!: NetworkInfo;
    const eps: EndpointInfo[] = [];
    const sbs: string[] = [];
    /** The host (index) of each endpoint in `eps`. */
    const hostOf: number[] = [0, 1, 2];

    await t.step("a network made on h1 is seen by h2 and h3", async () => {
      net = await api(0).createNetwork({ name: "ov", driver: "overlay" });
      assert.equal(net.scope, "global");
      assert.equal(net.options["com.docker.network.driver.overlay.vxlanid_list"], "4096");
      for (const i of [1, 2]) {
        await until(`h${i + 1} sees ov`, async () => (await api(i).network("ov"))?.id === net.id);
      }
    });

    await t.step("a container on each host, joined", async () => {
      for (let i = 0; i < 3; i++) {
        const sb = await api(i).createSandbox({ name: `c${i + 1}` });
        sbs.push(nsOf(sb.key));
        const ep = await api(i).createEndpoint("ov", { name: `c${i + 1}` });
        eps.push(await api(i).join(ep.id, sb.id));
      }
      assert.equal(new Set(eps.map((e) => e.ipv4Address)).size, 3);
      for (const e of eps) {
        assert.equal(
          e.macAddress,
          `02:42:${
            ipOf(e.ipv4Address).split(".").map((o) => Number(o).toString(16).padStart(2, "0")).join(
              ":",
            )
          }`,
        );
      }
    });

    await t.step("every container reaches every other (ping and TCP)", async () => {
      for (let a = 0; a < 3; a++) {
        for (let b = 0; b < 3; b++) {
          if (a === b) continue;
          await until(`c${a + 1} -> c${b + 1}`, () => ping(sbs[a], ipOf(eps[b].ipv4Address)), 2000);
        }
      }
      const server = await serveTcp(sbs[0], 8080, "0.0.0.0");
      try {
        for (const b of [1, 2]) {
          assert.equal(
            await connectTcp(sbs[b], ipOf(eps[0].ipv4Address), 8080),
            `ok ${ipOf(eps[b].ipv4Address)}`,
          );
        }
      } finally {
        await server.close();
      }
    });

    await t.step("MTU 1450: a 1422-byte payload with DF passes, 1423 does not", async () => {
      const to = ipOf(eps[1].ipv4Address);
      assert.ok(await ping(sbs[0], to, { size: 1422, dontFragment: true }));
      assert.equal(await ping(sbs[0], to, { size: 1423, dontFragment: true }), false);
    });

    await t.step(
      "an overlay-only container goes out through cnm_gwbridge (masqueraded)",
      async () => {
        const routes = await lab.ipJson(sbs[0], "route", "show", "default");
        assert.equal(routes.length, 1, "a default route");
        const gw = await api(0).network("cnm_gwbridge");
        assert.ok(gw, "the gateway bridge network exists on h1");
        assert.equal(gw.options["com.docker.network.bridge.enable_icc"], "false");
        assert.equal(routes[0].gateway, gw.ipam.config[0].gateway);
        // Another host's underlay address is outside the container's networks.
        assert.ok(await ping(sbs[0], lab.hosts[1].vtep), "c1 reaches 192.0.2.2");
        // The endpoint is the host's own, not a peer of the overlay.
        const own = (await api(0).endpoints({ network: "cnm_gwbridge" })).map((e) => e.name);
        assert.deepEqual(own, [`gateway_${eps[0].sandboxId!.slice(0, 12)}`]);
      },
    );

    await t.step(
      "a port an overlay-only container publishes is reachable over the underlay",
      async () => {
        const sb = await api(0).createSandbox({ name: "pub" });
        const ep = await api(0).createEndpoint("ov", {
          name: "pub",
          portBindings: parsePortSpec("8080:80"),
        });
        assert.deepEqual(ep.ports, [{
          proto: "tcp",
          containerPort: 80,
          hostIp: "0.0.0.0",
          hostPort: 8080,
        }]);
        await api(0).join(ep.id, sb.id);
        const server = await serveTcp(nsOf(sb.key), 80, "0.0.0.0");
        const [h1, h2] = [lab.hosts[0], lab.hosts[1]];
        try {
          // From another host's namespace: the container sees that host's address.
          assert.equal(await connectTcp(h2.ns, h1.vtep, 8080), `ok ${h2.vtep}`);
          // From a container on h2, out through h2's own cnm_gwbridge (masqueraded).
          assert.equal(await connectTcp(sbs[1], h1.vtep, 8080), `ok ${h2.vtep}`);
          // From h1's host namespace itself.
          assert.equal(await connectTcp(h1.ns, h1.vtep, 8080), `ok ${h1.vtep}`);
          assert.deepEqual((await api(0).reconcile({ dryRun: true })).findings, []);
          // Deleting the sandbox (its endpoints leave) removes the rules and frees the port.
          await api(0).deleteSandbox(sb.id);
          assert.equal(await connectTcp(h2.ns, h1.vtep, 8080), null);
          const ss = await sh(["ip", "netns", "exec", h1.ns, "ss", "-Hlnt", "sport", "= :8080"]);
          assert.equal(ss.trim(), "", "the host port is free");
          assert.deepEqual((await api(0).reconcile({ dryRun: true })).findings, []);
        } finally {
          await server.close();
        }
      },
    );

    const expected = (i: number, except = new Set<number>()) => {
      const others = eps.map((e, j) => ({ e, j }))
        .filter(({ j }) => hostOf[j] !== i && !except.has(j));
      return {
        neigh: others.map(({ e }) => `${ipOf(e.ipv4Address)} ${e.macAddress}`).sort(),
        fdb: others.map(({ e, j }) => `${e.macAddress} ${lab.hosts[hostOf[j]].vtep}`).sort(),
      };
    };

    await t.step(
      "one neighbour and one FDB entry per remote endpoint, none for local",
      async () => {
        for (let i = 0; i < 3; i++) {
          const got = await entries(lab, i, net);
          assert.deepEqual({ neigh: got.neigh, fdb: got.fdb }, expected(i), `host h${i + 1}`);
        }
      },
    );

    await t.step(
      "cnm network inspect shows each endpoint's host and this host's peers",
      async () => {
        const o = await new Deno.Command(CNM, {
          args: ["network", "inspect", "ov"],
          env: {
            CNM_NATS_URL: lab.urls.join(","),
            CNM_STREAM: lab.stream,
            CNM_PREFIX: lab.prefix,
            CNM_HOST_ID: "h1",
          },
        }).output();
        assert.equal(o.code, 0, new TextDecoder().decode(o.stderr));
        const [n] = JSON.parse(new TextDecoder().decode(o.stdout));
        const hosts = (n.endpoints as { name: string; host: string }[])
          .filter((e) => /^c\d$/.test(e.name)).map((e) => `${e.name}@${e.host}`).sort();
        assert.deepEqual(hosts, ["c1@h1", "c2@h2", "c3@h3"]);
        assert.equal(n.peers.remotePeers, 2);
        assert.deepEqual([n.peers.missing, n.peers.stale, n.peers.learned], [[], [], []]);
      },
    );

    await t.step("a leave removes the entries everywhere within 1 s", async () => {
      await api(2).leave(eps[2].id, `c3`);
      for (const i of [0, 1]) {
        const ms = await until(`h${i + 1} forgets c3`, async () => {
          const got = await entries(lab, i, net);
          return JSON.stringify({ neigh: got.neigh, fdb: got.fdb }) ===
            JSON.stringify(expected(i, new Set([2])));
        });
        assert.ok(ms < 1000);
      }
      eps[2] = await api(2).join(eps[2].id, "c3");
    });

    await t.step("a moved IP ends at its new host's VTEP everywhere", async () => {
      const moved = eps[1].ipv4Address!;
      await api(1).deleteEndpoint(eps[1].id, { force: true });
      const again = await api(2).createEndpoint("ov", { name: "moved", ipv4Address: ipOf(moved) });
      const sb3 = await api(2).createSandbox({ name: "c3b" });
      const joined = await api(2).join(again.id, sb3.id);
      assert.equal(joined.ipv4Address, moved);
      await until("h1 sends the moved IP to h3", async () => {
        const got = await entries(lab, 0, net);
        return got.fdb.includes(`${joined.macAddress} ${lab.hosts[2].vtep}`) &&
          !got.fdb.some((f: string) => f.endsWith(lab.hosts[1].vtep));
      });
      assert.ok(await until("c1 reaches the moved IP", () => ping(sbs[0], ipOf(moved)), 2000) >= 0);
      await api(2).deleteSandbox(sb3.id);
      const sb2 = await api(1).sandbox("c2");
      const ep2 = await api(1).createEndpoint("ov", { name: "c2b" });
      eps[1] = await api(1).join(ep2.id, sb2!.id);
    });

    await t.step("a hand-deleted FDB entry is repaired by reconcile", async () => {
      const got = await entries(lab, 0, net);
      const [mac, vtep] = got.fdb[0].split(" ");
      const dev = `vx-${(4096).toString(16).padStart(6, "0")}-${net.id.slice(0, 5)}`;
      await sh(["bridge", "-n", got.ns, "fdb", "del", mac, "dev", dev, "dst", vtep, "self"]);
      assert.equal((await entries(lab, 0, net)).fdb.length, 1);
      const report = await api(0).reconcile();
      assert.ok(report.findings.some((f) => (f as { resource: string }).resource === "peer"));
      assert.deepEqual((await entries(lab, 0, net)).fdb, expected(0).fdb);
    });

    await t.step(
      "kill -9 of h2's controller leaves c1<->c3 alone; h2 converges on restart",
      async () => {
        await lab.kill(1);
        // Work on the other hosts while h2 is down: a new container on h3.
        const sb = await api(2).createSandbox({ name: "late" });
        const ep = await api(2).createEndpoint("ov", { name: "late" });
        const late = await api(2).join(ep.id, sb.id);
        assert.ok(await ping(sbs[0], ipOf(eps[2].ipv4Address)));
        assert.ok(await ping(nsOf(sb.key), ipOf(eps[0].ipv4Address)));
        await lab.start(1);
        eps.push(late);
        hostOf.push(2);
        sbs.push(nsOf(sb.key));
        await until("h2 learned the late container", async () => {
          const got = await entries(lab, 1, net);
          return JSON.stringify({ neigh: got.neigh, fdb: got.fdb }) === JSON.stringify(expected(1));
        }, 3000);
        assert.ok(
          await until("c2 reaches late", () => ping(sbs[1], ipOf(late.ipv4Address)), 2000) >= 0,
        );
      },
    );

    await t.step("deleting everything removes the overlay namespaces", async () => {
      for (let i = 0; i < 3; i++) {
        for (const s of await api(i).sandboxes()) await api(i).deleteSandbox(s.id);
      }
      await api(1).deleteNetwork("ov");
      for (let i = 0; i < 3; i++) {
        await until(`h${i + 1} dropped ov`, async () => (await api(i).network("ov")) === undefined);
        assert.equal((await entries(lab, i, net)).neigh.length, 0);
      }
    });
  } finally {
    await lab.cleanup();
  }
});
