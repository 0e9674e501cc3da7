/**
 * The embedded resolver against real clients (root): `dig` and glibc `getent` run inside
 * sandbox namespaces; the upstream is a server in a namespace of its own (dns_lab.ts).
 *
 * Networks: front (web s1 [hostname www, alias portal], db s2), back (db s2 [alias store],
 * cache s4), vault (internal: secret s3). s4 has its own `dns`.
 */

import assert from "node:assert/strict";
import { createResolver, type Resolver } from "../../src/dns/resolver.ts";
import { createDnsRecords, type DnsEndpoint } from "../../src/dns/records.ts";
import { readDnat } from "../../src/dns/dnat.ts";
import { DriverError } from "../../src/errors.ts";
import { sh } from "../_harness/command.ts";
import { createDnsLab, type DnsLab, type LabSandbox, UPSTREAM } from "../_harness/dns_lab.ts";
import { addHolders } from "./_holders.ts";

const HOST_RESOLV = `nameserver ${UPSTREAM}\nsearch lab.example\noptions timeout:1\n`;

interface Lab {
  lab: DnsLab;
  resolver: Resolver;
  sb: Record<string, LabSandbox>;
  dir: string;
  eps: Record<string, DnsEndpoint>;
}

async function setUp(): Promise<Lab> {
  const lab = await createDnsLab("dns");
  const dir = await Deno.makeTempDir({ prefix: `cnm-${lab.host.prefix}-` });
  try {
    const sb: Record<string, LabSandbox> = {};
    for (const [name, n] of [["s1", 2], ["s2", 3], ["s3", 4], ["s4", 5], ["s5", 6]] as const) {
      sb[name] = await lab.addSandbox(name, n);
    }
    const records = createDnsRecords();
    records.setNetwork({ id: "nf", name: "front", driver: "bridge", internal: false });
    records.setNetwork({ id: "nb", name: "back", driver: "bridge", internal: false });
    records.setNetwork({ id: "nv", name: "vault", driver: "bridge", internal: true });
    records.setSandbox({ id: "s1", name: "web", hostname: "www" });
    records.setSandbox({ id: "s2", name: "db" });
    records.setSandbox({ id: "s3", name: "secret" });
    records.setSandbox({ id: "s4", name: "cache" });
    const eps: Record<string, DnsEndpoint> = {
      e1: { id: "e1", networkId: "nf", sandboxId: "s1", state: "joined", aliases: ["portal"] },
      e2: { id: "e2", networkId: "nf", sandboxId: "s2", state: "joined" },
      e2b: { id: "e2b", networkId: "nb", sandboxId: "s2", state: "joined", aliases: ["store"] },
      e3: { id: "e3", networkId: "nv", sandboxId: "s3", state: "joined" },
      e4: { id: "e4", networkId: "nb", sandboxId: "s4", state: "joined" },
    };
    eps.e1.ipv4Address = `${sb.s1.address}/24`;
    eps.e2.ipv4Address = `${sb.s2.address}/24`;
    eps.e2b.ipv4Address = "10.88.0.3/24"; // a second network's address (not routed: DNS only)
    eps.e3.ipv4Address = `${sb.s3.address}/24`;
    eps.e4.ipv4Address = `${sb.s4.address}/24`;
    for (const e of Object.values(eps)) records.setEndpoint(e);
    const resolver = createResolver({
      records,
      hostNamespace: lab.host.path,
      hostResolvConf: () => HOST_RESOLV,
      timeoutMs: 700,
    });
    for (const name of ["s1", "s2", "s3", "s4"]) {
      const { resolvConf } = await resolver.start(name, {
        netns: sb[name].path,
        ...(name === "s4" ? { dns: [UPSTREAM] } : {}),
      });
      await Deno.writeTextFile(`${dir}/${name}.resolv.conf`, resolvConf.content);
    }
    return { lab, resolver, sb, dir, eps };
  } catch (err) {
    await lab.cleanup().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
}

async function tearDown(l: Lab): Promise<void> {
  const errors: unknown[] = [];
  await l.resolver.close({ removeRules: true }).catch((e) => errors.push(e));
  await l.lab.cleanup().catch((e) => errors.push(e));
  await Deno.remove(l.dir, { recursive: true }).catch((e) => errors.push(e));
  if (errors.length) throw new AggregateError(errors, "teardown failed");
}

Deno.test("embedded resolver (root) answers real clients inside sandboxes", async (t) => {
  const l = await setUp();
  const { lab, sb, resolver } = l;
  const records = resolver.records;
  const dig = lab.dig;
  try {
    const upstream = await lab.startServer(lab.upstreamNs, UPSTREAM, 53, "up");

    await t.step("names: the sandbox name, hostname and alias, case-insensitive", async () => {
      assert.deepEqual((await dig(sb.s1, ["db"])).answers, [sb.s2.address]);
      assert.deepEqual((await dig(sb.s2, ["WWW"])).answers, [sb.s1.address]);
      assert.deepEqual((await dig(sb.s2, ["portal"])).answers, [sb.s1.address]);
      const r = await dig(sb.s1, ["db"]);
      assert.deepEqual([r.status, r.flags.includes("ra")], ["NOERROR", true]);
      assert.match(r.text, /\s600\s+IN\s+A\s/, "TTL 600");
    });

    await t.step("aliases are scoped to their network", async () => {
      assert.equal((await dig(sb.s4, ["portal"])).status, "NXDOMAIN", "front's alias, from back");
      assert.equal((await dig(sb.s1, ["store"])).status, "NXDOMAIN", "back's alias, from front");
      assert.deepEqual((await dig(sb.s4, ["store"])).answers, ["10.88.0.3"]);
    });

    await t.step("name.network picks the network, only the asker's", async () => {
      assert.deepEqual((await dig(sb.s2, ["db.back"])).answers, ["10.88.0.3"]);
      assert.deepEqual((await dig(sb.s2, ["db.front"])).answers, [sb.s2.address]);
      assert.equal((await dig(sb.s1, ["cache.back"])).status, "NXDOMAIN");
    });

    await t.step("round robin: all holders, in changing order", async () => {
      addHolders(records, {
        networkId: "nf",
        tag: "rr",
        alias: "api",
        count: 3,
        subnet: "172.30.0",
        first: 101,
      });
      const orders = new Set<string>();
      for (let i = 0; i < 12; i++) {
        const r = await dig(sb.s1, ["api"]);
        assert.deepEqual([...r.answers].sort(), ["172.30.0.101", "172.30.0.102", "172.30.0.103"]);
        orders.add(r.answers.join(","));
      }
      assert.ok(orders.size > 1, "the order never changed in 12 answers");
    });

    await t.step("PTR gives <name>.<network>", async () => {
      assert.deepEqual((await dig(sb.s1, ["-x", sb.s2.address])).answers, ["db.front."]);
    });

    await t.step("AAAA of an IPv4-only name: NOERROR, no answers", async () => {
      const r = await dig(sb.s1, ["web", "AAAA"]);
      assert.deepEqual([r.status, r.answers], ["NOERROR", []]);
    });

    await t.step("getent hosts through the sandbox's resolv.conf (glibc)", async () => {
      const conf = `${l.dir}/s1.resolv.conf`;
      assert.match(await Deno.readTextFile(conf), /^nameserver 127\.0\.0\.11$/m);
      assert.equal(await lab.getent(sb.s1, conf, "db"), `${sb.s2.address}      db`);
      assert.equal(await lab.getent(sb.s1, conf, "example.test"), "203.0.113.7     example.test");
      assert.equal(await lab.getent(sb.s1, conf, "nosuch.test"), null);
    });

    await t.step("forwarding: answers and NXDOMAIN pass through, SERVFAIL when none", async () => {
      assert.deepEqual((await dig(sb.s1, ["example.test"])).answers, ["203.0.113.7"]);
      assert.equal((await dig(sb.s1, ["nosuch.test"])).status, "NXDOMAIN");
      assert.equal((await dig(sb.s1, ["fail.test"])).status, "SERVFAIL");
      const t0 = performance.now();
      assert.equal((await dig(sb.s1, ["slow.test"])).status, "SERVFAIL");
      assert.ok(performance.now() - t0 >= 650, "SERVFAIL came before the upstream timed out");
    });

    await t.step("host upstreams are dialled from the host namespace", async () => {
      const r = await dig(sb.s1, ["whoami.test", "TXT"]);
      assert.deepEqual(r.answers, ['"up 198.51.100.1"']);
    });

    await t.step("a loopback upstream of the host works (dialled from the host)", async () => {
      await lab.startServer(lab.host.name, "127.0.0.1", 53, "loop");
      const other = createResolver({
        records,
        hostNamespace: lab.host.path,
        hostResolvConf: () => "nameserver 127.0.0.1\n",
      });
      try {
        records.setSandbox({ id: "s5", name: "edge" });
        records.setEndpoint({
          id: "e5",
          networkId: "nf",
          sandboxId: "s5",
          state: "joined",
          ipv4Address: `${sb.s5.address}/24`,
        });
        const { resolvConf } = await other.start("s5", { netns: sb.s5.path });
        assert.match(resolvConf.content, /# ExtServers: \[host\(127\.0\.0\.1\)\]/);
        const r = await dig(sb.s5, ["whoami.test", "TXT"]);
        assert.deepEqual(r.answers, ['"loop 127.0.0.1"']);
        assert.deepEqual((await dig(sb.s5, ["web"])).answers, [sb.s1.address]);
      } finally {
        await other.close({ removeRules: true });
      }
    });

    await t.step("a sandbox's own dns is dialled from inside the sandbox", async () => {
      const r = await dig(sb.s4, ["whoami.test", "TXT"]);
      assert.deepEqual(r.answers, [`"up ${sb.s4.address}"`]);
    });

    await t.step("a sandbox on internal networks only never forwards", async () => {
      assert.equal((await dig(sb.s3, ["leak.test"])).status, "SERVFAIL");
      assert.deepEqual((await dig(sb.s3, ["secret"])).answers, [sb.s3.address]);
      const seen = await dig(sb.s1, ["queries.test", "TXT"]);
      assert.ok(seen.answers.length > 0);
      assert.doesNotMatch(seen.answers.join(" "), /leak\.test/);
      assert.match(seen.answers.join(" "), /example\.test/, "the control query was seen");
    });

    await t.step("TCP, local and forwarded", async () => {
      assert.deepEqual((await dig(sb.s1, ["+tcp", "db"])).answers, [sb.s2.address]);
      assert.deepEqual((await dig(sb.s1, ["+tcp", "example.test"])).answers, ["203.0.113.7"]);
    });

    await t.step("truncation: tc over UDP, everything over TCP (local and forwarded)", async () => {
      addHolders(records, {
        networkId: "nf",
        tag: "m",
        alias: "many",
        count: 60,
        subnet: "10.77.0",
        first: 1,
      });
      const udpOnly = await dig(sb.s1, ["+noedns", "+ignore", "many"]);
      assert.ok(udpOnly.flags.includes("tc"), `flags ${udpOnly.flags}`);
      assert.ok(udpOnly.answers.length < 60);
      const full = await dig(sb.s1, ["+noedns", "many"]);
      assert.match(full.text, /Truncated, retrying in TCP mode/);
      assert.equal(full.answers.length, 60);
      const fwdUdp = await dig(sb.s1, ["+noedns", "+ignore", "big.test"]);
      assert.ok(fwdUdp.flags.includes("tc"), `flags ${fwdUdp.flags}`);
      const fwd = await dig(sb.s1, ["+noedns", "big.test"]);
      assert.equal(fwd.answers.length, 80);
    });

    await t.step("a record removed stops resolving at once", async () => {
      records.setEndpoint({ ...l.eps.e2, state: "leaving" });
      const r = await dig(sb.s1, ["db"]);
      assert.equal(r.status, "NXDOMAIN");
      records.setEndpoint(l.eps.e2);
      assert.deepEqual((await dig(sb.s1, ["db"])).answers, [sb.s2.address]);
    });

    await t.step("a DNS server of the container on :53 works beside the resolver", async () => {
      const own = await lab.startServer(sb.s1.ns, "0.0.0.0", 53, "own");
      assert.deepEqual((await dig(sb.s1, ["@127.0.0.1", "whoami.test", "TXT"])).answers, [
        '"own 127.0.0.1"',
      ]);
      assert.deepEqual((await dig(sb.s1, ["db"])).answers, [sb.s2.address]);
      assert.deepEqual((await dig(sb.s1, ["+tcp", "db"])).answers, [sb.s2.address]);
      await own.stop();
    });

    await t.step("the DNAT pair is checked and repaired", async () => {
      const listener = resolver.listener("s2")!;
      assert.deepEqual(await resolver.check("s2"), []);
      const rules = await readDnat(sb.s2.path);
      assert.equal(rules?.filter((r) => r.startsWith("dnat")).length, 2, "one pair");
      await sh(["nsenter", `--net=${sb.s2.path}`, "nft", "flush", "ruleset"]); // a firewalld
      assert.equal((await resolver.check("s2"))[0]?.problem, "missing");
      const cut = await dig(sb.s2, ["+time=1", "web"]);
      assert.equal(cut.status, "TIMEOUT", "nothing answers 127.0.0.11:53 without the rule");
      assert.match(cut.text, /connection refused/);
      await listener.repair();
      assert.deepEqual(await resolver.check("s2"), []);
      assert.deepEqual((await dig(sb.s2, ["web"])).answers, [sb.s1.address]);
      await resolver.start("s2", { netns: sb.s2.path }); // idempotent: same sockets
      assert.deepEqual(resolver.listener("s2")!.ports, listener.ports);
    });

    await t.step("the listener survives the loss of its upstream", async () => {
      await upstream.stop();
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual((await dig(sb.s1, ["db"])).answers, [sb.s2.address]);
      assert.equal((await dig(sb.s1, ["example.test"])).status, "SERVFAIL");
      assert.deepEqual((await dig(sb.s1, ["+tcp", "web"])).answers, [sb.s1.address]);
    });

    await t.step(
      "a listener for a namespace that does not exist fails, leaving nothing",
      async () => {
        const path = `/var/run/netns/${lab.host.prefix}-nosuch`;
        await assert.rejects(resolver.start("ghost", { netns: path }), (err: Error) => {
          assert.ok(err instanceof DriverError, `not a DriverError: ${err}`);
          assert.equal(
            err.message,
            `embedded DNS of sandbox ghost: cannot listen on 127.0.0.11 (udp) in ${path}: ` +
              `open ${path}: No such file or directory (ENOENT)`,
          );
          return true;
        });
        assert.equal(resolver.listener("ghost"), undefined);
        assert.deepEqual(await resolver.check("ghost"), [
          { resource: "dns", name: "listener of ghost", problem: "missing" },
        ]);
      },
    );

    await t.step("stop releases the sockets and removes the rule", async () => {
      const { ports } = resolver.listener("s1")!;
      await resolver.stop("s1");
      assert.equal(resolver.listener("s1"), undefined);
      await resolver.idle("s1"); // the table goes right after
      assert.equal(await readDnat(sb.s1.path), undefined);
      const ss = await sh(["nsenter", `--net=${sb.s1.path}`, "ss", "-Hulnt"]);
      assert.doesNotMatch(ss, new RegExp(`127\\.0\\.0\\.11:(${ports.udp}|${ports.tcp})\\b`));
      const gone = await dig(sb.s1, ["+time=1", "db"]);
      assert.equal(gone.status, "TIMEOUT");
      assert.match(gone.text, /connection refused/);
      await resolver.stop("s1"); // again: no-op
    });
  } finally {
    await tearDown(l);
  }
});
