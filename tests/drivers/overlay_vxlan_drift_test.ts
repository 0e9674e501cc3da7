/**
 * Reconcile of an overlay network's VXLAN devices on two lab hosts, one `cnm serve` process
 * each on one stream (needs root and nats-server): a device deleted by hand, re-made with
 * another VNI and port, or taken off its bridge is found (a dry run changes and journals
 * nothing), re-created with its peers' entries and journaled as `network.reconciled`; VXLAN
 * devices carrying this controller's overlay mark of a deleted network (in the host namespace,
 * or in a live network's namespace) are removed and journaled as `host.reconciled`; one
 * carrying another controller's mark is reported as foreign and left alone.
 */

import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import type { NetworkInfo } from "../../mod.ts";
import { openJournal } from "../../src/journal/journal.ts";
import type { RecordedEvent } from "../../src/journal/events.ts";
import { ownerId } from "../../src/ids.ts";
import { sh } from "../_harness/command.ts";
import { ping } from "../_harness/multihost.ts";
import { createOverlayLab, ipOf, nsOf, type OverlayLab, until } from "../_harness/overlay_lab.ts";

async function journal(lab: OverlayLab): Promise<RecordedEvent[]> {
  const nc = await connect({ servers: lab.urls });
  try {
    const j = await openJournal(nc, { stream: lab.stream, prefix: lab.prefix });
    const out: RecordedEvent[] = [];
    for await (const e of j.read()) out.push(e);
    return out;
  } finally {
    await nc.close();
  }
}

/** The findings of a report as `kind resource problem name [expected] [actual]` lines. */
type Found = {
  kind: string;
  resource: string;
  problem: string;
  name: string;
  expected?: string;
  actual?: string;
  repaired: boolean;
};
const lines = (fs: unknown[]) =>
  (fs as Found[]).map((f) =>
    [f.kind, f.resource, f.problem, f.name, f.expected ?? "-", f.actual ?? "-"].join(" | ")
  ).sort();

Deno.test("overlay reconcile finds and repairs VXLAN devices, removes its orphans (root, nats-server)", async (t) => {
  const lab = await createOverlayLab({ hosts: 2, label: "ovx" });
  const [h1, h2] = lab.hosts;
  const owner = ownerId(lab.stream, h1.hostId);
  try {
    const net: NetworkInfo = await h1.api.createNetwork({ name: "ov", driver: "overlay" });
    await until("h2 sees ov", async () => (await h2.api.network("ov"))?.id === net.id);
    const sb1 = await h1.api.createSandbox({ name: "c1" });
    await h1.api.join((await h1.api.createEndpoint("ov", { name: "c1" })).id, sb1.id);
    const sb2 = await h2.api.createSandbox({ name: "c2" });
    const e2 = await h2.api.join((await h2.api.createEndpoint("ov", { name: "c2" })).id, sb2.id);
    const ns = `${h1.namePrefix}ov-${owner}-${net.id.slice(0, 12)}`;
    const nid5 = net.id.slice(0, 5);
    const vx = `vx-001000-${nid5}`, br = `ov-001000-${nid5}`;
    const mark = `cnm:${owner}:overlay:${net.id.slice(0, 12)}`;
    const ipns = (...args: string[]) => sh(["ip", "-n", ns, ...args]);
    /** h1's device: VNI, port, master and alias, and its FDB entries' destinations. */
    const device = async () => {
      const [l] = await lab.ipJson(ns, "-d", "link", "show", "dev", vx).catch(() => []);
      if (!l) return undefined;
      const fdb = (JSON.parse(await sh(["bridge", "-n", ns, "-j", "fdb", "show", "dev", vx])) as {
        mac: string;
        dst?: string;
      }[]).filter((f) => f.dst).map((f) => `${f.mac} ${f.dst}`);
      const d = l.linkinfo.info_data;
      return { vni: d.id, port: d.port, master: l.master, alias: l.ifalias, fdb };
    };
    const healthy = {
      vni: 4096,
      port: 4789,
      master: br,
      alias: mark,
      fdb: [`${e2.macAddress} ${h2.vtep}`],
    };
    const reaches = () => ping(nsOf(sb1.key), ipOf(e2.ipv4Address));
    await until("h1 has c2's entries", async () => (await device())?.fdb.length === 1);
    assert.ok(await reaches(), "c1 reaches c2");

    await t.step("no drift: a dry run finds nothing about the devices", async () => {
      const r = await h1.api.reconcile({ dryRun: true });
      assert.deepEqual(lines(r.findings), []);
      assert.deepEqual(await device(), healthy);
    });

    /** A dry run (nothing changed, nothing journaled), then the repair, journaled. */
    const drySeesThenRepairs = async (want: string[], check: () => Promise<unknown>) => {
      const before = (await journal(lab)).length;
      const broken = JSON.stringify(await device());
      const dry = await h1.api.reconcile({ dryRun: true });
      const vxlan = lines(dry.findings).filter((l) => l.includes(" vxlan "));
      assert.deepEqual(vxlan, want);
      assert.ok((dry.findings as Found[]).every((f) => !f.repaired));
      assert.equal(JSON.stringify(await device()), broken, "the dry run changed nothing");
      assert.equal((await journal(lab)).length, before, "the dry run journaled nothing");
      await check();
      const r = await h1.api.reconcile();
      assert.ok((r.findings as Found[]).every((f) => f.repaired), JSON.stringify(r.findings));
      assert.deepEqual(lines(r.findings).filter((l) => l.includes(" vxlan ")), want);
      assert.deepEqual(await device(), healthy);
      assert.ok(await reaches(), "c1 reaches c2 again");
      const recorded = (await journal(lab)).slice(before)
        .filter((e) => e.type === "network.reconciled" && e.objectId === net.id);
      assert.equal(recorded.length, 1, "one network.reconciled");
      const data = recorded[0].data as { findings: Found[]; repaired: boolean };
      assert.equal(data.repaired, true);
      assert.ok(data.findings.some((f) => f.resource === "vxlan"), JSON.stringify(data));
      assert.deepEqual(lines((await h1.api.reconcile({ dryRun: true })).findings), []);
    };

    await t.step("a VXLAN device deleted by hand is re-created with its peers", async () => {
      await ipns("link", "del", vx);
      assert.equal(await reaches(), false, "c2 is cut off");
      await drySeesThenRepairs(
        [`network | vxlan | missing | ${vx} | VNI 4096, port 4789, master ${br} | -`],
        async () => assert.equal(await device(), undefined),
      );
    });

    await t.step("a device re-made by hand with another VNI and port is replaced", async () => {
      await ipns("link", "del", vx);
      await ipns("link", "add", vx, "type", "vxlan", "id", "5000", "dstport", "4790", "nolearning");
      await ipns("link", "set", vx, "master", br, "mtu", "1450", "up");
      await drySeesThenRepairs(
        [
          `network | vxlan | different | ${vx} | VNI 4096, port 4789, socket in the host namespace, mark ${mark} | VNI 5000, port 4790, socket not in the host namespace, no mark`,
        ],
        async () => assert.equal((await device())?.vni, 5000),
      );
    });

    await t.step("a device taken off its bridge is put back", async () => {
      await ipns("link", "set", vx, "nomaster");
      await drySeesThenRepairs(
        [`network | vxlan | different | ${vx} | master ${br} | no master`],
        async () => assert.equal((await device())?.master, undefined),
      );
    });

    await t.step("orphan devices of this controller are removed, another's left", async () => {
      const gone = await h1.api.createNetwork({ name: "gone", driver: "overlay" });
      await h1.api.deleteNetwork("gone");
      const goneMark = `cnm:${owner}:overlay:${gone.id.slice(0, 12)}`;
      const other = "cnm:0badc0de:overlay:0123456789ab";
      const add = async (where: string, name: string, vni: number, alias: string) => {
        await sh([
          "ip",
          "-n",
          where,
          "link",
          "add",
          name,
          "type",
          "vxlan",
          "id",
          String(vni),
          "dstport",
          "4789",
        ]);
        await sh(["ip", "-n", where, "link", "set", name, "alias", alias]);
      };
      await add(h1.ns, "vxorphan", 7000, goneMark);
      await add(h1.ns, "vxforeign", 7001, other);
      await add(ns, "vxstray", 7002, goneMark);
      const links = async (where: string) =>
        (await lab.ipJson(where, "link")).map((l) => l.ifname as string)
          .filter((n) => n.startsWith("vx")).sort();
      const gone12 = gone.id.slice(0, 12);
      const want = [
        `host | vxlan | foreign | vxforeign | - | made by controller 0badc0de`,
        `host | vxlan | unexpected | vxorphan | - | VNI 7000, mark of network ${gone12} (deleted)`,
        `host | vxlan | unexpected | vxstray in ${ns} | - | VNI 7002, mark of network ${gone12} (deleted)`,
      ];
      const before = (await journal(lab)).length;
      const dry = await h1.api.reconcile({ dryRun: true });
      assert.deepEqual(lines(dry.findings), want);
      assert.deepEqual(await links(h1.ns), ["vxforeign", "vxorphan"]);
      assert.deepEqual(await links(ns), [vx, "vxstray"].sort());
      assert.equal((await journal(lab)).length, before);

      const r = await h1.api.reconcile();
      assert.deepEqual(lines(r.findings), want);
      const repaired = (r.findings as Found[]).map((f) => `${f.name} ${f.repaired}`).sort();
      assert.deepEqual(repaired, ["vxforeign false", "vxorphan true", `vxstray in ${ns} true`]);
      assert.deepEqual(await links(h1.ns), ["vxforeign"], "the foreign device is left");
      assert.deepEqual(await links(ns), [vx]);
      const hostEvents = (await journal(lab)).slice(before).filter((e) =>
        e.type === "host.reconciled"
      );
      const named = hostEvents.flatMap((e) =>
        (e.data as { findings: Found[] }).findings.map((f) => `${f.resource} ${f.name}`)
      ).sort();
      assert.deepEqual(named, ["vxlan vxorphan", `vxlan vxstray in ${ns}`]);
      assert.deepEqual(await device(), healthy, "the live device untouched");
      assert.ok(await reaches());
      await sh(["ip", "-n", h1.ns, "link", "del", "vxforeign"]);
    });
  } finally {
    await lab.cleanup();
  }
});
