/**
 * Docker's `filters` query parameter: JSON in two encodings, `{"name":{"front":true}}` (the
 * CLI) and `{"name":["front"]}` (dockerode, and the legacy form), both read into one
 * key → values map; the matchers of moby's `filters.Args` (`ExactMatch`, regexp `Match`,
 * prefix `FuzzyMatch`, `MatchKVList` for labels); and Docker's time arguments
 * (durations, RFC 3339, unix seconds).
 *
 * @module
 */

import { DockerApiError } from "./_errors.ts";
import { parseQueryJson } from "./_json.ts";

/** Filter values by key. */
export type Filters = Map<string, string[]>;

/**
 * Parses `filters`; an empty or missing value is no filter.
 *
 * @throws {DockerApiError} 400 for malformed JSON or a shape that is neither encoding.
 */
export function parseFilters(text: string | null): Filters {
  const out: Filters = new Map();
  if (!text) return out;
  const raw = parseQueryJson(text);
  if (raw === null) return out;
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new DockerApiError(
      400,
      `invalid filter: json: cannot unmarshal ${
        Array.isArray(raw) ? "array" : typeof raw
      } into Go value of type map[string]map[string]bool`,
    );
  }
  for (const [key, v] of Object.entries(raw as Record<string, unknown>)) {
    if (Array.isArray(v) && v.every((s) => typeof s === "string")) out.set(key, [...v]);
    else if (v && typeof v === "object" && !Array.isArray(v)) {
      if (!Object.values(v).every((b) => typeof b === "boolean")) {
        throw new DockerApiError(
          400,
          "invalid filter: json: cannot unmarshal value into Go value of type bool",
        );
      }
      out.set(key, Object.keys(v));
    } else if (v !== null) {
      throw new DockerApiError(
        400,
        `invalid filter: json: cannot unmarshal ${typeof v} into Go value of type map[string]bool`,
      );
    }
  }
  return out;
}

/**
 * Refuses keys outside `accepted`.
 *
 * @throws {DockerApiError} 400 `Invalid filter 'k'`.
 */
export function validateKeys(filters: Filters, accepted: readonly string[]): void {
  for (const key of filters.keys()) {
    if (!accepted.includes(key)) throw new DockerApiError(400, `Invalid filter '${key}'`);
  }
}

/** True when `key` is absent, or `source` is one of its values. */
export function exactMatch(filters: Filters, key: string, source: string): boolean {
  const values = filters.get(key);
  return !values?.length || values.includes(source);
}

/** Exact match, else any value as an unanchored regular expression (bad ones never match). */
export function regexpMatch(filters: Filters, key: string, source: string): boolean {
  const values = filters.get(key);
  if (!values?.length || values.includes(source)) return true;
  return values.some((v) => {
    try {
      return new RegExp(v).test(source);
    } catch {
      return false;
    }
  });
}

/** Exact match, else any value as a prefix of `source`. */
export function fuzzyMatch(filters: Filters, key: string, source: string): boolean {
  const values = filters.get(key);
  if (!values?.length || values.includes(source)) return true;
  return values.some((v) => source.startsWith(v));
}

/**
 * moby's `MatchKVList`: every value (`k` or `k=v`) must be present in `labels`. No values:
 * true; values but no labels at all: false.
 */
export function matchLabels(
  filters: Filters,
  key: string,
  labels: Record<string, string>,
): boolean {
  const values = filters.get(key);
  if (!values?.length) return true;
  if (!Object.keys(labels).length) return false;
  return values.every((v) => {
    const eq = v.indexOf("=");
    const k = eq < 0 ? v : v.slice(0, eq);
    if (!(k in labels)) return false;
    return eq < 0 || labels[k] === v.slice(eq + 1);
  });
}

const GO_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  "μs": 1e-3,
  ms: 1,
  s: 1e3,
  m: 60e3,
  h: 3600e3,
};

/** A Go duration (`1h30m`, `90s`, `1.5h`, `-2m`) in milliseconds, or undefined. */
export function goDuration(text: string): number | undefined {
  const m = /^([-+]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$/.exec(text);
  if (!m) return text === "0" ? 0 : undefined;
  let total = 0;
  for (const part of text.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) {
    total += Number(part[1]) * GO_UNITS[part[2]];
  }
  return m[1] === "-" ? -total : total;
}

/**
 * A time as Docker's `timetypes.GetTimestamp` reads it, in nanoseconds since the epoch:
 * a duration ago (`10m`), an RFC 3339 time or date, or unix seconds (`1733040000.5`).
 *
 * @throws {DockerApiError} 400 `failed to parse value as time or duration: "x"`.
 */
export function parseTime(text: string, now = Date.now()): bigint {
  const d = text === "0" ? undefined : goDuration(text);
  if (d !== undefined) return BigInt(Math.round((now - d) * 1e6));
  const unix = /^(-?\d+)(?:\.(\d{1,9}))?$/.exec(text);
  if (unix) {
    return BigInt(unix[1]) * 1_000_000_000n + BigInt((unix[2] ?? "").padEnd(9, "0") || "0");
  }
  if (/^\d{4}-\d{2}-\d{2}/.test(text)) {
    const ms = Date.parse(text);
    if (!Number.isNaN(ms)) {
      const frac = /\.(\d{1,9})/.exec(text)?.[1] ?? "";
      const subMs = BigInt(frac.padEnd(9, "0").slice(3) || "0");
      return BigInt(ms) * 1_000_000n + subMs;
    }
  }
  throw new DockerApiError(
    400,
    `failed to parse value as time or duration: ${JSON.stringify(text)}`,
  );
}
