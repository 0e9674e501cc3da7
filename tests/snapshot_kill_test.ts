/**
 * Snapshots survive kill -9 (needs nats-server): a controller is killed while it appends and
 * while its snapshot writer flushes; the snapshot it left plus the events after it still give
 * the state a fold from the first event gives, and the next controller starts from it.
 */
import assert from "node:assert/strict";
import { createController } from "../mod.ts";
import { startNats } from "./_harness/nats.ts";
import { fakeOptions, noopDriver } from "./cli/_fake_kernel.ts";
import { verifySnapshot } from "../src/journal/verify.ts";

const CHILD = new URL("./_harness/snapshot_child.ts", import.meta.url).pathname;

Deno.test("snapshot (needs nats-server) left by a controller killed mid-flight equals the fold of every event", async () => {
  const nats = await startNats();
  const dir = await Deno.makeTempDir();
  try {
    for (let round = 0; round < 3; round++) {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", CHILD, nats.url, dir, String(round + 1)],
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const reader = child.stdout.getReader();
      await reader.read(); // "ready"
      await new Promise((r) => setTimeout(r, 400 + round * 200));
      child.kill("SIGKILL");
      await child.status;
      reader.releaseLock();
      await child.stdout.cancel().catch(() => {});
      const check = await verifySnapshot({ nats: { servers: nats.url }, stream: "K", prefix: "k" });
      assert.equal(check.result, "matches", `round ${round}: ${check.differences.join("\n")}`);
      await new Promise((r) => setTimeout(r, 700)); // the dead controller's leases lapse
      const ctl = await createController({
        ...fakeOptions(nats.url, "K", "k", dir),
        drivers: [noopDriver()],
        leaseTtlMs: 500,
        leaseWaitMs: 5000,
      });
      try {
        assert.equal(ctl.recovery.source, "snapshot");
        assert.deepEqual(ctl.recovery.warnings, []);
        const busy = [...ctl.endpoints(), ...ctl.sandboxes()]
          .filter((o) => ["creating", "joining", "leaving", "deleting"].includes(o.state));
        assert.deepEqual(busy, [], "nothing is left mid-transition after recovery");
        assert.equal(await ctl.snapshots?.sync(), true);
      } finally {
        await ctl.close();
      }
    }
  } finally {
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
