/**
 * The forwarder against small upstreams on loopback in the test's own namespace (no root):
 * the order of upstreams, SERVFAIL/REFUSED moving on, timeouts, the id restored, replies
 * from the wrong server ignored, the in-flight cap, and TCP.
 */

import assert from "node:assert/strict";
import { createForwarder, type Upstream } from "../../src/dns/forwarder.ts";
import { asBuffer, decode, encode, FLAG, RCODE } from "../../src/dns/_packet.ts";

type Behaviour = "answer" | "servfail" | "silent" | "spoof";

/** A UDP upstream on 127.0.0.1 that behaves as told; `close()` stops it. */
function upstream(behaviour: Behaviour, data = "203.0.113.7") {
  const conn = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const spoofer = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  let seen = 0;
  const loop = (async () => {
    try {
      for (;;) {
        const [bytes, from] = await conn.receive();
        seen++;
        const q = decode(asBuffer(bytes));
        if (behaviour === "silent") continue;
        const reply = encode({
          type: "response",
          id: q.id,
          flags: behaviour === "servfail" ? RCODE.SERVFAIL : FLAG.AA,
          questions: q.questions,
          answers: behaviour === "servfail"
            ? []
            : [{ type: "A", name: q.questions![0].name, ttl: 5, data }],
        });
        // "spoof": the right id, but from another port than the one asked
        await (behaviour === "spoof" ? spoofer : conn).send(reply, from);
      }
    } catch { /* closed */ }
  })();
  return {
    up: { address: "127.0.0.1", port: (conn.addr as Deno.NetAddr).port } as Upstream,
    get seen() {
      return seen;
    },
    async close() {
      conn.close();
      spoofer.close();
      await loop;
    },
  };
}

const query = (name: string, id = 777) =>
  encode({ type: "query", id, flags: FLAG.RD, questions: [{ type: "A", name }] });

Deno.test("forwarder tries upstreams in order and restores the client's id", async (t) => {
  const ok = upstream("answer");
  const bad = upstream("servfail");
  const mute = upstream("silent");
  const spoof = upstream("spoof");
  const fwd = createForwarder({ timeoutMs: 150 });
  try {
    await t.step("the first that answers wins; the reply carries the client's id", async () => {
      const r = await fwd.forward(query("a.test", 4321), [ok.up, bad.up], "udp");
      assert.equal(r.kind, "reply");
      const reply = decode(asBuffer((r as { bytes: Uint8Array }).bytes));
      assert.equal(reply.id, 4321);
      assert.deepEqual(reply.answers?.map((a) => (a as { data: string }).data), ["203.0.113.7"]);
      assert.equal(bad.seen, 0, "the second was not asked");
    });
    await t.step("SERVFAIL and silence move on to the next", async () => {
      const r = await fwd.forward(query("b.test"), [bad.up, mute.up, ok.up], "udp");
      assert.equal(r.kind, "reply");
      assert.equal((r as { from: string }).from, `127.0.0.1:${ok.up.port}`);
    });
    await t.step("no answer from any: failed, naming what was tried", async () => {
      const t0 = performance.now();
      const r = await fwd.forward(query("c.test"), [bad.up, mute.up], "udp");
      assert.deepEqual(r, {
        kind: "failed",
        tried: [`127.0.0.1:${bad.up.port}`, `127.0.0.1:${mute.up.port}`],
      });
      assert.ok(performance.now() - t0 >= 140, "gave up before the timeout");
    });
    await t.step("a reply from another address than the one asked is ignored", async () => {
      const r = await fwd.forward(query("d.test"), [spoof.up], "udp");
      assert.equal(r.kind, "failed");
      assert.equal(spoof.seen, 1);
    });
    await t.step("at most 3 upstreams are asked", async () => {
      const before = mute.seen;
      const r = await fwd.forward(query("e.test"), [mute.up, mute.up, mute.up, ok.up], "udp");
      assert.equal(r.kind, "failed");
      assert.equal(mute.seen - before, 3);
    });
  } finally {
    fwd.close();
    for (const u of [ok, bad, mute, spoof]) await u.close();
  }
});

Deno.test("forwarder refuses beyond its in-flight cap", async () => {
  const mute = upstream("silent");
  const fwd = createForwarder({ timeoutMs: 100, maxConcurrent: 2 });
  try {
    const pending = [
      fwd.forward(query("x"), [mute.up], "udp"),
      fwd.forward(query("y"), [mute.up], "udp"),
    ];
    assert.equal(fwd.inFlight, 2);
    assert.deepEqual(await fwd.forward(query("z"), [mute.up], "udp"), { kind: "refused" });
    assert.deepEqual((await Promise.all(pending)).map((r) => r.kind), ["failed", "failed"]);
    assert.equal(fwd.inFlight, 0);
  } finally {
    fwd.close();
    await mute.close();
  }
});

Deno.test("forwarder forwards over TCP", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    const head = new Uint8Array(2);
    await conn.read(head);
    const body = new Uint8Array((head[0] << 8) | head[1]);
    for (let got = 0; got < body.length;) got += (await conn.read(body.subarray(got))) ?? 0;
    const q = decode(asBuffer(body));
    const reply = encode({
      type: "response",
      id: q.id,
      questions: q.questions,
      answers: Array.from({ length: 80 }, (_, i) => ({
        type: "A" as const,
        name: "big.test",
        ttl: 5,
        data: `203.0.113.${i + 1}`,
      })),
    });
    const frame = new Uint8Array(2 + reply.length);
    frame.set([reply.length >> 8, reply.length & 0xff]);
    frame.set(reply, 2);
    await conn.write(frame);
    conn.close();
  })();
  const fwd = createForwarder({ timeoutMs: 1000 });
  try {
    const port = (listener.addr as Deno.NetAddr).port;
    const r = await fwd.forward(query("big.test", 99), [{ address: "127.0.0.1", port }], "tcp");
    assert.equal(r.kind, "reply");
    const reply = decode(asBuffer((r as { bytes: Uint8Array }).bytes));
    assert.equal(reply.id, 99);
    assert.equal(reply.answers?.length, 80);
    await served;
    listener.close();
    const t0 = performance.now();
    const refused = await fwd.forward(query("big.test"), [{ address: "127.0.0.1", port }], "tcp");
    assert.equal(refused.kind, "failed", "nothing listens any more");
    assert.ok(performance.now() - t0 < 500, "a refused connection did not fail at once");
  } finally {
    try {
      listener.close();
    } catch { /* closed above */ }
    fwd.close();
  }
});
