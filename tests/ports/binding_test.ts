import assert from "node:assert/strict";
import { InvalidArgumentError } from "../../src/errors.ts";
import {
  describeMapping,
  formatHostPort,
  parsePortSpec,
  publishAllExposed,
  validatePortBindings,
} from "../../src/ports/binding.ts";
import {
  parseLocalPortRange,
  parseReservedPorts,
  readEphemeralPorts,
} from "../../src/ports/range.ts";

const invalid = (f: () => unknown, message: string) =>
  assert.throws(f, (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, `not an InvalidArgumentError: ${err}`);
    assert.equal((err as Error).message, message);
    return true;
  });

Deno.test("parsePortSpec reads Docker's -p syntax", async (t) => {
  await t.step("container port only, host port, host address, protocol", () => {
    assert.deepEqual(parsePortSpec("80"), [{ containerPort: 80, proto: "tcp" }]);
    assert.deepEqual(parsePortSpec("8080:80"), [
      { containerPort: 80, proto: "tcp", hostPort: 8080 },
    ]);
    assert.deepEqual(parsePortSpec("127.0.0.1:8080:80/udp"), [
      { containerPort: 80, proto: "udp", hostIp: "127.0.0.1", hostPort: 8080 },
    ]);
    assert.deepEqual(parsePortSpec("127.0.0.1::80"), [
      { containerPort: 80, proto: "tcp", hostIp: "127.0.0.1" },
    ]);
    assert.deepEqual(parsePortSpec("0:80/UDP"), [{ containerPort: 80, proto: "udp" }]);
  });
  await t.step("IPv6 host addresses, bracketed or not, in canonical form", () => {
    assert.deepEqual(parsePortSpec("[::]:8080:80"), [
      { containerPort: 80, proto: "tcp", hostIp: "::", hostPort: 8080 },
    ]);
    assert.deepEqual(parsePortSpec("FD00:0::5:8080:80"), [
      { containerPort: 80, proto: "tcp", hostIp: "fd00::5", hostPort: 8080 },
    ]);
  });
  await t.step("ranges: one of a host range, one to one, or all chosen", () => {
    assert.deepEqual(parsePortSpec("8000-8010:80"), [
      { containerPort: 80, proto: "tcp", hostPort: 8000, hostPortEnd: 8010 },
    ]);
    assert.deepEqual(parsePortSpec("8000-8001:80-81/udp"), [
      { containerPort: 80, proto: "udp", hostPort: 8000 },
      { containerPort: 81, proto: "udp", hostPort: 8001 },
    ]);
    assert.deepEqual(parsePortSpec("80-81"), [
      { containerPort: 80, proto: "tcp" },
      { containerPort: 81, proto: "tcp" },
    ]);
  });
  await t.step("errors name what is wrong, in Docker's words", () => {
    invalid(() => parsePortSpec("1.2.3:8080:80"), "invalid IP address: 1.2.3");
    invalid(() => parsePortSpec("[::1:8080:80"), "invalid IP address: [::1");
    invalid(() => parsePortSpec("8080:"), "no port specified: 8080:<empty>");
    invalid(() => parsePortSpec("8080:http"), "invalid containerPort: http");
    invalid(() => parsePortSpec("8080:70000"), "invalid containerPort: 70000");
    invalid(() => parsePortSpec("8080:0"), "invalid containerPort: 0");
    invalid(() => parsePortSpec("90-80:80"), "invalid hostPort: 90-80");
    invalid(() => parsePortSpec("x:80"), "invalid hostPort: x");
    invalid(
      () => parsePortSpec("8000-8002:80-81"),
      "invalid ranges specified for container and host Ports: 80-81 and 8000-8002",
    );
    invalid(() => parsePortSpec("8080:80/icmp"), "invalid proto: icmp");
    invalid(() => parsePortSpec("8080:80/sctp"), "invalid proto: sctp (cnm publishes tcp and udp)");
    invalid(
      () => parsePortSpec("[::1]:8080:80"),
      "invalid port binding 0: hostIp: ::1 cannot be published without a userland proxy " +
        "(IPv6 loopback traffic cannot be forwarded to a container); use 127.0.0.1",
    );
  });
});

Deno.test("validatePortBindings normalises requests and names bad fields", async (t) => {
  await t.step("defaults and canonical forms", () => {
    assert.deepEqual(
      validatePortBindings([
        { containerPort: 80 },
        { containerPort: 53, proto: "udp", hostIp: "::ffff:10.0.0.1", hostPort: 0 },
        { containerPort: 81, hostPort: 9000, hostPortEnd: 9000 },
      ]),
      [
        { containerPort: 80, proto: "tcp" },
        { containerPort: 53, proto: "udp", hostIp: "10.0.0.1" },
        { containerPort: 81, proto: "tcp", hostPort: 9000 },
      ],
    );
  });
  await t.step("bad fields", () => {
    invalid(() => validatePortBindings({}), "invalid port bindings: must be an array");
    invalid(
      () => validatePortBindings([{ containerPort: 80 }, { containerPort: 0 }]),
      "invalid port binding 1: containerPort: must be 1-65535",
    );
    invalid(
      () => validatePortBindings([{ containerPort: 80, proto: "sctp" }]),
      'invalid port binding 0: proto: must be "tcp" or "udp"',
    );
    invalid(
      () => validatePortBindings([{ containerPort: 80, hostIp: "localhost" }]),
      "invalid port binding 0: hostIp: must be an IP address",
    );
    invalid(
      () => validatePortBindings([{ containerPort: 80, colour: "red" }]),
      "invalid port binding 0: colour: unknown field",
    );
    invalid(
      () => validatePortBindings([{ containerPort: 80, hostPortEnd: 90 }]),
      "invalid port binding 0: hostPortEnd: needs hostPort (the start of the range)",
    );
    invalid(
      () => validatePortBindings([{ containerPort: 80, hostPort: 90, hostPortEnd: 80 }]),
      "invalid port range: 90-80",
    );
  });
});

Deno.test("port formatting and -P", () => {
  assert.equal(formatHostPort("0.0.0.0", 8080), "0.0.0.0:8080");
  assert.equal(formatHostPort("::", 8080), "[::]:8080");
  assert.equal(
    describeMapping({ proto: "udp", containerPort: 53, hostIp: "::", hostPort: 5353 }),
    "[::]:5353->53/udp",
  );
  assert.deepEqual(
    publishAllExposed([{ port: 80 }, { port: 80, proto: "udp" }], [{ containerPort: 80 }]),
    [{ containerPort: 80 }, { containerPort: 80, proto: "udp" }],
  );
});

Deno.test("ephemeral range parsing and its fallback", async () => {
  assert.deepEqual(parseLocalPortRange("40000 40009"), { start: 40000, end: 40009 });
  invalid(() => parseLocalPortRange("9 1"), 'invalid ip_local_port_range: "9 1"');
  assert.deepEqual(parseReservedPorts(""), []);
  invalid(() => parseReservedPorts("9-1"), 'invalid ip_local_reserved_ports: "9-1"');
  const read = await readEphemeralPorts({ exec: () => Promise.resolve("1024\t1026\n1025\n") });
  assert.deepEqual(read, { range: { start: 1024, end: 1026 }, reserved: [1025] });
  const fallback = await readEphemeralPorts({ exec: () => Promise.reject(new Error("no cat")) });
  assert.deepEqual(fallback, {
    range: { start: 49153, end: 65535 },
    reserved: [],
    fallback: "no cat",
  });
});
