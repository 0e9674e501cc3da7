/**
 * The DNS wire codec (`npm:dns-packet`), typed, plus the header constants the resolver
 * composes flags from. One place imports the library, so its types are declared once.
 *
 * @module
 */

// @ts-types="@types/dns-packet"
import packet from "dns-packet";
import { Buffer } from "node:buffer";

// @ts-types="@types/dns-packet"
export type { Answer, DecodedPacket, Packet, Question } from "dns-packet";

/** Encodes a DNS message. */
export const encode = packet.encode;
/** Decodes a DNS message; throws on malformed input. */
export const decode = packet.decode;
/** Length of a message once encoded. */
export const encodingLength = packet.encodingLength;

/** Header flag bits (within the 16-bit flags word, QR excluded as dns-packet wants it). */
export const FLAG = {
  AA: packet.AUTHORITATIVE_ANSWER,
  TC: packet.TRUNCATED_RESPONSE,
  RD: packet.RECURSION_DESIRED,
  RA: packet.RECURSION_AVAILABLE,
  CD: packet.CHECKING_DISABLED,
  /** The opcode field (bits 11-14). */
  OPCODE_MASK: 0x7800,
  /** The response code field (bits 0-3). */
  RCODE_MASK: 0x000f,
} as const;

/** Response codes used here. */
export const RCODE = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
} as const;

/** Views bytes as a Buffer without copying (dns-packet reads through Buffer methods). */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
