/**
 * `cnm serve`'s start-up reconciliation as a real process (needs root and nats-server):
 * after the kernel was changed by hand while no controller ran, the next `cnm serve` logs a
 * summary of what it repaired, removed and left, one line per finding, and journals each
 * repair where `history` finds it.
 */
import assert from "node:assert/strict";
import { sh, startEnv } from "../_harness/env.ts";
import { listPrefixed } from "../_harness/netns.ts";
import { CNM, type ServeProcess, serveSetup, startServe } from "../_harness/cnm_serve.ts";
import { output } from "../_harness/command.ts";
import { ownerId } from "../../src/ids.ts";

Deno.test("cnm serve (needs root, nats-server) logs what its start-up reconcile repaired, removed and left", async (t) => {
  const env = await startEnv("crec");
  const setup = serveSetup(env);
  const cnm = async (...args: string[]) => {
    const o = await output([CNM, ...args], { env: setup.env });
    return { code: o.code, out: o.stdout, err: o.stderr };
  };
  const servers: ServeProcess[] = [];
  const netnsOf = async (name: string) => {
    const r = await cnm("--format", "json", "sandbox", "inspect", name);
    assert.equal(r.code, 0, r.err);
    const sb = JSON.parse(r.out)[0];
    // A sandbox's namespace is named by its key (a path), orphans by their name.
    return { id: sb.id as string, key: sb.key as string, netns: sb.key.split("/").at(-1)! };
  };
  try {
    let server = await startServe(setup);
    servers.push(server);
    await server.waitFor(/reconcile: kernel matches the journal \(\d+ ms\)/);
    for (const name of ["c1", "c2"]) {
      const r = await cnm("sandbox", "create", name);
      assert.equal(r.code, 0, r.err);
    }
    const c1 = await netnsOf("c1");
    const c2 = await netnsOf("c2");
    assert.equal(await server.stop(), 0);

    // By hand, while no controller runs: c1's namespace goes, an orphan with this
    // controller's mark and one with another controller's mark appear.
    await sh(["ip", "netns", "del", c1.netns]);
    const orphan = `${env.host.prefix}-${ownerId(env.stream, "h1")}-0123456789ab`;
    const foreign = `${env.host.prefix}-${ownerId("OTHER", "h9")}-0123456789ab`;
    await sh(["ip", "netns", "add", orphan]);
    await sh(["ip", "netns", "add", foreign]);

    server = await startServe(setup);
    servers.push(server);
    // Log lines are `<ISO time> <text>`; the findings are indented under the summary.
    await server.waitFor(/reconcile: \d+ difference.*\n(\S+ {3}.*\n){3}/);
    const log = server.log();
    const texts = log.split("\n").map((l) => l.replace(/^\d{4}-\S+Z /, ""));

    await t.step("one summary line: what was repaired, removed and left", () => {
      assert.deepEqual(
        texts.filter((l) => l.startsWith("reconcile:")).map((l) => l.replace(/\d+ ms/, "N ms")),
        ["reconcile: 3 differences, 2 repaired (1 orphan removed), 1 left (N ms)"],
      );
    });

    await t.step("one line per finding, saying what was done", () => {
      const rows = texts.filter((l) => l.startsWith("  "));
      const row = (...cells: string[]) => `  ${cells.join("  ")}`;
      assert.deepEqual(
        rows.toSorted(),
        [
          row("host", "netns", foreign, "foreign", "not repaired"),
          row(
            "host",
            "netns",
            orphan,
            "unexpected",
            "repaired: removed (an orphan with cnm's mark)",
          ),
          row(
            `sandbox ${c1.id.slice(0, 12)}`,
            "netns",
            c1.key,
            "missing",
            "repaired: re-created",
          ),
        ].toSorted(),
      );
    });

    await t.step("the kernel is as the summary says", async () => {
      const now = await listPrefixed(`${env.host.prefix}-`);
      assert.ok(now.includes(c1.netns), "c1's namespace re-created");
      assert.ok(now.includes(c2.netns), "c2's namespace untouched");
      assert.ok(!now.includes(orphan), "the orphan removed");
      assert.ok(now.includes(foreign), "another controller's namespace left alone");
    });

    await t.step("each repair is journaled where history and events find it", async () => {
      let r = await cnm("history", "c1");
      assert.equal(r.code, 0, r.err);
      assert.match(
        r.out,
        new RegExp(`sandbox\\.reconciled.*repaired: netns ${c1.key} \\(missing\\)`),
      );
      r = await cnm("history", "--host", "h1");
      assert.equal(r.code, 0, r.err);
      assert.match(
        r.out,
        new RegExp(`host\\.reconciled.*repaired: netns ${orphan} \\(orphan, removed\\)`),
      );
      assert.doesNotMatch(r.out, new RegExp(foreign));
      r = await cnm("events", "--kind", "host");
      assert.match(r.out, /host\.reconciled\s+host h1\s/);
    });

    await t.step("a second start finds nothing more to repair but the foreign one", async () => {
      assert.equal(await server.stop(), 0);
      server = await startServe(setup);
      servers.push(server);
      await server.waitFor(/reconcile: 1 difference, 0 repaired \(0 orphans removed\), 1 left/);
      assert.match(
        server.log(),
        new RegExp(`Z   host  netns  ${foreign}  foreign  not repaired\n`),
      );
      assert.equal(await server.stop(), 0);
    });
  } finally {
    for (const s of servers) await s.cleanup();
    await env.cleanup();
  }
});
