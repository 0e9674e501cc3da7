/**
 * No import cycles anywhere in the project, type-only imports included (issue 9): a cycle
 * of values lets whichever module loads first see the other's exports uninitialised, and a
 * cycle of types is the sign of a concept in the wrong room. The graph is Deno's own
 * (`deno info --json`) from every entry point, so it is what actually loads.
 */
import assert from "node:assert/strict";
import { sh } from "./_harness/command.ts";

const ROOT = new URL("../", import.meta.url);
const ENTRIES = ["mod.ts", "src/cli/main.ts", "scripts/crashtest.ts", "bench/scale.ts"];

interface InfoModule {
  specifier: string;
  dependencies?: { code?: { specifier: string }; type?: { specifier: string } }[];
}

/** Strongly connected components of more than one module (or a module importing itself). */
export function cyclesOf(edges: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const comp: string[] = [];
      for (let w = stack.pop()!;; w = stack.pop()!) {
        onStack.delete(w);
        comp.push(w);
        if (w === v) break;
      }
      if (comp.length > 1 || edges.get(v)?.includes(v)) out.push(comp.sort());
    }
  };
  for (const v of edges.keys()) if (!index.has(v)) visit(v);
  return out;
}

Deno.test("imports: the cycle finder finds a cycle (it can fail)", () => {
  const g = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a", "d"]], ["d", []]]);
  assert.deepEqual(cyclesOf(g), [["a", "b", "c"]]);
  assert.deepEqual(cyclesOf(new Map([["a", ["b"]], ["b", []]])), []);
});

Deno.test("imports: no module of the project is part of an import cycle, types included", async () => {
  const edges = new Map<string, string[]>();
  const local = (s: string) => s.startsWith(ROOT.href) && !s.includes("/node_modules/");
  for (const entry of ENTRIES) {
    const info = JSON.parse(
      await sh([Deno.execPath(), "info", "--json", new URL(entry, ROOT).pathname]),
    ) as { modules: InfoModule[] };
    for (const m of info.modules) {
      if (!local(m.specifier)) continue;
      const deps = (m.dependencies ?? []).flatMap((d) =>
        [d.code?.specifier, d.type?.specifier].filter((s): s is string => !!s && local(s))
      );
      edges.set(m.specifier, [...new Set([...(edges.get(m.specifier) ?? []), ...deps])]);
    }
  }
  assert.ok(edges.size > 150, `the graph was read: ${edges.size} modules`);
  const rel = (s: string) => s.slice(ROOT.href.length);
  assert.deepEqual(cyclesOf(edges).map((c) => c.map(rel)), []);
});
