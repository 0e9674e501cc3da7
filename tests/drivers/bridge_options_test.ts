/** The bridge driver's option checks, strict and lenient (pure; no root). */
import assert from "node:assert/strict";
import { InvalidArgumentError } from "../../mod.ts";
import { bridgeConfig, createBridgeDriver } from "../../drivers/bridge/mod.ts";
import type { DriverNetwork } from "../../drivers/driver.ts";

const net = (options: Record<string, string>): DriverNetwork => ({
  id: "a".repeat(64),
  internal: false,
  enableIPv6: false,
  options,
  labels: {},
  ipv4: [],
  ipv6: [],
  facts: {},
});

Deno.test("bridge validateNetwork refuses unknown com.docker.network.* options unless told to accept them", async (t) => {
  const driver = createBridgeDriver();
  const unknown = net({ "com.docker.network.foo": "1", colour: "red" });
  await t.step("strict by default (cnm's API and CLI)", () => {
    assert.throws(() => driver.validateNetwork!(unknown), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError);
      assert.equal(e.message, "invalid option com.docker.network.foo: not a bridge driver option");
      return true;
    });
    assert.throws(
      () => driver.validateNetwork!(unknown, { unknownOptions: "refuse" }),
      InvalidArgumentError,
    );
  });
  await t.step("accept keeps them (the Docker API), still checking known values", () => {
    driver.validateNetwork!(unknown, { unknownOptions: "accept" });
    assert.throws(
      () =>
        driver.validateNetwork!(
          net({ "com.docker.network.foo": "1", "com.docker.network.driver.mtu": "abc" }),
          { unknownOptions: "accept" },
        ),
      { message: 'invalid option com.docker.network.driver.mtu: "abc" is not an MTU (68-65535)' },
    );
  });
  await t.step("booleans take Go's ParseBool forms and yes/no", () => {
    for (const v of ["t", "T", "TRUE", "1", "yes"]) {
      assert.equal(bridgeConfig(net({ "com.docker.network.bridge.enable_icc": v })).icc, true, v);
    }
    for (const v of ["f", "False", "0", "no"]) {
      assert.equal(bridgeConfig(net({ "com.docker.network.bridge.enable_icc": v })).icc, false, v);
    }
    assert.throws(() => bridgeConfig(net({ "com.docker.network.bridge.enable_icc": "maybe" })), {
      message: 'invalid option com.docker.network.bridge.enable_icc: "maybe" is not a boolean',
    });
  });
});
