/**
 * One cold controller start for the scale benchmark, in a process of its own so memory and
 * start time are not polluted by the benchmark's other work. Prints one JSON line:
 * `{ ms, objects, events, rss0, rss1, heap0, heap1, rss2, heap2 }` (bytes; `*0` before
 * connecting, `*1` once the controller is ready, `*2` after 3 s idle; each after a full GC).
 *
 * Usage: `deno run -A --v8-flags=--expose-gc bench/_scale_start.ts URL STREAM PREFIX HOST`.
 *
 * @module
 */

import { createController } from "../mod.ts";
import { fakeKernel } from "../tests/cli/_fake_kernel.ts";
import { benchDriver } from "./_scale_seed.ts";

const [url, stream, prefix, host] = Deno.args;
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
const stateDir = await Deno.makeTempDir({ prefix: "cnm-scale-" });
gc();
const m0 = Deno.memoryUsage();
const t0 = performance.now();
const cnm = await createController({
  nats: { servers: url },
  stream,
  prefix,
  hostId: host,
  kernel: fakeKernel(),
  drivers: [benchDriver()],
  stateDir,
  defaultBridge: false,
  // The fake kernel makes no namespaces: nothing for a DNS listener to listen in.
  embeddedDns: false,
});
const ms = performance.now() - t0;
// Resident memory of a running controller, past the start-up peak: idle a moment, collect.
await new Promise((r) => setTimeout(r, 200));
gc();
const m1 = Deno.memoryUsage();
await new Promise((r) => setTimeout(r, 3000));
gc();
gc();
const m2 = Deno.memoryUsage();
console.log(JSON.stringify({
  ms,
  objects: cnm.recovery.objects,
  events: cnm.recovery.events,
  rss0: m0.rss,
  rss1: m1.rss,
  heap0: m0.heapUsed,
  heap1: m1.heapUsed,
  rss2: m2.rss,
  heap2: m2.heapUsed,
  total0: m0.heapTotal,
  total2: m2.heapTotal,
  ext0: m0.external,
  ext2: m2.external,
}));
await cnm.close();
await Deno.remove(stateDir, { recursive: true }).catch(() => {});
