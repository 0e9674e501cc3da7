/**
 * The operator's day with the real `./cnm` (needs nats-server; a fake kernel, no root):
 * names and id prefixes resolved the same way by every verb, reads scoped to a host, the
 * real sandbox file paths, and the CLI's polish (help, typos, --version, EPIPE, JSON
 * errors, usage errors before connecting, ls -q/--filter, rm -f, prune, create flags).
 */
import assert from "node:assert/strict";
import { createController } from "../../mod.ts";
import { startNats } from "../_harness/nats.ts";
import { serve } from "../../src/api/serve.ts";
import { fakeOptions, noopDriver } from "./_fake_kernel.ts";
import { output } from "../_harness/command.ts";

const CNM = new URL("../../cnm", import.meta.url).pathname;

Deno.test("cnm CLI (needs nats-server): names, prefixes, hosts and paths as an operator expects", async (t) => {
  const nats = await startNats();
  const dir = await Deno.makeTempDir();
  const opts = (host: string) => ({
    ...fakeOptions(nats.url, "OPS", "ops", `${dir}/${host}`, host),
    drivers: [noopDriver()],
  });
  const h1 = await createController(opts("h1"));
  const h2 = await createController({ ...opts("h2"), predefined: false });
  const s1 = await serve(h1, { nats: { servers: nats.url } });
  const s2 = await serve(h2, { nats: { servers: nats.url } });
  const env = { CNM_NATS_URL: nats.url, CNM_STREAM: "OPS", CNM_PREFIX: "ops", CNM_HOST_ID: "h1" };
  const cnm = async (args: string[], e: Record<string, string> = env) => {
    const o = await output([CNM, ...args], { env: e });
    return { code: o.code, out: o.stdout, err: o.stderr };
  };
  try {
    await t.step(
      "history NAME after connect shows the sandbox, with its endpoints' joins",
      async () => {
        let r = await cnm(["network", "create", "-d", "noop", "--subnet", "10.9.0.0/24", "front"]);
        assert.equal(r.code, 0, r.err);
        r = await cnm(["sandbox", "create", "web"]);
        assert.equal(r.code, 0, r.err);
        const sbId = r.out.trim();
        r = await cnm(["connect", "--alias", "www", "front", "web"]);
        assert.equal(r.code, 0, r.err);
        const epId = r.out.trim();
        r = await cnm(["history", "web"]);
        assert.equal(r.code, 0, r.err);
        assert.match(r.out, new RegExp(`^sandbox ${sbId} "web", host h1: now ready`));
        assert.match(r.out, /endpoints in this sandbox:/);
        assert.match(r.out, new RegExp(`${epId.slice(0, 12)} "web" in front\\s+endpoint\\.joined`));
        assert.match(r.out, /also named "web": endpoint [0-9a-f]{12}.*--kind endpoint/);
        r = await cnm(["history", "--kind", "endpoint", "web"]);
        assert.match(r.out, new RegExp(`^endpoint ${epId} "web" in network front`));
        r = await cnm(["--format", "json", "endpoint", "inspect", epId]);
        assert.deepEqual(JSON.parse(r.out)[0].aliases, ["www"]);
      },
    );

    await t.step("sandbox inspect shows the real hosts and resolv.conf paths", async () => {
      const r = await cnm(["--format", "json", "sandbox", "inspect", "web"]);
      const sb = JSON.parse(r.out)[0];
      assert.equal(sb.hostsPath, `${dir}/h1/sandboxes/${sb.id}/hosts`);
      assert.equal(sb.resolvConfPath, `${dir}/h1/sandboxes/${sb.id}/resolv.conf`);
    });

    await t.step(
      "an ambiguous id prefix is refused the same way by inspect, history and rm",
      async () => {
        const ids: string[] = [];
        for (let i = 0; i < 17; i++) ids.push((await h1.createSandbox({ name: `p${i}` })).id);
        const first = new Map<string, number>();
        for (const id of ids) first.set(id[0], (first.get(id[0]) ?? 0) + 1);
        const shared = [...first].find(([, n]) => n > 1)![0]; // 17 ids, 16 digits
        for (
          const args of [["sandbox", "inspect", shared], ["history", shared], [
            "sandbox",
            "rm",
            shared,
          ]]
        ) {
          const r = await cnm(args);
          assert.equal(r.code, 1, `${args.join(" ")}: ${r.err}`);
          assert.match(
            r.err,
            new RegExp(
              `InvalidArgumentError: id prefix ${shared} is ambiguous: it matches \\d+ objects \\(.*sandbox [0-9a-f]{12} "p`,
            ),
          );
        }
        // A unique prefix works for rm (no "not found").
        const net = (await h1.createNetwork({ name: "gone", driver: "noop" })).id;
        const nets = h1.networks().map((n) => n.id);
        let p = 1;
        while (nets.filter((id) => id.startsWith(net.slice(0, p))).length > 1) p++;
        const r = await cnm(["network", "rm", net.slice(0, p)]);
        assert.equal(r.code, 0, r.err);
        assert.equal(h1.network(net), undefined);
      },
    );

    await t.step("read verbs show --host only, unless --all-hosts", async () => {
      await h2.createNetwork({ name: "front", driver: "noop" });
      let r = await cnm(["network", "ls"]);
      assert.equal(r.out.match(/\sfront\s/g)?.length, 1);
      assert.doesNotMatch(r.out, /\sh2$/m);
      r = await cnm(["--all-hosts", "network", "ls"]);
      assert.equal(r.out.match(/\sfront\s/g)?.length, 2);
      r = await cnm(["--host", "h2", "--format", "json", "network", "inspect", "front"]);
      assert.equal(JSON.parse(r.out)[0].host, "h2");
      r = await cnm(["--host", "h2", "sandbox", "inspect", "web"]);
      assert.equal(r.code, 1);
      assert.match(r.err, /sandbox web not found on host h2 \(--all-hosts to look everywhere\)/);
    });

    await t.step("ls -q, --filter, rm -f, prune, create flags", async () => {
      let r = await cnm(["network", "ls", "-q", "--filter", "driver=noop"]);
      assert.deepEqual(r.out.trim().split("\n").length, 1);
      assert.match(r.out, /^[0-9a-f]{12}$/m);
      r = await cnm(["sandbox", "ls", "--filter", "name=p1", "--format", "json"]);
      assert.ok(JSON.parse(r.out).every((s: { name: string }) => s.name.includes("p1")));
      r = await cnm(["sandbox", "ls", "--filter", "colour=red"]);
      assert.equal(r.code, 2);
      r = await cnm(["sandbox", "rm", "-f", "no-such-sandbox"]);
      assert.equal(r.code, 0, r.err);
      r = await cnm([
        "network",
        "create",
        "-d",
        "noop",
        "--subnet",
        "10.7.0.0/24",
        "--aux-address",
        "router=10.7.0.9",
        "--ipam-opt",
        "com.example.x=1",
        "aux",
      ]);
      assert.equal(r.code, 0, r.err);
      const aux = h1.network("aux")!;
      assert.deepEqual(aux.ipam.config[0].auxAddresses, { router: "10.7.0.9/24" });
      r = await cnm(["network", "prune"]);
      assert.equal(r.code, 0, r.err);
      assert.deepEqual(r.out.trim().split("\n"), ["aux"]); // front has an endpoint
      assert.equal(h1.network("aux"), undefined);
      assert.ok(h1.network("front"));
    });

    await t.step("--object takes a name or a prefix; --kind is checked", async () => {
      let r = await cnm(["events", "--object", "web", "--format", "json"]);
      assert.equal(r.code, 0, r.err);
      const evs = r.out.trim().split("\n").map((l) => JSON.parse(l));
      assert.ok(evs.length >= 2 && evs.every((e) => e.kind === "sandbox"));
      r = await cnm(["events", "--kind", "sandboxes"]);
      assert.equal(r.code, 2);
      assert.match(r.err, /--kind takes network, endpoint, sandbox, driver, host, got "sandboxes"/);
    });

    await t.step(
      "help, typos, --version, JSON errors, usage before connecting, EPIPE",
      async () => {
        let r = await cnm(["help", "network"]);
        assert.equal(r.code, 0);
        assert.match(r.out, /^Usage: cnm network COMMAND/);
        assert.match(r.out, /cnm network prune/);
        r = await cnm(["network", "--help"]);
        assert.equal(r.code, 0);
        assert.match(r.out, /^Usage: cnm network COMMAND/);
        r = await cnm(["netwrok", "ls"]);
        assert.equal(r.code, 2);
        assert.match(r.err, /unknown command "netwrok"; did you mean network\?/);
        r = await cnm(["--version"]);
        assert.match(r.out, /^cnm \d+\.\d+\.\d+\n$/);
        for (const args of [["--help"], ["events", "--help"], ["network", "create", "--help"]]) {
          r = await cnm(args);
          for (const line of r.out.split("\n")) assert.ok(line.length <= 80, `${args}: ${line}`);
        }
        r = await cnm(["--format", "json", "sandbox", "rm", "nope"]);
        assert.equal(r.code, 1);
        assert.equal(JSON.parse(r.err).error.code, "NOT_FOUND");
        r = await cnm(["--format", "json", "bogus"]);
        assert.equal(JSON.parse(r.err).error.code, "USAGE");
        const down = { ...env, CNM_NATS_URL: "127.0.0.1:1" };
        r = await cnm(["network", "create", "--label", "novalue", "x"], down);
        assert.equal(r.code, 2, r.err); // a usage error, not "NATS unreachable"
        assert.match(r.err, /--label takes KEY=VALUE/);
        const piped = await output(["bash", "-c", `'${CNM}' events | head -1`], { env });
        assert.equal(piped.code, 0);
        assert.match(piped.stdout, /^SEQ\s+TIME/);
        assert.equal(piped.stderr, "");
      },
    );
  } finally {
    await s1.close();
    await s2.close();
    await h1.close();
    await h2.close();
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
