/**
 * Held host ports and link options against the real kernel (needs root): sockets bound in a
 * throwaway host namespace, never in the machine's own.
 */

import assert from "node:assert/strict";
import { ConflictError, InvalidArgumentError } from "../../src/errors.ts";
import { createKernel, type Kernel } from "../../src/kernel/mod.ts";
import { sh } from "../_harness/command.ts";
import { createTestHost, listPrefixed, requireRoot, type TestHost } from "../_harness/netns.ts";
import { connectTcp, serveTcp } from "../_harness/tcp.ts";

async function withHost(fn: (k: Kernel, host: TestHost) => Promise<void>): Promise<void> {
  requireRoot();
  const host = await createTestHost("hp");
  let kernel: Kernel | undefined;
  try {
    kernel = await createKernel({ hostNamespace: host.path });
    await fn(kernel, host);
  } finally {
    await kernel?.close();
    await host.cleanup();
    assert.deepEqual(await listPrefixed(host.prefix), [], "namespaces left behind");
  }
}

/** `proto local-address` of every socket `ss` sees in the namespace. */
async function sockets(ns: string): Promise<string[]> {
  const out = await sh(["ip", "netns", "exec", ns, "ss", "-Hlntu"]);
  return out.trim().split("\n").filter(Boolean).map((l) => {
    const f = l.trim().split(/\s+/);
    return `${f[0]} ${f[4]}`;
  }).sort();
}

async function rejectsWith(p: Promise<unknown>, cls: new (...a: never[]) => Error, msg: string) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err}`);
    assert.equal((err as Error).message, msg);
    return true;
  });
}

Deno.test("kernel holdPort binds sockets in the host namespace (root)", async (t) => {
  await withHost(async (k, host) => {
    const other = await createKernel({ hostNamespace: host.path });
    try {
      await t.step(
        "TCP listens, UDP binds, both families, only in the host namespace",
        async () => {
          await k.holdPort({ proto: "tcp", hostIp: "0.0.0.0", hostPort: 9090, owner: "e1" });
          await k.holdPort({ proto: "tcp", hostIp: "::", hostPort: 9090, owner: "e1" });
          await k.holdPort({ proto: "udp", hostIp: "0.0.0.0", hostPort: 5353, owner: "e1" });
          await k.holdPort({ proto: "tcp", hostIp: "0.0.0.0", hostPort: 9090, owner: "e1" });
          assert.deepEqual(await sockets(host.name), [
            "tcp 0.0.0.0:9090",
            "tcp [::]:9090",
            "udp 0.0.0.0:5353",
          ]);
          assert.deepEqual(
            (await k.heldPorts()).map((p) => `${p.proto} ${p.hostIp} ${p.hostPort}`),
            [
              "tcp 0.0.0.0 9090",
              "tcp :: 9090",
              "udp 0.0.0.0 5353",
            ],
          );
        },
      );
      await t.step("a held port accepts no connection (every packet is dropped)", async () => {
        assert.equal(await connectTcp(host.name, "127.0.0.1", 9090), null);
        // Nothing reached the accept queue (Recv-Q of a listener), not even the handshake.
        const out = await sh(["ip", "netns", "exec", host.name, "ss", "-Hlnt", "sport = :9090"]);
        assert.deepEqual(out.trim().split("\n").map((l) => l.trim().split(/\s+/)[1]), ["0", "0"]);
      });
      await t.step("another owner of this kernel: port is already allocated", async () => {
        await rejectsWith(
          k.holdPort({ proto: "tcp", hostIp: "127.0.0.1", hostPort: 9090, owner: "e2" }),
          ConflictError,
          "Bind for 0.0.0.0:9090 failed: port is already allocated",
        );
      });
      await t.step("another holder of the port: address already in use", async () => {
        await rejectsWith(
          other.holdPort({ proto: "tcp", hostIp: "0.0.0.0", hostPort: 9090, owner: "x" }),
          ConflictError,
          "failed to bind host port 0.0.0.0:9090/tcp: address already in use",
        );
        await rejectsWith(
          other.holdPort({ proto: "tcp", hostIp: "::", hostPort: 9090, owner: "x" }),
          ConflictError,
          "failed to bind host port [::]:9090/tcp: address already in use",
        );
        await rejectsWith(
          other.holdPort({ proto: "udp", hostIp: "0.0.0.0", hostPort: 5353, owner: "x" }),
          ConflictError,
          "failed to bind host port 0.0.0.0:5353/udp: address already in use",
        );
        const server = await serveTcp(host.name, 9191, "0.0.0.0");
        try {
          await rejectsWith(
            k.holdPort({ proto: "tcp", hostIp: "0.0.0.0", hostPort: 9191, owner: "e3" }),
            ConflictError,
            "failed to bind host port 0.0.0.0:9191/tcp: address already in use",
          );
        } finally {
          await server.close();
        }
      });
      await t.step("an address the host does not have", async () => {
        await rejectsWith(
          k.holdPort({ proto: "tcp", hostIp: "10.9.9.9", hostPort: 9092, owner: "e4" }),
          InvalidArgumentError,
          "failed to bind host port 10.9.9.9:9092/tcp: cannot assign requested address",
        );
      });
      await t.step("release frees the port at once; close frees the rest", async () => {
        await k.releasePort({ proto: "tcp", hostIp: "0.0.0.0", hostPort: 9090 });
        await k.releasePort({ proto: "tcp", hostIp: "0.0.0.0", hostPort: 9090 });
        await other.holdPort({ proto: "tcp", hostIp: "0.0.0.0", hostPort: 9090, owner: "x" });
        await other.releasePort({ proto: "tcp", hostIp: "0.0.0.0", hostPort: 9090 });
        await k.close();
        assert.deepEqual(await sockets(host.name), []);
      });
    } finally {
      await other.close();
    }
  });
});

Deno.test("kernel setLinkOptions sets hairpin and route_localnet (root)", async () => {
  await withHost(async (k, host) => {
    const sb = await k.ensureNetns(`${host.prefix}-sb`);
    await k.ensureBridge({ name: "br0", addresses: ["10.88.0.1/24"] });
    await k.ensureVeth({
      hostName: `${host.prefix}v1`,
      master: "br0",
      netns: sb,
      peerName: "eth0",
    });
    const hairpin = async () =>
      JSON.parse(
        await sh(["ip", "-n", host.name, "-j", "-d", "link", "show", `${host.prefix}v1`]),
      )[0].linkinfo.info_slave_data.hairpin;
    const localnet = async () =>
      (await sh([
        "ip",
        "netns",
        "exec",
        host.name,
        "sysctl",
        "-n",
        "net.ipv4.conf.br0.route_localnet",
      ])).trim();
    assert.equal(await hairpin(), false);
    assert.equal(await localnet(), "0");
    await k.setLinkOptions(`${host.prefix}v1`, { hairpin: true });
    await k.setLinkOptions("br0", { routeLocalnet: true });
    assert.equal(await hairpin(), true);
    assert.equal(await localnet(), "1");
    await k.setLinkOptions(`${host.prefix}v1`, { hairpin: false });
    assert.equal(await hairpin(), false);
    await assert.rejects(k.setLinkOptions("nope0", { hairpin: true }), /nope0: no such link/);
  });
});
