/**
 * Port publishing under kill -9 (root, nats-server): a controller process publishing a port
 * is killed at every hook point of a join, a leave and a forced delete; after a restart the
 * sandbox publishes fully (the join was decided: it is finished) or not at all (the leave or
 * delete was), never half, never DNAT to a dead address, never a held port without a mapping
 * (moby#32048, moby#25981) — with br_netfilter off and on. The same for an overlay-only
 * sandbox, whose ports its `cnm_gwbridge` endpoint publishes.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { CrashPoint } from "../../mod.ts";
import type { ChildConfig, ChildLine, KillTarget, Op } from "../../scripts/_crash_child.ts";
import { comparePorts } from "../../scripts/_crash_ports.ts";
import type { Verdict } from "../../scripts/_crash_model.ts";
import { connectTcp, serveTcp } from "../_harness/tcp.ts";
import { HOST4, type PortsEnv, REMOTE4, withPortsEnv } from "../_harness/ports_env.ts";

const POINTS: CrashPoint[] = ["intent-appended", "effect-done", "outcome-appended"];
const CHILD = new URL("../../scripts/_crash_child.ts", import.meta.url).pathname;

/** Runs `steps` in a controller process that kills itself at `kill`. */
async function crashAt(p: PortsEnv, steps: Op[], kill: KillTarget): Promise<ChildLine[]> {
  await p.cnm.close(); // the child is the host's controller now
  const env = p.env;
  const cfg: ChildConfig = {
    nats: env.nats.url,
    stream: env.stream,
    prefix: env.prefix,
    hostId: "h1",
    hostNamespace: env.host.path,
    namePrefix: `${env.host.prefix}-`,
    stateDir: env.stateDir,
    leaseTtlMs: 1500,
    seed: 1,
    steps,
    kill,
  };
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CHILD, JSON.stringify(cfg)],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const text = await new Response(child.stdout).text();
  const stderr = await new Response(child.stderr).text();
  const status = await child.status;
  clearTimeout(timer);
  const lines = text.split("\n").filter(Boolean).map((l) => JSON.parse(l) as ChildLine);
  assert.equal(status.signal, "SIGKILL", `the child was not killed: ${stderr}`);
  assert.deepEqual(lines.filter((l) => l.t === "err"), []);
  assert.ok(lines.some((l) => l.t === "kill"), `never reached ${JSON.stringify(kill)}`);
  return lines;
}

/** The kernel's UDP socket of an overlay's VXLAN device, which the ports checker counts too. */
const VXLAN_SOCKET = "host port udp 0.0.0.0:4789 held, nothing published";

async function consistent(p: PortsEnv): Promise<void> {
  assert.deepEqual(p.cnm.recovery.warnings, []);
  assert.deepEqual((await p.cnm.reconcile({ dryRun: true })).findings, []);
  const v: Verdict = { divergences: [], leaks: [] };
  await comparePorts(p.cnm, { hostNs: p.host, namePrefix: `${p.env.host.prefix}-` }, v);
  v.leaks = v.leaks.filter((l) => l !== VXLAN_SOCKET);
  assert.deepEqual(v, { divergences: [], leaks: [] });
}

for (const brNetfilter of [false, true]) {
  const mode = `br_netfilter ${brNetfilter ? "on" : "off"}`;

  Deno.test(`crash (root, nats-server) kill -9 mid-publish: fully published or not at all, ${mode}`, async (t) => {
    await withPortsEnv("pk", brNetfilter, async (p) => {
      const sb = await p.cnm.createSandbox({ name: "s" });
      const ns = sb.key.slice(sb.key.lastIndexOf("/") + 1);
      const server = await serveTcp(ns, 80, "::", "s");
      const ep = (i: number) => `e${i}`;
      try {
        for (const [i, point] of POINTS.entries()) {
          const port = 8080 + i;
          await t.step(`killed at ${point} of a join: published after the restart`, async () => {
            await crashAt(p, [
              { op: "createEndpoint", network: "web", name: ep(i), ports: [`${port}:80`] },
              { op: "join", network: "web", name: ep(i), sandbox: "s" },
            ], { kind: "endpoint", state: "joining", point });
            await p.restart();
            const e = p.cnm.endpoints().find((x) => x.name === ep(i))!;
            assert.equal(e.state, "joined");
            assert.equal(await connectTcp(p.remote, HOST4, port), `s ${REMOTE4}`);
            assert.ok((await p.listening()).includes(`tcp 0.0.0.0:${port}`));
            await consistent(p);
          });
          await t.step(
            `killed at ${point} of a leave: nothing published after the restart`,
            async () => {
              await crashAt(p, [{ op: "leave", network: "web", name: ep(i), sandbox: "s" }], {
                kind: "endpoint",
                state: "leaving",
                point,
              });
              await p.restart();
              assert.equal(p.cnm.endpoints().find((x) => x.name === ep(i))!.state, "created");
              assert.equal(await connectTcp(p.remote, HOST4, port), null);
              assert.deepEqual(await p.portRules(), []);
              assert.deepEqual(await p.listening(), []);
              await consistent(p);
            },
          );
          await t.step(
            `killed at ${point} of a forced delete: nothing published, the port free`,
            async () => {
              await p.cnm.join(p.cnm.endpoints().find((x) => x.name === ep(i))!.id, sb.id);
              assert.equal(await connectTcp(p.remote, HOST4, port), `s ${REMOTE4}`);
              await crashAt(
                p,
                [{ op: "deleteEndpoint", network: "web", name: ep(i), force: true }],
                {
                  kind: "endpoint",
                  state: "deleting",
                  point,
                },
              );
              await p.restart();
              assert.equal(p.cnm.endpoints().find((x) => x.name === ep(i)), undefined);
              assert.deepEqual(await p.portRules(), []);
              assert.deepEqual(await p.listening(), []);
              await consistent(p);
              // The port was given back: another endpoint publishes it at once.
              const again = await p.cnm.createEndpoint("web", {
                name: `again${i}`,
                portBindings: [{ containerPort: 80, hostPort: port }],
              });
              await p.cnm.join(again.id, sb.id);
              assert.equal(await connectTcp(p.remote, HOST4, port), `s ${REMOTE4}`);
              await p.cnm.deleteEndpoint(again.id, { force: true });
              await consistent(p);
            },
          );
        }
      } finally {
        await server.close();
      }
    });
  });
}

Deno.test("crash (root, nats-server) kill -9 mid-publish of an overlay-only sandbox: fully published or not at all", async (t) => {
  await withPortsEnv("pko", false, async (p) => {
    // Journaled, so the child controller has the same VTEP.
    await p.cnm.configureDriver("overlay", { advertiseAddress: HOST4 });
    await p.cnm.createNetwork({ name: "ov", driver: "overlay" });
    const sb = await p.cnm.createSandbox({ name: "o" });
    const server = await serveTcp(sb.key.slice(sb.key.lastIndexOf("/") + 1), 80, "::", "o");
    const gateway = () =>
      p.cnm.endpoints({ network: "cnm_gwbridge" })
        .find((e) => e.name === `gateway_${sb.id.slice(0, 12)}`);
    const held = async () => (await p.listening()).filter((l) => l !== "udp 0.0.0.0:4789");
    try {
      for (const [i, point] of POINTS.entries()) {
        const port = 8090 + i, name = `o${i}`;
        await t.step(
          `killed at ${point} of a join: published on cnm_gwbridge after the restart`,
          async () => {
            await crashAt(p, [
              { op: "createEndpoint", network: "ov", name, ports: [`${port}:80`] },
              { op: "join", network: "ov", name, sandbox: "o" },
            ], { kind: "endpoint", state: "joining", point });
            await p.restart();
            assert.equal(
              p.cnm.endpoints({ network: "ov" }).find((x) => x.name === name)!.state,
              "joined",
            );
            assert.equal(gateway()?.state, "joined");
            assert.equal(await connectTcp(p.remote, HOST4, port), `o ${REMOTE4}`);
            assert.deepEqual(await held(), [`tcp 0.0.0.0:${port}`]);
            await consistent(p);
          },
        );
        await t.step(
          `killed at ${point} of a leave: nothing published after the restart`,
          async () => {
            await crashAt(p, [{ op: "leave", network: "ov", name, sandbox: "o" }], {
              kind: "endpoint",
              state: "leaving",
              point,
            });
            await p.restart();
            assert.equal(
              p.cnm.endpoints({ network: "ov" }).find((x) => x.name === name)!.state,
              "created",
            );
            assert.equal(gateway(), undefined);
            assert.equal(await connectTcp(p.remote, HOST4, port), null);
            assert.deepEqual(await p.portRules(), []);
            assert.deepEqual(await held(), []);
            await consistent(p);
            await p.cnm.deleteEndpoint(
              p.cnm.endpoints({ network: "ov" }).find((x) => x.name === name)!.id,
            );
          },
        );
      }
    } finally {
      await server.close();
    }
  });
});

Deno.test("crash (root, nats-server) the ports checker notices drift made by hand (it can fail)", async () => {
  await withPortsEnv("pkc", false, async (p) => {
    const s1 = await p.box("s1", [{ containerPort: 80, hostPort: 8080 }]);
    await p.box("s2", [{ containerPort: 80, hostPort: 8081, hostIp: "127.0.0.1" }]);
    const site = { hostNs: p.host, namePrefix: `${p.env.host.prefix}-` };
    const clean: Verdict = { divergences: [], leaks: [] };
    await comparePorts(p.cnm, site, clean);
    assert.deepEqual(clean, { divergences: [], leaks: [] });
    const net12 = p.cnm.network("web")!.id.slice(0, 12), ep12 = s1.endpointId.slice(0, 12);
    const stray = `pdnat-${net12}-${"cd".repeat(6)}`;
    await p.inHost([
      "sh",
      "-c",
      `nft delete element inet cnm cnm_dnat6_any '{ tcp . 8080 }' && ` +
      `nft add chain inet cnm ${stray} && nft add rule inet cnm ${stray} meta nfproto ipv4 ` +
      `tcp dport 8999 dnat ip to 172.30.0.250:80 && ` +
      `nft add element inet cnm cnm_dnat4_any '{ tcp . 8999 : jump ${stray} }'`,
    ]);
    const v: Verdict = { divergences: [], leaks: [] };
    await comparePorts(p.cnm, site, v);
    assert.deepEqual(
      v.divergences.sort(),
      [
        `${stray}: DNAT to 172.30.0.250, no joined endpoint's address`,
        `element cnm_dnat6_any tcp . 8080 (of pdnat-${net12}-${ep12}) missing`,
      ].sort(),
    );
    assert.deepEqual(
      v.leaks.sort(),
      [
        `element cnm_dnat4_any tcp . 8999 leaked (no owner)`,
        `port chain ${stray} leaked (1 rules)`,
      ].sort(),
    );
  });
});
