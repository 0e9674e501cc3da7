/**
 * Replay benchmark: appends 100,000 realistic events to a throwaway stream on a harness
 * nats-server, then measures in the same run
 *  - a raw ordered consumer reading the whole stream (no decoding),
 *  - `replay()` of the whole stream (decode, validate, fold, build the state),
 *  - time travel to the middle by sequence and by time.
 *
 * Run: `deno run -A bench/replay.ts [events]`.
 *
 * @module
 */

import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { startNats } from "../tests/_harness/nats.ts";
import { streamConfig } from "../src/journal/journal.ts";
import { type CnmEvent, subjectOf } from "../src/journal/events.ts";
import { replay } from "../src/journal/replay.ts";

const STREAM = "BENCH_REPLAY";
const PREFIX = "bench";

let counter = 0;
const id = () => (++counter).toString(16).padStart(32, "0");

/** Yields a plausible journal: networks, then container lifecycles (some left running). */
export function* syntheticEvents(total: number, start = Date.now() - total): Generator<CnmEvent> {
  let n = 0;
  const at = () => new Date(start + n).toISOString();
  const ev = (
    kind: string,
    objectId: string,
    type: string,
    from: string | null,
    to: string,
    data: Record<string, unknown>,
    cause?: string,
  ): CnmEvent => ({
    v: 1,
    eventId: id(),
    kind,
    objectId,
    type,
    from,
    to,
    at: at(),
    host: "bench",
    data,
    effectId: id(),
    ...(cause ? { cause } : {}),
  });
  const networks: string[] = [];
  for (let i = 0; i < 50 && n < total; i++) {
    const net = id();
    networks.push(net);
    const req = ev("network", net, "network.create.requested", null, "creating", {
      name: `net${i}`,
      driver: "null",
      scope: "local",
      internal: false,
      enableIPv6: false,
      labels: {},
      options: {},
    });
    n++, yield req;
    n++,
      yield ev(
        "network",
        net,
        "network.created",
        "creating",
        "active",
        { elapsedMs: 1 },
        req.eventId,
      );
  }
  for (let c = 0; n < total; c++) {
    const sb = id(), ep = id();
    const steps: [string, string, string, string | null, string, Record<string, unknown>][] = [
      ["sandbox", sb, "sandbox.create.requested", null, "creating", {
        name: `c${c}`,
        key: `/var/run/netns/b${c}`,
        owned: true,
        labels: {},
      }],
      ["sandbox", sb, "sandbox.created", "creating", "ready", { elapsedMs: 2 }],
      ["endpoint", ep, "endpoint.create.requested", null, "creating", {
        networkId: networks[c % networks.length],
        name: `c${c}-ep`,
        labels: {},
        options: {},
        ipv4Address: `10.${(c >> 16) & 255}.${(c >> 8) & 255}.${c & 255}/8`,
      }],
      ["endpoint", ep, "endpoint.created", "creating", "created", { elapsedMs: 1 }],
      ["endpoint", ep, "endpoint.join.requested", "created", "joining", {
        sandboxId: sb,
        ifname: "eth0",
      }],
      ["endpoint", ep, "endpoint.joined", "joining", "joined", { elapsedMs: 3 }],
    ];
    if (c % 10 !== 0) {
      steps.push(
        ["endpoint", ep, "endpoint.leave.requested", "joined", "leaving", { sandboxId: sb }],
        ["endpoint", ep, "endpoint.left", "leaving", "created", { elapsedMs: 1 }],
        ["endpoint", ep, "endpoint.delete.requested", "created", "deleting", { force: false }],
        ["endpoint", ep, "endpoint.deleted", "deleting", "deleted", { elapsedMs: 1 }],
        ["sandbox", sb, "sandbox.delete.requested", "ready", "deleting", {}],
        ["sandbox", sb, "sandbox.deleted", "deleting", "deleted", { elapsedMs: 1 }],
      );
    }
    let intent = "";
    for (const [kind, oid, type, from, to, data] of steps) {
      if (n >= total) return;
      const e = ev(
        kind,
        oid,
        type,
        from,
        to,
        data,
        type.endsWith(".requested") ? undefined : intent,
      );
      if (type.endsWith(".requested")) intent = e.eventId;
      n++, yield e;
    }
  }
}

/** Appends `events` with up to `inFlight` publishes awaiting their PubAck. */
export async function appendAll(
  nc: NatsConnection,
  prefix: string,
  events: Iterable<CnmEvent>,
  inFlight = 1000,
): Promise<number> {
  const js = jetstream(nc, { timeout: 30_000 });
  const enc = new TextEncoder();
  let pending: Promise<unknown>[] = [];
  let count = 0;
  for (const e of events) {
    const h = headers();
    h.set("Cnm-Type", e.type);
    h.set("Cnm-Kind", e.kind);
    pending.push(js.publish(subjectOf(prefix, e.kind, e.objectId), enc.encode(JSON.stringify(e)), {
      msgID: e.eventId,
      headers: h,
    }));
    count++;
    if (pending.length >= inFlight) {
      await Promise.all(pending);
      pending = [];
    }
  }
  await Promise.all(pending);
  return count;
}

/** Reads the whole stream with an ordered consumer, touching nothing but the sequence. */
async function rawRead(nc: NatsConnection): Promise<number> {
  const js = jetstream(nc);
  const consumer = await js.consumers.get(STREAM, { filter_subjects: `${PREFIX}.>` });
  const messages = await consumer.consume({ max_messages: 4096 });
  let n = 0;
  for await (const m of messages) {
    n++;
    if (m.info.pending === 0) break;
  }
  messages.stop();
  await consumer.delete().catch(() => {});
  return n;
}

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await f();
  return [r, performance.now() - t0];
}

/** Runs the benchmark and prints a table. */
export async function main(total = 100_000): Promise<void> {
  const server = await startNats();
  const nc = await connect({ servers: server.url });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add(streamConfig(STREAM, PREFIX));
    const start = Date.now() - total;
    const [appended, appendMs] = await timed(() =>
      appendAll(nc, PREFIX, syntheticEvents(total, start))
    );
    const rows: Record<string, string>[] = [];
    const row = (what: string, events: number, ms: number, note = "") =>
      rows.push({
        what,
        events: String(events),
        ms: ms.toFixed(0),
        "events/s": Math.round(events / (ms / 1000)).toLocaleString("en-US"),
        note,
      });
    row("append (1000 in flight)", appended, appendMs);
    // Warm both paths once (JIT, connection), then measure.
    await rawRead(nc);
    await replay({ nats: nc, stream: STREAM, prefix: PREFIX, until: 2000 });
    const [rawN, rawMs] = await timed(() => rawRead(nc));
    row("raw ordered consumer", rawN, rawMs);
    const [state, replayMs] = await timed(() =>
      replay({ nats: nc, stream: STREAM, prefix: PREFIX })
    );
    const ratio = (state.events / replayMs) / (rawN / rawMs);
    row("replay() to the end", state.events, replayMs, `ratio ${ratio.toFixed(2)} of raw`);
    const [full, fullMs] = await timed(() =>
      replay({ nats: nc, stream: STREAM, prefix: PREFIX, verify: true })
    );
    const fullRatio = (full.events / fullMs) / (rawN / rawMs);
    row(
      "replay({ verify: true })",
      full.events,
      fullMs,
      `ratio ${fullRatio.toFixed(2)}; folds all`,
    );
    const mid = Math.floor(total / 2);
    const [bySeq, seqMs] = await timed(() =>
      replay({ nats: nc, stream: STREAM, prefix: PREFIX, until: mid })
    );
    row(`time travel to seq ${mid}`, bySeq.events, seqMs, `${bySeq.endpoints.length} endpoints`);
    const midTime = new Date(start + mid).toISOString();
    const [byTime, timeMs] = await timed(() =>
      replay({ nats: nc, stream: STREAM, prefix: PREFIX, until: midTime })
    );
    row(`time travel to ${midTime}`, byTime.events, timeMs, `seq ${byTime.seq}`);
    console.log(`replay benchmark (${total} events, nats-server on loopback)`);
    console.table(rows);
    if (state.warnings.length) console.log(`warnings: ${state.warnings.length}`);
  } finally {
    await nc.close();
    await server.cleanup();
  }
}

if (import.meta.main) await main(Number(Deno.args[0] ?? 100_000));
