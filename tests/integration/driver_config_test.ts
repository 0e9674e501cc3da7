/**
 * driver.Config through the controller, against a real nats-server with a do-nothing kernel
 * (no root): the `driver.configured` event, refusals that write nothing, restarts, the
 * `driverConfig` option, time travel, and the default address pools.
 */
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { createController, InvalidArgumentError, NotFoundError } from "../../mod.ts";
import type { Controller, ControllerOptions, RecordedEvent } from "../../mod.ts";
import { openJournal } from "../../src/journal/journal.ts";
import { replay } from "../../src/journal/replay.ts";
import { localDefaultPools } from "../../src/ipam/mod.ts";
import { startNats, type TestNats } from "../_harness/nats.ts";
import { fakeOptions } from "../cli/_fake_kernel.ts";

/** A stream of its own on a real server, and controllers on it (all closed by `cleanup`). */
async function setup(label: string) {
  const nats = await startNats();
  const dir = await Deno.makeTempDir({ prefix: `cnm-${label}-` });
  const stream = label.toUpperCase(), prefix = label;
  const opened: Controller[] = [];
  const options = (extra: Partial<ControllerOptions> = {}): ControllerOptions => ({
    ...fakeOptions(nats.url, stream, prefix, dir),
    ...extra,
  });
  return {
    nats,
    options,
    async open(extra: Partial<ControllerOptions> = {}) {
      const c = await createController(options(extra));
      opened.push(c);
      return c;
    },
    async events(): Promise<RecordedEvent[]> {
      const nc = await connect({ servers: nats.url });
      try {
        const j = await openJournal(nc, { stream, prefix });
        const out: RecordedEvent[] = [];
        for await (const e of j.read()) out.push(e);
        return out;
      } finally {
        await nc.close();
      }
    },
    replayAt: (until?: number) => replay({ nats: { servers: nats.url }, stream, prefix, until }),
    async cleanup() {
      for (const c of opened) await c.close().catch(() => {});
      await (nats as TestNats).cleanup();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const driverEvents = (events: RecordedEvent[]) => events.filter((e) => e.kind === "driver");

async function rejectsWith(p: Promise<unknown>, cls: new (m: string) => Error, message: string) {
  await assert.rejects(p, (err: Error) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err}`);
    assert.equal(err.message, message);
    return true;
  });
}

Deno.test("configureDriver (needs nats-server) journals each change and refuses bad options with no event", async (t) => {
  const env = await setup("dcfg1");
  try {
    const cnm = await env.open();
    await t.step("{} changes nothing and reports the defaults in force", async () => {
      const r = await cnm.configureDriver("bridge", {});
      assert.equal(r.journaled, false);
      assert.equal(r.seq, 0);
      assert.deepEqual(r.changed, {});
      assert.equal(r.config.mtu, 1500);
      assert.deepEqual(r.config.defaultAddressPools, localDefaultPools);
      assert.deepEqual(driverEvents(await env.events()), []);
    });
    await t.step(
      "the first change journals the full configuration, every key from null",
      async () => {
        const r = await cnm.configureDriver("bridge", { mtu: 9000 });
        assert.equal(r.journaled, true);
        assert.equal(r.host, "h1");
        assert.deepEqual(r.changed.mtu, { from: null, to: 9000, appliesTo: "new networks" });
        assert.deepEqual(r.changed.firewallBackend, { from: null, to: "nftables" });
        assert.deepEqual(r.warnings, [
          "mtu applies to new networks only: existing bridge networks keep the configuration they were created under",
        ]);
        const [e] = driverEvents(await env.events());
        assert.equal(e.seq, r.seq);
        assert.equal(e.type, "driver.configured");
        assert.equal(e.objectId, "h1.bridge");
        assert.equal(e.from, null);
        assert.equal(e.to, "configured");
        assert.deepEqual(e.data.config, r.config);
        assert.deepEqual(e.data.changed, r.changed);
        assert.deepEqual(e.data.warnings, r.warnings);
      },
    );
    await t.step("a later change records only what changed, from the value before", async () => {
      const r = await cnm.configureDriver("bridge", { firewallBackend: "none" });
      assert.deepEqual(r.changed, {
        firewallBackend: { from: "nftables", to: "none", appliesTo: "new networks" },
      });
      assert.equal(r.config.mtu, 9000); // kept: options merge into the configuration in force
      const events = driverEvents(await env.events());
      assert.equal(events.length, 2);
      assert.equal(events[1].from, "configured");
    });
    await t.step("the same options again write nothing", async () => {
      const r = await cnm.configureDriver("bridge", { firewallBackend: "none", mtu: 9000 });
      assert.equal(r.journaled, false);
      assert.equal(driverEvents(await env.events()).length, 2);
    });
    await t.step(
      "bad values, unknown keys and unknown drivers are refused; nothing is journaled",
      async () => {
        const before = (await env.events()).length;
        await rejectsWith(
          cnm.configureDriver("bridge", { mtu: 10 }),
          InvalidArgumentError,
          'invalid configuration of driver "bridge": mtu: must be at least 68',
        );
        await rejectsWith(
          cnm.configureDriver("bridge", { colour: "red", mtu: 1400 }),
          InvalidArgumentError,
          'invalid configuration of driver "bridge": colour: unknown field',
        );
        await rejectsWith(
          cnm.configureDriver("bridge", {
            defaultAddressPools: [{ base: "10.0.0.0/8", size: 40 }],
          }),
          InvalidArgumentError,
          'invalid configuration of driver "bridge": defaultAddressPools.0.size: must be between 8 and 32 for base 10.0.0.0/8',
        );
        await rejectsWith(
          cnm.configureDriver("nosuch", { mtu: 1400 }),
          NotFoundError,
          'unknown driver "nosuch"',
        );
        await rejectsWith(
          cnm.configureDriver("overlay", { vxlanPort: 80 }),
          InvalidArgumentError,
          'invalid configuration of driver "overlay": vxlanPort: VXLAN UDP port number is not in valid range (1024-49151): 80',
        );
        await rejectsWith(
          cnm.configureDriver("overlay", { advertiseAddress: "2001:db8::1" }),
          InvalidArgumentError,
          'invalid configuration of driver "overlay": advertiseAddress: must be an IPv4 address (overlay networks are IPv4 only), got "2001:db8::1"',
        );
        await rejectsWith(
          cnm.configureDriver("null", { mtu: 1400 }),
          InvalidArgumentError,
          'invalid configuration of driver "null": mtu: unknown field',
        );
        await rejectsWith(
          cnm.configureDriver("bridge", "mtu=9000" as never),
          InvalidArgumentError,
          'invalid configuration of driver "bridge": must be an object',
        );
        assert.equal((await env.events()).length, before);
        assert.equal((await cnm.configureDriver("bridge", {})).config.mtu, 9000);
      },
    );
    await t.step("null and host take no configuration: {} is all they accept", async () => {
      for (const name of ["null", "host"]) {
        const r = await cnm.configureDriver(name, {});
        assert.deepEqual([r.journaled, r.config, r.changed], [false, {}, {}]);
      }
    });
    await t.step("null returns a key to its default", async () => {
      const r = await cnm.configureDriver("bridge", { mtu: null });
      assert.deepEqual(r.changed, { mtu: { from: 9000, to: 1500, appliesTo: "new networks" } });
    });
  } finally {
    await env.cleanup();
  }
});

Deno.test("driver configuration (needs nats-server) survives restarts; the driverConfig option journals only differences", async (t) => {
  const env = await setup("dcfg2");
  try {
    const first = await env.open({ driverConfig: { bridge: { mtu: 9000 } } });
    await t.step("the option is journaled at the first start", async () => {
      assert.deepEqual(first.recovery.driverConfig.map((r) => [r.driver, r.journaled]), [
        ["bridge", true],
      ]);
      assert.equal(driverEvents(await env.events()).length, 1);
    });
    await first.close();
    await t.step("a restart with the same option writes nothing and keeps it", async () => {
      const again = await env.open({ driverConfig: { bridge: { mtu: 9000 } } });
      assert.equal(again.recovery.driverConfig[0].journaled, false);
      assert.equal((await again.configureDriver("bridge", {})).config.mtu, 9000);
      assert.equal(driverEvents(await env.events()).length, 1);
      await again.close();
    });
    await t.step("a restart without the option keeps the journal's configuration", async () => {
      const again = await env.open();
      assert.deepEqual(again.recovery.driverConfig, []);
      assert.equal((await again.configureDriver("bridge", {})).config.mtu, 9000);
      await again.close();
    });
    await t.step("a different option is one event", async () => {
      const again = await env.open({ driverConfig: { bridge: { mtu: 1400 } } });
      const events = driverEvents(await env.events());
      assert.equal(events.length, 2);
      assert.deepEqual(events[1].data.changed, {
        mtu: { from: 9000, to: 1400, appliesTo: "new networks" },
      });
      assert.equal(again.recovery.driverConfig[0].seq, events[1].seq);
      await again.close();
    });
    await t.step("a bad option fails the start and journals nothing", async () => {
      const before = (await env.events()).length;
      await rejectsWith(
        env.open({ driverConfig: { bridge: { mtu: 1400, enableIPForwarding: "yes" } } }),
        InvalidArgumentError,
        'invalid configuration of driver "bridge": enableIPForwarding: must be true or false',
      );
      await rejectsWith(
        env.open({ driverConfig: { bridge: { mtu: 1300 }, nosuch: {} } }),
        NotFoundError,
        'unknown driver "nosuch"',
      );
      assert.equal((await env.events()).length, before);
    });
  } finally {
    await env.cleanup();
  }
});

Deno.test("default address pools (needs nats-server) change what createNetwork picks, also after a restart", async (t) => {
  const env = await setup("dcfg3");
  try {
    // The do-nothing kernel has no nftables: bridge networks here take no firewall.
    const none = { driverConfig: { bridge: { firewallBackend: "none" } } };
    const cnm = await env.open(none);
    const a = await cnm.createNetwork({ name: "a" });
    let configSeq = 0;
    await t.step("before: libnetwork's first pool", () => {
      assert.deepEqual(a.ipam.config.map((c) => c.subnet), ["172.17.0.0/16"]);
      assert.equal(a.driverConfig?.mtu, 1500);
    });
    await t.step(
      "after configuring pools: subnets come from them; the old network keeps its pool",
      async () => {
        const r = await cnm.configureDriver("bridge", {
          defaultAddressPools: [{ base: "10.10.0.0/16", size: 24 }],
          mtu: 9000,
        });
        configSeq = r.seq;
        const b = await cnm.createNetwork({ name: "b" });
        assert.deepEqual(b.ipam.config, [{ subnet: "10.10.0.0/24", gateway: "10.10.0.1" }]);
        assert.deepEqual(b.driverConfig?.defaultAddressPools, [{ base: "10.10.0.0/16", size: 24 }]);
        assert.equal(b.driverConfig?.mtu, 9000);
        assert.deepEqual(cnm.network("a")?.ipam.config.map((c) => c.subnet), ["172.17.0.0/16"]);
        assert.equal(cnm.network("a")?.driverConfig?.mtu, 1500);
        const ep = await cnm.createEndpoint("a", { name: "x" });
        assert.equal(ep.ipv4Address, "172.17.0.2/16");
      },
    );
    await cnm.close();
    await t.step("a restart rebuilds IPAM with the pools in force", async () => {
      const again = await env.open();
      const c = await again.createNetwork({ name: "c" });
      assert.deepEqual(c.ipam.config.map((x) => x.subnet), ["10.10.1.0/24"]);
      await again.close();
    });
    await t.step(
      "state at a point shows the configuration of the time and the networks' own",
      async () => {
        const before = await env.replayAt(configSeq - 1);
        const after = await env.replayAt(configSeq);
        const bridgeOf = (s: typeof before) => s.drivers.find((d) => d.id === "h1.bridge")!;
        assert.equal(bridgeOf(before).config.mtu, 1500);
        assert.equal(bridgeOf(before).config.firewallBackend, "none");
        assert.equal(bridgeOf(after).config.mtu, 9000);
        assert.equal(after.networks.find((n) => n.name === "b"), undefined);
        const now = await env.replayAt();
        assert.deepEqual(
          now.networks.filter((n) => n.driver === "bridge").map((
            n,
          ) => [n.name, n.driverConfig?.mtu]),
          [["a", 1500], ["b", 9000], ["c", 9000]],
        );
      },
    );
  } finally {
    await env.cleanup();
  }
});

Deno.test("the predefined bridge network (needs nats-server) is made under the driverConfig option", async () => {
  const env = await setup("dcfg4");
  try {
    const cnm = await env.open({
      defaultBridge: true,
      driverConfig: {
        bridge: {
          firewallBackend: "none",
          defaultAddressPools: [{ base: "10.77.0.0/16", size: 24 }],
        },
      },
    });
    const bridge = cnm.network("bridge")!;
    assert.deepEqual(bridge.ipam.config, [{ subnet: "10.77.0.0/24", gateway: "10.77.0.1" }]);
    assert.equal(bridge.driverConfig?.firewallBackend, "none");
    const types = (await env.events()).map((e) => e.type);
    assert.ok(
      types.indexOf("driver.configured") < types.lastIndexOf("network.create.requested"),
      "the configuration is journaled before the bridge network is decided",
    );
  } finally {
    await env.cleanup();
  }
});

Deno.test("a journaled configuration the driver refuses now (needs nats-server) leaves its defaults in force, with a warning", async () => {
  const env = await setup("dcfg5");
  try {
    const nc = await connect({ servers: env.nats.url });
    try {
      const j = await openJournal(nc, { stream: "DCFG5", prefix: "dcfg5" });
      await j.append({
        v: 1,
        eventId: "written-by-an-older-version",
        kind: "driver",
        objectId: "h1.bridge",
        type: "driver.configured",
        from: null,
        to: "configured",
        at: new Date().toISOString(),
        host: "h1",
        data: { driver: "bridge", config: { mtu: "jumbo" }, changed: {} },
      }, 0);
    } finally {
      await nc.close();
    }
    const cnm = await env.open();
    assert.deepEqual(cnm.recovery.warnings.map((w) => [w.objectId, w.type, w.reason]), [[
      "h1.bridge",
      "driver.configured",
      'journaled configuration of driver "bridge" no longer applies: mtu: must be a number; its defaults are in force',
    ]]);
    assert.equal((await cnm.configureDriver("bridge", {})).config.mtu, 1500);
    const r = await cnm.configureDriver("bridge", { mtu: 9000 });
    assert.deepEqual(r.changed, { mtu: { from: 1500, to: 9000, appliesTo: "new networks" } });
  } finally {
    await env.cleanup();
  }
});

Deno.test("configureDriver (needs nats-server) is serialised with network creation: each network records the change before it", async () => {
  const env = await setup("dcfg6");
  try {
    const cnm = await env.open({ driverConfig: { bridge: { firewallBackend: "none" } } });
    const work: Promise<unknown>[] = [];
    for (let i = 0; i < 8; i++) {
      work.push(cnm.configureDriver("bridge", { mtu: 1400 + i }));
      work.push(cnm.createNetwork({ name: `n${i}` }));
    }
    await Promise.all(work);
    let mtu = 1500;
    const seen: number[] = [];
    for (const e of await env.events()) {
      if (e.type === "driver.configured") mtu = (e.data.config as { mtu: number }).mtu;
      if (e.type === "network.create.requested" && e.data.driver === "bridge") {
        assert.equal((e.data.driverConfig as { mtu: number }).mtu, mtu, `${e.data.name}`);
        seen.push(mtu);
      }
    }
    assert.equal(seen.length, 8);
  } finally {
    await env.cleanup();
  }
});
