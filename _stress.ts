import { createController } from "./mod.ts";
import { startNats } from "./tests/_harness/nats.ts";
import { fakeOptions, noopDriver } from "./tests/cli/_fake_kernel.ts";
import { verifySnapshot } from "./src/journal/verify.ts";
const nats = await startNats();
const dir = await Deno.makeTempDir();
const opts = { ...fakeOptions(nats.url, "X", "x", dir), drivers: [noopDriver()] };
let cnm = await createController(opts);
await cnm.createNetwork({ name: "n", driver: "noop" });
let rnd = 42; const r = () => (rnd = (rnd * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
for (let round = 0; round < 6; round++) {
  const ops: Promise<unknown>[] = [];
  for (let i = 0; i < 40; i++) {
    ops.push((async () => {
      const sb = await cnm.createSandbox({ name: `s${round}-${i}` });
      const ep = await cnm.createEndpoint("n", { name: `e${round}-${i}` });
      await cnm.join(ep.id, sb.id);
      if (r() < 0.5) await cnm.leave(ep.id, sb.id);
      if (r() < 0.5) await cnm.deleteSandbox(sb.id);
    })().catch((e) => console.error("op", e.message)));
  }
  await Promise.all(ops);
  if (round % 2 === 1) { await cnm.close(); cnm = await createController(opts); console.log("restart", cnm.recovery.source, cnm.recovery.tail); }
  const c = await verifySnapshot({ nats: { servers: nats.url }, stream: "X", prefix: "x" });
  console.log(round, c.result, c.snapshotSeq, c.tail, c.differences.slice(0, 3));
}
await cnm.close(); await nats.cleanup();
