/**
 * The firewall's port publishing rules (root, nft in a throwaway host namespace): what one
 * transaction writes, idempotence, stale state, conflicts, removal.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createFirewall, type PortPublication } from "../../drivers/bridge/_firewall.ts";
import { ConflictError, InvalidArgumentError } from "../../src/errors.ts";
import { type Lab, withLab } from "./_fw_netns.ts";

const NET = "aaaaaaaaaaaa0000000000000000000000000000000000000000000000000001";
const EP1 = "e1e1e1e1e1e1000000000000000000000000000000000000000000000000000a";
const EP2 = "e2e2e2e2e2e2000000000000000000000000000000000000000000000000000b";

const pub = (lab: Lab, endpointId: string, over: Partial<PortPublication> = {}) => ({
  networkId: NET,
  endpointId,
  bridge: `${lab.prefix}b1`,
  ipv4Address: "10.77.1.2/24",
  ipv6Address: "fd77:1::2/64",
  mappings: [
    { proto: "tcp" as const, hostIp: "0.0.0.0", hostPort: 8080, containerPort: 80 },
    { proto: "tcp" as const, hostIp: "::", hostPort: 8080, containerPort: 80 },
    { proto: "udp" as const, hostIp: "127.0.0.1", hostPort: 8081, containerPort: 53 },
  ],
  ...over,
});

const comments = async (lab: Lab, ep: string) =>
  (await lab.exec(["nft", "list", "ruleset"])).split("\n")
    .filter((l) => l.includes(`comment "cnm:${ep.slice(0, 12)} `)).map((l) => l.trim());

async function setup(lab: Lab) {
  const fw = createFirewall({ exec: lab.exec });
  await fw.ensureNetwork({
    id: NET,
    bridge: `${lab.prefix}b1`,
    subnets: ["10.77.1.0/24", "fd77:1::/64"],
    internal: false,
    icc: true,
    masquerade: true,
  });
  return fw;
}

Deno.test("firewall (root) publishPorts writes an endpoint's chain and elements, idempotently", async (t) => {
  await withLab(async (lab) => {
    const fw = await setup(lab);
    const chain = `pdnat-${NET.slice(0, 12)}-${EP1.slice(0, 12)}`;
    await t.step("one chain, a DNAT rule per mapping, the elements that jump to it", async () => {
      assert.equal((await fw.publishPorts(pub(lab, EP1))).length, 3);
      assert.deepEqual(await fw.listPorts(), [{
        networkId: NET.slice(0, 12),
        endpointId: EP1.slice(0, 12),
        chain,
        mappings: [
          { hostIp: "0.0.0.0", hostPort: 8080, containerPort: 80, proto: "tcp" },
          { hostIp: "::", hostPort: 8080, containerPort: 80, proto: "tcp" },
          { hostIp: "127.0.0.1", hostPort: 8081, containerPort: 53, proto: "udp" },
        ],
        elements: [
          { set: "cnm_dnat4", key: "127.0.0.1 . udp . 8081", target: chain },
          { set: "cnm_dnat4_any", key: "tcp . 8080", target: chain },
          { set: "cnm_dnat6_any", key: "tcp . 8080", target: chain },
          { set: "cnm_lo4", key: "127.0.0.1 . udp . 8081" },
        ],
      }]);
      assert.deepEqual(await comments(lab, EP1), [
        `meta nfproto ipv4 tcp dport 8080 dnat ip to 10.77.1.2:80 comment "cnm:e1e1e1e1e1e1 0.0.0.0:8080->80/tcp"`,
        `meta nfproto ipv6 tcp dport 8080 dnat ip6 to [fd77:1::2]:80 comment "cnm:e1e1e1e1e1e1 [::]:8080->80/tcp"`,
        `ip daddr 127.0.0.1 udp dport 8081 dnat ip to 10.77.1.2:53 comment "cnm:e1e1e1e1e1e1 127.0.0.1:8081->53/udp"`,
      ]);
    });
    await t.step("publishing again leaves the same rules and elements", async () => {
      const before = await fw.listPorts();
      await fw.publishPorts(pub(lab, EP1));
      await createFirewall({ exec: lab.exec }).publishPorts(pub(lab, EP1));
      assert.deepEqual(await fw.listPorts(), before);
      assert.equal((await comments(lab, EP1)).length, 3);
    });
    await t.step("a family the endpoint has no address of is skipped", async () => {
      const only4 = await fw.publishPorts(pub(lab, EP1, { ipv6Address: undefined }));
      assert.deepEqual(only4.map((m) => m.hostIp), ["0.0.0.0", "127.0.0.1"]);
      assert.equal((await fw.listPorts())[0].elements.length, 3);
    });
    await t.step(
      "a shorter list drops the rest, also from an instance that never saw it",
      async () => {
        await fw.publishPorts(pub(lab, EP1));
        const fresh = createFirewall({ exec: lab.exec });
        await fresh.publishPorts(pub(lab, EP1, { mappings: [pub(lab, EP1).mappings[0]] }));
        assert.deepEqual((await fw.listPorts())[0].elements, [
          { set: "cnm_dnat4_any", key: "tcp . 8080", target: chain },
        ]);
        assert.equal((await comments(lab, EP1)).length, 1);
      },
    );
  });
});

Deno.test("firewall (root) publishPorts replaces a dead endpoint's element and refuses a live one's", async () => {
  await withLab(async (lab) => {
    const fw = await setup(lab);
    const dead = `pdnat-${NET.slice(0, 12)}-deaddeaddead`;
    await lab.exec(["nft", "-f", "-"], {
      stdin:
        `add chain inet cnm ${dead}\nadd element inet cnm cnm_dnat4_any { tcp . 8080 : jump ${dead} }\n`,
    });
    await fw.publishPorts(pub(lab, EP1));
    const mine = `pdnat-${NET.slice(0, 12)}-${EP1.slice(0, 12)}`;
    assert.ok(
      (await fw.listPorts()).find((p) => p.endpointId === EP1.slice(0, 12))?.elements
        .some((e) => e.key === "tcp . 8080" && e.target === mine),
    );
    await assert.rejects(
      fw.publishPorts(pub(lab, EP2, { ipv4Address: "10.77.1.3/24" })),
      (err: unknown) => {
        assert.ok(err instanceof ConflictError);
        assert.equal(
          (err as Error).message,
          "firewall: 0.0.0.0:8080->80/tcp is already published by endpoint e1e1e1e1e1e1",
        );
        return true;
      },
    );
    assert.deepEqual(await comments(lab, EP2), []);
  });
});

Deno.test("firewall (root) unpublishPorts and removeNetwork remove every port rule", async (t) => {
  await withLab(async (lab) => {
    const fw = await setup(lab);
    await fw.publishPorts(pub(lab, EP1));
    await fw.publishPorts(pub(lab, EP2, {
      ipv4Address: "10.77.1.3/24",
      mappings: [{ proto: "tcp", hostIp: "127.0.0.1", hostPort: 9000, containerPort: 80 }],
    }));
    await t.step(
      "unpublish from an instance that never published, without the mappings",
      async () => {
        await createFirewall({ exec: lab.exec }).unpublishPorts({
          networkId: NET,
          endpointId: EP1,
        });
        await fw.unpublishPorts({ networkId: NET, endpointId: EP1 }); // already gone
        assert.deepEqual((await fw.listPorts()).map((p) => p.endpointId), [EP2.slice(0, 12)]);
        assert.deepEqual(await comments(lab, EP1), []);
      },
    );
    await t.step("the base comes back when someone deleted our table", async () => {
      await lab.exec(["nft", "delete", "table", "inet", "cnm"]);
      await fw.publishPorts(pub(lab, EP1));
      assert.equal((await comments(lab, EP1)).length, 3);
    });
    await t.step("removeNetwork removes its endpoints' chains and elements", async () => {
      await fw.publishPorts(pub(lab, EP2, {
        ipv4Address: "10.77.1.3/24",
        mappings: [{ proto: "tcp", hostIp: "127.0.0.1", hostPort: 9000, containerPort: 80 }],
      }));
      assert.deepEqual(await fw.listNetworks(), [NET.slice(0, 12)]);
      await fw.removeNetwork(NET);
      assert.deepEqual(await fw.listPorts(), []);
      const text = await lab.exec(["nft", "list", "ruleset"]);
      assert.doesNotMatch(text, /pdnat-|127\.0\.0\.1 \. /);
      assert.deepEqual(await fw.listNetworks(), []);
    });
  });
});

Deno.test("firewall publishPorts rejects malformed input before running nft", async () => {
  const fw = createFirewall({ exec: () => Promise.reject(new Error("nft must not run")) });
  const base = {
    networkId: NET,
    endpointId: EP1,
    bridge: "br0",
    ipv4Address: "10.0.0.2/24",
    mappings: [{ proto: "tcp" as const, hostIp: "0.0.0.0", hostPort: 8080, containerPort: 80 }],
  };
  const cases: [Partial<PortPublication>, string][] = [
    [{ endpointId: "xyz" }, "invalid endpoint id: xyz"],
    [{ bridge: "a bridge" }, "invalid bridge name: a bridge"],
    [{ ipv4Address: "fd00::2" }, "invalid ipv4Address: fd00::2"],
    [
      { mappings: [{ proto: "tcp", hostIp: "0.0.0.0", hostPort: 0, containerPort: 80 }] },
      "invalid port mapping 0: hostPort: must be 1-65535",
    ],
    [
      { mappings: [base.mappings[0], base.mappings[0]] },
      "invalid port mappings: 0.0.0.0:8080->80/tcp twice",
    ],
  ];
  for (const [over, message] of cases) {
    await assert.rejects(fw.publishPorts({ ...base, ...over }), (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError, String(err));
      assert.equal((err as Error).message, message);
      return true;
    });
  }
});
