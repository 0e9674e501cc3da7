/**
 * `cnm network create -d overlay` through the real `./cnm` (needs root and nats-server): two
 * lab hosts, each with its `cnm serve --advertise-addr <underlay address>` process on one
 * stream. The network made on h1 with `--subnet` and driver options is inspected from h2,
 * containers connected on both hosts with `cnm connect` reach each other, `network inspect`
 * shows every endpoint's host and the peers this host programmed (at the other host's VTEP),
 * refusals (an overlapping subnet, `encrypted`, `rm` while endpoints exist, bad `serve` flags)
 * change nothing, and `network rm` removes it everywhere.
 */

import assert from "node:assert/strict";
import { output } from "../_harness/command.ts";
import { CNM } from "../_harness/cnm_serve.ts";
import { ping } from "../_harness/multihost.ts";
import { createOverlayLab, ipOf, nsOf, type OverlayLab, until } from "../_harness/overlay_lab.ts";

/** Runs `./cnm --host <host> ARGS` against the lab's NATS and stream. */
function cnmOn(lab: OverlayLab) {
  return async (host: string, ...args: string[]) => {
    const o = await output([CNM, "--host", host, ...args], {
      env: { CNM_NATS_URL: lab.urls.join(","), CNM_STREAM: lab.stream, CNM_PREFIX: lab.prefix },
    });
    return { code: o.code, out: o.stdout, err: o.stderr };
  };
}

Deno.test("cnm network create -d overlay, inspect with peers, rm (root, nats-server)", async (t) => {
  const lab = await createOverlayLab({ hosts: 2, label: "clo" });
  const cnm = cnmOn(lab);
  const [h1, h2] = lab.hosts;
  try {
    let id = "";
    const inspect = async (host: string) => {
      const r = await cnm(host, "network", "inspect", "ov");
      assert.equal(r.code, 0, r.err);
      return JSON.parse(r.out)[0];
    };

    await t.step("create on h1 with --subnet and driver options; h2 sees it", async () => {
      const r = await cnm(
        "h1",
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.77.0.0/24",
        "-o",
        "com.docker.network.driver.overlay.vxlanid_list=5000",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "ov",
      );
      assert.equal(r.code, 0, r.err);
      id = r.out.trim();
      assert.match(id, /^[0-9a-f]{64}$/);
      await until("h2 has ov", async () => (await h2.api.network("ov"))?.id === id);
      const n = await inspect("h2");
      assert.deepEqual(
        [n.id, n.driver, n.scope, n.host, n.state],
        [id, "overlay", "global", "h1", "active"],
      );
      assert.equal(n.ipam.config[0].subnet, "10.77.0.0/24");
      assert.equal(n.options["com.docker.network.driver.overlay.vxlanid_list"], "5000");
      assert.deepEqual(n.endpoints, []);
    });

    await t.step("refusals change nothing", async () => {
      const before = await cnm("h2", "--format", "json", "network", "ls", "--all");
      const overlap = await cnm(
        "h2",
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.77.0.0/25",
        "ov2",
      );
      assert.equal(overlap.code, 1);
      assert.equal(
        overlap.err,
        "cnm network create: ForbiddenError: Pool overlaps with other one on this address space\n",
      );
      const enc = await cnm("h2", "network", "create", "-d", "overlay", "-o", "encrypted=", "ov3");
      assert.equal(enc.code, 1);
      assert.match(
        enc.err,
        /^cnm network create: InvalidArgumentError: cannot join secure network: required modules to install IPSEC rules are missing on host: /,
      );
      const after = await cnm("h2", "--format", "json", "network", "ls", "--all");
      assert.equal(after.out, before.out);
    });

    const sandboxes: Record<string, { key: string; ip: string; mac: string }> = {};
    await t.step("cnm connect on both hosts: the containers reach each other", async () => {
      for (const h of ["h1", "h2"]) {
        const sb = await cnm(h, "sandbox", "create", `c-${h}`);
        assert.equal(sb.code, 0, sb.err);
        const ep = await cnm(h, "connect", "ov", `c-${h}`);
        assert.equal(ep.code, 0, ep.err);
        const info = (await lab.hosts[h === "h1" ? 0 : 1].api.endpoint(ep.out.trim()))!;
        const key = (await lab.hosts[h === "h1" ? 0 : 1].api.sandbox(`c-${h}`))!.key;
        sandboxes[h] = { key, ip: ipOf(info.ipv4Address), mac: info.macAddress! };
        assert.match(info.ipv4Address!, /^10\.77\.0\.\d+\/24$/);
      }
      await until(
        "c-h1 reaches c-h2",
        () => ping(nsOf(sandboxes.h1.key), sandboxes.h2.ip),
        3000,
      );
      const mtu = await lab.ipJson(nsOf(sandboxes.h1.key), "link", "show", "dev", "eth0");
      assert.equal(mtu[0].mtu, 1350, "the network's MTU option less 50");
    });

    await t.step("network inspect shows each endpoint's host and this host's peers", async () => {
      for (const [me, other] of [[h1, h2], [h2, h1]]) {
        const n = await inspect(me.hostId);
        const eps = (n.endpoints as { name: string; host: string }[])
          .map((e) => `${e.name}@${e.host}`).sort();
        assert.deepEqual(eps, ["c-h1@h1", "c-h2@h2"]);
        assert.equal(n.peers.networkId, id);
        assert.equal(n.peers.remotePeers, 1, JSON.stringify(n.peers));
        assert.equal(n.peers.ok, 2, "one neighbour and one FDB entry");
        assert.deepEqual([n.peers.missing, n.peers.stale, n.peers.learned], [[], [], []]);
        assert.ok(n.peers.namespace.endsWith(id.slice(0, 12)), n.peers.namespace);
        // The entry points at the other host's advertised address.
        const fdb = await output(["bridge", "-n", nsOf(n.peers.namespace), "-j", "fdb", "show"]);
        const remote = sandboxes[other.hostId];
        assert.ok(
          (JSON.parse(fdb.stdout) as { mac: string; dst?: string }[])
            .some((f) => f.mac === remote.mac && f.dst === other.vtep),
          fdb.stdout,
        );
      }
    });

    await t.step("network rm is refused while endpoints exist, then removes it", async () => {
      const busy = await cnm("h2", "network", "rm", "ov");
      assert.equal(busy.code, 1);
      assert.match(
        busy.err,
        /^cnm network rm: ForbiddenError: network ov has active endpoints \(name:"c-h[12]" id:"[0-9a-f]{12}", name:"c-h[12]" id:"[0-9a-f]{12}"\)\n$/,
      );
      assert.equal((await inspect("h1")).state, "active");
      for (const h of ["h1", "h2"]) {
        const d = await cnm(h, "disconnect", "ov", `c-${h}`);
        assert.equal(d.code, 0, d.err);
        const s = await cnm(h, "sandbox", "rm", `c-${h}`);
        assert.equal(s.code, 0, s.err);
      }
      const rm = await cnm("h2", "network", "rm", "ov");
      assert.equal(rm.code, 0, rm.err);
      for (const h of ["h1", "h2"]) {
        const r = await cnm(h, "network", "inspect", "ov");
        assert.equal(r.code, 1, r.out);
        assert.equal(
          r.err,
          `cnm network inspect: NotFoundError: network ov not found on host ${h} (--all-hosts to look everywhere)\n`,
        );
      }
      assert.deepEqual(
        (await output(["ip", "netns", "list"])).stdout.split("\n")
          .filter((l) => l.includes(`-ov-`) && l.includes(id.slice(0, 12))),
        [],
        "no overlay namespace left on any host",
      );
    });

    await t.step("serve refuses a bad --advertise-addr and --replicas", async () => {
      const before = (await cnm("h1", "events", "--format", "json")).out;
      for (
        const [flag, value, code, want] of [
          [
            "--advertise-addr",
            "h1",
            1,
            'cnm serve: InvalidArgumentError: invalid advertise address "h1": not an IPv4 address\n',
          ],
          [
            "--replicas",
            "9",
            2,
            `cnm serve: invalid --replicas "9": 1 to 5\nRun 'cnm serve --help' for usage.\n`,
          ],
        ] as const
      ) {
        const r = await cnm("h9", "serve", "--namespace", lab.lab.hosts[0].path, flag, value);
        assert.deepEqual([r.code, r.err], [code, want]);
      }
      const after = (await cnm("h1", "events", "--format", "json")).out;
      assert.equal(after, before, "nothing journaled");
    });
  } finally {
    await lab.cleanup();
  }
});
