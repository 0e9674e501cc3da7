/**
 * Answering one DNS query from the records, purely: a response to send, or the decision to
 * forward it. libnetwork's rules (`resolver.go`): a local name answers with all its
 * addresses of the asked family, shuffled, TTL 600, `ra` set; a local name without an
 * address of that family (or asked for another type) is NOERROR with no answers — never
 * NXDOMAIN, which breaks musl; PTR for local addresses gives `<sandbox>.<network>`; unknown
 * names are forwarded, or answered SERVFAIL when every network of the asker is internal.
 * UDP answers larger than 512 bytes (or the query's EDNS size) are truncated, with `tc` set.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { answerQuery } from "./answer.ts";
 * import { createDnsRecords } from "./records.ts";
 * import { asBuffer, decode, encode } from "./_packet.ts";
 * const records = createDnsRecords();
 * records.setNetwork({ id: "n", name: "front", driver: "bridge", internal: false });
 * records.setSandbox({ id: "s", name: "web" });
 * records.setEndpoint({ id: "e", networkId: "n", sandboxId: "s", state: "joined", ipv4Address: "172.18.0.2/16" });
 * const query = encode({ type: "query", id: 7, questions: [{ type: "A", name: "web" }] });
 * const out = answerQuery(query, { records, sandboxId: "s", transport: "udp" });
 * assert.ok(out.kind === "answer");
 * const [a] = decode(asBuffer(out.bytes)).answers as { data: string }[];
 * assert.deepEqual(a.data, "172.18.0.2");
 * ```
 *
 * @module
 */

import { ipToString } from "../ipam/cidr.ts";
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
} from "./_packet.ts";
import type { DnsRecords } from "./records.ts";

/** libnetwork's `respTTL`. */
export const TTL = 600;
/** A UDP answer's size limit when the query carries no EDNS option. */
export const UDP_DEFAULT_SIZE = 512;
/** The EDNS payload size this resolver advertises. */
export const EDNS_SIZE = 4096;
const TCP_MAX = 65535;

/** Options of {@link answerQuery}. */
export interface AnswerOptions {
  records: DnsRecords;
  /** The sandbox asking (the listener's). */
  sandboxId: string;
  /** How the query came: UDP answers are truncated to the client's size. */
  transport: "udp" | "tcp";
  /**
   * The sandbox's resolv.conf set `ndots` itself: an unknown single-label A/AAAA name is
   * answered NOERROR/empty, not forwarded, so the client goes on to its search domains.
   * Default false.
   */
  ndotsSet?: boolean;
  /** Random source of the shuffle, [0, 1). Default `Math.random`. */
  random?: () => number;
}

/** What to do with a query. */
export type Outcome =
  | { kind: "answer"; bytes: Uint8Array }
  | { kind: "forward"; query: DecodedPacket }
  | { kind: "drop"; reason: string };

/** The size a UDP answer to `query` may have (512, or its EDNS payload size). */
export function udpLimit(query: Packet): number {
  const opt = query.additionals?.find((a) => a.type === "OPT") as
    | { udpPayloadSize?: number }
    | undefined;
  const size = opt?.udpPayloadSize ?? UDP_DEFAULT_SIZE;
  return Math.min(Math.max(size, UDP_DEFAULT_SIZE), TCP_MAX);
}

function hasEdns(query: Packet): boolean {
  return query.additionals?.some((a) => a.type === "OPT") ?? false;
}

function response(query: DecodedPacket, rcode: number, answers: Answer[] = []): Packet {
  return {
    type: "response",
    id: query.id,
    flags: ((query.flags ?? 0) & (FLAG.OPCODE_MASK | FLAG.RD | FLAG.CD)) | FLAG.RA | rcode,
    questions: query.questions,
    answers,
    ...(hasEdns(query)
      ? {
        additionals: [{
          type: "OPT",
          name: ".",
          udpPayloadSize: EDNS_SIZE,
          extendedRcode: 0,
          ednsVersion: 0,
          flags: 0,
          flag_do: false,
          options: [],
        }],
      }
      : {}),
  } as Packet;
}

/**
 * Encodes `reply`; over UDP, when it exceeds the client's limit, drops answers from the end
 * until it fits and sets `tc` (the client retries over TCP).
 */
export function encodeReply(
  reply: Packet,
  query: Packet,
  transport: "udp" | "tcp",
): Uint8Array {
  const limit = transport === "udp" ? udpLimit(query) : TCP_MAX;
  const bytes = encode(reply); // (measures, then writes: measuring first would do it twice)
  if (bytes.byteLength <= limit) return bytes;
  const answers = reply.answers ?? [];
  let lo = 0, hi = answers.length; // the largest count that fits is in [lo, hi)
  const fits = (n: number) => encodingLength({ ...reply, answers: answers.slice(0, n) }) <= limit;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return encode({
    ...reply,
    flags: (reply.flags ?? 0) | FLAG.TC,
    answers: answers.slice(0, lo),
  });
}

/** An encoded error response (SERVFAIL, REFUSED, …) to `query`. */
export function errorReply(query: DecodedPacket, rcode: number): Uint8Array {
  return encode(response(query, rcode));
}

function shuffle<T>(list: T[], random: () => number): T[] {
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [list[i], list[j]] = [list[j], list[i]];
  }
  return list;
}

/** The address a reverse name (`2.0.18.172.in-addr.arpa`, nibbles `.ip6.arpa`) stands for. */
export function reverseAddress(name: string): string | undefined {
  const n = name.toLowerCase().replace(/\.$/, "");
  if (n.endsWith(".in-addr.arpa")) {
    const labels = n.slice(0, -".in-addr.arpa".length).split(".");
    if (labels.length !== 4 || !labels.every((l) => /^(0|[1-9][0-9]{0,2})$/.test(l))) return;
    const octets = labels.reverse().map(Number);
    if (octets.some((o) => o > 255)) return;
    return octets.join(".");
  }
  if (n.endsWith(".ip6.arpa")) {
    const nibbles = n.slice(0, -".ip6.arpa".length).split(".");
    if (nibbles.length !== 32 || !nibbles.every((x) => /^[0-9a-f]$/.test(x))) return;
    return ipToString({ family: 6, value: BigInt(`0x${nibbles.reverse().join("")}`) });
  }
  return undefined;
}

/**
 * Decides the answer to one query from the records.
 *
 * @param bytes the query as received.
 * @returns `answer` (encoded response), `forward` (not a local name; the caller forwards
 *   it, or answers SERVFAIL when no upstream answers) or `drop` (not a query).
 */
export function answerQuery(bytes: Uint8Array, options: AnswerOptions): Outcome {
  let query: DecodedPacket;
  try {
    query = decode(asBuffer(bytes));
  } catch (err) {
    return { kind: "drop", reason: `malformed message: ${(err as Error).message}` };
  }
  if (query.type !== "query") return { kind: "drop", reason: "not a query" };
  const reply = (rcode: number, answers?: Answer[]): Outcome => ({
    kind: "answer",
    bytes: encodeReply(response(query, rcode, answers), query, options.transport),
  });
  if (((query.flags ?? 0) & FLAG.OPCODE_MASK) !== 0) return reply(RCODE.NOTIMP);
  const q = query.questions?.[0];
  if (!q || query.questions!.length !== 1) return reply(RCODE.FORMERR);
  const { records, sandboxId } = options;
  const random = options.random ?? Math.random;
  const inClass = (q.class ?? "IN") === "IN";

  if (inClass && q.type === "PTR") {
    const address = reverseAddress(q.name);
    const target = address && records.reverse(sandboxId, address);
    if (target) {
      return reply(RCODE.NOERROR, [{ type: "PTR", name: q.name, ttl: TTL, data: target }]);
    }
  } else if (inClass) {
    const found = records.lookup(sandboxId, q.name);
    const type = q.type as string; // dns-packet decodes 255 as "ANY", which its types omit
    if (found) {
      const answers: Answer[] = [];
      if (type === "A" || type === "ANY") {
        for (const data of shuffle([...found.ipv4], random)) {
          answers.push({ type: "A", name: q.name, ttl: TTL, data });
        }
      }
      if (type === "AAAA" || type === "ANY") {
        for (const data of shuffle([...found.ipv6], random)) {
          answers.push({ type: "AAAA", name: q.name, ttl: TTL, data });
        }
      }
      return reply(RCODE.NOERROR, answers); // no address of that family: NODATA
    }
  }
  if (!records.scope(sandboxId).external) return reply(RCODE.SERVFAIL);
  if (
    options.ndotsSet && (q.type === "A" || q.type === "AAAA") &&
    !q.name.replace(/\.$/, "").includes(".")
  ) {
    return reply(RCODE.NOERROR);
  }
  return { kind: "forward", query };
}
