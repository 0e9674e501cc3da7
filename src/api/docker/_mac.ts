/**
 * `EndpointConfig.MacAddress` as dockerd reads it: every form of Go's `net.ParseMAC`
 * (`02:42:ac:11:00:02`, `02-42-AC-11-00-02`, `0242.ac11.0002`), given to cnm in the
 * lower-case colon form it stores. Whether an interface can have it (not multicast,
 * broadcast or zero) is the controller's check.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dockerMac } from "./_mac.ts";
 * assert.equal(dockerMac("0242.AC11.0002"), "02:42:ac:11:00:02");
 * ```
 *
 * @module
 */

import { DockerApiError } from "./_errors.ts";

/** The bytes of `text` as Go's `net.ParseMAC` reads them (6, 8 or 20), or undefined. */
function goParseMac(text: string): string[] | undefined {
  if (text.length < 14) return undefined;
  let bytes: string[];
  const sep = text[2];
  if (sep === ":" || sep === "-") {
    bytes = text.split(sep);
    if (!bytes.every((b) => /^[0-9a-fA-F]{2}$/.test(b))) return undefined;
  } else if (text[4] === ".") {
    const groups = text.split(".");
    if (!groups.every((g) => /^[0-9a-fA-F]{4}$/.test(g))) return undefined;
    bytes = groups.flatMap((g) => [g.slice(0, 2), g.slice(2)]);
  } else return undefined;
  return [6, 8, 20].includes(bytes.length) ? bytes.map((b) => b.toLowerCase()) : undefined;
}

/**
 * The MAC address `text` names, as `xx:xx:xx:xx:xx:xx`.
 *
 * @throws {DockerApiError} 400 `invalid MAC address X` (dockerd 1.44+'s words) when Go would
 *   not parse it; 400 too for ParseMAC's 8- and 20-byte forms (EUI-64, InfiniBand), which
 *   dockerd accepts and the kernel then refuses at join: an Ethernet interface has 6 bytes.
 */
export function dockerMac(text: string): string {
  const bytes = goParseMac(text);
  if (!bytes) throw new DockerApiError(400, `invalid MAC address ${text}`);
  if (bytes.length !== 6) {
    throw new DockerApiError(
      400,
      `invalid MAC address ${text}: an interface's MAC address has 6 bytes, not ${bytes.length}`,
    );
  }
  return bytes.join(":");
}
