/**
 * Docker's shapes and wire rules without a server: NetworkResource key order, Go's JSON,
 * request decoding, IPAM checks as dockerd 1.44+ words them, error mapping (pure).
 */
import assert from "node:assert/strict";
import {
  ConflictError,
  ForbiddenError,
  InvalidArgumentError,
  NotFoundError,
} from "../../../mod.ts";
import type { EndpointInfo, NetworkInfo, SandboxInfo } from "../../../mod.ts";
import { DockerApiError, toDockerError } from "../../../src/api/docker/_errors.ts";
import { validateIpam } from "../../../src/api/docker/_ipam_check.ts";
import { dockerMac } from "../../../src/api/docker/_mac.ts";
import { decodeStruct, F, goJson, parseBody } from "../../../src/api/docker/_json.ts";
import {
  formatInspect,
  isPredefined,
  networkResource,
  rfc3339Nano,
} from "../../../src/api/docker/mod.ts";

const net: NetworkInfo = {
  id: "9".repeat(64),
  name: "sub",
  driver: "bridge",
  scope: "local",
  state: "active",
  internal: false,
  enableIPv6: false,
  labels: { z: "1", a: "2" },
  options: { "com.docker.network.driver.mtu": "1400", colour: "red" },
  ipam: {
    driver: "default",
    config: [{
      subnet: "10.10.0.0/24",
      ipRange: "10.10.0.128/25",
      gateway: "10.10.0.254",
      auxAddresses: { b: "10.10.0.6/24", a: "10.10.0.5/24" },
    }],
  },
  driverInfo: { bridge: "br-999999999999" },
  created: "2026-12-01T07:25:26.710Z",
};
const sb = (id: string, name: string): SandboxInfo => ({
  id,
  name,
  key: `/var/run/netns/${name}`,
  state: "ready",
  endpointIds: [],
  labels: {},
  hostsPath: "",
  resolvConfPath: "",
  created: net.created,
});
const ep = (id: string, sandboxId: string | null, state: EndpointInfo["state"]): EndpointInfo => ({
  id,
  name: "e",
  networkId: net.id,
  sandboxId,
  state,
  labels: {},
  ipv4Address: "10.10.0.130/24",
  macAddress: "02:42:0a:0a:00:82",
  created: net.created,
});

Deno.test("networkResource builds dockerd's NetworkResource", async (t) => {
  await t.step("keys in dockerd's order, maps sorted, addresses without prefix", () => {
    const r = networkResource(net, { endpoints: [], sandboxes: [] });
    assert.equal(
      goJson(r),
      `{"Name":"sub","Id":"${net.id}","Created":"2026-12-01T07:25:26.71Z","Scope":"local",` +
        `"Driver":"bridge","EnableIPv6":false,"IPAM":{"Driver":"default","Options":{},"Config":` +
        `[{"Subnet":"10.10.0.0/24","IPRange":"10.10.0.128/25","Gateway":"10.10.0.254",` +
        `"AuxiliaryAddresses":{"a":"10.10.0.5","b":"10.10.0.6"}}]},"Internal":false,` +
        `"Attachable":false,"Ingress":false,"ConfigFrom":{"Network":""},"ConfigOnly":false,` +
        `"Containers":{},"Options":{"colour":"red","com.docker.network.driver.mtu":"1400"},` +
        `"Labels":{"a":"2","z":"1"}}\n`,
    );
  });
  await t.step("Containers: joined endpoints only, keyed by sandbox id, named by sandbox", () => {
    const r = networkResource(net, {
      endpoints: [ep("e1", "s1", "joined"), ep("e2", null, "created"), ep("e3", "s2", "joining")],
      sandboxes: [sb("s1", "c1"), sb("s2", "c2")],
      containers: true,
    });
    assert.deepEqual(r.Containers, {
      s1: {
        Name: "c1",
        EndpointID: "e1",
        MacAddress: "02:42:0a:0a:00:82",
        IPv4Address: "10.10.0.130/24",
        IPv6Address: "",
      },
    });
  });
  await t.step("predefined networks show IPAM Options null", () => {
    const none = { ...net, driver: "null", options: {}, ipam: { driver: "default", config: [] } };
    assert.equal(isPredefined(none), true);
    assert.deepEqual(networkResource(none, { endpoints: [], sandboxes: [] }).IPAM, {
      Driver: "default",
      Options: null,
      Config: [],
    });
    assert.equal(isPredefined(net), false);
  });
  await t.step("Created trims trailing zeros like Go; inspect output is 4-space indented", () => {
    assert.equal(rfc3339Nano("2026-12-01T07:25:26.000Z"), "2026-12-01T07:25:26Z");
    assert.equal(rfc3339Nano("2026-12-01T07:25:26.120Z"), "2026-12-01T07:25:26.12Z");
    assert.equal(formatInspect([]), "[]\n");
    assert.match(
      formatInspect([networkResource(net, { endpoints: [], sandboxes: [] })]),
      /^\[\n {4}\{\n {8}"Name": "sub",/,
    );
  });
});

Deno.test("goJson writes what Go's encoder writes", () => {
  assert.equal(goJson({ a: "<&>\u2028" }), '{"a":"<&>\\u2028"}\n');
  assert.equal(goJson({ a: "<&>" }, { escapeHTML: true }), '{"a":"\\u003c\\u0026\\u003e"}\n');
});

Deno.test("request bodies decode as Go's decoder decodes them", async (t) => {
  const spec = F.struct("types.NetworkCreateRequest", {
    Name: F.string,
    Internal: F.bool,
    IPAM: F.struct("network.IPAM", {
      Config: F.structs(
        "[]network.IPAMConfig",
        F.struct("network.IPAMConfig", { Subnet: F.string }),
      ),
    }),
  });
  await t.step("names match case-insensitively, unknown fields and nulls are dropped", () => {
    assert.deepEqual(decodeStruct({ name: "x", Colour: "red", Internal: null }, spec), {
      Name: "x",
    });
    assert.deepEqual(decodeStruct({ IPAM: { config: [{ subnet: "10.0.0.0/8" }] } }, spec), {
      IPAM: { Config: [{ Subnet: "10.0.0.0/8" }] },
    });
  });
  await t.step("wrong types name the Go field", () => {
    assert.throws(() => decodeStruct({ Internal: "yes" }, spec), {
      message:
        "json: cannot unmarshal string into Go struct field NetworkCreateRequest.Internal of type bool",
    });
    assert.throws(() => decodeStruct({ IPAM: { Config: [{ Subnet: 1 }] } }, spec), {
      message:
        "json: cannot unmarshal number into Go struct field NetworkCreateRequest.IPAM.Config.Subnet of type string",
    });
    assert.throws(() => decodeStruct([], spec), {
      message: "json: cannot unmarshal array into Go value of type types.NetworkCreateRequest",
    });
  });
  await t.step("empty, truncated and malformed bodies", () => {
    assert.throws(() => parseBody(""), { message: "got EOF while reading request body" });
    assert.throws(() => parseBody('{"Name":"x"'), { message: "unexpected EOF" });
    assert.throws(() => parseBody("xyz"), {
      message: "invalid character 'x' looking for beginning of value",
    });
  });
});

Deno.test("validateIpam words problems as dockerd 1.44+ (400)", async (t) => {
  const fails = (config: Parameters<typeof validateIpam>[0], message: string, v6 = false) =>
    assert.throws(() => validateIpam(config, v6), (e: unknown) => {
      assert.ok(e instanceof DockerApiError);
      assert.deepEqual([e.status, e.message], [400, `invalid network config:\n${message}`]);
      return true;
    });
  await t.step("subnets", () => {
    fails([{ Subnet: "300.1.2.0/24" }], "invalid subnet 300.1.2.0/24: invalid CIDR block notation");
    fails([{ Subnet: "10.1.2.3" }], "invalid subnet 10.1.2.3: invalid CIDR block notation");
    fails([{ Subnet: "10.1.2.3/24" }], "invalid subnet 10.1.2.3/24: it should be 10.1.2.0/24");
    fails([{ Gateway: "10.41.0.1" }], "invalid subnet : invalid CIDR block notation");
  });
  await t.step("ranges, gateways, aux addresses; several at once", () => {
    fails(
      [{ Subnet: "10.42.0.0/24", IPRange: "10.43.0.0/25" }],
      "invalid ip-range 10.43.0.0/25: parent subnet 10.42.0.0/24 doesn't contain ip-range",
    );
    fails(
      [{ Subnet: "10.42.0.0/24", IPRange: "10.42.0.0/16" }],
      "invalid ip-range 10.42.0.0/16: CIDR block is bigger than its parent subnet 10.42.0.0/24",
    );
    fails(
      [{ Subnet: "10.42.0.0/24", Gateway: "10.41.0.1" }],
      "invalid gateway 10.41.0.1: parent subnet 10.42.0.0/24 doesn't contain this address",
    );
    fails(
      [{ Subnet: "10.45.0.0/24", Gateway: "fd00::1", AuxiliaryAddresses: { x: "10.46.0.1" } }],
      "* invalid gateway fd00::1: parent subnet is an IPv4 block\n* invalid auxiliary address x: parent subnet 10.45.0.0/24 doesn't contain this address",
    );
  });
  await t.step("IPv6 entries are checked only with EnableIPv6; good configs pass", () => {
    validateIpam([{ Subnet: "fd00::1/64" }], false);
    fails([{ Subnet: "fd00::1/64" }], "invalid subnet fd00::1/64: it should be fd00::/64", true);
    validateIpam([{
      Subnet: "10.10.0.0/24",
      IPRange: "10.10.0.128/25",
      Gateway: "10.10.0.254",
      AuxiliaryAddresses: { a: "10.10.0.5" },
    }], false);
  });
});

Deno.test("toDockerError maps cnm's errors to dockerd's statuses and words", () => {
  const m = (e: Error) => [toDockerError(e).status, toDockerError(e).message];
  assert.deepEqual(m(new NotFoundError('unknown driver "x"')), [404, 'plugin "x" not found']);
  assert.deepEqual(m(new NotFoundError('unknown IPAM driver "y"')), [404, 'plugin "y" not found']);
  assert.deepEqual(m(new ConflictError("network with name a already exists")), [
    409,
    "network with name a already exists",
  ]);
  assert.deepEqual(m(new ForbiddenError('network a has active endpoints (name:"c1" id:"0123")')), [
    403,
    'error while removing network: network a has active endpoints (name:"c1" id:"0123")',
  ]);
  assert.deepEqual(
    m(
      new InvalidArgumentError(
        "invalid address 1.2.3.4: It does not belong to any of this network's subnets",
      ),
    ),
    [400, "Invalid address 1.2.3.4: It does not belong to any of this network's subnets"],
  );
  assert.deepEqual(m(new Error("boom")), [500, "boom"]);
});

Deno.test("dockerMac reads MacAddress in Go's ParseMAC forms, refuses the rest with dockerd's words", () => {
  assert.equal(dockerMac("02:42:AC:11:00:02"), "02:42:ac:11:00:02");
  assert.equal(dockerMac("02-42-ac-11-00-02"), "02:42:ac:11:00:02");
  assert.equal(dockerMac("0242.AC11.0002"), "02:42:ac:11:00:02");
  const refused = (text: string) => {
    try {
      dockerMac(text);
    } catch (err) {
      assert.ok(err instanceof DockerApiError);
      return [err.status, err.message];
    }
    throw new Error(`${text} was accepted`);
  };
  for (const bad of ["", "0242ac110002", "02:42:ac:11:00", "02:42-ac:11:00:02", "0242.ac11.002"]) {
    assert.deepEqual(refused(bad), [400, `invalid MAC address ${bad}`]);
  }
  const ipoib = Array.from({ length: 20 }, (_, i) => (i + 0x10).toString(16)).join(":");
  assert.deepEqual(refused(ipoib), [
    400,
    `invalid MAC address ${ipoib}: an interface's MAC address has 6 bytes, not 20`,
  ]);
  assert.deepEqual(refused("0200.5e10.0000.0001"), [
    400,
    "invalid MAC address 0200.5e10.0000.0001: an interface's MAC address has 6 bytes, not 8",
  ]);
});
