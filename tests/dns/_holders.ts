/** Test data: many sandboxes sharing one alias on a network. */
import type { DnsRecords } from "../../src/dns/records.ts";

/**
 * Adds `count` joined sandboxes `<tag><i>` on `networkId`, all with alias `alias`, at
 * `<subnet>.<first + i>` (subnet: three octets, e.g. `10.0.0`).
 */
export function addHolders(
  records: DnsRecords,
  options: {
    networkId: string;
    tag: string;
    alias: string;
    count: number;
    subnet: string;
    first: number;
  },
): void {
  const { networkId, tag, alias, count, subnet, first } = options;
  for (let i = 0; i < count; i++) {
    records.setSandbox({ id: `${tag}${i}`, name: `${tag}${i}` });
    records.setEndpoint({
      id: `ep-${tag}${i}`,
      networkId,
      sandboxId: `${tag}${i}`,
      state: "joined",
      ipv4Address: `${subnet}.${first + i}/24`,
      aliases: [alias],
    });
  }
}
