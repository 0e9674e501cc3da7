import assert from "node:assert/strict";
import { connect, headers } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { firstValueFrom, take, toArray } from "rxjs";
import { createController } from "../mod.ts";
import { startNats } from "./_harness/nats.ts";
import { watch } from "../src/journal/watch.ts";
import type { RecordedEvent } from "../src/journal/events.ts";
import { fakeOptions } from "./cli/_fake_kernel.ts";

Deno.test("watch (needs nats-server) follows live events, filters by kind and resumes from a sequence", async () => {
  const nats = await startNats();
  const dir = await Deno.makeTempDir();
  try {
    const cnm = await createController(fakeOptions(nats.url, "W1", "w1", dir));
    const seen: RecordedEvent[] = [];
    const sub = watch({
      nats: { servers: nats.url },
      stream: "W1",
      prefix: "w1",
      kinds: ["sandbox"],
    })
      .subscribe((e) => seen.push(e));
    await new Promise((r) => setTimeout(r, 200));
    const sb = await cnm.createSandbox({ name: "c1" });
    await cnm.createEndpoint("none", { name: "e1" });
    for (let i = 0; i < 50 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    sub.unsubscribe();
    assert.deepEqual(seen.map((e) => e.type), ["sandbox.create.requested", "sandbox.created"]);
    assert.ok(seen.every((e) => e.objectId === sb.id && e.seq > 0));

    // Resume from the sandbox's first event: the same two, then the endpoint's.
    const resumed = await firstValueFrom(
      watch({ nats: { servers: nats.url }, stream: "W1", prefix: "w1", since: seen[0].seq })
        .pipe(take(4), toArray()),
    );
    assert.deepEqual(resumed.map((e) => e.type), [
      "sandbox.create.requested",
      "sandbox.created",
      "endpoint.create.requested",
      "endpoint.created",
    ]);
    const byObject = await firstValueFrom(
      watch({ nats: { servers: nats.url }, stream: "W1", prefix: "w1", objectId: sb.id, since: 1 })
        .pipe(take(2), toArray()),
    );
    assert.deepEqual(byObject.map((e) => e.objectId), [sb.id, sb.id]);
    await cnm.close();
  } finally {
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watch (needs nats-server) passes unknown future event types through with their envelope", async () => {
  const nats = await startNats();
  const nc = await connect({ servers: nats.url });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "W2", subjects: ["w2.>"] });
    const future = {
      v: 1,
      eventId: "e1",
      kind: "host",
      objectId: "h9",
      type: "host.rebooted",
      from: "up",
      to: "up",
      at: new Date().toISOString(),
      host: "h9",
      data: { reason: "kernel upgrade" },
    };
    await jetstream(nc).publish("w2.host.h9", JSON.stringify(future), { headers: headers() });
    await jetstream(nc).publish("w2.host.h9", "not json");
    const invalid: number[] = [];
    const got = await firstValueFrom(
      watch({
        nats: nc,
        stream: "W2",
        prefix: "w2",
        since: 1,
        onInvalid: (_e, seq) => invalid.push(seq),
      })
        .pipe(take(1), toArray()),
    );
    assert.deepEqual(got[0].type, "host.rebooted");
    assert.deepEqual(got[0].data, { reason: "kernel upgrade" });
  } finally {
    await nc.close();
    await nats.cleanup();
  }
});
