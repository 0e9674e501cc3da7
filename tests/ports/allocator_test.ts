import assert from "node:assert/strict";
import { ConflictError, InvalidArgumentError, UnavailableError } from "../../src/errors.ts";
import { createPortAllocator } from "../../src/ports/allocator.ts";
import type { PortMapping } from "../../src/ports/binding.ts";

const range = { start: 32768, end: 60999 };

function rejects(f: () => unknown, cls: new (...a: never[]) => Error, message: string) {
  assert.throws(f, (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err}`);
    assert.equal((err as Error).message, message);
    return true;
  });
}

const ports = (ms: PortMapping[]) => ms.map((m) => `${m.hostIp} ${m.hostPort}/${m.proto}`);

Deno.test("portAllocator chooses sequentially from the low end of the range", async (t) => {
  const a = createPortAllocator({ range, reserved: [32770] });
  await t.step("no host port: the range's first port, then the next ones", () => {
    assert.deepEqual(ports(a.allocate("e1", [{ containerPort: 80 }])), ["0.0.0.0 32768/tcp"]);
    assert.deepEqual(ports(a.allocate("e2", [{ containerPort: 80 }])), ["0.0.0.0 32769/tcp"]);
    // 32770 is reserved: skipped for automatic choices.
    assert.deepEqual(ports(a.allocate("e3", [{ containerPort: 80 }])), ["0.0.0.0 32771/tcp"]);
  });
  await t.step("the decision records where it was chosen from", () => {
    assert.deepEqual(a.allocated().get("e1"), [
      { proto: "tcp", containerPort: 80, hostIp: "0.0.0.0", hostPort: 32768, chosenFrom: range },
    ]);
  });
  await t.step("a released port is not reused before the scan wraps (Docker's order)", () => {
    a.release("e1");
    assert.deepEqual(ports(a.allocate("e4", [{ containerPort: 80 }])), ["0.0.0.0 32772/tcp"]);
  });
  await t.step("protocols are separate spaces", () => {
    assert.deepEqual(ports(a.allocate("e5", [{ containerPort: 53, proto: "udp" }])), [
      "0.0.0.0 32768/udp",
    ]);
  });
  await t.step("a default binding on an IPv6 network takes one port on 0.0.0.0 and ::", () => {
    assert.deepEqual(ports(a.allocate("e6", [{ containerPort: 80 }], { ipv6: true })), [
      "0.0.0.0 32773/tcp",
      ":: 32773/tcp",
    ]);
  });
  await t.step("the reserved port can still be asked for by number", () => {
    assert.deepEqual(ports(a.allocate("e7", [{ containerPort: 80, hostPort: 32770 }])), [
      "0.0.0.0 32770/tcp",
    ]);
  });
});

Deno.test("portAllocator refuses conflicts with Docker's words and decides all or nothing", async (t) => {
  const a = createPortAllocator({ range });
  a.allocate("e1", [{ containerPort: 80, hostPort: 8082 }]);
  a.allocate("e2", [{ containerPort: 80, hostIp: "127.0.0.1", hostPort: 9000 }]);
  await t.step("the same port on 0.0.0.0", () => {
    rejects(
      () => a.allocate("e3", [{ containerPort: 81, hostPort: 8082 }]),
      ConflictError,
      "Bind for 0.0.0.0:8082 failed: port is already allocated",
    );
  });
  await t.step("a specific address against 0.0.0.0, and 0.0.0.0 against a specific one", () => {
    rejects(
      () => a.allocate("e3", [{ containerPort: 81, hostIp: "10.0.0.1", hostPort: 8082 }]),
      ConflictError,
      "Bind for 0.0.0.0:8082 failed: port is already allocated",
    );
    rejects(
      () => a.allocate("e3", [{ containerPort: 81, hostPort: 9000 }]),
      ConflictError,
      "Bind for 127.0.0.1:9000 failed: port is already allocated",
    );
  });
  await t.step("other addresses, the other family and the other protocol are free", () => {
    a.allocate("e3", [
      { containerPort: 81, hostIp: "10.0.0.1", hostPort: 9000 },
      { containerPort: 81, hostIp: "::", hostPort: 8082 },
      { containerPort: 81, proto: "udp", hostPort: 8082 },
    ], { ipv6: true });
  });
  await t.step("a failing binding leaves the others of the call unallocated", () => {
    rejects(
      () =>
        a.allocate("e4", [{ containerPort: 1, hostPort: 7000 }, {
          containerPort: 2,
          hostPort: 8082,
        }]),
      ConflictError,
      "Bind for 0.0.0.0:8082 failed: port is already allocated",
    );
    assert.equal(a.allocated().has("e4"), false);
    a.allocate("e5", [{ containerPort: 1, hostPort: 7000 }]);
  });
  await t.step("two bindings of one call on one port", () => {
    rejects(
      () =>
        a.allocate("e6", [
          { containerPort: 1, hostIp: "10.0.0.2", hostPort: 7001 },
          { containerPort: 2, hostPort: 7001 },
        ]),
      ConflictError,
      "Bind for 10.0.0.2:7001 failed: port is already allocated",
    );
  });
  await t.step("release frees the port at once", () => {
    a.release("e1");
    a.allocate("e7", [{ containerPort: 80, hostPort: 8082 }]);
  });
  await t.step("bad input changes nothing", () => {
    rejects(
      () => a.allocate("e8", [{ containerPort: 80, hostIp: "::", hostPort: 1 }]),
      InvalidArgumentError,
      "invalid port binding 80/tcp: hostIp ::: the network has no IPv6",
    );
    rejects(
      () => a.allocate("e8", [{ containerPort: 70000 }]),
      InvalidArgumentError,
      "invalid port binding 0: containerPort: must be 1-65535",
    );
    assert.equal(a.allocated().has("e8"), false);
  });
});

Deno.test("portAllocator gives one port of a range per endpoint, then all ports are allocated", () => {
  const a = createPortAllocator({ range });
  const r = { containerPort: 80, hostPort: 8000, hostPortEnd: 8002 };
  assert.deepEqual(
    ["e1", "e2", "e3"].flatMap((e) => ports(a.allocate(e, [r]))),
    ["0.0.0.0 8000/tcp", "0.0.0.0 8001/tcp", "0.0.0.0 8002/tcp"],
  );
  rejects(() => a.allocate("e4", [r]), UnavailableError, "all ports are allocated");
  a.release("e2");
  assert.deepEqual(ports(a.allocate("e4", [r])), ["0.0.0.0 8001/tcp"]);
  const small = createPortAllocator({ range: { start: 40000, end: 40001 } });
  small.allocate("a", [{ containerPort: 1 }, { containerPort: 2 }]);
  rejects(
    () => small.allocate("b", [{ containerPort: 3 }]),
    UnavailableError,
    "all ports are allocated",
  );
});

Deno.test("portAllocator restores journaled decisions without deciding again", () => {
  const first = createPortAllocator({ range });
  const d1 = first.allocate("e1", [{ containerPort: 80 }, { containerPort: 81, hostPort: 8080 }]);
  const d2 = first.allocate("e2", [{ containerPort: 80 }]);
  first.release("e1");
  const next = first.allocate("e3", [{ containerPort: 80 }]);

  // A restarted controller folds the journal: e1 created and deleted, e2 created.
  const again = createPortAllocator({ range });
  again.restore("e1", d1);
  again.restore("e2", d2);
  again.release("e1");
  again.restore("e2", d2); // idempotent
  assert.deepEqual(again.allocated().get("e2"), d2);
  rejects(
    () => again.allocate("x", [{ containerPort: 1, hostPort: d2[0].hostPort }]),
    ConflictError,
    `Bind for 0.0.0.0:${d2[0].hostPort} failed: port is already allocated`,
  );
  // The scan position came back with the decisions: the next choice is the same.
  assert.deepEqual(again.allocate("e3", [{ containerPort: 80 }]), next);
  rejects(
    () => again.restore("y", d2),
    ConflictError,
    `Bind for 0.0.0.0:${d2[0].hostPort} failed: port is already allocated`,
  );
});
