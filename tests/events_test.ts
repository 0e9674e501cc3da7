import assert from "node:assert/strict";
import {
  decodeEvent,
  encodeEvent,
  EventValidationError,
  subjectOf,
  validateEvent,
} from "../src/journal/events.ts";
import { ev } from "./actors/_events.ts";

Deno.test("validateEvent accepts a well-formed event and checks its data", () => {
  const e = ev("endpoint.join.requested", "ep1", { sandboxId: "sb1", ifname: "eth0" });
  assert.deepEqual(validateEvent(e), e);
  assert.throws(
    () => validateEvent({ ...e, data: { ifname: "eth0" } }),
    (err: Error) =>
      err instanceof EventValidationError &&
      err.message === "invalid endpoint.join.requested event data: data.sandboxId: " +
          "Invalid input: expected string, received undefined",
  );
});

Deno.test("validateEvent names missing envelope fields", () => {
  const e = ev("network.deleted", "n1") as Record<string, unknown>;
  delete e.host;
  assert.throws(() => validateEvent(e), /invalid event: host: /);
});

Deno.test("validateEvent passes unknown future event types with their envelope", () => {
  const e = ev("network.renamed", "n1", { anything: [1, 2] });
  assert.deepEqual(validateEvent(e), e);
});

Deno.test("decodeEvent round-trips encodeEvent and refuses non-JSON", () => {
  const e = ev("sandbox.created", "s1", { facts: {} });
  assert.deepEqual(decodeEvent(encodeEvent(e)), e);
  assert.throws(() => decodeEvent(new TextEncoder().encode("{")), /payload is not JSON/);
});

Deno.test("subjectOf builds <prefix>.<kind>.<id>", () => {
  assert.equal(subjectOf("cnm", "endpoint", "abc"), "cnm.endpoint.abc");
});
