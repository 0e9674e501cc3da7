/**
 * Depending on cnm from another Deno project (needs root, nats-server): a project outside the
 * checkout, with its own deno.json linking cnm, runs the README's quick start — inside a
 * throwaway network namespace, against a nats-server started in that namespace.
 */
import assert from "node:assert/strict";
import { createTestHost } from "../_harness/netns.ts";
import { freePort } from "../_harness/nats.ts";
import { output } from "../_harness/command.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** The first ```ts block of the README's "Using it" section. */
async function quickStart(): Promise<string> {
  const readme = await Deno.readTextFile(`${ROOT}/README.md`);
  const section = readme.slice(readme.indexOf("## Using it"));
  const m = /```ts\n([\s\S]*?)```/.exec(section);
  if (!m) throw new Error("README has no quick start");
  return m[1];
}

Deno.test("a separate Deno project (needs root, nats-server) depends on cnm and runs the README quick start", async () => {
  const host = await createTestHost("use");
  const project = await Deno.makeTempDir({ prefix: "cnm-consumer-" });
  const store = await Deno.makeTempDir({ prefix: "cnm-consumer-nats-" });
  const port = freePort();
  let nats: Deno.ChildProcess | undefined;
  let key: string | undefined;
  let sandboxDir: string | undefined;
  const stateDirs = ["/var/lib/cnm/h1/sandboxes", "/var/lib/cnm/h1", "/var/lib/cnm"];
  const exists = (d: string) => Deno.stat(d).then(() => true, () => false);
  const existed = await Promise.all(stateDirs.map(exists));
  const madeDirs = stateDirs.filter((_, i) => !existed[i]);
  try {
    assert.ok(!project.startsWith(ROOT), "the project is outside the checkout");
    await Deno.writeTextFile(
      `${project}/deno.json`,
      JSON.stringify(
        { imports: { "@cnm/cnm": "jsr:@cnm/cnm@^0.1.0" }, links: [ROOT], unstable: ["net"] },
        null,
        2,
      ),
    );
    const code = (await quickStart()).replace(
      "await cnm.close();",
      'console.log("QUICKSTART", sb.id, sb.key, cnm.endpoint(ep.id)?.state);\nawait cnm.close();',
    );
    assert.match(code, /from "@cnm\/cnm"/);
    await Deno.writeTextFile(`${project}/main.ts`, code);
    nats = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        host.name,
        "nats-server",
        "-a",
        "127.0.0.1",
        "-p",
        String(port),
        "-js",
        "-sd",
        store,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    for (let i = 0; i < 100; i++) {
      const probe = await output([
        "ip",
        "netns",
        "exec",
        host.name,
        "bash",
        "-c",
        `exec 3<>/dev/tcp/127.0.0.1/${port}`,
      ]);
      if (probe.code === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const run = await output(
      [
        "ip",
        "netns",
        "exec",
        host.name,
        "bash",
        "-c",
        `cd '${project}' && '${Deno.execPath()}' run -A main.ts`,
      ],
      { env: { CNM_NATS_URL: `127.0.0.1:${port}` } },
    );
    const line = /^QUICKSTART (\S+) (\S+) (\S+)$/m.exec(run.stdout);
    if (line) {
      key = line[2];
      sandboxDir = `/var/lib/cnm/h1/sandboxes/${line[1]}`;
    }
    assert.equal(run.code, 0, run.stderr);
    assert.ok(line, run.stdout);
    assert.equal(line[3], "joined");
    assert.doesNotMatch(run.stderr, /not a dependency/);
  } finally {
    try {
      nats?.kill("SIGTERM");
    } catch { /* gone */ }
    await nats?.status;
    // The quick start's sandbox namespace (default prefix cnm-) and its files.
    if (key) await output(["ip", "netns", "delete", key.split("/").at(-1)!]);
    if (sandboxDir) await Deno.remove(sandboxDir, { recursive: true }).catch(() => {});
    // …and the directories of the default state dir that this test made, when empty.
    for (const d of madeDirs) await Deno.remove(d).catch(() => {});
    await Deno.remove(project, { recursive: true }).catch(() => {});
    await Deno.remove(store, { recursive: true }).catch(() => {});
    await host.cleanup();
  }
});
