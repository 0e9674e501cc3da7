/**
 * A controller (fake kernel) running a concurrent workload — sandboxes, endpoints, joins,
 * leaves, deletes — until it is killed; for tests that kill -9 it mid-flight.
 * Usage: `deno run -A snapshot_child.ts URL STATE_DIR SEED`; prints "ready" once started.
 *
 * @module
 */
import { createController } from "../../mod.ts";
import { fakeOptions, noopDriver } from "../cli/_fake_kernel.ts";
const [url, dir, seedArg] = Deno.args;
const opts = {
  ...fakeOptions(url, "K", "k", dir),
  drivers: [noopDriver()],
  leaseTtlMs: 500,
  leaseWaitMs: 5000,
};
const cnm = await createController(opts);
if (!cnm.network("n")) await cnm.createNetwork({ name: "n", driver: "noop" });
let rnd = Number(seedArg);
const r = () => (rnd = (rnd * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
console.log("ready");
let i = 0;
await Promise.all(Array.from({ length: 8 }, async () => {
  for (;;) {
    const k = `${seedArg}-${i++}`;
    try {
      const sb = await cnm.createSandbox({ name: `s${k}` });
      const ep = await cnm.createEndpoint("n", { name: `e${k}` });
      await cnm.join(ep.id, sb.id);
      if (r() < 0.5) await cnm.leave(ep.id, sb.id);
      if (r() < 0.5) await cnm.deleteSandbox(sb.id);
    } catch (e) {
      console.error("op", (e as Error).message);
    }
  }
}));
