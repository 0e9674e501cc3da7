/**
 * Events of kind `host` (issue 10, item 10): on `<prefix>.host.<hostId>`, the first has
 * `from: null`, like every object's first event, and later ones `from: "active"`. A fake
 * kernel that shows an orphan namespace carrying the controller's mark makes reconcile write
 * them: needs nats-server, not root.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { createController } from "../../mod.ts";
import { openJournal } from "../../src/journal/journal.ts";
import type { RecordedEvent } from "../../src/journal/events.ts";
import { ownerId } from "../../src/controller/ownership.ts";
import { startNats } from "../_harness/nats.ts";
import { fakeKernel, fakeOptions } from "../cli/_fake_kernel.ts";

Deno.test("host events (nats-server) start with from: null, then go active → active", async () => {
  const nats = await startNats();
  const dir = await Deno.makeTempDir();
  const kernel = fakeKernel();
  const orphan = `cnm-${ownerId("HE", "h1")}-0123456789ab`;
  kernel.listNetns = (prefix) => Promise.resolve(orphan.startsWith(prefix) ? [orphan] : []);
  const cnm = await createController({ ...fakeOptions(nats.url, "HE", "he", dir), kernel });
  try {
    await cnm.reconcile(); // the fake kernel never removes it: a second repair
    const nc = await connect({ servers: nats.url });
    const events: RecordedEvent[] = [];
    try {
      const j = await openJournal(nc, { stream: "HE", prefix: "he" });
      for await (const e of j.read({ subject: "he.host.h1" })) events.push(e);
    } finally {
      await nc.close();
    }
    assert.deepEqual(events.map((e) => [e.kind, e.objectId, e.type, e.from, e.to]), [
      ["host", "h1", "host.reconciled", null, "active"],
      ["host", "h1", "host.reconciled", "active", "active"],
    ]);
    assert.deepEqual(events[0].data.findings, [
      { resource: "netns", name: orphan, problem: "unexpected" },
    ]);
  } finally {
    await cnm.close();
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
