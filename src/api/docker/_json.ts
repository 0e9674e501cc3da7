/**
 * JSON as dockerd's Go code writes and reads it: bodies end with `\n`, map keys are sorted
 * (Go's `encoding/json` sorts map keys; struct fields keep their declared order, which the
 * shapes build by hand), U+2028/U+2029 are escaped, HTML characters only in event streams
 * (dockerd's `WriteJSON` turns HTML escaping off, its event encoder does not). Request bodies
 * are decoded like Go's decoder: field names match case-insensitively, `null` means "not
 * given", a wrong type is refused with Go's message.
 *
 * @module
 */

import { DockerApiError } from "./_errors.ts";

/** Options of {@link goJson}. */
export interface GoJsonOptions {
  /** Escape `<`, `>` and `&` as Go's default encoder does. Default false. */
  escapeHTML?: boolean;
}

/** Serialises `value` like Go's `json.Encoder.Encode`: one line, ending with `\n`. */
export function goJson(value: unknown, options: GoJsonOptions = {}): string {
  let text = JSON.stringify(value).replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
  if (options.escapeHTML) {
    text = text.replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(/&/g, "\\u0026");
  }
  return text + "\n";
}

/** A copy of a string map with its keys in Go's order (sorted), or null for none. */
export function sortedMap(
  map: Record<string, string> | null | undefined,
): Record<string, string> | null {
  if (!map) return null;
  const out: Record<string, string> = {};
  for (const k of Object.keys(map).sort()) out[k] = map[k];
  return out;
}

/** What a request field must be, with the Go type named in errors. */
export type FieldSpec =
  | { type: "string" }
  | { type: "bool" }
  | { type: "map"; go: string }
  | { type: "strings"; go: string }
  | { type: "struct"; go: string; fields: Record<string, FieldSpec> }
  | { type: "structs"; go: string; of: FieldSpec & { type: "struct" } };

/** Shorthands for {@link FieldSpec}s. */
export const F = {
  string: { type: "string" } as FieldSpec,
  bool: { type: "bool" } as FieldSpec,
  map: { type: "map", go: "map[string]string" } as FieldSpec,
  strings: { type: "strings", go: "[]string" } as FieldSpec,
  struct: (go: string, fields: Record<string, FieldSpec>) =>
    ({ type: "struct", go, fields }) as FieldSpec & { type: "struct" },
  structs: (go: string, of: FieldSpec & { type: "struct" }) =>
    ({ type: "structs", go, of }) as FieldSpec,
};

const kindOf = (v: unknown): string =>
  Array.isArray(v)
    ? "array"
    : v === null
    ? "null"
    : typeof v === "boolean"
    ? "bool"
    : typeof v === "object"
    ? "object"
    : typeof v;

/**
 * Decodes a parsed JSON value against a struct spec: known fields (matched
 * case-insensitively, the last match wins) are checked and copied under their canonical
 * names, unknown fields are dropped, `null` leaves a field unset.
 *
 * @throws {DockerApiError} 400 `json: cannot unmarshal …` for a wrong type.
 */
export function decodeStruct(
  value: unknown,
  spec: FieldSpec & { type: "struct" },
  path = spec.go.replace(/^\w+\./, ""),
): Record<string, unknown> {
  if (value === null || value === undefined) return {};
  if (kindOf(value) !== "object") {
    throw new DockerApiError(
      400,
      `json: cannot unmarshal ${kindOf(value)} into Go value of type ${spec.go}`,
    );
  }
  const canonical = new Map(Object.keys(spec.fields).map((k) => [k.toLowerCase(), k]));
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    const name = spec.fields[key] ? key : canonical.get(key.toLowerCase());
    if (!name || v === null) continue;
    out[name] = decodeField(v, spec.fields[name], `${path}.${name}`);
  }
  return out;
}

function decodeField(v: unknown, spec: FieldSpec, path: string): unknown {
  const wrong = (go: string): never => {
    const [struct, ...field] = path.split(".");
    throw new DockerApiError(
      400,
      `json: cannot unmarshal ${kindOf(v) === "object" ? "object" : kindOf(v)} into Go struct ` +
        `field ${struct}.${field.join(".")} of type ${go}`,
    );
  };
  switch (spec.type) {
    case "string":
      return typeof v === "string" ? v : wrong("string");
    case "bool":
      return typeof v === "boolean" ? v : wrong("bool");
    case "map": {
      if (kindOf(v) !== "object") return wrong(spec.go);
      const out: Record<string, string> = {};
      for (const [k, s] of Object.entries(v as Record<string, unknown>)) {
        if (s === null) out[k] = "";
        else if (typeof s === "string") out[k] = s;
        else return wrong("string");
      }
      return out;
    }
    case "strings": {
      if (!Array.isArray(v)) return wrong(spec.go);
      return v.map((s) => (s === null ? "" : typeof s === "string" ? s : wrong("string")));
    }
    case "struct":
      if (kindOf(v) !== "object") return wrong(spec.go);
      return decodeStruct(v, spec, path);
    case "structs":
      if (!Array.isArray(v)) return wrong(spec.go);
      return v.map((e) => decodeStruct(e, spec.of, path));
  }
}

/**
 * Parses a request body as Go's `json.Decoder` would, with its messages for an empty body
 * (`got EOF while reading request body`), a truncated one (`unexpected EOF`) and bad syntax.
 *
 * @throws {DockerApiError} 400.
 */
export function parseBody(text: string): unknown {
  if (text.trim() === "") throw new DockerApiError(400, "got EOF while reading request body");
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new DockerApiError(400, goSyntaxMessage(text, err as Error, "unexpected EOF"));
  }
}

/**
 * Parses a `filters` query value; a malformed one is refused as dockerd 1.44+ does (400),
 * not with 20.10's 500.
 */
export function parseQueryJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new DockerApiError(
      400,
      `invalid filter: ${goSyntaxMessage(text, err as Error, "unexpected end of JSON input")}`,
    );
  }
}

/** Go's wording for a JSON syntax error, from V8's (which gives a position or a token). */
function goSyntaxMessage(text: string, err: Error, eof: string): string {
  if (/end of JSON input|Unterminated string/i.test(err.message)) return eof;
  let pos = Number(/position (\d+)/.exec(err.message)?.[1] ?? -1);
  const token = /Unexpected token '(.)'/.exec(err.message)?.[1];
  if (pos < 0 && token !== undefined) pos = firstOutsideStrings(text, token);
  if (pos < 0 || pos >= text.length) return eof;
  const ch = text[pos];
  const before = text.slice(0, pos).trimEnd();
  const context = before === "" || /[[:,]$/.test(before)
    ? "looking for beginning of value"
    : before.endsWith("{")
    ? "looking for beginning of object key string"
    : before.endsWith('"')
    ? "after object key"
    : "after value";
  return `invalid character ${JSON.stringify(ch).replace(/^"|"$/g, "'")} ${context}`;
}

/** Index of the first `ch` that is not inside a string literal, or -1. */
function firstOutsideStrings(text: string, ch: string): number {
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === ch) return i;
  }
  return -1;
}
