/**
 * The sandbox options that end up in its `hosts` and `resolv.conf` files, checked before
 * anything is journaled: a newline or a space there would let a caller add lines of their
 * own (`6.6.6.6 bank.example.com`), so every value must be exactly what its field says.
 *
 * - `hostname`: an RFC 1123 host name (labels of 1-63 letters, digits and hyphens, no hyphen
 *   at either end, at most 253 characters);
 * - `dns`: IP addresses (IPv4 or IPv6);
 * - `dnsSearch`: domain names (host names, optionally with a final dot), or `.` for none;
 * - `extraHosts`: `name:ip` (Docker's `--add-host`; also `name=ip`, and `[ipv6]`).
 *
 * And an endpoint's `aliases` (names the embedded DNS resolver answers on its network): DNS
 * names — labels of 1-63 letters, digits, hyphens and underscores (Docker's container names
 * may hold underscores, and resolve), at most 253 characters.
 *
 * @module
 */

import { z } from "zod";
import { parseIp } from "../ipam/cidr.ts";

const label = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** Whether `s` is an RFC 1123 host name. */
export function isHostName(s: string): boolean {
  return s.length > 0 && s.length <= 253 && s.split(".").every((l) => label.test(l));
}

/** Whether `s` is a DNS name for an alias: like a host name, underscores allowed. */
export function isDnsName(s: string): boolean {
  return s.length > 0 && s.length <= 253 &&
    s.split(".").every((l) => /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(l));
}

/** Whether `s` is a domain name: a host name, optionally ending with a dot. */
export function isDomainName(s: string): boolean {
  return isHostName(s.endsWith(".") ? s.slice(0, -1) : s);
}

/** Whether `s` is an IPv4 or IPv6 address (no prefix, no zone). */
export function isIp(s: string): boolean {
  try {
    parseIp(s);
    return true;
  } catch {
    return false;
  }
}

/** Splits an `extraHosts` entry into name and address, or undefined when it is not one. */
export function splitExtraHost(entry: string): { name: string; ip: string } | undefined {
  const sep = entry.search(/[:=]/);
  if (sep <= 0) return undefined;
  const name = entry.slice(0, sep);
  const raw = entry.slice(sep + 1);
  const ip = raw.startsWith("[") && raw.endsWith("]") ? raw.slice(1, -1) : raw;
  return isHostName(name) && isIp(ip) ? { name, ip } : undefined;
}

/** A value as it appears in an error message: quoted, and cut when long. */
export function shown(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);
}

const checked = (ok: (s: string) => boolean, what: string) =>
  z.string().superRefine((s, ctx) => {
    if (!ok(s)) ctx.addIssue({ code: "custom", message: `${shown(s)} is not ${what}` });
  });

/** `hostname`. */
export const HostNameInput = checked(isHostName, "an RFC 1123 host name");
/** One `dns` entry. */
export const NameserverInput = checked(isIp, "an IP address");
/** One `dnsSearch` entry. */
export const SearchDomainInput = checked((s) => s === "." || isDomainName(s), "a domain name");
/** One endpoint alias. */
export const AliasInput = checked(isDnsName, "a DNS name");
/** One `extraHosts` entry. */
export const ExtraHostInput = checked((s) => splitExtraHost(s) !== undefined, "host:ip");
