/**
 * Writes JSON Schema (draft 2020-12) for the event envelope and for every event type's
 * `data`, generated from the zod schemas in `src/journal/events.ts`, into `schema/`. Run with
 * `deno task schema`; `tests/schema_test.ts` fails when the files are stale.
 *
 * @module
 */

import { z } from "zod";
import { DataSchemas, EnvelopeSchema, EVENT_VERSION, Kinds } from "../src/journal/events.ts";
import { MACHINES } from "../actors/mod.ts";

/** The files to write: path (relative to the repo) → JSON text. */
export function schemaFiles(): Map<string, string> {
  const files = new Map<string, string>();
  const write = (
    name: string,
    schema: z.ZodType,
    title: string,
    extra: Record<string, unknown> = {},
  ) => {
    const json = {
      ...z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }),
      title,
      ...extra,
    };
    files.set(`schema/${name}.json`, JSON.stringify(json, null, 2) + "\n");
  };
  write("envelope", EnvelopeSchema, "cnm event envelope", { "x-cnm-version": EVENT_VERSION });
  for (const [type, schema] of Object.entries(DataSchemas).sort(([a], [b]) => a.localeCompare(b))) {
    write(type, schema, `data of ${type} events`);
  }
  // Every kind's subject and states (`from` is null on an object's first event).
  const kinds: Record<string, { subject: string; states: string[] }> = {};
  for (const kind of Kinds) {
    kinds[kind] = {
      subject: `<prefix>.${kind}.<objectId>`,
      states: Object.keys(MACHINES[kind].config.states ?? {}),
    };
  }
  kinds.host = { subject: "<prefix>.host.<hostId>", states: ["active"] };
  const index = {
    version: EVENT_VERSION,
    envelope: "envelope.json",
    kinds,
    types: Object.fromEntries(Object.keys(DataSchemas).sort().map((t) => [t, `${t}.json`])),
  };
  files.set("schema/index.json", JSON.stringify(index, null, 2) + "\n");
  return files;
}

if (import.meta.main) {
  const root = new URL("../", import.meta.url);
  await Deno.mkdir(new URL("schema/", root), { recursive: true });
  for (const [path, text] of schemaFiles()) await Deno.writeTextFile(new URL(path, root), text);
  console.log(`wrote ${schemaFiles().size} files into schema/`);
}
