/**
 * The resolver must keep answering when NATS or the controller is gone: it must not even
 * import them. Checked on the module graph (`deno info --json`).
 */

import assert from "node:assert/strict";

Deno.test("src/dns imports neither NATS nor the controller", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", new URL("../../src/dns/mod.ts", import.meta.url).pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: { specifier: string; npmPackage?: string }[];
  };
  const packages = [...new Set(graph.modules.flatMap((m) => m.npmPackage ?? []))].sort();
  assert.ok(packages.some((p) => p.startsWith("dns-packet@")), `packages: ${packages}`);
  assert.deepEqual(packages.filter((p) => p.includes("nats")), []);
  const local = graph.modules.map((m) => m.specifier).filter((s) => s.startsWith("file:"));
  // The pure fold and the event schemas are fine; the stream client and the controller are not.
  const forbidden = /\/src\/(controller|api)\/|\/src\/journal\/(journal|watch|replay|history)\.ts/;
  assert.deepEqual(local.filter((s) => forbidden.test(s)), []);
});
