import assert from "node:assert/strict";
import { schemaFiles } from "../scripts/schema.ts";

Deno.test("schema/ matches the zod schemas (run `deno task schema` when this fails)", async () => {
  const root = new URL("../", import.meta.url);
  for (const [path, text] of schemaFiles()) {
    const onDisk = await Deno.readTextFile(new URL(path, root)).catch(() => "(missing)");
    assert.equal(onDisk, text, `${path} is stale: run deno task schema`);
  }
  const expected = new Set([...schemaFiles().keys()].map((p) => p.slice("schema/".length)));
  for await (const e of Deno.readDir(new URL("schema/", root))) {
    assert.ok(expected.has(e.name), `schema/${e.name} is not generated any more: remove it`);
  }
});

Deno.test("schema index lists every event type with its file", () => {
  const index = JSON.parse(schemaFiles().get("schema/index.json")!);
  assert.equal(index.types["endpoint.joined"], "endpoint.joined.json");
  assert.equal(index.envelope, "envelope.json");
});

Deno.test("schema index documents every kind's subject and states, the host kind included", () => {
  const index = JSON.parse(schemaFiles().get("schema/index.json")!);
  assert.deepEqual(index.kinds.host, { subject: "<prefix>.host.<hostId>", states: ["active"] });
  assert.deepEqual(index.kinds.sandbox.states, [
    "creating",
    "ready",
    "deleting",
    "failed",
    "deleted",
  ]);
  const host = JSON.parse(schemaFiles().get("schema/host.reconciled.json")!);
  assert.match(host.description, /its first event has from null/);
});
