/**
 * Overlay under kill -9 (root, nats-server): two lab hosts on one stream; h2's controller
 * lives through the test with a container joined to the overlay networks, h1's is a process
 * killed at each hook point of an overlay join, a leave, a global network create and delete
 * (and, for the gwbridge, of a sandbox delete), then restarted. After every restart the crash
 * test's independent checks must find nothing: peers converged both ways within 2 s (one
 * permanent neighbour and FDB entry per remote endpoint, none for local or gone ones), the
 * overlay namespaces and VXLAN devices exactly where endpoints are joined, no VNI, subnet or
 * address twice, the claims held exactly by live objects, the gwbridge where needed, traffic
 * over every network — the moby#35401 family (stale or missing overlay forwarding entries).
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ConflictError, createController } from "../../mod.ts";
import type { Controller, ControllerOptions, CrashPoint } from "../../mod.ts";
import { type Journal, openJournal } from "../../src/journal/journal.ts";
import { Kvm } from "@nats-io/kv";
import { claimBucketOf, claimKey } from "../../src/controller/claims.ts";
import type { ChildConfig, KillTarget, Op } from "../../scripts/_crash_child.ts";
import { spawnChild } from "../../scripts/_crash_process.ts";
import { compareKernel } from "../../scripts/_crash_kernel.ts";
import type { Verdict } from "../../scripts/_crash_model.ts";
import { compareOverlay, labSites, macOf, type OverlaySite } from "../../scripts/_crash_overlay.ts";
import { ipAddrs, netnsWithPrefix, overlayNsPrefix } from "../../scripts/_crash_probe.ts";
import { compareClaims } from "../../scripts/_crash_claims.ts";
import { probeOverlay } from "../../scripts/_crash_traffic.ts";
import { VNI_OPTION } from "../../scripts/_crash_workload.ts";
import { createLab, type Lab, ping } from "../_harness/multihost.ts";
import { startNats, type TestNats } from "../_harness/nats.ts";

const LEASE_TTL_MS = 1500;
const POINTS: CrashPoint[] = ["intent-appended", "effect-done", "outcome-appended"];
const HOSTS = ["h1", "h2"];

interface Env {
  lab: Lab;
  nats: TestNats;
  nc: NatsConnection;
  journal: Journal;
  stream: string;
  prefix: string;
  stateDir: string;
  sites: Omit<OverlaySite, "ctl">[];
  options(i: number): ControllerOptions;
  /** h2's controller, never killed. */
  peer: Controller;
}

async function withEnv(label: string, f: (env: Env) => Promise<void>): Promise<void> {
  const lab = await createLab({ hosts: 2, label });
  const stateDir = await Deno.makeTempDir({ prefix: `cnm-${lab.prefix}-` });
  let nats: TestNats | undefined;
  let nc: NatsConnection | undefined;
  let peer: Controller | undefined;
  try {
    nats = await startNats();
    nc = await connect({ servers: nats.url });
    const stream = `T_${lab.prefix}`.toUpperCase();
    const prefix = lab.prefix;
    const sites = labSites(lab.hosts, HOSTS, stateDir, stream);
    const url = nats.url;
    const options = (i: number): ControllerOptions => ({
      nats: { servers: url },
      stream,
      prefix,
      hostId: HOSTS[i],
      kernel: { hostNamespace: lab.hosts[i].path },
      advertiseAddress: lab.hosts[i].address,
      namePrefix: sites[i].namePrefix,
      stateDir: sites[i].stateDir,
      defaultBridge: false,
      leaseTtlMs: LEASE_TTL_MS,
    });
    peer = await createController(options(1));
    const journal = await openJournal(nc, { stream, prefix });
    await f({ lab, nats, nc, journal, stream, prefix, stateDir, sites, options, peer });
  } finally {
    await peer?.close().catch(() => {});
    await nc?.close().catch(() => {});
    await nats?.cleanup();
    await lab.cleanup();
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
  }
  assert.deepEqual(await lab.namespaces(), [], "the lab leaves nothing behind");
}

/** Runs `steps` in an h1 controller process that kills itself at `kill`. */
async function crashAt(env: Env, steps: Op[], kill: KillTarget): Promise<void> {
  const cfg: ChildConfig = {
    nats: env.nats.url,
    stream: env.stream,
    prefix: env.prefix,
    hostId: HOSTS[0],
    hostNamespace: env.lab.hosts[0].path,
    advertiseAddress: env.lab.hosts[0].address,
    namePrefix: env.sites[0].namePrefix,
    stateDir: env.sites[0].stateDir!,
    leaseTtlMs: LEASE_TTL_MS,
    seed: 1,
    steps,
    kill,
  };
  const c = spawnChild(cfg);
  const died = await Promise.race([
    c.status.then(() => true),
    c.waitFor("done", 60_000).then(() => false),
  ]);
  if (!died) c.kill();
  const status = await c.status;
  await c.reading;
  const stderr = await c.stderr;
  assert.equal(status.signal, "SIGKILL", `the child was not killed: ${stderr}`);
  assert.deepEqual(c.lines.filter((l) => l.t === "err"), [], "the steps all succeed");
  assert.ok(c.lines.some((l) => l.t === "kill"), `never reached ${JSON.stringify(kill)}`);
}

/** h1's controller again: it takes over the lease of the killed one (its pid is gone). */
async function restart(env: Env): Promise<Controller> {
  const cnm = await createController({ ...env.options(0), log: () => {} });
  assert.deepEqual(cnm.recovery.warnings, []);
  return cnm;
}

/** Every check of the crash test on both hosts, and traffic over every overlay network. */
async function assertConverged(env: Env, cnm: Controller, tag: string): Promise<void> {
  const since = Date.now();
  const hosts: OverlaySite[] = [{ ...env.sites[0], ctl: cnm }, { ...env.sites[1], ctl: env.peer }];
  const v: Verdict = { divergences: [], leaks: [] };
  await compareOverlay(hosts, v, since, since + 2000);
  const dead = await compareClaims(env.nc, env.journal, hosts, since, v);
  for (const h of hosts) {
    assert.deepEqual((await h.ctl.reconcile({ dryRun: true })).findings, [], `${h.hostId} drift`);
    await compareKernel(h.ctl, h, v);
  }
  await probeOverlay(hosts, tag, v, dead, env.prefix);
  assert.deepEqual(v, { divergences: [], leaks: [] });
}

const nsOf = (key: string) => key.slice(key.lastIndexOf("/") + 1);
const ipOf = (cidr?: string) => cidr!.split("/")[0];

Deno.test("crash (root, nats-server) overlay: kill -9 at every hook point of a join, a leave, a global network create and delete; peers converge both ways", async (t) => {
  await withEnv("ovc", async (env) => {
    const { peer } = env;
    // h2's container on the network the joins and leaves use.
    await peer.createNetwork({ name: "ov", driver: "overlay" });
    const far = await peer.createSandbox({ name: "far" });
    const farEp = await peer.join((await peer.createEndpoint("ov", { name: "far" })).id, far.id);

    for (const [i, point] of POINTS.entries()) {
      await t.step(`join killed at ${point}: finished, h2 programs it, it reaches h2`, async () => {
        await crashAt(env, [
          { op: "createSandbox", name: `j${i}` },
          { op: "createEndpoint", network: "ov", name: `j${i}` },
          { op: "join", network: "ov", name: `j${i}`, sandbox: `j${i}` },
        ], { kind: "endpoint", state: "joining", driver: "overlay", point });
        const cnm = await restart(env);
        try {
          const ep = cnm.endpoints({ network: "ov" }).find((e) => e.name === `j${i}`)!;
          assert.equal(ep.state, "joined", "the join was decided: it is finished");
          const sb = cnm.sandbox(`j${i}`)!;
          assert.ok(await ping(nsOf(sb.key), ipOf(farEp.ipv4Address)), "j reaches far on h2");
          await assertConverged(env, cnm, `j${i}`);
        } finally {
          await cnm.close();
        }
      });
    }

    for (const [i, point] of POINTS.entries()) {
      await t.step(
        `leave killed at ${point}: finished, gone from h2, gwbridge detached`,
        async () => {
          await crashAt(env, [
            { op: "createSandbox", name: `l${i}` },
            { op: "createEndpoint", network: "ov", name: `l${i}` },
            { op: "join", network: "ov", name: `l${i}`, sandbox: `l${i}` },
            { op: "leave", network: "ov", name: `l${i}`, sandbox: `l${i}` },
          ], { kind: "endpoint", state: "leaving", driver: "overlay", point });
          const cnm = await restart(env);
          try {
            const ep = cnm.endpoints({ network: "ov" }).find((e) => e.name === `l${i}`)!;
            assert.equal(ep.state, "created", "the leave was decided: it is finished");
            const sb = cnm.sandbox(`l${i}`)!;
            assert.deepEqual(cnm.endpoints().filter((e) => e.sandboxId === sb.id), []);
            await assertConverged(env, cnm, `l${i}`);
          } finally {
            await cnm.close();
          }
        },
      );
    }

    for (const [i, point] of POINTS.entries()) {
      await t.step(
        `global network create killed at ${point}: one network, claimed, usable`,
        async () => {
          const name = `ovc${i}`;
          await crashAt(env, [{ op: "createNetwork", name, driver: "overlay" }], {
            kind: "network",
            state: "creating",
            driver: "overlay",
            point,
          });
          const cnm = await restart(env);
          try {
            assert.equal(cnm.network(name)?.state, "active", "the create was decided");
            assert.equal(peer.network(name)?.id, cnm.network(name)!.id);
            await assert.rejects(
              peer.createNetwork({ name, driver: "overlay" }),
              (err: Error) =>
                err instanceof ConflictError &&
                err.message === `network with name ${name} already exists`,
            );
            // probeOverlay joins it on both hosts and pings across.
            await assertConverged(env, cnm, `c${i}`);
          } finally {
            await cnm.close();
          }
        },
      );
    }

    for (const [i, point] of POINTS.entries()) {
      await t.step(
        `global network delete killed at ${point}: gone everywhere, its name, VNI and subnet free`,
        async () => {
          const name = `ovd${i}`;
          const wanted = {
            name,
            driver: "overlay",
            ipam: { config: [{ subnet: `10.20.${i}.0/24` }] },
            options: { [VNI_OPTION]: String(5000 + i) },
          };
          await crashAt(env, [
            {
              op: "createNetwork",
              name,
              driver: "overlay",
              subnet: `10.20.${i}.0/24`,
              vni: 5000 + i,
            },
            { op: "deleteNetwork", name },
          ], { kind: "network", state: "deleting", driver: "overlay", point });
          // h2 writes the snapshot; once it covers the delete, the restart's fold has no
          // network any more (a snapshot keeps live objects only): its sweep must still find
          // the claims' holder deleted.
          assert.equal(await peer.snapshots?.sync(), true, "the snapshot covers the stream");
          const cnm = await restart(env);
          try {
            assert.equal(cnm.network(name), undefined, "the delete was decided: it is finished");
            await assertConverged(env, cnm, `d${i}`);
            // The claims were given back (at outcome-appended only by the restart's sweep):
            // another host takes the same name, subnet and VNI.
            const again = await peer.createNetwork(wanted);
            assert.equal(again.options[VNI_OPTION], String(5000 + i));
            await peer.deleteNetwork(again.id);
          } finally {
            await cnm.close();
          }
        },
      );
    }

    for (const [i, point] of POINTS.entries()) {
      await t.step(
        `sandbox delete killed at ${point} of its gwbridge endpoint's leave: no gwbridge endpoint leaks`,
        async () => {
          await crashAt(env, [
            { op: "createSandbox", name: `g${i}` },
            { op: "createEndpoint", network: "ov", name: `g${i}` },
            { op: "join", network: "ov", name: `g${i}`, sandbox: `g${i}` },
            { op: "deleteSandbox", name: `g${i}` },
          ], { kind: "endpoint", state: "leaving", driver: "bridge", point });
          const cnm = await restart(env);
          try {
            // The sandbox's delete was not decided yet (its endpoints go first): it stays, with
            // a gwbridge endpoint exactly if it is still on the overlay (assertConverged).
            await assertConverged(env, cnm, `g${i}`);
            const sb = cnm.sandbox(`g${i}`)!;
            await cnm.deleteSandbox(sb.id);
            const gw = `gateway_${sb.id.slice(0, 12)}`;
            assert.deepEqual(cnm.endpoints().filter((e) => e.name === gw), []);
          } finally {
            await cnm.close();
          }
        },
      );
    }

    await t.step(
      "the overlay and claims checkers notice drift made by hand (they can fail)",
      async () => {
        const cnm = await restart(env);
        const sh = async (...args: string[]) => {
          const o = await new Deno.Command(args[0], { args: args.slice(1), stderr: "piped" })
            .output();
          assert.ok(o.success, `${args.join(" ")}: ${new TextDecoder().decode(o.stderr)}`);
        };
        const hosts: OverlaySite[] = [{ ...env.sites[0], ctl: cnm }, {
          ...env.sites[1],
          ctl: peer,
        }];
        const net = cnm.network("ov")!;
        const ip = ipOf(
          cnm.endpoints({ network: net.id }).find((e) => e.name === "j0")!.ipv4Address,
        );
        // h2's namespace of ov and its VXLAN device.
        const ns = (await netnsWithPrefix(overlayNsPrefix(env.sites[1])))
          .find((n) => n.endsWith(net.id.slice(0, 12)))!;
        const vx = (await ipAddrs(ns)).find((l) => l.linkinfo?.info_kind === "vxlan")!.ifname;
        const stray = `${overlayNsPrefix(env.sites[0])}stray`;
        const fake = ["02:42:0a:63:63:63", "dev", vx, "dst", env.sites[0].vtep];
        const kv = await new Kvm(env.nc).open(claimBucketOf(env.stream));
        const gone = await peer.createNetwork({ name: "gone", driver: "overlay" });
        await peer.deleteNetwork(gone.id);
        const key = claimKey.vni(env.prefix, 7777);
        try {
          await sh("ip", "-n", ns, "neigh", "del", ip, "dev", vx);
          await sh("bridge", "-n", ns, "fdb", "append", ...fake);
          await sh("ip", "netns", "add", stray);
          const holder = { objectId: gone.id, host: "h2", at: new Date().toISOString() };
          await kv.put(key, JSON.stringify(holder));
          const v: Verdict = { divergences: [], leaks: [] };
          await compareOverlay(hosts, v, Date.now(), Date.now());
          await compareClaims(env.nc, env.journal, hosts, Date.now(), v, Date.now());
          const at = `on ${vx} in ${ns} on h2`;
          assert.ok(
            v.divergences.includes(`not converged: neighbours ${at}: missing ${ip} ${macOf(ip)}`),
            v.divergences.join("\n"),
          );
          assert.ok(
            v.divergences.includes(
              `not converged: FDB entries ${at}: stale or twice ${fake[0]} ${fake[4]}`,
            ),
            v.divergences.join("\n"),
          );
          assert.ok(
            v.leaks.includes(`overlay namespace ${stray} leaked on h1`),
            v.leaks.join("\n"),
          );
          assert.ok(
            v.leaks.includes(
              `claim ${key} (from h2) held by network ${gone.id.slice(0, 12)}, which the journal ` +
                "says is gone: never released",
            ),
            v.leaks.join("\n"),
          );
        } finally {
          await kv.delete(key);
          await sh("ip", "netns", "del", stray).catch(() => {});
          await sh("bridge", "-n", ns, "fdb", "del", ...fake).catch(() => {});
          await sh(
            "ip",
            "-n",
            ns,
            "neigh",
            "replace",
            ip,
            "lladdr",
            macOf(ip),
            "dev",
            vx,
            "nud",
            "permanent",
          )
            .catch(() => {});
          await cnm.close();
        }
      },
    );

    await t.step("deleting everything on both hosts leaves no overlay namespace", async () => {
      const cnm = await restart(env);
      try {
        for (const c of [cnm, peer]) for (const s of c.sandboxes()) await c.deleteSandbox(s.id);
        for (const e of cnm.endpoints()) await cnm.deleteEndpoint(e.id, { force: true });
        for (const e of peer.endpoints()) await peer.deleteEndpoint(e.id, { force: true });
        await assertConverged(env, cnm, "end");
        for (const n of cnm.networks().filter((n) => n.scope === "global")) {
          await cnm.deleteNetwork(n.id);
        }
        await assertConverged(env, cnm, "end2");
      } finally {
        await cnm.close();
      }
    });
  });
});
