/**
 * The journal's side of the controller: events appended per second (sequential commands and
 * many in flight) and restart time with many objects — the numbers behind issue 2.
 *
 * Usage (root): `deno run -A bench/journal.ts [OBJECTS=1000]`. A throwaway nats-server and
 * host namespace; endpoints on the `none` network (no kernel work), so the journal and the
 * actors are what is measured.
 *
 * @module
 */

import { createController } from "../mod.ts";
import { startNats } from "../tests/_harness/nats.ts";
import { createTestHost } from "../tests/_harness/netns.ts";
import { median } from "./_stats.ts";

const OBJECTS = Number(Deno.args[0] ?? 1000);

async function main() {
  const host = await createTestHost("bj");
  const nats = await startNats();
  const stateDir = await Deno.makeTempDir({ prefix: "cnm-bench-" });
  const options = {
    nats: { servers: nats.url },
    stream: "BJ",
    prefix: "bj",
    hostId: "bench",
    kernel: { hostNamespace: host.path },
    namePrefix: `${host.prefix}-`,
    stateDir,
    defaultBridge: false,
  };
  try {
    const cnm = await createController(options);
    // Sequential: each createEndpoint is two durable appends (intent, outcome).
    let t0 = performance.now();
    const half = Math.floor(OBJECTS / 2);
    for (let i = 0; i < half; i++) await cnm.createEndpoint("none", { name: `s${i}` });
    const seqMs = performance.now() - t0;
    // Concurrent: 64 commands in flight on different objects.
    t0 = performance.now();
    for (let i = half; i < OBJECTS; i += 64) {
      const batch = [];
      for (let j = i; j < Math.min(OBJECTS, i + 64); j++) {
        batch.push(cnm.createEndpoint("none", { name: `c${j}` }));
      }
      await Promise.all(batch);
    }
    const parMs = performance.now() - t0;
    await cnm.close();
    const restarts: number[] = [];
    let recovered = 0, events = 0;
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      const again = await createController(options);
      restarts.push(performance.now() - t);
      recovered = again.recovery.objects;
      events = again.recovery.events;
      await again.close();
    }
    console.log(`\njournal, ${OBJECTS} endpoints on "none" (2 events each)\n`);
    console.log("| measure | value |");
    console.log("|---|---:|");
    console.log(`| events/s, sequential commands | ${(half * 2 / (seqMs / 1000)).toFixed(0)} |`);
    console.log(
      `| events/s, 64 commands in flight | ${((OBJECTS - half) * 2 / (parMs / 1000)).toFixed(0)} |`,
    );
    console.log(`| ms per sequential command (2 appends) | ${(seqMs / half).toFixed(2)} |`);
    console.log(
      `| restart with ${recovered} objects / ${events} events, median of 5 (ms) | ${
        median(restarts).toFixed(0)
      } |`,
    );
  } finally {
    await nats.cleanup();
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    await host.cleanup();
  }
}

if (import.meta.main) await main();
