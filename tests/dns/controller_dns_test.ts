/**
 * The embedded resolver through a real controller (root, nats-server): real bridge networks,
 * sandboxes the controller made, `dig` and glibc `getent` inside them; the upstream is a
 * server in a namespace of its own (never the machine's resolvers).
 *
 * Networks: front (web [hostname www, alias portal], db, rr1-3 [alias api]), back (db
 * [alias store], worker, cache [own dns 127.0.0.1]), vault (internal: secret); plain sits on
 * the predefined bridge.
 */

import assert from "node:assert/strict";
import type { Controller, EndpointInfo, SandboxInfo } from "../../mod.ts";
import { InvalidArgumentError } from "../../mod.ts";
import { installDnat, readDnat } from "../../src/dns/dnat.ts";
import { sh } from "../_harness/command.ts";
import { getent, UPSTREAM } from "../_harness/dns_lab.ts";
import { connected, createControllerLab, digIn, ipOf, until } from "./_controller_lab.ts";

Deno.test("embedded DNS through the controller (root, nats-server): names, scoping, forwarding, leave, reconcile", async (t) => {
  const cl = await createControllerLab("cdns");
  const { lab } = cl;
  try {
    const cnm: Controller = await cl.open();
    await cnm.createNetwork({ name: "front", ipam: { config: [{ subnet: "10.91.1.0/24" }] } });
    await cnm.createNetwork({ name: "back", ipam: { config: [{ subnet: "10.91.2.0/24" }] } });
    await cnm.createNetwork({
      name: "vault",
      internal: true,
      ipam: { config: [{ subnet: "10.91.3.0/24" }] },
    });
    const web = await connected(cnm, "web", { front: ["portal"] }, { hostname: "www" });
    const db = await connected(cnm, "db", { front: [], back: ["store"] });
    const worker = await connected(cnm, "worker", { back: [] });
    const cache = await connected(cnm, "cache", { back: [] }, { dns: ["127.0.0.1"] });
    const secret = await connected(cnm, "secret", { vault: [] });
    const plain = await connected(cnm, "plain", { bridge: [] });
    const rr: { sb: SandboxInfo; eps: Record<string, EndpointInfo> }[] = [];
    for (const i of [1, 2, 3]) rr.push(await connected(cnm, `rr${i}`, { front: ["api"] }));
    const dbFront = ipOf(db.eps.front.ipv4Address);
    const dbBack = ipOf(db.eps.back.ipv4Address);
    const upstream = await lab.startServer(lab.upstreamNs, UPSTREAM, 53, "up");

    await t.step("the alias option is journaled and shown", () => {
      assert.deepEqual(web.eps.front.aliases, ["portal"]);
      assert.deepEqual(cnm.endpoint(db.eps.back.id)?.aliases, ["store"]);
      assert.equal(cnm.endpoint(db.eps.front.id)?.aliases, undefined);
    });

    await t.step("a bad alias is refused, naming it; nothing is made", async () => {
      const before = cnm.endpoints().length;
      await assert.rejects(
        cnm.createEndpoint("front", { name: "x", aliases: ["ok", "not a name"] }),
        (err: Error) => {
          assert.ok(err instanceof InvalidArgumentError);
          assert.equal(
            err.message,
            'invalid endpoint options: aliases.1: "not a name" is not a DNS name',
          );
          return true;
        },
      );
      await assert.rejects(
        cnm.createEndpoint("front", { name: "x", aliases: Array(129).fill("a") }),
        /^InvalidArgumentError: invalid endpoint options: aliases: 129 entries, at most 128$/,
      );
      assert.equal(cnm.endpoints().length, before);
    });

    await t.step(
      "resolv.conf: the embedded resolver on user networks, today's file on bridge",
      async () => {
        const conf = await Deno.readTextFile(web.sb.resolvConfPath);
        assert.match(conf, /^nameserver 127\.0\.0\.11$/m);
        assert.match(conf, /^search lab\.example$/m);
        assert.match(conf, /^options timeout:1 ndots:0$/m);
        assert.match(conf, new RegExp(`# ExtServers: \\[host\\(${UPSTREAM}\\)\\]`));
        assert.match(
          await Deno.readTextFile(cache.sb.resolvConfPath),
          /# ExtServers: \[sandbox\(127\.0\.0\.1\)\]/,
        );
        const legacy = await Deno.readTextFile(plain.sb.resolvConfPath);
        assert.doesNotMatch(legacy, /127\.0\.0\.11/);
        assert.match(legacy, new RegExp(`^nameserver ${UPSTREAM}$`, "m"));
        assert.equal(
          await readDnat(plain.sb.key),
          undefined,
          "no DNAT table on the default bridge",
        );
      },
    );

    await t.step("one DNAT pair per sandbox", async () => {
      for (const s of [web, db, worker, cache, secret, ...rr]) {
        const rules = await readDnat(s.sb.key);
        assert.equal(rules?.filter((r) => r.startsWith("dnat")).length, 2, s.sb.name);
      }
    });

    await t.step("names: sandbox, hostname, alias; case-insensitive; TTL 600", async () => {
      assert.deepEqual((await digIn(web.sb, "db")).answers, [dbFront]);
      assert.deepEqual((await digIn(db.sb, "WWW")).answers, [ipOf(web.eps.front.ipv4Address)]);
      assert.deepEqual((await digIn(db.sb, "portal")).answers, [ipOf(web.eps.front.ipv4Address)]);
      const r = await digIn(web.sb, "db");
      assert.deepEqual([r.status, r.flags.includes("ra")], ["NOERROR", true]);
      assert.match(r.text, /\s600\s+IN\s+A\s/);
    });

    await t.step("aliases are scoped to their network; so are names", async () => {
      assert.equal((await digIn(worker.sb, "portal")).status, "NXDOMAIN", "front's alias");
      assert.equal((await digIn(web.sb, "store")).status, "NXDOMAIN", "back's alias");
      assert.deepEqual((await digIn(worker.sb, "store")).answers, [dbBack]);
      assert.deepEqual((await digIn(worker.sb, "db")).answers, [dbBack], "db on back only");
      assert.equal((await digIn(worker.sb, "web")).status, "NXDOMAIN");
    });

    await t.step("name.network", async () => {
      assert.deepEqual((await digIn(db.sb, "db.back")).answers, [dbBack]);
      assert.deepEqual((await digIn(db.sb, "db.front")).answers, [dbFront]);
      assert.equal((await digIn(web.sb, "cache.back")).status, "NXDOMAIN", "not web's network");
    });

    await t.step("round robin: every holder of an alias, shuffled", async () => {
      const all = rr.map((x) => ipOf(x.eps.front.ipv4Address)).sort();
      const orders = new Set<string>();
      for (let i = 0; i < 12; i++) {
        const r = await digIn(web.sb, "api");
        assert.deepEqual([...r.answers].sort(), all);
        orders.add(r.answers.join(","));
      }
      assert.ok(orders.size > 1, "the order never changed in 12 answers");
    });

    await t.step("PTR and AAAA no-data", async () => {
      assert.deepEqual((await digIn(web.sb, "-x", dbFront)).answers, ["db.front."]);
      const r = await digIn(web.sb, "db", "AAAA");
      assert.deepEqual([r.status, r.answers], ["NOERROR", []]);
    });

    await t.step("getent hosts through the sandbox's own resolv.conf (glibc)", async () => {
      const conf = web.sb.resolvConfPath;
      assert.equal(await getent(web.sb.key, conf, "db"), `${dbFront}       db`);
      assert.equal(await getent(web.sb.key, conf, "example.test"), "203.0.113.7     example.test");
      assert.equal(await getent(web.sb.key, conf, "nosuch.test"), null);
    });

    await t.step(
      "forwarding from the host namespace; NXDOMAIN passes; SERVFAIL when none answers",
      async () => {
        assert.deepEqual((await digIn(web.sb, "example.test")).answers, ["203.0.113.7"]);
        assert.deepEqual((await digIn(web.sb, "whoami.test", "TXT")).answers, [
          '"up 198.51.100.1"',
        ]);
        assert.equal((await digIn(web.sb, "nosuch.test")).status, "NXDOMAIN");
        assert.equal((await digIn(web.sb, "fail.test")).status, "SERVFAIL");
        assert.equal((await digIn(web.sb, "slow.test")).status, "SERVFAIL");
      },
    );

    await t.step(
      "a sandbox's own dns is dialled inside it; its server on :53 works beside",
      async () => {
        const own = await lab.startServer(
          `${cache.sb.key.split("/").at(-1)}`,
          "0.0.0.0",
          53,
          "own",
        );
        try {
          assert.deepEqual((await digIn(cache.sb, "whoami.test", "TXT")).answers, [
            '"own 127.0.0.1"',
          ]);
          assert.deepEqual((await digIn(cache.sb, "@127.0.0.1", "whoami.test", "TXT")).answers, [
            '"own 127.0.0.1"',
          ]);
          assert.deepEqual((await digIn(cache.sb, "db")).answers, [dbBack], "127.0.0.11 still");
          assert.deepEqual((await digIn(cache.sb, "+tcp", "db")).answers, [dbBack]);
        } finally {
          await own.stop();
        }
      },
    );

    await t.step("internal networks only: never forwarded", async () => {
      assert.equal((await digIn(secret.sb, "leak.test")).status, "SERVFAIL");
      assert.deepEqual((await digIn(secret.sb, "secret")).answers, [
        ipOf(secret.eps.vault.ipv4Address),
      ]);
      const seen = (await digIn(web.sb, "queries.test", "TXT")).answers.join(" ");
      assert.match(seen, /example\.test/, "the control query was seen");
      assert.doesNotMatch(seen, /leak\.test/);
    });

    await t.step("TCP, and truncation over UDP with the TCP retry", async () => {
      assert.deepEqual((await digIn(web.sb, "+tcp", "db")).answers, [dbFront]);
      assert.deepEqual((await digIn(web.sb, "+tcp", "example.test")).answers, ["203.0.113.7"]);
      const cut = await digIn(web.sb, "+noedns", "+ignore", "big.test");
      assert.ok(cut.flags.includes("tc"), `flags ${cut.flags}`);
      const full = await digIn(web.sb, "+noedns", "big.test");
      assert.match(full.text, /Truncated, retrying in TCP mode/);
      assert.equal(full.answers.length, 80);
    });

    await t.step("a join resolves at once; a leave stops it at once", async () => {
      const late = await connected(cnm, "late", { front: ["newcomer"] });
      assert.deepEqual((await digIn(web.sb, "newcomer")).answers, [
        ipOf(late.eps.front.ipv4Address),
      ]);
      await cnm.leave(late.eps.front.id, late.sb.id);
      assert.equal((await digIn(web.sb, "newcomer")).status, "NXDOMAIN");
      assert.equal((await digIn(web.sb, "late")).status, "NXDOMAIN");
      // Its last DNS network left: no listener, no table (removed right after), today's
      // resolv.conf again.
      await until("no table", async () => (await readDnat(late.sb.key)) === undefined, 1000);
      const conf = await Deno.readTextFile(late.sb.resolvConfPath);
      assert.doesNotMatch(conf, /127\.0\.0\.11/);
      const gone = await digIn(late.sb, "+time=1", "web");
      assert.equal(gone.status, "TIMEOUT");
      await cnm.deleteSandbox("late");
    });

    await t.step("leaving one of two DNS networks keeps the listener", async () => {
      await cnm.leave(db.eps.back.id, db.sb.id);
      assert.equal((await digIn(worker.sb, "store")).status, "NXDOMAIN");
      assert.deepEqual((await digIn(db.sb, "web")).answers, [ipOf(web.eps.front.ipv4Address)]);
      assert.match(await Deno.readTextFile(db.sb.resolvConfPath), /^nameserver 127\.0\.0\.11$/m);
    });

    await t.step("reconcile finds a flushed DNS table and repairs it", async () => {
      await sh(["nsenter", `--net=${web.sb.key}`, "nft", "flush", "ruleset"]); // a firewalld
      const cut = await digIn(web.sb, "+time=1", "db");
      assert.equal(cut.status, "TIMEOUT");
      const dry = await cnm.reconcile({ dryRun: true });
      assert.deepEqual(
        dry.findings.map((f) => [f.kind, f.objectId, f.resource, f.problem]),
        [["sandbox", web.sb.id, "dns", "missing"]],
      );
      const done = await cnm.reconcile();
      assert.deepEqual(done.findings.map((f) => f.repaired), [true]);
      assert.deepEqual((await digIn(web.sb, "db")).answers, [dbFront]);
      assert.deepEqual((await cnm.reconcile({ dryRun: true })).findings, []);
    });

    await t.step("reconcile removes a DNS table where no resolver belongs", async () => {
      await installDnat(plain.sb.key, { udp: 5353, tcp: 5353 });
      const dry = await cnm.reconcile({ dryRun: true });
      assert.deepEqual(
        dry.findings.map((f) => [f.kind, f.objectId, f.resource, f.problem]),
        [["sandbox", plain.sb.id, "dns", "unexpected"]],
      );
      await cnm.reconcile();
      assert.equal(await readDnat(plain.sb.key), undefined);
      assert.deepEqual((await cnm.reconcile({ dryRun: true })).findings, []);
    });

    await t.step(
      "deleting a sandbox closes its listener's sockets; its namespace goes",
      async () => {
        const sockets = () =>
          [...Deno.readDirSync("/proc/self/fd")].filter((e) => {
            try {
              return Deno.readLinkSync(`/proc/self/fd/${e.name}`).startsWith("socket:");
            } catch {
              return false;
            }
          }).length;
        const before = sockets();
        await cnm.deleteSandbox("secret");
        assert.ok(sockets() <= before - 2, `sockets ${before} -> ${sockets()}`);
        const ns = secret.sb.key.split("/").at(-1)!;
        assert.ok(!(await sh(["ip", "netns", "list"])).split("\n").some((l) => l.startsWith(ns)));
      },
    );

    await t.step("NATS down: names are still answered from what the controller has", async () => {
      await cl.nats.stop();
      try {
        assert.deepEqual((await digIn(web.sb, "db")).answers, [dbFront]);
        assert.deepEqual((await digIn(web.sb, "+tcp", "api")).answers.length, 3);
        assert.deepEqual((await digIn(web.sb, "example.test")).answers, ["203.0.113.7"]);
      } finally {
        await cl.nats.start();
      }
    });

    await upstream.stop();
  } finally {
    await cl.cleanup();
  }
});
