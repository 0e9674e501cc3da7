/**
 * The embedded resolver on an overlay network across two hosts, one `cnm serve` process each
 * on one stream (root, nats-server): names of endpoints on the other host resolve (learned
 * from the stream, not gossip), scoped and with PTR; a leave over there stops them here; a
 * join over there while this host's controller is dead (kill -9) resolves here from the first
 * query after its restart. The hosts' resolv.conf names no upstream: nothing is forwarded.
 */

import assert from "node:assert/strict";
import type { ApiClient } from "../../mod.ts";
import { readDnat } from "../../src/dns/dnat.ts";
import { createOverlayLab } from "../_harness/overlay_lab.ts";
import { connected, digIn, ipOf, until } from "./_controller_lab.ts";

Deno.test("embedded DNS on an overlay network across two hosts (root, nats-server)", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "cnm-ovdns-" });
  const resolv = `${dir}/resolv.conf`;
  await Deno.writeTextFile(resolv, "options timeout:1\n");
  const lab = await createOverlayLab({
    hosts: 2,
    label: "ovd",
    serveArgs: ["--resolv-conf", resolv],
  }).catch(async (err) => {
    await Deno.remove(dir, { recursive: true });
    throw err;
  });
  const api = (i: number): ApiClient => lab.hosts[i].api;
  try {
    const net = await api(0).createNetwork({ name: "ov", driver: "overlay" });
    await until("h2 sees ov", async () => (await api(1).network("ov"))?.id === net.id);
    const alpha = await connected(api(0), "alpha", { ov: ["first"] });
    const beta = await connected(api(1), "beta", { ov: ["second"] });
    const betaIp = ipOf(beta.eps.ov.ipv4Address);
    const alphaIp = ipOf(alpha.eps.ov.ipv4Address);

    await t.step("a name on the other host resolves, with its alias and PTR", async () => {
      // (How soon: bench:dns measures it.)
      await until(
        "beta from h1",
        async () => (await digIn(alpha.sb, "beta")).answers[0] === betaIp,
      );
      assert.deepEqual((await digIn(alpha.sb, "second")).answers, [betaIp]);
      assert.deepEqual((await digIn(alpha.sb, "beta.ov")).answers, [betaIp]);
      assert.deepEqual((await digIn(alpha.sb, "-x", betaIp)).answers, ["beta.ov."]);
      assert.deepEqual((await digIn(beta.sb, "first")).answers, [alphaIp]);
      assert.match(
        await Deno.readTextFile(alpha.sb.resolvConfPath),
        /^# NO EXTERNAL NAMESERVERS DEFINED$/m,
      );
    });

    await t.step("a leave on the other host stops the name here", async () => {
      await api(1).leave(beta.eps.ov.id, beta.sb.id);
      await until(
        "beta gone on h1",
        async () => (await digIn(alpha.sb, "beta")).answers.length === 0,
      );
      const r = await digIn(alpha.sb, "second");
      assert.deepEqual([r.status, r.answers], ["SERVFAIL", []], "not local, nowhere to forward");
    });

    await t.step("kill -9 here, a join there, restart: it resolves at once", async () => {
      await lab.kill(0);
      const gamma = await connected(api(1), "gamma", { ov: ["third"] });
      await lab.start(0);
      const ip = ipOf(gamma.eps.ov.ipv4Address);
      assert.deepEqual((await digIn(alpha.sb, "gamma")).answers, [ip]);
      assert.deepEqual((await digIn(alpha.sb, "third")).answers, [ip]);
      assert.equal((await digIn(alpha.sb, "beta")).status, "SERVFAIL");
      const rules = (await readDnat(alpha.sb.key) ?? []).filter((r) => r.startsWith("dnat"));
      assert.equal(rules.length, 2, "one DNAT pair");
    });
  } finally {
    await lab.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
