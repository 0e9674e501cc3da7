/**
 * The remote driver's modules import each other without a cycle (mod.ts and resolver.ts once
 * imported each other: whichever loaded first saw the other's exports uninitialized).
 */
import assert from "node:assert/strict";
import { sh } from "../_harness/command.ts";

const MOD = new URL("../../drivers/remote/mod.ts", import.meta.url);

Deno.test("drivers/remote has no import cycle", async () => {
  const info = JSON.parse(await sh([Deno.execPath(), "info", "--json", MOD.pathname]));
  const local = (s: string) => s.startsWith(new URL("../../drivers/remote/", MOD).href);
  const edges = new Map<string, string[]>();
  for (
    const m of info.modules as {
      specifier: string;
      dependencies?: { code?: { specifier: string } }[];
    }[]
  ) {
    if (!local(m.specifier)) continue;
    edges.set(
      m.specifier,
      (m.dependencies ?? []).map((d) => d.code?.specifier ?? "").filter(local),
    );
  }
  assert.ok(edges.size >= 5, `the graph was read: ${[...edges.keys()]}`);
  const cycles: string[] = [];
  const visit = (node: string, path: string[]) => {
    if (path.includes(node)) {
      cycles.push(
        [...path.slice(path.indexOf(node)), node].map((s) => s.split("/").pop()).join(" → "),
      );
      return;
    }
    for (const next of edges.get(node) ?? []) visit(next, [...path, node]);
  };
  visit(MOD.href, []);
  assert.deepEqual(cycles, []);
});
