/**
 * A tiny authoritative DNS server (dns-packet) that tests and the benchmark run inside a
 * namespace of their own, as the "upstream" the embedded resolver forwards to — never the
 * machine's real resolvers. UDP and TCP. Prints `ready` once both sockets listen.
 *
 * Usage: `deno run -A --unstable-net tests/_harness/dns_upstream.ts <address> <port> <tag>`
 *
 * Zone (case-insensitive):
 * - `example.test` A 203.0.113.7
 * - `big.test` A 203.0.113.1 … 203.0.113.80 (UDP: truncated to the client's size, `tc`)
 * - `fail.test` SERVFAIL; `slow.test` never answered; `whoami.test` TXT `<tag> <client ip>`
 * - `queries.test` TXT: every name asked so far (to prove what was or was not forwarded)
 * - anything else NXDOMAIN
 *
 * @module
 */

import {
  type Answer,
  asBuffer,
  decode,
  type DecodedPacket,
  encode,
  encodingLength,
  FLAG,
  type Packet,
  RCODE,
} from "../../src/dns/_packet.ts";

const [address = "0.0.0.0", portText = "53", tag = "upstream"] = Deno.args;
const port = Number(portText);
const seen: string[] = [];

function answer(q: DecodedPacket, client: string, transport: "udp" | "tcp"): Uint8Array | null {
  const question = q.questions?.[0];
  const reply = (rcode: number, answers: Answer[] = []): Packet => ({
    type: "response",
    id: q.id,
    flags: FLAG.AA | ((q.flags ?? 0) & FLAG.RD) | rcode,
    questions: q.questions,
    answers,
  });
  if (!question) return encode(reply(RCODE.FORMERR));
  const name = question.name.toLowerCase();
  if (name !== "queries.test") seen.push(name);
  const a = (data: string): Answer => ({ type: "A", name: question.name, ttl: 60, data });
  const txt = (data: string[]): Answer => ({ type: "TXT", name: question.name, ttl: 0, data });
  let r: Packet;
  switch (name) {
    case "example.test":
      r = reply(RCODE.NOERROR, question.type === "A" ? [a("203.0.113.7")] : []);
      break;
    case "big.test":
      r = reply(
        RCODE.NOERROR,
        question.type === "A" ? Array.from({ length: 80 }, (_, i) => a(`203.0.113.${i + 1}`)) : [],
      );
      break;
    case "fail.test":
      r = reply(RCODE.SERVFAIL);
      break;
    case "slow.test":
      return null;
    case "whoami.test":
      r = reply(RCODE.NOERROR, [txt([`${tag} ${client}`])]);
      break;
    case "queries.test":
      r = reply(RCODE.NOERROR, [txt(seen.length ? seen.slice(-50) : ["none"])]);
      break;
    default:
      r = reply(RCODE.NXDOMAIN);
  }
  if (transport === "udp") {
    const opt = q.additionals?.find((x) => x.type === "OPT") as { udpPayloadSize?: number };
    const limit = Math.max(512, opt?.udpPayloadSize ?? 512);
    if (encodingLength(r) > limit) r = { ...r, flags: (r.flags ?? 0) | FLAG.TC, answers: [] };
  }
  return encode(r);
}

const udp = Deno.listenDatagram({ hostname: address, port, transport: "udp" });
const tcp = Deno.listen({ hostname: address, port });
console.log("ready");

(async () => {
  for await (const conn of tcp) {
    (async () => {
      const readFull = async (n: number): Promise<Uint8Array | null> => {
        const buf = new Uint8Array(n);
        for (let got = 0; got < n;) {
          const r = await conn.read(buf.subarray(got));
          if (r === null) return null;
          got += r;
        }
        return buf;
      };
      try {
        for (;;) {
          const head = await readFull(2);
          if (!head) break;
          const body = await readFull((head[0] << 8) | head[1]);
          if (!body) break;
          const out = answer(
            decode(asBuffer(body)),
            (conn.remoteAddr as Deno.NetAddr).hostname,
            "tcp",
          );
          if (!out) continue;
          const frame = new Uint8Array(2 + out.byteLength);
          frame[0] = out.byteLength >> 8;
          frame[1] = out.byteLength & 0xff;
          frame.set(out, 2);
          await conn.write(frame);
        }
      } catch { /* client went away */ }
      try {
        conn.close();
      } catch { /* closed */ }
    })();
  }
})();

for (;;) {
  const [bytes, from] = await udp.receive();
  try {
    const out = answer(decode(asBuffer(bytes)), (from as Deno.NetAddr).hostname, "udp");
    if (out) await udp.send(out, from);
  } catch { /* malformed */ }
}
