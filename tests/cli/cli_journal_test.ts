/**
 * The journal verbs as an operator runs them, with the real `./cnm` (needs nats-server; a
 * fake kernel, no root): `state --verify` against a sound and a forged snapshot, `--object`
 * by id prefix, and the progress bar of long reads drawn on a terminal (under `script`'s
 * pseudo-terminal) and only there.
 */
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { createController } from "../../mod.ts";
import { startNats } from "../_harness/nats.ts";
import { CNM } from "../_harness/cnm_serve.ts";
import { output } from "../_harness/command.ts";
import { fakeOptions, noopDriver } from "./_fake_kernel.ts";
import { snapshotBucketOf } from "../../src/journal/snapshot.ts";
import { readEvents } from "../../src/journal/watch.ts";
import type { RecordedEvent } from "../../src/journal/events.ts";
import { seedStream } from "../../bench/_scale_seed.ts";

/** The shortest prefix of `id` no other of `ids` starts with. */
function uniquePrefix(id: string, ids: string[]): string {
  for (let n = 1; n < id.length; n++) {
    const p = id.slice(0, n);
    if (ids.filter((o) => o.startsWith(p)).length === 1) return p;
  }
  return id;
}

/** Runs `cmd` (one shell string) under a pseudo-terminal: what the terminal showed. */
async function onTerminal(cmd: string, env: Record<string, string>) {
  const o = await output(["script", "-qfec", cmd, "/dev/null"], { env });
  return { code: o.code, screen: o.stdout, err: o.stderr };
}

/** The bar `progress()` draws: `\rreplaying [####......] 40% 40960/100000 events`. */
const BAR = /\r(replaying|reading|scanning|verifying) \[[#.]{30}\] \d+% \d+\/\d+ events/;

/** What `done()` writes to clear the bar. */
const CLEAR = "\r\x1b[2K";

/** Text with no carriage return or escape sequence (no bar, no clearing). */
const plain = (text: string) => !text.includes("\r") && !text.includes("\x1b");

Deno.test("cnm journal verbs (needs nats-server): state --verify, --object prefixes, progress on a TTY", async (t) => {
  const nats = await startNats();
  const dir = await Deno.makeTempDir();
  const nc = await connect({ servers: nats.url });
  const env = { CNM_NATS_URL: nats.url, CNM_STREAM: "JRN", CNM_PREFIX: "jrn", CNM_HOST_ID: "h1" };
  const cnm = async (args: string[], e: Record<string, string> = env) => {
    const o = await output([CNM, ...args], { env: e });
    return { code: o.code, out: o.stdout, err: o.stderr };
  };
  const all = async (stream: string, prefix: string) => {
    const out: RecordedEvent[] = [];
    for await (const e of readEvents(nc, { stream, prefix })) out.push(e);
    return out;
  };
  try {
    const h1 = await createController({
      ...fakeOptions(nats.url, "JRN", "jrn", dir),
      drivers: [noopDriver()],
    });
    const front = await h1.createNetwork({ name: "front", driver: "noop" });
    const web = await h1.createSandbox({ name: "web" });
    const ep = await h1.createEndpoint(front.id, { name: "web-ep" });
    await h1.join(ep.id, web.id);
    for (let i = 0; i < 17; i++) await h1.createSandbox({ name: `p${i}` }); // shared prefixes
    const gone = await h1.createSandbox({ name: "gone" });
    await h1.deleteSandbox(gone.id);
    assert.equal(await h1.snapshots?.sync(), true);
    const ids = [
      ...h1.networks().map((n) => n.id),
      ...h1.sandboxes().map((s) => s.id),
      ...h1.endpoints().map((e) => e.id),
    ];
    await h1.close();
    const events = await all("JRN", "jrn");
    const last = events.at(-1)!.seq;

    await t.step("state --verify: exit 0 and 'matches' on a consistent stream", async () => {
      let r = await cnm(["state", "--verify"]);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.err, "");
      assert.match(r.out, new RegExp(`^state at #${last} \\(.+\\), ${events.length} events\n`));
      assert.match(
        r.out,
        new RegExp(
          `\nsnapshot at #${last} \\+ 0 events matches the fold of every event up to #${last}\n$`,
        ),
      );
      r = await cnm(["--format", "json", "state", "--verify"]);
      assert.equal(r.code, 0, r.err);
      const s = JSON.parse(r.out);
      assert.deepEqual(s.snapshot, {
        seq: last,
        snapshotSeq: last,
        tail: 0,
        result: "matches",
        differences: [],
      });
    });

    await t.step("state --verify: exit 1 naming the record the snapshot forged", async () => {
      const kv = await new Kvm(nc).open(snapshotBucketOf("JRN"));
      const key = `sandbox.${web.id}`;
      const entry = await kv.get(key);
      const record = JSON.parse(new TextDecoder().decode(entry!.value));
      await kv.put(key, JSON.stringify({ ...record, context: { ...record.context, name: "x" } }));
      try {
        let r = await cnm(["state", "--verify"]);
        assert.equal(r.code, 1, r.err);
        assert.match(r.out, /\nsnapshot at #\d+ \+ 0 events DIFFERS FROM the fold of every event/);
        assert.match(
          r.out,
          new RegExp(
            `\n  sandboxes ${web.id.slice(0, 12)}: name: "x" \\(snapshot\\) ≠ "web" \\(events\\)\n`,
          ),
        );
        assert.equal(
          r.err,
          "cnm state: Error: the snapshot differs from the journal in 1 place\n",
        );
        r = await cnm(["--format", "json", "state", "--verify"]);
        assert.equal(r.code, 1);
        const s = JSON.parse(r.out);
        assert.equal(s.snapshot.result, "differs");
        assert.deepEqual(s.snapshot.differences, [
          `sandboxes ${web.id.slice(0, 12)}: name: "x" (snapshot) ≠ "web" (events)`,
        ]);
        assert.match(JSON.parse(r.err).error.message, /the snapshot differs from the journal/);
      } finally {
        await kv.put(key, JSON.stringify(record));
      }
      const r = await cnm(["state", "--verify"]);
      assert.equal(r.code, 0, r.out + r.err);
    });

    await t.step("--object takes an id prefix (and a full id) for events", async () => {
      const ofWeb = events.filter((e) => e.objectId === web.id).map((e) => e.seq);
      const ofEp = events.filter((e) => e.objectId === ep.id).map((e) => e.seq);
      for (
        const [ref, want] of [
          [uniquePrefix(web.id, ids), ofWeb],
          [web.id, ofWeb],
          [uniquePrefix(ep.id, ids), ofEp],
        ] as const
      ) {
        const r = await cnm(["--format", "json", "events", "--object", ref]);
        assert.equal(r.code, 0, `${ref}: ${r.err}`);
        const got = r.out.trim().split("\n").map((l) => JSON.parse(l) as RecordedEvent);
        assert.deepEqual(got.map((e) => e.seq), want, ref);
      }
      // A table too, and the endpoint's id prefix reaches the endpoint's events only.
      let r = await cnm(["events", "--object", uniquePrefix(ep.id, ids)]);
      assert.match(r.out, new RegExp(`endpoint\\.joined\\s+endpoint ${ep.id.slice(0, 12)}`));
      assert.doesNotMatch(r.out, /sandbox /);
      const shared = ids.map((id) => id[0]).find((c, i, a) => a.indexOf(c) !== i)!;
      r = await cnm(["events", "--object", shared]);
      assert.equal(r.code, 1);
      assert.match(r.err, new RegExp(`InvalidArgumentError: id prefix ${shared} is ambiguous`));
      r = await cnm(["events", "--object", "zzz"]);
      assert.equal(r.code, 1);
      assert.match(r.err, /NotFoundError: object zzz not found/);
    });

    await t.step("--object also finds a deleted object by id prefix or name", async () => {
      const ofGone = events.filter((e) => e.objectId === gone.id).map((e) => e.seq);
      for (const ref of [gone.id.slice(0, 12), "gone"]) {
        const r = await cnm(["--format", "json", "events", "--object", ref]);
        assert.equal(r.code, 0, `${ref}: ${r.err}`);
        const got = r.out.trim().split("\n").map((l) => JSON.parse(l) as RecordedEvent);
        assert.deepEqual(got.map((e) => e.seq), ofGone, ref);
      }
    });

    // A stream long enough that reading it takes more than the bar's second.
    const big = { ...env, CNM_STREAM: "BIG", CNM_PREFIX: "big" };
    const seeded = await seedStream(nc, {
      stream: "BIG",
      prefix: "big",
      host: "h1",
      live: 300,
      total: 100_000,
    });
    const verify = `'${CNM}' state --verify`;

    await t.step("a long read draws its bar on a terminal, and clears it", async () => {
      const r = await onTerminal(verify, big);
      assert.equal(r.code, 0, r.screen);
      const bar = r.screen.match(BAR);
      assert.ok(bar, `no bar on the terminal:\n${r.screen.slice(0, 2000)}`);
      assert.equal(bar[1], "replaying");
      // The bar is cleared before the state is printed, which is not garbled by it.
      const table = r.screen.indexOf("state at #");
      assert.ok(r.screen.lastIndexOf(CLEAR, table) > r.screen.lastIndexOf("events", table));
      assert.match(
        r.screen.slice(table),
        new RegExp(`^state at #${seeded.events} \\(.+\\), ${seeded.events} events\r?\n`),
      );
      assert.match(r.screen, /snapshot: none yet \(a running controller writes it\)/);
    });

    await t.step("no bar when stderr is not a terminal; stdout stays clean", async () => {
      const piped = await cnm(["state", "--verify"], big);
      assert.equal(piped.code, 0, piped.err);
      assert.equal(piped.err, "");
      assert.ok(plain(piped.out), piped.out);
      // stderr to a file, stdout on the terminal: no bar anywhere.
      const err = `${dir}/err.txt`;
      let r = await onTerminal(`${verify} 2>'${err}'`, big);
      assert.equal(r.code, 0, r.screen);
      assert.match(r.screen, /^state at #/);
      const seen = r.screen + Deno.readTextFileSync(err);
      assert.doesNotMatch(seen, /\[[#.]{30}\]/);
      assert.ok(!seen.includes(CLEAR));
      // stdout to a file, stderr on the terminal: the bar on the terminal, not in the file.
      const out = `${dir}/out.txt`;
      r = await onTerminal(`${verify} >'${out}'`, big);
      assert.equal(r.code, 0, r.screen);
      assert.match(r.screen, BAR);
      assert.ok(plain(Deno.readTextFileSync(out)));
      assert.match(Deno.readTextFileSync(out), /^state at #/);
    });

    await t.step("history's scan for a deleted object draws its own", async () => {
      const r = await onTerminal(`'${CNM}' history gone7`, big);
      assert.equal(r.code, 0, r.screen);
      assert.equal(r.screen.match(BAR)?.[1], "scanning");
      assert.match(r.screen, /sandbox [0-9a-f]{64} "gone7"/);
    });
  } finally {
    await nc.close();
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
