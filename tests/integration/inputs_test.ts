/**
 * Input refused at the edge (issue 10): every refusal is an error of the right class with a
 * message naming the field, and writes nothing to the journal. Needs root and nats-server.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ForbiddenError, InvalidArgumentError } from "../../mod.ts";
import { startEnv, type TestEnv } from "../_harness/env.ts";
import { serve } from "../../src/api/serve.ts";
import { createApiClient } from "../../src/api/client.ts";

type Refuse = (
  name: string,
  f: () => Promise<unknown>,
  cls: new (...a: never[]) => Error,
  message: string | RegExp,
) => Promise<void>;

/** A refusal checker for `t`, and a check that nothing was journaled since it was made. */
async function refusals(env: TestEnv, t: Deno.TestContext) {
  const count = (await env.readAll()).length;
  const refuse: Refuse = async (name, f, cls, message) => {
    await t.step(name, async () => {
      await assert.rejects(f, (e: Error) => {
        assert.ok(e instanceof cls, `${e.name}: ${e.message}`);
        if (typeof message === "string") assert.equal(e.message, message);
        else assert.match(e.message, message);
        return true;
      });
    });
  };
  const nothingWritten = () =>
    t.step("refused commands wrote nothing", async () => {
      assert.equal((await env.readAll()).length, count);
    });
  return { refuse, nothingWritten };
}

Deno.test("inputs (root, nats-server) sandbox config is validated before anything is written", async (t) => {
  const env = await startEnv("inp");
  try {
    const cnm = await env.open({ defaultBridge: false });
    const { refuse, nothingWritten } = await refusals(env, t);
    const bad = "invalid sandbox options";
    await refuse(
      "a newline in hostname",
      () => cnm.createSandbox({ name: "a", hostname: "web\n6.6.6.6 bank.example.com" }),
      InvalidArgumentError,
      `${bad}: hostname: "web\\n6.6.6.6 bank.example.com" is not an RFC 1123 host name`,
    );
    await refuse(
      "a label longer than 63 characters",
      () => cnm.createSandbox({ name: "a", hostname: `${"x".repeat(64)}.example` }),
      InvalidArgumentError,
      new RegExp(`^${bad}: hostname: "x{64}\\.example" is not an RFC 1123 host name`),
    );
    await refuse(
      "dns that is not an IP address",
      () => cnm.createSandbox({ name: "a", dns: ["10.0.0.53", "notanip"] }),
      InvalidArgumentError,
      `${bad}: dns.1: "notanip" is not an IP address`,
    );
    await refuse(
      "a newline in dns",
      () => cnm.createSandbox({ name: "a", dns: ["1.1.1.1\nnameserver 6.6.6.6"] }),
      InvalidArgumentError,
      `${bad}: dns.0: "1.1.1.1\\nnameserver 6.6.6.6" is not an IP address`,
    );
    await refuse(
      "dnsSearch that is not a domain name",
      () => cnm.createSandbox({ name: "a", dnsSearch: ["corp.example", "a b"] }),
      InvalidArgumentError,
      `${bad}: dnsSearch.1: "a b" is not a domain name`,
    );
    await refuse(
      "a newline in dnsSearch",
      () => cnm.createSandbox({ name: "a", dnsSearch: ["x\noptions ndots:15"] }),
      InvalidArgumentError,
      `${bad}: dnsSearch.0: "x\\noptions ndots:15" is not a domain name`,
    );
    await refuse(
      "extraHosts without a colon",
      () => cnm.createSandbox({ name: "a", extraHosts: ["nocolon"] }),
      InvalidArgumentError,
      `${bad}: extraHosts.0: "nocolon" is not host:ip`,
    );
    await refuse(
      "extraHosts with a newline",
      () => cnm.createSandbox({ name: "a", extraHosts: ["db:10.0.0.5\n6.6.6.6 bank.example.com"] }),
      InvalidArgumentError,
      `${bad}: extraHosts.0: "db:10.0.0.5\\n6.6.6.6 bank.example.com" is not host:ip`,
    );
    await refuse(
      "extraHosts with a bad address",
      () => cnm.createSandbox({ name: "a", extraHosts: ["db:10.0.0.500"] }),
      InvalidArgumentError,
      `${bad}: extraHosts.0: "db:10.0.0.500" is not host:ip`,
    );
    await nothingWritten();
    await t.step("valid config is written as given", async () => {
      const sb = await cnm.createSandbox({
        name: "ok",
        hostname: "web-1.example.com",
        dns: ["10.0.0.53", "fd00::53"],
        dnsSearch: ["corp.example", "example."],
        extraHosts: ["db:10.0.0.5", "v6host:fd00::5", "bracketed:[fd00::6]", "eq=10.0.0.7"],
      });
      const hosts = await Deno.readTextFile(sb.hostsPath);
      assert.match(hosts, /^10\.0\.0\.5\tdb$/m);
      assert.match(hosts, /^fd00::5\tv6host$/m);
      assert.match(hosts, /^fd00::6\tbracketed$/m);
      assert.match(hosts, /^10\.0\.0\.7\teq$/m);
      const resolv = await Deno.readTextFile(sb.resolvConfPath);
      assert.match(resolv, /^nameserver 10\.0\.0\.53\nnameserver fd00::53\n/m);
      assert.match(resolv, /^search corp\.example example\.$/m);
    });
  } finally {
    await env.cleanup();
  }
});

Deno.test("inputs (root, nats-server) subnets with host bits and gateways on reserved addresses are refused as Docker does, saying why", async (t) => {
  const env = await startEnv("inq");
  try {
    const cnm = await env.open({ defaultBridge: false });
    const { refuse, nothingWritten } = await refusals(env, t);
    const net = (config: Record<string, string>, enableIPv6 = false) => () =>
      cnm.createNetwork({ name: "n", enableIPv6, ipam: { config: [config as never] } });
    await refuse(
      "a subnet with host bits",
      net({ subnet: "10.0.0.1/24" }),
      InvalidArgumentError,
      "invalid subnet 10.0.0.1/24: it should be 10.0.0.0/24",
    );
    await refuse(
      "an IPv6 subnet with host bits",
      net({ subnet: "fd00:1::5/64" }, true),
      InvalidArgumentError,
      "invalid subnet fd00:1::5/64: it should be fd00:1::/64",
    );
    await refuse(
      "an ip-range with host bits",
      net({ subnet: "10.0.0.0/24", ipRange: "10.0.0.130/25" }),
      InvalidArgumentError,
      "invalid ip-range 10.0.0.130/25: it should be 10.0.0.128/25",
    );
    await refuse(
      "a gateway on the network address",
      net({ subnet: "10.0.0.0/24", gateway: "10.0.0.0" }),
      ForbiddenError,
      "failed to allocate gateway (10.0.0.0): Address already in use: " +
        "10.0.0.0 is the network address of 10.0.0.0/24",
    );
    await refuse(
      "a gateway on the broadcast address",
      net({ subnet: "10.0.0.0/24", gateway: "10.0.0.255" }),
      ForbiddenError,
      "failed to allocate gateway (10.0.0.255): Address already in use: " +
        "10.0.0.255 is the broadcast address of 10.0.0.0/24",
    );
    await refuse(
      "a gateway on the IPv6 subnet-router anycast address",
      net({ subnet: "fd00:2::/64", gateway: "fd00:2::" }, true),
      ForbiddenError,
      "failed to allocate gateway (fd00:2::): Address already in use: " +
        "fd00:2:: is the subnet-router anycast address of fd00:2::/64",
    );
    await nothingWritten();
    await t.step(
      "a /31 has no reserved addresses: its first address may be the gateway",
      async () => {
        const n = await cnm.createNetwork({
          name: "p2p",
          ipam: { config: [{ subnet: "10.9.9.0/31", gateway: "10.9.9.0" }] },
        });
        assert.deepEqual(n.ipam.config, [{ subnet: "10.9.9.0/31", gateway: "10.9.9.0" }]);
      },
    );
  } finally {
    await env.cleanup();
  }
});

Deno.test("inputs (root, nats-server) host and none share a sandbox with no other network, and MACs must be unicast", async (t) => {
  const env = await startEnv("inh");
  try {
    const cnm = await env.open({ defaultBridge: false });
    await cnm.createNetwork({ name: "br" });
    const joinedTo = async (name: string, network: string) => {
      const sb = await cnm.createSandbox({ name });
      const ep = await cnm.createEndpoint(network, { name });
      await cnm.join(ep.id, sb.id);
      return sb;
    };
    const onBridge = await joinedTo("b", "br");
    const onHost = await joinedTo("h", "host");
    const onNone = await joinedTo("n", "none");
    const spare: Record<string, string> = {};
    for (const net of ["br", "host", "none"]) {
      spare[net] = (await cnm.createEndpoint(net, { name: "spare" })).id;
    }
    const { refuse, nothingWritten } = await refusals(env, t);
    const hostConflict =
      "container cannot be disconnected from host network or connected to host network";
    const shared =
      "container sharing network namespace with another container or host cannot be connected to any other network";
    const none =
      "container cannot be connected to multiple networks with one of the networks in private (none) mode";
    await refuse(
      "bridge, then host",
      () => cnm.join(spare.host, onBridge.id),
      ForbiddenError,
      hostConflict,
    );
    await refuse(
      "none, then host",
      () => cnm.join(spare.host, onNone.id),
      ForbiddenError,
      hostConflict,
    );
    await refuse("host, then bridge", () => cnm.join(spare.br, onHost.id), ForbiddenError, shared);
    await refuse("host, then none", () => cnm.join(spare.none, onHost.id), ForbiddenError, shared);
    await refuse("none, then bridge", () => cnm.join(spare.br, onNone.id), ForbiddenError, none);
    await refuse(
      "bridge, then none",
      () => cnm.join(spare.none, onBridge.id),
      ForbiddenError,
      none,
    );
    const mac = (macAddress: string) => () => cnm.createEndpoint("br", { name: "m", macAddress });
    const bad = "invalid endpoint options: macAddress";
    await refuse(
      "a multicast MAC",
      mac("01:00:5e:00:00:01"),
      InvalidArgumentError,
      `${bad}: 01:00:5e:00:00:01 is a multicast address`,
    );
    await refuse(
      "a locally administered multicast MAC",
      mac("03:00:00:00:00:01"),
      InvalidArgumentError,
      `${bad}: 03:00:00:00:00:01 is a multicast address`,
    );
    await refuse(
      "the broadcast MAC",
      mac("FF:FF:FF:FF:FF:FF"),
      InvalidArgumentError,
      `${bad}: FF:FF:FF:FF:FF:FF is the broadcast address`,
    );
    await refuse(
      "the zero MAC",
      mac("00:00:00:00:00:00"),
      InvalidArgumentError,
      `${bad}: 00:00:00:00:00:00 is the zero address`,
    );
    await refuse(
      "not a MAC",
      mac("02:42:ac:11:00"),
      InvalidArgumentError,
      `${bad}: must be a MAC address like 02:42:ac:11:00:02`,
    );
    await nothingWritten();
    await t.step("a sandbox on a bridge network joins another bridge network", async () => {
      await cnm.createNetwork({ name: "br2" });
      const ep = await cnm.createEndpoint("br2", { name: "b" });
      assert.equal((await cnm.join(ep.id, onBridge.id)).ifname, "eth1");
    });
  } finally {
    await env.cleanup();
  }
});

Deno.test("inputs (root, nats-server) oversized input is refused with the documented limits, by the controller and by the API client", async (t) => {
  const env = await startEnv("inl");
  try {
    const cnm = await env.open({ defaultBridge: false });
    const server = await serve(cnm, { nats: { servers: env.nats.url } });
    const api = await createApiClient({
      nats: { servers: env.nats.url },
      prefix: env.prefix,
      hostId: "h1",
      stream: env.stream,
    });
    try {
      const { refuse, nothingWritten } = await refusals(env, t);
      const big = "x".repeat(2 * 1024 * 1024);
      const cases: [string, (c: typeof cnm | typeof api) => Promise<unknown>, string][] = [
        [
          "a 2 MB network name",
          (c) => c.createNetwork({ name: big }),
          `invalid network options: name: ${big.length} characters, at most 255`,
        ],
        [
          "a 2 MB label value",
          (c) => c.createNetwork({ name: "n", labels: { big } }),
          `invalid network options: labels.big: ${big.length} characters, at most 4096`,
        ],
        [
          "a 300-character option key",
          (c) => c.createNetwork({ name: "n", options: { ["k".repeat(300)]: "v" } }),
          `invalid network options: options: a key of 300 characters ("${
            "k".repeat(40)
          }…"), at most 255`,
        ],
        [
          "200 labels",
          (c) =>
            c.createSandbox({
              name: "s",
              labels: Object.fromEntries([...Array(200).keys()].map((i) => [`l${i}`, "v"])),
            }),
          "invalid sandbox options: labels: 200 entries, at most 128",
        ],
        [
          "100 KB in all",
          (c) =>
            c.createEndpoint("none", {
              name: "e",
              labels: Object.fromEntries(
                [...Array(25).keys()].map((i) => [`l${i}`, "v".repeat(4000)]),
              ),
            }),
          /^invalid endpoint options: 100\d{3} bytes in all, at most 65536$/.source,
        ],
        [
          "a 2 MB extraHosts entry",
          (c) => c.createSandbox({ name: "s", extraHosts: [big] }),
          `invalid sandbox options: extraHosts.0: ${big.length} characters, at most 255`,
        ],
      ];
      for (const [name, f, message] of cases) {
        const m = message.startsWith("^") ? new RegExp(message) : message;
        await refuse(`${name} (controller)`, () => f(cnm), InvalidArgumentError, m);
        await refuse(`${name} (API client)`, () => f(api), InvalidArgumentError, m);
      }
      await refuse(
        "a 300-character network reference",
        () => cnm.deleteNetwork("n".repeat(300)),
        InvalidArgumentError,
        "invalid network: must be at most 255 characters",
      );
      await refuse(
        "a 2 MB network reference through the API",
        () => api.deleteNetwork(big),
        InvalidArgumentError,
        "invalid deleteNetwork request: network: must be at most 255 characters",
      );
      await nothingWritten();
      await t.step("input at the limits is accepted", async () => {
        const n = await cnm.createNetwork({
          name: "n".repeat(255),
          labels: Object.fromEntries([...Array(10).keys()].map((i) => [`l${i}`, "v".repeat(4096)])),
        });
        assert.equal(n.name.length, 255);
      });
    } finally {
      await api.close();
      await server.close();
    }
  } finally {
    await env.cleanup();
  }
});
