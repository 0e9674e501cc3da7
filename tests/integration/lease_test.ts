import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { ConflictError } from "../../mod.ts";
import { openJournal } from "../../src/journal/journal.ts";
import { newEventId } from "../../src/ids.ts";
import { startEnv } from "../_harness/env.ts";
import { startNats } from "../_harness/nats.ts";
import { Kvm } from "@nats-io/kv";
import { acquireLease } from "../../src/controller/lease.ts";
import { createApiClient, NoControllerError } from "../../src/api/client.ts";

Deno.test("lease (root, nats-server) allows one controller per host and stream", async (t) => {
  const env = await startEnv("lse");
  try {
    const first = await env.open({ leaseTtlMs: 2000 });
    await t.step(
      "a second controller for the same host is refused while the first is alive",
      async () => {
        const started = Date.now();
        await assert.rejects(
          () => env.open({ leaseTtlMs: 2000, leaseWaitMs: 3000 }),
          (e: Error) =>
            e instanceof ConflictError &&
            /^host h1 is owned by a running controller on stream /.test(e.message),
        );
        // The first keeps refreshing, so waiting longer than its TTL does not help the second.
        assert.ok(Date.now() - started >= 3000);
      },
    );
    await t.step("another host id on the same stream is fine", async () => {
      const other = await env.open({ hostId: "h2", predefined: false });
      assert.equal(other.hostId, "h2");
      assert.equal(other.networks().length, 0, "h1's objects are not h2's");
      await other.close();
    });
    await first.close();
    await t.step("after a clean close the next controller starts at once", async () => {
      const started = Date.now();
      const next = await env.open({ leaseTtlMs: 2000 });
      assert.ok(Date.now() - started < 1500, `took ${Date.now() - started} ms`);
      await next.close();
    });
  } finally {
    await env.cleanup();
  }
});

Deno.test("lease (root, nats-server) a stale writer cannot interleave: the controller reloads the object", async () => {
  const env = await startEnv("stl");
  try {
    const cnm = await env.open();
    const sb = await cnm.createSandbox({ name: "a" });
    const ep = await cnm.createEndpoint("none", { name: "e" });
    // Another writer extends the endpoint's history behind the controller's back.
    const nc = await connect({ servers: env.nats.url });
    try {
      const j = await openJournal(nc, { stream: env.stream, prefix: env.prefix });
      const last = await j.last("endpoint", ep.id);
      await j.append({
        v: 1,
        eventId: newEventId(),
        effectId: newEventId(),
        kind: "endpoint",
        objectId: ep.id,
        type: "endpoint.join.requested",
        from: "created",
        to: "joining",
        at: new Date().toISOString(),
        host: "intruder",
        data: { sandboxId: sb.id, ifname: "eth0" },
      }, last!.seq);
    } finally {
      await nc.close();
    }
    await assert.rejects(
      () => cnm.deleteEndpoint(ep.id),
      (e: Error) => e instanceof ConflictError && /another writer changed endpoint/.test(e.message),
    );
    // The controller took the journal's view: the join the other writer decided was carried out.
    const deadline = Date.now() + 5000;
    while (cnm.endpoint(ep.id)?.state !== "joined" && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(cnm.endpoint(ep.id)?.state, "joined");
    assert.equal(cnm.endpoint(ep.id)?.sandboxId, sb.id);
  } finally {
    await env.cleanup();
  }
});

/** Resolves once `pid` is a zombie or gone (a SIGKILL is delivered asynchronously). */
async function dying(pid: number): Promise<void> {
  for (;;) {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`).catch(() => "");
    if (!stat || stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Starts a process holding the lease; resolves once it holds it. */
async function holder(url: string, stream: string, prefix: string, hostId: string) {
  const script = new URL("./_lease_holder.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, url, stream, prefix, hostId],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("held")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`lease holder exited: ${out}`);
    out += value;
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  return child;
}

Deno.test("lease (nats-server) takes over at once from a holder that provably died, and says what it waits for", async (t) => {
  const nats = await startNats();
  const nc = await connect({ servers: nats.url });
  const opts = { stream: "LT", prefix: "lt", hostId: "h1" };
  const api = await createApiClient({ nats: nc, ...opts, timeoutMs: 2000 });
  const noController = async () => {
    const err = await api.ping().then(() => undefined, (e: Error) => e);
    assert.ok(err instanceof NoControllerError, String(err));
    return err.message;
  };
  try {
    await t.step("a killed holder's lease is taken at once, with the reason", async () => {
      const child = await holder(nats.url, opts.stream, opts.prefix, opts.hostId);
      child.kill("SIGKILL");
      await dying(child.pid); // a zombie (not reaped yet) is dead too
      const lines: string[] = [];
      const started = Date.now();
      const lease = await acquireLease(nc, { ...opts, ttlMs: 10_000, log: (l) => lines.push(l) });
      assert.ok(Date.now() - started < 1000, `took ${Date.now() - started} ms`);
      await child.status;
      assert.match(
        lease.tookOver ?? "",
        new RegExp(`^took over the lease of host h1 from pid ${child.pid} on \\S+, which died$`),
      );
      assert.deepEqual(lines, [lease.tookOver]);
      await lease.release();
    });
    await t.step(
      "the API client says a dead holder's lease lapses, and that serve takes over",
      async () => {
        const child = await holder(nats.url, opts.stream, opts.prefix, opts.hostId);
        child.kill("SIGKILL");
        await child.status;
        assert.match(
          await noController(),
          new RegExp(
            `^no controller answers for host h1: the last one \\(pid ${child.pid} on \\S+\\) died; ` +
              "its lease lapses in \\d+ s, but a new `cnm serve` takes over at once$",
          ),
        );
        await (await acquireLease(nc, { ...opts, ttlMs: 10_000 })).release();
      },
    );
    await t.step("a live holder: the wait is announced, then refused", async () => {
      const child = await holder(nats.url, opts.stream, opts.prefix, opts.hostId);
      try {
        assert.match(
          await noController(),
          new RegExp(
            `^no controller answers for host h1 yet: pid ${child.pid} on \\S+ holds its lease ` +
              "\\(alive, valid \\d+ s more\\): a controller is starting, or it stopped answering; " +
              "do not start a second one$",
          ),
        );
        const lines: string[] = [];
        await assert.rejects(
          () => acquireLease(nc, { ...opts, waitMs: 1500, log: (l) => lines.push(l) }),
          (e: Error) =>
            e instanceof ConflictError && /^host h1 is owned by a running/.test(e.message),
        );
        assert.equal(lines.length, 1, lines.join("\n"));
        assert.match(
          lines[0],
          new RegExp(
            `^waiting up to 1\\.5 s for the lease of host h1: pid ${child.pid} on \\S+ holds it ` +
              "\\(alive; valid \\d+\\.\\d s more\\)$",
          ),
        );
      } finally {
        child.kill("SIGKILL");
        await child.status;
      }
      await (await acquireLease(nc, { ...opts })).release();
    });
    await t.step("a holder of another boot is never taken for dead", async () => {
      const kv = await new Kvm(nc).open("LT_LEASES");
      const record = {
        instance: "x",
        hostId: "h1",
        pid: 999_999,
        hostname: Deno.hostname(),
        startedAt: new Date().toISOString(),
        expiresAt: new Date(Date.now() + 3000).toISOString(),
        bootId: "00000000-0000-0000-0000-000000000000",
        startTime: "1",
        pidNs: "pid:[1]",
      };
      await kv.put("lt.h1", JSON.stringify(record));
      const lines: string[] = [];
      await assert.rejects(
        () => acquireLease(nc, { ...opts, waitMs: 800, log: (l) => lines.push(l) }),
        (e: Error) => e instanceof ConflictError,
      );
      assert.match(lines[0], /holds it \(on another boot or machine: cannot tell; valid /);
      await kv.delete("lt.h1");
    });
  } finally {
    await api.close();
    await nc.close();
    await nats.cleanup();
  }
});
