/**
 * One cold controller start for the scale benchmark, in a process of its own so memory and
 * start time are not polluted by the benchmark's other work. Prints one JSON line:
 * `{ ms, objects, events, rss0, rss1, heap0, heap1 }` (bytes; `*0` before connecting, `*1`
 * once the controller is ready, both after a full GC).
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
});
const ms = performance.now() - t0;
await new Promise((r) => setTimeout(r, 200));
gc();
gc();
const m1 = Deno.memoryUsage();
console.log(JSON.stringify({
  ms,
  objects: cnm.recovery.objects,
  events: cnm.recovery.events,
  rss0: m0.rss,
  rss1: m1.rss,
  heap0: m0.heapUsed,
  heap1: m1.heapUsed,
}));
await cnm.close();
await Deno.remove(stateDir, { recursive: true }).catch(() => {});
