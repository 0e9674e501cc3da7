/**
 * The remote driver's requests on the wire, against a plugin written on Python's http.server
 * (tests/drivers/_plugin/py_plugin.py), which, like most servers not written in Go, answers
 * only origin-form requests: over a unix socket, TCP and TLS, the request line and headers
 * are Docker's.
 */
import assert from "node:assert/strict";
import { createRemoteDriver } from "../../drivers/remote/mod.ts";
import { makeTestCerts } from "../_harness/tls.ts";
import { FAST, freePort, NO_KERNEL } from "./_plugin/start.ts";

const PY = new URL("./_plugin/py_plugin.py", import.meta.url).pathname;

interface Seen {
  line: string;
  headers: Record<string, string>;
  body: string;
}

/** Starts the Python plugin; `args` after the log: `unix SOCKET` or `tcp PORT [CERT KEY]`. */
async function startPy(dir: string, ...args: string[]) {
  const log = `${dir}/py.log.jsonl`;
  await Deno.writeTextFile(log, "");
  const child = new Deno.Command("python3", {
    args: [PY, log, ...args],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("listening")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the Python plugin exited before listening (is python3 there?)");
    seen += value;
  }
  reader.releaseLock();
  return {
    async requests(): Promise<Seen[]> {
      return (await Deno.readTextFile(log)).split("\n").filter(Boolean).map((l) => JSON.parse(l));
    },
    async stop() {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
      await child.stdout.cancel().catch(() => {});
    },
  };
}

/** Header names as sent (http.server keeps their case), compared case-insensitively. */
function header(seen: Seen, name: string): string | undefined {
  return Object.entries(seen.headers).find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1];
}

function assertDockerRequest(seen: Seen, method: string, host: string) {
  assert.equal(seen.line, `POST /${method} HTTP/1.1`, "origin form, as Docker sends it");
  assert.equal(header(seen, "Accept"), "application/vnd.docker.plugins.v1.2+json");
  assert.equal(header(seen, "Content-Type"), "application/json");
  assert.equal(header(seen, "Content-Length"), String(new TextEncoder().encode(seen.body).length));
  assert.equal(header(seen, "Host"), host);
}

Deno.test("remote driver (needs python3) activates a plugin written on Python's http.server", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "cnm-pyplugin-" });
  const certs = await makeTestCerts();
  try {
    await t.step("over a unix socket", async () => {
      const py = await startPy(dir, "unix", `${dir}/py.sock`);
      try {
        await Deno.writeTextFile(`${dir}/py.spec`, `unix://${dir}/py.sock\n`);
        const driver = await createRemoteDriver("py", { ...FAST, pluginDirs: [dir] });
        await driver.deleteNetwork?.({ id: "n1" } as never, NO_KERNEL);
        driver.close();
        const seen = await py.requests();
        assert.deepEqual(seen.map((s) => s.line.split(" ")[1]), [
          "/Plugin.Activate",
          "/NetworkDriver.GetCapabilities",
          "/NetworkDriver.DeleteNetwork",
        ]);
        // Go writes an empty Host for a unix socket's path.
        for (const s of seen) assertDockerRequest(s, s.line.split(" ")[1].slice(1), "");
        assert.equal(seen[0].body, "{}");
        assert.deepEqual(JSON.parse(seen[2].body), { NetworkID: "n1" });
      } finally {
        await py.stop();
        await Deno.remove(`${dir}/py.spec`);
        await Deno.remove(`${dir}/py.sock`); // discovery would find it before any spec
      }
    });
    await t.step("over TCP", async () => {
      const port = freePort();
      const py = await startPy(dir, "tcp", String(port));
      try {
        await Deno.writeTextFile(`${dir}/py.spec`, `tcp://127.0.0.1:${port}\n`);
        (await createRemoteDriver("py", { ...FAST, pluginDirs: [dir] })).close();
        const [activate] = await py.requests();
        assertDockerRequest(activate, "Plugin.Activate", `127.0.0.1:${port}`);
      } finally {
        await py.stop();
        await Deno.remove(`${dir}/py.spec`);
      }
    });
    await t.step("over TLS (https:// in a .json spec), also with InsecureSkipVerify", async () => {
      const port = freePort();
      const py = await startPy(dir, "tcp", String(port), certs.serverCert, certs.serverKey);
      try {
        const spec = (tls: Record<string, unknown>) =>
          Deno.writeTextFile(
            `${dir}/py.json`,
            JSON.stringify({ Name: "py", Addr: `https://127.0.0.1:${port}`, TLSConfig: tls }),
          );
        await spec({ CAFile: certs.ca });
        (await createRemoteDriver("py", { ...FAST, pluginDirs: [dir] })).close();
        await spec({ InsecureSkipVerify: true }); // no CA: Docker skips verification then
        (await createRemoteDriver("py", { ...FAST, pluginDirs: [dir] })).close();
        const seen = await py.requests();
        assert.equal(seen.length, 4);
        assertDockerRequest(seen[0], "Plugin.Activate", `127.0.0.1:${port}`);
      } finally {
        await py.stop();
      }
    });
  } finally {
    await certs.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
