/**
 * `POST /networks/{id}/connect`'s `EndpointConfig` beyond addresses and aliases, each through
 * the client that really sends it: `DriverOpts` (`docker network connect --driver-opt`),
 * `IPAMConfig.IPv6Address` (`--ip6`), `MacAddress` (dockerode: the CLI has no flag for it),
 * and the refusals of bad values with their status and message. What the kernel ends up with
 * is read in the sandbox's namespace. Real controller, nats-server, throwaway host namespace.
 */
import assert from "node:assert/strict";
import Docker from "dockerode";
import type { CnmEvent } from "../../../mod.ts";
import { startDockerEnv } from "../../_harness/docker.ts";
import { sh } from "../../_harness/command.ts";
import { startPlugin, type TestPlugin } from "../../drivers/_plugin/start.ts";

const ERR = "Error response from daemon: ";
const nsOf = (key: string) => key.split("/").pop()!;

/** dockerode's refusal: the status and the server's message. */
async function refusal(p: Promise<unknown>): Promise<[number, string]> {
  try {
    await p;
  } catch (err) {
    const e = err as { statusCode: number; json: { message: string } };
    return [e.statusCode, e.json?.message];
  }
  throw new Error("expected a refusal");
}

/** The sandbox's eth interfaces as the kernel has them: MAC and global addresses. */
async function kernelLinks(
  key: string,
): Promise<Record<string, { mac: string; addrs: string[] }>> {
  const links = JSON.parse(await sh(["ip", "-n", nsOf(key), "-j", "addr", "show"])) as {
    ifname: string;
    address: string;
    addr_info: { local: string; prefixlen: number; scope: string }[];
  }[];
  return Object.fromEntries(
    links.filter((l) => l.ifname !== "lo").map((l) => [l.ifname, {
      mac: l.address,
      addrs: l.addr_info.filter((a) => a.scope === "global").map((a) =>
        `${a.local}/${a.prefixlen}`
      ),
    }]),
  );
}

Deno.test("docker connect (root, nats-server, docker CLI, dockerode) honours DriverOpts, --ip6 and MacAddress", async (t) => {
  const pluginDir = await Deno.makeTempDir({ prefix: "cnm-plugins-" });
  const d = await startDockerEnv("dkn", { pluginDirs: [pluginDir] }).catch(async (err) => {
    await Deno.remove(pluginDir, { recursive: true });
    throw err;
  });
  const { cnm, docker } = d;
  let plugin: TestPlugin | undefined;
  try {
    const api = new Docker({ socketPath: d.path });
    const c1 = await cnm.createSandbox({ name: "c1" });
    const c2 = await cnm.createSandbox({ name: "c2" });
    const c3 = await cnm.createSandbox({ name: "c3" });
    let r = await docker("network", "create", "--subnet", "10.12.0.0/24", "v4");
    assert.equal(r.code, 0, r.stderr);
    r = await docker(
      "network",
      "create",
      "--ipv6",
      "--subnet",
      "10.13.0.0/24",
      "--subnet",
      "fd00:13::/64",
      "dual",
    );
    assert.equal(r.code, 0, r.stderr);
    const created = async (name: string) =>
      (await d.env.readAll()).filter((e: CnmEvent) =>
        e.type === "endpoint.create.requested" && (e.data as { name?: string }).name === name
      );

    await t.step(
      "--driver-opt pairs become the endpoint's options, journaled; the bridge ignores them",
      async () => {
        r = await docker(
          "network",
          "connect",
          "--driver-opt",
          "com.example.colour=red",
          "--driver-opt",
          "size=",
          "v4",
          "c1",
        );
        assert.deepEqual([r.code, r.stdout, r.stderr], [0, "", ""]);
        const ep = cnm.endpoints({ network: "v4" }).find((e) => e.sandboxId === c1.id)!;
        assert.equal(ep.state, "joined");
        const events = await created("c1");
        assert.equal(events.length, 1);
        assert.deepEqual((events[0].data as { options: unknown }).options, {
          "com.example.colour": "red",
          size: "",
        });
        assert.deepEqual(Object.keys(await kernelLinks(c1.key)), ["eth0"]);
        // The CLI checks the pair itself; nothing reaches the socket.
        r = await docker("network", "connect", "--driver-opt", "nopair", "v4", "c2");
        assert.equal(r.code, 1);
        assert.match(r.stderr, /invalid key\/value pair format in driver options/);
        assert.equal(cnm.endpoints({ network: "v4" }).length, 1);
      },
    );

    await t.step(
      "--driver-opt pairs reach a remote driver's CreateEndpoint as its Options, as dockerd's do",
      async () => {
        plugin = await startPlugin({ dir: pluginDir, name: "tp", namespace: d.env.host.path });
        r = await docker("network", "create", "-d", "tp", "--ipam-driver", "tp", "rnet");
        assert.equal(r.code, 0, r.stderr);
        await plugin.clearLog();
        r = await docker(
          "network",
          "connect",
          "--driver-opt",
          "com.example.colour=blue",
          "rnet",
          "c1",
        );
        assert.deepEqual([r.code, r.stdout, r.stderr], [0, "", ""]);
        const ep = cnm.endpoints({ network: "rnet" }).find((e) => e.sandboxId === c1.id)!;
        assert.equal(ep.state, "joined");
        const calls = (await plugin.requests()).filter((q) =>
          q.method === "NetworkDriver.CreateEndpoint"
        );
        assert.deepEqual(calls.map((q) => q.body.Options), [{ "com.example.colour": "blue" }]);
        r = await docker("network", "disconnect", "rnet", "c1");
        assert.deepEqual([r.code, r.stderr], [0, ""]);
      },
    );

    await t.step(
      "--ip6 on a dual-stack network: that IPv6 address in the kernel, IPv4 still automatic",
      async () => {
        r = await docker("network", "connect", "--ip6", "fd00:13::10", "dual", "c1");
        assert.deepEqual([r.code, r.stdout, r.stderr], [0, "", ""]);
        const ep = cnm.endpoints({ network: "dual" }).find((e) => e.sandboxId === c1.id)!;
        assert.equal(ep.ipv6Address, "fd00:13::10/64");
        assert.equal(ep.ipv4Address, "10.13.0.2/24");
        const links = await kernelLinks(c1.key);
        const iface = Object.values(links).find((l) => l.mac === ep.macAddress)!;
        assert.deepEqual(iface.addrs, ["10.13.0.2/24", "fd00:13::10/64"]);
        const i = await docker(
          "network",
          "inspect",
          "--format",
          `{{json (index .Containers "${c1.id}")}}`,
          "dual",
        );
        assert.deepEqual([i.code, i.stderr], [0, ""]);
        assert.deepEqual(JSON.parse(i.stdout), {
          Name: "c1",
          EndpointID: ep.id,
          MacAddress: ep.macAddress,
          IPv4Address: "10.13.0.2/24",
          IPv6Address: "fd00:13::10/64",
        });
      },
    );

    await t.step(
      "static addresses dockerd refuses: its message (CLI) and status (dockerode); nothing is made",
      async () => {
        const cases: [string[], string][] = [
          [
            ["--ip6", "fd00:99::5", "dual", "c2"],
            "Invalid address fd00:99::5: It does not belong to any of this network's subnets",
          ],
          [["--ip6", "fd00:13::10", "dual", "c2"], "Address already in use"],
          [["--ip6", "fd00:13::1", "dual", "c2"], "Address already in use"],
          [["--ip6", "10.13.0.9", "dual", "c2"], "Invalid IPv6 address: 10.13.0.9"],
          [["--ip", "fd00:13::9", "dual", "c2"], "Invalid IPv4 address: fd00:13::9"],
          [
            ["--ip6", "fd00:12::5", "v4", "c2"],
            "user specified IP address is supported only when connecting to networks with user configured subnets",
          ],
          [
            ["--ip", "172.17.0.50", "bridge", "c2"],
            "user specified IP address is supported on user defined networks only",
          ],
          [
            ["--ip6", "fd00:13::11", "host", "c2"],
            "user specified IP address is supported on user defined networks only",
          ],
          [
            ["--alias", "web", "bridge", "c2"],
            "network-scoped alias is supported only for containers in user defined networks",
          ],
        ];
        for (const [args, message] of cases) {
          r = await docker("network", "connect", ...args);
          assert.deepEqual(
            [r.code, r.stdout, r.stderr],
            [1, "", `${ERR}${message}\n`],
            args.join(" "),
          );
        }
        assert.deepEqual(
          cnm.endpoints().filter((e) => e.sandboxId === c2.id || e.name === "c2"),
          [],
        );
        // The same refusals' statuses, from dockerode.
        const dual = api.getNetwork("dual");
        const v6 = (IPv6Address: string) =>
          dual.connect({ Container: "c2", EndpointConfig: { IPAMConfig: { IPv6Address } } });
        assert.deepEqual(await refusal(v6("fd00:99::5")), [
          400,
          "Invalid address fd00:99::5: It does not belong to any of this network's subnets",
        ]);
        assert.deepEqual(await refusal(v6("fd00:13::10")), [403, "Address already in use"]);
        assert.deepEqual(await refusal(v6("nonsense")), [400, "Invalid IPv6 address: nonsense"]);
        assert.deepEqual(
          await refusal(
            api.getNetwork("v4").connect({
              Container: "c2",
              EndpointConfig: { IPAMConfig: { IPv6Address: "fd00:12::5" } },
            }),
          ),
          [
            400,
            "user specified IP address is supported only when connecting to networks with user configured subnets",
          ],
        );
        assert.deepEqual(
          await refusal(
            api.getNetwork("bridge").connect({
              Container: "c2",
              EndpointConfig: { Aliases: ["web"] },
            }),
          ),
          [400, "network-scoped alias is supported only for containers in user defined networks"],
        );
      },
    );

    await t.step(
      "MacAddress (dockerode) is the sandbox interface's MAC in the kernel",
      async () => {
        await api.getNetwork("v4").connect({
          Container: "c2",
          EndpointConfig: { MacAddress: "02:AB:cd:00:00:42" },
        });
        const ep = cnm.endpoints({ network: "v4" }).find((e) => e.sandboxId === c2.id)!;
        assert.equal(ep.state, "joined");
        assert.equal(ep.macAddress, "02:ab:cd:00:00:42");
        const links = await kernelLinks(c2.key);
        assert.deepEqual(links, { eth0: { mac: "02:ab:cd:00:00:42", addrs: [ep.ipv4Address!] } });
        const info = await api.getNetwork("v4").inspect();
        assert.equal(info.Containers[c2.id].MacAddress, "02:ab:cd:00:00:42");
      },
    );

    await t.step(
      "MacAddress in the forms Go's ParseMAC reads (dashes, dots) is that MAC",
      async () => {
        await api.getNetwork("dual").connect({
          Container: "c3",
          EndpointConfig: { MacAddress: "02-42-0A-0D-00-63" },
        });
        await api.getNetwork("v4").connect({
          Container: "c3",
          EndpointConfig: { MacAddress: "0242.0a0c.0063" },
        });
        const macs = cnm.endpoints().filter((e) => e.sandboxId === c3.id).map((e) => e.macAddress)
          .sort();
        assert.deepEqual(macs, ["02:42:0a:0c:00:63", "02:42:0a:0d:00:63"]);
        const links = await kernelLinks(c3.key);
        assert.deepEqual(Object.values(links).map((l) => l.mac).sort(), macs);
      },
    );

    await t.step("bad MACs are refused with 400 before anything is made", async () => {
      const c4 = await cnm.createSandbox({ name: "c4" });
      const mac = (MacAddress: string) =>
        api.getNetwork("v4").connect({ Container: "c4", EndpointConfig: { MacAddress } });
      const multicast = "invalid endpoint options: macAddress: 01:00:5e:00:00:01 is a multicast " +
        "address";
      assert.deepEqual(await refusal(mac("01:00:5e:00:00:01")), [400, multicast]);
      assert.deepEqual(await refusal(mac("01-00-5E-00-00-01")), [400, multicast]);
      assert.deepEqual(await refusal(mac("ff:ff:ff:ff:ff:ff")), [
        400,
        "invalid endpoint options: macAddress: ff:ff:ff:ff:ff:ff is the broadcast address",
      ]);
      assert.deepEqual(await refusal(mac("00:00:00:00:00:00")), [
        400,
        "invalid endpoint options: macAddress: 00:00:00:00:00:00 is the zero address",
      ]);
      assert.deepEqual(await refusal(mac("02:42:ac:11:00")), [
        400,
        "invalid MAC address 02:42:ac:11:00",
      ]);
      assert.deepEqual(await refusal(mac("02:42-ac:11:00:02")), [
        400,
        "invalid MAC address 02:42-ac:11:00:02",
      ]);
      assert.deepEqual(await refusal(mac("02:42:ac:11:00:02:00:01")), [
        400,
        "invalid MAC address 02:42:ac:11:00:02:00:01: an interface's MAC address has 6 bytes, not 8",
      ]);
      assert.deepEqual(cnm.endpoints().filter((e) => e.name === "c4"), []);
      assert.deepEqual(await kernelLinks(c4.key), {});
      assert.deepEqual(await created("c4"), []);
    });
  } finally {
    await plugin?.stop();
    await d.cleanup();
    await Deno.remove(pluginDir, { recursive: true });
  }
});
