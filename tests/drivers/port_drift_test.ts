import assert from "node:assert/strict";
import { inspectPortDrift, type PublishedRules } from "../../drivers/bridge/mod.ts";
import type { HeldPort } from "../../src/kernel/types.ts";
import type { PortMapping } from "../../src/ports/binding.ts";

const NET = "aaaaaaaaaaaa0000";
const EP = "e1e1e1e1e1e1ffff";
const CHAIN = "pdnat-aaaaaaaaaaaa-e1e1e1e1e1e1";
const m8080: PortMapping = { proto: "tcp", hostIp: "0.0.0.0", hostPort: 8080, containerPort: 80 };
const mLo: PortMapping = { proto: "udp", hostIp: "127.0.0.1", hostPort: 53, containerPort: 53 };

const rules = (mappings: PortMapping[], elements: PublishedRules["elements"]): PublishedRules => ({
  networkId: NET.slice(0, 12),
  endpointId: EP.slice(0, 12),
  chain: CHAIN,
  mappings,
  elements,
});
const held = (m: PortMapping, owner = EP): HeldPort => ({
  proto: m.proto,
  hostIp: m.hostIp,
  hostPort: m.hostPort,
  owner,
});
const all = [
  { set: "cnm_dnat4_any", key: "tcp . 8080", target: CHAIN },
  { set: "cnm_dnat4", key: "127.0.0.1 . udp . 53", target: CHAIN },
  { set: "cnm_lo4", key: "127.0.0.1 . udp . 53" },
];
const brief = (fs: ReturnType<typeof inspectPortDrift>) =>
  fs.map((f) => `${f.endpointId.slice(0, 4)} ${f.resource} ${f.name} ${f.problem}`);

Deno.test("inspectPortDrift finds nothing when rules and held ports match", () => {
  const expected = [{ networkId: NET, endpointId: EP, mappings: [m8080, mLo] }];
  assert.deepEqual(
    inspectPortDrift(expected, [rules([m8080, mLo], all)], [held(m8080), held(mLo)]),
    [],
  );
});

Deno.test("inspectPortDrift reports missing and unexpected rules, elements and held ports", () => {
  const expected = [{ networkId: NET, endpointId: EP, mappings: [m8080, mLo] }];
  const other: PublishedRules = {
    networkId: NET.slice(0, 12),
    endpointId: "deaddeaddead",
    chain: "pdnat-aaaaaaaaaaaa-deaddeaddead",
    mappings: [],
    elements: [],
  };
  const stray: PortMapping = { ...m8080, hostPort: 9999 };
  assert.deepEqual(
    brief(inspectPortDrift(
      expected,
      [rules([m8080, stray], all.slice(0, 2)), other],
      [held(m8080), held(stray, "someone-else")],
    )),
    [
      "e1e1 port-rule 127.0.0.1:53->53/udp missing",
      "e1e1 port-rule 0.0.0.0:9999->80/tcp unexpected",
      "e1e1 port-element cnm_lo4 127.0.0.1 . udp . 53 missing",
      "e1e1 held-port 127.0.0.1:53/udp missing",
      "dead port-rule pdnat-aaaaaaaaaaaa-deaddeaddead unexpected",
      "some held-port 0.0.0.0:9999/tcp unexpected",
    ],
  );
});

Deno.test("inspectPortDrift reports an endpoint that lost everything (after a crash)", () => {
  const expected = [{ networkId: NET, endpointId: EP, mappings: [m8080] }];
  assert.deepEqual(brief(inspectPortDrift(expected, [], [])), [
    "e1e1 port-rule 0.0.0.0:8080->80/tcp missing",
    "e1e1 held-port 0.0.0.0:8080/tcp missing",
  ]);
});
