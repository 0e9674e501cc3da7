/**
 * Scale benchmark (issue 14): a 150,000-event stream with 10,000 live objects, and what an
 * operator and a controller pay on it, each next to its floor measured in the same run:
 *
 *  - `network ls`, `sandbox inspect`, `history OBJECT`: the library call and the real `./cnm`
 *    binary (floor: `./cnm --version`, the process start alone);
 *  - controller start on the stream (a cold process of its own);
 *  - events/s with 64 commands in flight at 10,000 objects and at 1,000, against raw
 *    JetStream appends with 64 in flight;
 *  - resident memory per live object at 10,000 objects.
 *
 * No root needed: a harness nats-server, a do-nothing kernel and a no-op driver, so the
 * journal, the actors and the reads are what is measured.
 *
 * Usage: `deno task bench:scale [EVENTS=150000] [LIVE=10000]`.
 *
 * @module
 */

import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { createController } from "../mod.ts";
import { startNats } from "../tests/_harness/nats.ts";
import { fakeKernel } from "../tests/cli/_fake_kernel.ts";
import { replay } from "../src/journal/replay.ts";
import { history } from "../src/journal/history.ts";
import { type CnmEvent, encodeEvent, subjectOf } from "../src/journal/events.ts";
import { streamConfig } from "../src/journal/journal.ts";
import { newEventId, newObjectId } from "../src/ids.ts";
import { benchDriver, seedStream } from "./_scale_seed.ts";
import { median } from "./_stats.ts";

const EVENTS = Number(Deno.args[0] ?? 150_000);
const LIVE = Number(Deno.args[1] ?? 10_000);
const COMMANDS = 2048;
const ROUNDS = 5;
const IN_FLIGHT = 64;
const HOST = "bench";
const CNM = new URL("../cnm", import.meta.url).pathname;
const here = new URL(".", import.meta.url).pathname;

/** Runs `n` tasks with at most `width` in flight; returns milliseconds. */
async function window(n: number, width: number, task: (i: number) => Promise<unknown>) {
  const t0 = performance.now();
  let next = 0;
  const lane = async () => {
    while (next < n) await task(next++);
  };
  await Promise.all(Array.from({ length: width }, lane));
  return performance.now() - t0;
}

async function timed(n: number, f: () => Promise<unknown>): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await f();
    samples.push(performance.now() - t0);
  }
  return median(samples);
}

async function cli(env: Record<string, string>, args: string[]): Promise<number> {
  const t0 = performance.now();
  const out = await new Deno.Command(CNM, { args, env, stdout: "piped", stderr: "piped" })
    .output();
  const ms = performance.now() - t0;
  if (out.code !== 0) {
    throw new Error(`cnm ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return ms;
}

/** Raw JetStream appends (pre-encoded events, msgID + expected last subject sequence). */
async function rawAppends(nc: NatsConnection, n: number): Promise<number> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.info("SCALE_RAW").catch(() =>
    jsm.streams.add(streamConfig("SCALE_RAW", "raw"))
  );
  const js = jetstream(nc, { timeout: 30_000 });
  const payloads = Array.from({ length: n }, (_, i) => {
    const e: CnmEvent = {
      v: 1,
      eventId: newEventId(),
      kind: "endpoint",
      objectId: newObjectId(),
      type: "endpoint.create.requested",
      from: null,
      to: "creating",
      at: new Date().toISOString(),
      host: HOST,
      data: { networkId: newObjectId(), name: `raw${i}`, labels: {}, options: {} },
      effectId: newEventId(),
    };
    return e;
  });
  const encoded = payloads.map((e) => encodeEvent(e));
  const ms = await window(n, IN_FLIGHT, async (i) => {
    const h = headers();
    h.set("Cnm-Type", payloads[i].type);
    h.set("Cnm-Kind", "endpoint");
    await js.publish(subjectOf("raw", "endpoint", payloads[i].objectId), encoded[i], {
      msgID: payloads[i].eventId,
      expect: { lastSubjectSequence: 0, streamName: "SCALE_RAW" },
      headers: h,
    });
  });
  return n / (ms / 1000);
}

/** A controller of `stream` (its snapshot writer caught up), and a way to measure its rate. */
async function openController(url: string, stream: string, prefix: string, nets: string[]) {
  const stateDir = await Deno.makeTempDir({ prefix: "cnm-scale-" });
  const cnm = await createController({
    nats: { servers: url },
    stream,
    prefix,
    hostId: HOST,
    kernel: fakeKernel(),
    drivers: [benchDriver()],
    stateDir,
    defaultBridge: false,
    // The fake kernel makes no namespaces: nothing for a DNS listener to listen in.
    embeddedDns: false,
  });
  await cnm.snapshots?.sync(60_000);
  const objects = cnm.recovery.objects;
  const tag = Math.random().toString(36).slice(2, 6);
  let round = 0;
  return {
    objects,
    /** Events/s of `COMMANDS` createEndpoint commands, 64 in flight. */
    async rate() {
      round++;
      const ms = await window(
        COMMANDS,
        IN_FLIGHT,
        (i) => cnm.createEndpoint(nets[i % nets.length], { name: `x${tag}${round}-${i}` }),
      );
      return (COMMANDS * 2) / (ms / 1000);
    },
    async close() {
      await cnm.close();
      await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    },
  };
}

/** A cold controller start in a child process. */
async function coldStart(url: string, stream: string, prefix: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      `${here}_scale_start.ts`,
      url,
      stream,
      prefix,
      HOST,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (out.code !== 0) throw new Error("controller start failed");
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!) as {
    ms: number;
    objects: number;
    events: number;
    rss1: number;
    heap1: number;
    rss2: number;
    heap2: number;
  };
}

async function main() {
  const nats = await startNats();
  const nc = await connect({ servers: nats.url });
  const rows: [string, string, string][] = [];
  const row = (what: string, value: string, floor: string) => rows.push([what, value, floor]);
  try {
    const t0 = performance.now();
    const big = await seedStream(nc, {
      stream: "SCALE",
      prefix: "scale",
      host: HOST,
      live: LIVE,
      total: EVENTS,
    });
    const seedMs = performance.now() - t0;
    console.error(
      `seeded ${big.events} events (${big.live} live objects) in ${(seedMs / 1000).toFixed(1)} s`,
    );
    const small = await seedStream(nc, {
      stream: "SCALE1K",
      prefix: "scale1k",
      host: HOST,
      live: 1000,
      total: 15_000,
    });
    await seedStream(nc, { stream: "SCALE0", prefix: "scale0", host: HOST, live: 0, total: 0 });

    // The first controller start also writes what later reads and starts use.
    const first = await coldStart(nats.url, "SCALE", "scale");
    console.error(`first controller start: ${first.ms.toFixed(0)} ms`);
    const starts: number[] = [];
    let started = first;
    for (let i = 0; i < 3; i++) {
      started = await coldStart(nats.url, "SCALE", "scale");
      starts.push(started.ms);
    }
    const empty = await coldStart(nats.url, "SCALE0", "scale0");

    const sel = { nats: nc, stream: "SCALE", prefix: "scale" };
    const name = big.sandboxes[Math.floor(big.sandboxes.length / 2)];
    // What the CLI does: the current state of the kinds it shows (snapshot + tail).
    const lsMs = await timed(
      3,
      async () => (await replay({ ...sel, kinds: ["network"] })).networks,
    );
    const stateMs = await timed(3, () => replay(sel));
    const inspectMs = await timed(3, async () => {
      const s = await replay({ ...sel, kinds: ["sandbox"] });
      const sb = s.sandboxes.find((x) => x.name === name);
      if (!sb) throw new Error(`sandbox ${name} not found`);
    });
    const historyMs = await timed(3, () => history(name, sel));
    const env = {
      CNM_NATS_URL: nats.url,
      CNM_STREAM: "SCALE",
      CNM_PREFIX: "scale",
      CNM_HOST_ID: HOST,
    };
    const floorMs = await timed(3, () => cli(env, ["--version"]));
    const lsCli = await timed(3, () => cli(env, ["network", "ls"]));
    const inspectCli = await timed(3, () => cli(env, ["sandbox", "inspect", name]));
    const historyCli = await timed(3, () => cli(env, ["history", name]));

    // Rates in rounds (raw, 1k, 10k, three times; medians), so that a change of load on this
    // shared machine hits all three alike.
    const c1k = await openController(
      nats.url,
      "SCALE1K",
      "scale1k",
      small.networks.map((n) => n.name),
    );
    const c10k = await openController(nats.url, "SCALE", "scale", big.networks.map((n) => n.name));
    const rates = { raw: [] as number[], at1k: [] as number[], at10k: [] as number[] };
    try {
      for (let r = 0; r < ROUNDS; r++) {
        rates.raw.push(await rawAppends(nc, COMMANDS * 2));
        rates.at1k.push(await c1k.rate());
        rates.at10k.push(await c10k.rate());
      }
    } finally {
      await c1k.close();
      await c10k.close();
    }
    const raw = median(rates.raw);
    const at1k = { objects: c1k.objects, eventsPerSec: median(rates.at1k) };
    const at10k = { objects: c10k.objects, eventsPerSec: median(rates.at10k) };
    // Ratios within a round (the three ran back to back), then their median.
    const vsRaw = median(rates.at10k.map((v, i) => v / rates.raw[i]));
    const vs1k = median(rates.at10k.map((v, i) => v / rates.at1k[i]));
    console.error(
      `rounds: ${JSON.stringify(rates, (_k, v) => typeof v === "number" ? Math.round(v) : v)}`,
    );

    const perObject = (k: "rss2" | "heap2") =>
      (started[k] - empty[k]) / Math.max(1, started.objects - empty.objects);
    const ms = (v: number) => `${v.toFixed(0)} ms`;
    row(`network ls, library (${big.events} events, ${big.live} live)`, ms(lsMs), "< 200 ms");
    row("network ls, ./cnm binary", ms(lsCli), `${ms(floorMs)} (./cnm --version)`);
    row("whole current state (every kind), library", ms(stateMs), "");
    row("sandbox inspect, library", ms(inspectMs), "< 200 ms");
    row("sandbox inspect, ./cnm binary", ms(inspectCli), `${ms(floorMs)} (./cnm --version)`);
    row("history OBJECT (a sandbox), library", ms(historyMs), "< 300 ms");
    row("history OBJECT, ./cnm binary", ms(historyCli), `${ms(floorMs)} (./cnm --version)`);
    row(
      `controller start (${started.objects} objects), median of 3 cold`,
      ms(median(starts)),
      `< 1000 ms (empty stream: ${ms(empty.ms)})`,
    );
    row(
      `events/s, ${IN_FLIGHT} commands in flight, at ${at10k.objects} objects (median of ${ROUNDS})`,
      at10k.eventsPerSec.toFixed(0),
      `≥ ${at1k.eventsPerSec.toFixed(0)} at ${at1k.objects} (per round: ${
        vs1k.toFixed(2)
      }×) and ≥ 0.5× raw (per round: ${vsRaw.toFixed(2)}×)`,
    );
    row(
      `raw JetStream appends/s (js.publish), ${IN_FLIGHT} in flight (median of ${ROUNDS})`,
      raw.toFixed(0),
      "",
    );
    row(
      `memory per live object at ${started.objects} (rss / heap)`,
      `${(perObject("rss2") / 1024).toFixed(1)} KB / ${(perObject("heap2") / 1024).toFixed(1)} KB`,
      "< 10 KB",
    );
    console.log(`\nscale: ${big.events}-event stream, ${big.live} live objects\n`);
    console.log("| measure | value | floor / target |");
    console.log("|---|---:|---|");
    for (const [a, b, c] of rows) console.log(`| ${a} | ${b} | ${c} |`);
  } finally {
    await nc.close();
    await nats.cleanup();
  }
}

if (import.meta.main) await main();
