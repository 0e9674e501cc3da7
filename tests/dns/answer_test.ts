import assert from "node:assert/strict";
import { answerQuery, type Outcome, reverseAddress } from "../../src/dns/answer.ts";
import {
  asBuffer,
  decode,
  type DecodedPacket,
  encode,
  FLAG,
  type Packet,
} from "../../src/dns/_packet.ts";
import { createDnsRecords } from "../../src/dns/records.ts";
import { addHolders } from "./_holders.ts";

function records() {
  const r = createDnsRecords();
  r.setNetwork({ id: "nf", name: "front", driver: "bridge", internal: false });
  r.setNetwork({ id: "ni", name: "vault", driver: "bridge", internal: true });
  for (const [id, name] of [["s1", "web"], ["s2", "db"], ["s3", "secret"]]) {
    r.setSandbox({ id, name });
  }
  r.setEndpoint({
    id: "e1",
    networkId: "nf",
    sandboxId: "s1",
    state: "joined",
    ipv4Address: "10.1.0.2/24",
  });
  r.setEndpoint({
    id: "e2",
    networkId: "nf",
    sandboxId: "s2",
    state: "joined",
    ipv4Address: "10.1.0.3/24",
    ipv6Address: "fd00::3/64",
  });
  r.setEndpoint({
    id: "e3",
    networkId: "ni",
    sandboxId: "s3",
    state: "joined",
    ipv4Address: "10.9.0.2/24",
  });
  return r;
}

const query = (name: string, type = "A", extra: Partial<Packet> = {}) =>
  encode({
    type: "query",
    id: 4242,
    flags: FLAG.RD,
    questions: [{ type: type as "A", name, class: "IN" }],
    ...extra,
  });

/** A decoded reply, loosely typed for assertions. */
interface Reply extends Omit<DecodedPacket, "answers"> {
  rcode?: string;
  answers?: { type: string; name: string; ttl?: number; data: unknown }[];
}

function reply(out: Outcome): Reply {
  assert.equal(out.kind, "answer", `expected an answer, got ${out.kind}`);
  return decode(asBuffer((out as { bytes: Uint8Array }).bytes)) as unknown as Reply;
}

const base = { records: records(), sandboxId: "s1", transport: "udp" as const };

Deno.test("answerQuery answers local names", async (t) => {
  await t.step("A with TTL 600, ra and rd set, the question's case kept", () => {
    const r = reply(answerQuery(query("DB"), base));
    assert.equal(r.id, 4242);
    assert.equal(r.rcode, "NOERROR");
    assert.equal(r.flag_ra, true);
    assert.equal(r.flag_rd, true);
    assert.deepEqual(
      r.answers?.map((a) => [a.type, a.name, a.ttl, a.data]),
      [["A", "DB", 600, "10.1.0.3"]],
    );
  });
  await t.step("AAAA of a dual-stack name", () => {
    const r = reply(answerQuery(query("db", "AAAA"), base));
    assert.deepEqual(r.answers?.map((a) => a.data), ["fd00::3"]);
  });
  await t.step("AAAA of an IPv4-only name: NOERROR with no answers, not forwarded", () => {
    const r = reply(answerQuery(query("web", "AAAA"), base));
    assert.equal(r.rcode, "NOERROR");
    assert.deepEqual(r.answers, []);
  });
  await t.step("MX (another type) of a local name: NOERROR, no answers", () => {
    const r = reply(answerQuery(query("web", "MX"), base));
    assert.equal(r.rcode, "NOERROR");
    assert.deepEqual(r.answers, []);
  });
  await t.step("ANY gives both families", () => {
    const r = reply(answerQuery(query("db", "ANY"), base));
    assert.deepEqual(r.answers?.map((a) => a.type).sort(), ["A", "AAAA"]);
  });
  await t.step("PTR of a local address", () => {
    const r = reply(answerQuery(query("3.0.1.10.in-addr.arpa", "PTR"), base));
    assert.deepEqual(r.answers?.map((a) => [a.type, a.data]), [["PTR", "db.front"]]);
    const r6 = reply(answerQuery(query(`3${".0".repeat(29)}.d.f.ip6.arpa`, "PTR"), base));
    assert.deepEqual(r6.answers?.map((a) => a.data), ["db.front"]);
  });
  await t.step("an EDNS query gets an OPT record back", () => {
    const q = query("db", "A", {
      additionals: [
        { type: "OPT", name: ".", udpPayloadSize: 1232, flags: 0, options: [] } as never,
      ],
    });
    const r = reply(answerQuery(q, base));
    assert.equal(r.additionals?.[0]?.type, "OPT");
  });
});

Deno.test("answerQuery forwards or refuses what is not local", async (t) => {
  await t.step("an unknown name is forwarded", () => {
    const out = answerQuery(query("example.test"), base);
    assert.equal(out.kind, "forward");
    assert.equal(
      (out as { query: DecodedPacket }).query.questions?.[0].name,
      "example.test",
    );
  });
  await t.step("a PTR of an address the asker cannot see is forwarded", () => {
    assert.equal(answerQuery(query("2.0.9.10.in-addr.arpa", "PTR"), base).kind, "forward");
  });
  await t.step("a sandbox only on internal networks gets SERVFAIL, never a forward", () => {
    const r = reply(answerQuery(query("example.test"), { ...base, sandboxId: "s3" }));
    assert.equal(r.rcode, "SERVFAIL");
    assert.equal(
      reply(answerQuery(query("secret"), { ...base, sandboxId: "s3" })).rcode,
      "NOERROR",
    );
  });
  await t.step("ndots set: an unknown single label is NOERROR/empty", () => {
    const r = reply(answerQuery(query("nosuch"), { ...base, ndotsSet: true }));
    assert.equal(r.rcode, "NOERROR");
    assert.deepEqual(r.answers, []);
    assert.equal(answerQuery(query("no.such"), { ...base, ndotsSet: true }).kind, "forward");
    assert.equal(answerQuery(query("nosuch"), base).kind, "forward");
  });
  await t.step("not a query, or garbage: dropped", () => {
    assert.equal(answerQuery(new Uint8Array([1, 2, 3]), base).kind, "drop");
    const resp = encode({ type: "response", id: 1, questions: [{ type: "A", name: "x" }] });
    assert.equal(answerQuery(resp, base).kind, "drop");
  });
  await t.step("another opcode: NOTIMP; two questions: FORMERR", () => {
    const notify = encode({
      type: "query",
      id: 1,
      flags: 4 << 11,
      questions: [{ type: "A", name: "x" }],
    });
    assert.equal(reply(answerQuery(notify, base)).rcode, "NOTIMP");
    const two = encode({
      type: "query",
      id: 1,
      questions: [{ type: "A", name: "web" }, { type: "A", name: "db" }],
    });
    assert.equal(reply(answerQuery(two, base)).rcode, "FORMERR");
  });
});

Deno.test("answerQuery shuffles the holders of a name", () => {
  const r = createDnsRecords();
  r.setNetwork({ id: "n", name: "n", driver: "bridge", internal: false });
  addHolders(r, { networkId: "n", tag: "s", alias: "api", count: 5, subnet: "10.0.0", first: 2 });
  const orders = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const a = reply(answerQuery(query("api"), { records: r, sandboxId: "s0", transport: "udp" }));
    assert.equal(a.answers?.length, 5);
    orders.add(a.answers!.map((x) => x.data).join(","));
  }
  assert.ok(orders.size > 5, `only ${orders.size} orders in 50 answers`);
});

Deno.test("answerQuery truncates large UDP answers and sets tc", async (t) => {
  const r = createDnsRecords();
  r.setNetwork({ id: "n", name: "n", driver: "bridge", internal: false });
  addHolders(r, { networkId: "n", tag: "s", alias: "many", count: 60, subnet: "10.0.0", first: 2 });
  const opts = { records: r, sandboxId: "s0" };
  await t.step("UDP without EDNS: at most 512 bytes, tc set", () => {
    const out = answerQuery(query("many"), { ...opts, transport: "udp" });
    assert.ok((out as { bytes: Uint8Array }).bytes.byteLength <= 512);
    const a = reply(out);
    assert.equal(a.flag_tc, true);
    assert.ok(a.answers!.length > 0 && a.answers!.length < 60, `${a.answers!.length} answers`);
  });
  await t.step("UDP with a large EDNS size: everything, no tc", () => {
    const q = query("many", "A", {
      additionals: [
        { type: "OPT", name: ".", udpPayloadSize: 4096, flags: 0, options: [] } as never,
      ],
    });
    const a = reply(answerQuery(q, { ...opts, transport: "udp" }));
    assert.equal(a.flag_tc, false);
    assert.equal(a.answers?.length, 60);
  });
  await t.step("TCP: everything", () => {
    const a = reply(answerQuery(query("many"), { ...opts, transport: "tcp" }));
    assert.equal(a.flag_tc, false);
    assert.equal(a.answers?.length, 60);
  });
});

Deno.test("reverseAddress reads in-addr.arpa and ip6.arpa names", () => {
  assert.equal(reverseAddress("4.3.2.1.in-addr.arpa"), "1.2.3.4");
  assert.equal(reverseAddress("4.3.2.1.IN-ADDR.ARPA."), "1.2.3.4");
  assert.equal(reverseAddress("3.2.1.in-addr.arpa"), undefined);
  assert.equal(reverseAddress("256.3.2.1.in-addr.arpa"), undefined);
  assert.equal(reverseAddress("04.3.2.1.in-addr.arpa"), undefined);
  const nibbles = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f";
  assert.equal(reverseAddress(`${nibbles}.ip6.arpa`), "fd00::1");
  assert.equal(reverseAddress("1.0.ip6.arpa"), undefined);
  assert.equal(reverseAddress("example.test"), undefined);
});
