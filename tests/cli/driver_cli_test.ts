/**
 * `cnm driver config|inspect|ls` with the real `./cnm`, against a real nats-server and a
 * controller served in this process (do-nothing kernel: no root needed).
 */
import assert from "node:assert/strict";
import { createController } from "../../mod.ts";
import { startNats } from "../_harness/nats.ts";
import { serve } from "../../src/api/serve.ts";
import { output } from "../_harness/command.ts";
import { optionValue } from "../../src/cli/drivers.ts";
import { fakeOptions } from "./_fake_kernel.ts";

const CNM = new URL("../../cnm", import.meta.url).pathname;

Deno.test("cnm driver -o values: JSON when it parses, text otherwise, empty is the default", () => {
  assert.equal(optionValue("9000"), 9000);
  assert.equal(optionValue("false"), false);
  assert.equal(optionValue("none"), "none");
  assert.equal(optionValue("10.0.0.1"), "10.0.0.1");
  assert.deepEqual(optionValue('[{"base":"10.1.0.0/16","size":24}]'), [
    { base: "10.1.0.0/16", size: 24 },
  ]);
  assert.equal(optionValue(""), null);
});

Deno.test("cnm driver (needs nats-server): config through the API, inspect and ls from the stream", async (t) => {
  const nats = await startNats();
  const dir = await Deno.makeTempDir();
  const controller = await createController(fakeOptions(nats.url, "DC1", "dc1", dir));
  const server = await serve(controller, { nats: { servers: nats.url } });
  const env = { CNM_NATS_URL: nats.url, CNM_STREAM: "DC1", CNM_PREFIX: "dc1", CNM_HOST_ID: "h1" };
  const cnm = async (...args: string[]) => {
    const o = await output([CNM, ...args], { env });
    return { code: o.code, out: o.stdout, err: o.stderr };
  };
  const seqNow = async () => JSON.parse((await cnm("state", "--format", "json")).out).seq;
  try {
    const before = await seqNow();
    await t.step(
      "config journals a change and prints what changed and where it reaches",
      async () => {
        const r = await cnm(
          "driver",
          "config",
          "bridge",
          "-o",
          "mtu=9000",
          "-o",
          "firewallBackend=none",
        );
        assert.equal(r.code, 0, r.err);
        assert.match(r.out, /^driver bridge on host h1: configured \(#\d+\)$/m);
        assert.match(r.out, /^ {2}mtu: ∅ → 9000 \(new networks\)$/m);
        assert.match(r.out, /^ {2}firewallBackend: ∅ → "none" \(new networks\)$/m);
        assert.match(r.err, /^warning: mtu applies to new networks only: /m);
      },
    );
    await t.step("refusals exit 1 with the error naming the key, and journal nothing", async () => {
      const seq = await seqNow();
      let r = await cnm("driver", "config", "bridge", "-o", "mtu=10");
      assert.equal(r.code, 1);
      assert.match(
        r.err,
        /InvalidArgumentError: invalid configuration of driver "bridge": mtu: must be at least 68/,
      );
      r = await cnm("driver", "config", "bridge", "-o", "colour=red");
      assert.equal(r.code, 1);
      assert.match(r.err, /colour: unknown field/);
      r = await cnm("driver", "config", "nosuch", "-o", "a=1");
      assert.equal(r.code, 1);
      assert.match(r.err, /NotFoundError: unknown driver "nosuch"/);
      r = await cnm("driver", "config", "bridge", "-o", "mtu");
      assert.equal(r.code, 2);
      assert.equal(await seqNow(), seq);
    });
    await t.step("config without -o changes nothing", async () => {
      const r = await cnm("driver", "config", "bridge");
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out.trim(), "driver bridge on host h1: nothing changed");
    });
    await t.step("inspect reads the stream: now, and as of a point", async () => {
      let r = await cnm("driver", "inspect", "bridge");
      assert.equal(r.code, 0, r.err);
      const now = JSON.parse(r.out);
      assert.equal(now.configured, true);
      assert.equal(now.host, "h1");
      assert.equal(now.config.mtu, 9000);
      r = await cnm("driver", "inspect", "--at", String(before), "bridge");
      const then = JSON.parse(r.out);
      assert.equal(then.configured, false);
      assert.equal(then.config.mtu, 1500);
      r = await cnm("driver", "inspect", "null");
      assert.deepEqual(JSON.parse(r.out).config, {});
      r = await cnm("driver", "inspect", "nosuch");
      assert.equal(r.code, 1);
      assert.match(
        r.err,
        /NotFoundError: driver "nosuch" has no configuration journaled for host h1/,
      );
    });
    await t.step("state --at shows the configuration of the time", async () => {
      let r = await cnm("state", "--format", "json", "--at", String(before));
      assert.deepEqual(JSON.parse(r.out).drivers, []);
      r = await cnm("state", "--format", "json");
      const [d] = JSON.parse(r.out).drivers;
      assert.deepEqual([d.id, d.name, d.host, d.config.mtu], ["h1.bridge", "bridge", "h1", 9000]);
      r = await cnm("state");
      assert.match(
        r.out,
        /\nDRIVERS\nDRIVER\s+HOST\s+SEQ\s+CONFIG\nbridge\s+h1\s+\d+\s+\{"mtu":9000,/,
      );
    });
    await t.step("default pools set from the CLI decide the next network's subnet", async () => {
      let r = await cnm(
        "driver",
        "config",
        "bridge",
        "-o",
        'defaultAddressPools=[{"base":"10.10.0.0/16","size":24}]',
      );
      assert.equal(r.code, 0, r.err);
      r = await cnm("network", "create", "web");
      assert.equal(r.code, 0, r.err);
      r = await cnm("--format", "json", "network", "inspect", "web");
      const [net] = JSON.parse(r.out);
      assert.deepEqual(net.ipam.config, [{ subnet: "10.10.0.0/24", gateway: "10.10.0.1" }]);
      assert.equal(net.driverConfig.mtu, 9000);
    });
    await t.step("an empty value returns a key to its default", async () => {
      const r = await cnm("--format", "json", "driver", "config", "bridge", "-o", "mtu=");
      assert.equal(r.code, 0, r.err);
      assert.deepEqual(JSON.parse(r.out).changed.mtu, {
        from: 9000,
        to: 1500,
        appliesTo: "new networks",
      });
    });
    await t.step("ls, events --kind driver and history show the changes", async () => {
      let r = await cnm("driver", "ls");
      assert.match(r.out, /^DRIVER\s+HOST\s+CHANGES\s+SEQ\s+SINCE\s+CONFIG\nbridge\s+h1\s+3\s/);
      r = await cnm("events", "--kind", "driver", "--format", "json");
      const evs = r.out.trim().split("\n").map((l) => JSON.parse(l));
      assert.deepEqual(evs.map((e) => [e.type, e.objectId, e.from]), [
        ["driver.configured", "h1.bridge", null],
        ["driver.configured", "h1.bridge", "configured"],
        ["driver.configured", "h1.bridge", "configured"],
      ]);
      r = await cnm("history", "h1.bridge");
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /^driver h1\.bridge "bridge", host h1: now configured/);
      assert.match(r.out, /mtu: 9000 → 1500/);
    });
    await t.step("help", async () => {
      for (const verb of [["driver", "config"], ["driver", "inspect"], ["driver", "ls"]]) {
        const r = await cnm(...verb, "--help");
        assert.equal(r.code, 0);
        assert.match(r.out, new RegExp(`^Usage: cnm ${verb.join(" ")}`));
      }
      const r = await cnm("--help");
      assert.match(r.out, /^ {2}driver ls\|config\|inspect\s+manage driver/m);
    });
  } finally {
    await server.close();
    await controller.close();
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
