/** Docker's filter and time arguments (pure; no root, no server). */
import assert from "node:assert/strict";
import { DockerApiError } from "../../../src/api/docker/_errors.ts";
import {
  exactMatch,
  fuzzyMatch,
  goDuration,
  matchLabels,
  parseFilters,
  parseTime,
  regexpMatch,
  validateKeys,
} from "../../../src/api/docker/_filters.ts";

const refused = (f: () => unknown, status: number, message: string) =>
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof DockerApiError);
    assert.deepEqual([e.status, e.message], [status, message]);
    return true;
  });

Deno.test("parseFilters reads the CLI's and dockerode's encodings alike", async (t) => {
  await t.step("map of booleans (CLI) and arrays (dockerode)", () => {
    assert.deepEqual(
      [...parseFilters('{"name":{"front":true},"label":{"a=1":true,"b":true}}')],
      [["name", ["front"]], ["label", ["a=1", "b"]]],
    );
    assert.deepEqual([...parseFilters('{"name":["front"],"type":["custom"]}')], [
      ["name", ["front"]],
      ["type", ["custom"]],
    ]);
    assert.deepEqual([...parseFilters("")], []);
    assert.deepEqual([...parseFilters(null)], []);
  });
  await t.step("malformed JSON and other shapes are 400", () => {
    refused(() => parseFilters("{"), 400, "invalid filter: unexpected end of JSON input");
    refused(
      () => parseFilters('{"name":"front"}'),
      400,
      "invalid filter: json: cannot unmarshal string into Go value of type map[string]bool",
    );
    refused(
      () => parseFilters("[1]"),
      400,
      "invalid filter: json: cannot unmarshal array into Go value of type map[string]map[string]bool",
    );
  });
  await t.step("unknown keys are refused with dockerd's message", () => {
    refused(
      () => validateKeys(parseFilters('{"colour":["red"]}'), ["name"]),
      400,
      "Invalid filter 'colour'",
    );
  });
});

Deno.test("filter matchers behave as moby's filters.Args", async (t) => {
  const f = parseFilters('{"name":["ro","["],"driver":["bridge"],"id":["^abc"]}');
  await t.step("name/id: unanchored regexps, a bad one never matches", () => {
    assert.equal(regexpMatch(f, "name", "front"), true);
    assert.equal(regexpMatch(f, "name", "back"), false);
    assert.equal(regexpMatch(f, "id", "abcdef"), true);
    assert.equal(regexpMatch(f, "id", "xabc"), false);
    assert.equal(regexpMatch(f, "scope", "anything"), true);
  });
  await t.step("driver: exact; fuzzy: prefixes", () => {
    assert.equal(exactMatch(f, "driver", "bridge"), true);
    assert.equal(exactMatch(f, "driver", "bri"), false);
    assert.equal(fuzzyMatch(parseFilters('{"network":["9f6"]}'), "network", "9f62bf"), true);
    assert.equal(fuzzyMatch(parseFilters('{"network":["9f6"]}'), "network", "a9f6"), false);
  });
  await t.step("labels: every value must be present; values but no labels is false", () => {
    const l = parseFilters('{"label":["a","b=2"]}');
    assert.equal(matchLabels(l, "label", { a: "x", b: "2" }), true);
    assert.equal(matchLabels(l, "label", { a: "x", b: "3" }), false);
    assert.equal(matchLabels(l, "label", { a: "x" }), false);
    assert.equal(matchLabels(l, "label", {}), false);
    assert.equal(matchLabels(l, "other", {}), true);
  });
});

Deno.test("parseTime takes Go durations, RFC 3339 and unix seconds", async (t) => {
  const now = Date.parse("2026-12-01T12:00:00Z");
  await t.step("durations are before now", () => {
    assert.equal(goDuration("1h30m"), 5_400_000);
    assert.equal(goDuration("1.5s"), 1500);
    assert.equal(goDuration("1d"), undefined);
    assert.equal(parseTime("10m", now), BigInt(now - 600_000) * 1_000_000n);
  });
  await t.step("unix seconds keep their nanoseconds", () => {
    assert.equal(parseTime("1733040000.000000123"), 1_733_040_000_000_000_123n);
    assert.equal(parseTime("1733040000.5"), 1_733_040_000_500_000_000n);
    assert.equal(parseTime("0"), 0n);
  });
  await t.step("RFC 3339 times", () => {
    assert.equal(
      parseTime("2026-12-01T07:25:26.713743785Z"),
      BigInt(Date.parse("2026-12-01T07:25:26.713Z")) * 1_000_000n + 743_785n,
    );
  });
  await t.step("anything else is dockerd's message, 400", () => {
    refused(
      () => parseTime("yesterday"),
      400,
      'failed to parse value as time or duration: "yesterday"',
    );
  });
});
