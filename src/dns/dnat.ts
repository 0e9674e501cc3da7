/**
 * The DNAT pair that makes `127.0.0.11:53` reach the resolver's random ports inside a
 * sandbox, in the sandbox's own nftables table (libnetwork's `docker-dns`, here
 * `ip cnm-dns`), so that a container may run its own DNS server on port 53:
 *
 * ```
 * table ip cnm-dns {
 *   chain dns-dnat { type nat hook output priority -100; policy accept;
 *     ip daddr 127.0.0.11 udp dport 53 counter dnat to 127.0.0.11:<udp> comment "cnm-dns udp"
 *     ip daddr 127.0.0.11 tcp dport 53 counter dnat to 127.0.0.11:<tcp> comment "cnm-dns tcp" }
 *   chain dns-snat { type nat hook postrouting priority 100; policy accept;
 *     ip saddr 127.0.0.11 udp sport <udp> counter snat to :53
 *     ip saddr 127.0.0.11 tcp sport <tcp> counter snat to :53 }
 * }
 * ```
 *
 * The table is programmed over nf_tables netlink from this process (`src/kernel/nat_table.ts`:
 * one transaction, the same messages `nft -f` sends for the script below — no process to
 * start, ~0.3 ms rather than ~4). Installing creates the table, or replaces the whole table in
 * one transaction (add, delete, define), so it is idempotent and a restart's new ports
 * replace the old ones atomically. The SNAT pair never matches (conntrack reverses the DNAT
 * on replies; measured) and is kept for parity. nft 1.0.6 rejects the named priority `dstnat`
 * in the output hook: numbers are used.
 *
 * Every function also takes an {@link NftExec}: given one, it runs `nft` through it instead
 * (the script, `nft -j list`), as before netlink — for tests and for comparing the two. There
 * is no automatic fallback to `nft`: it speaks the same netlink family, so a kernel or a
 * sandbox where this process cannot open that socket refuses `nft` as well.
 *
 * @module
 */

import { inNetns } from "../kernel/in_netns.ts";
import {
  deleteNatTable,
  ensureNatTable,
  type NatTable,
  type NatTableState,
  readNatTable,
} from "../kernel/nat_table.ts";
import { RESOLVER_ADDRESS } from "./resolv_conf.ts";

/** Our table inside every sandbox. */
export const DNS_TABLE = "cnm-dns";

/** The resolver's ports in a sandbox. */
export interface DnatPorts {
  udp: number;
  tcp: number;
}

/** Runs `argv` (argv[0] is `nft`) inside the namespace `netns`; rejects on failure. */
export type NftExec = (
  argv: string[],
  options: { netns: string; stdin?: string },
) => Promise<string>;

/** One difference between the rule a sandbox should have and what it has. */
export interface DnatFinding {
  resource: "dns";
  name: string;
  problem: "missing" | "different";
  expected?: string;
  actual?: string;
}

function checkPort(port: number, what: string): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`invalid ${what} port ${port}`);
  }
  return port;
}

/** The `nft -f` script that makes the table exactly the pair for `ports`. */
export function dnatScript(ports: DnatPorts): string {
  const u = checkPort(ports.udp, "udp");
  const t = checkPort(ports.tcp, "tcp");
  const a = RESOLVER_ADDRESS;
  return [
    `add table ip ${DNS_TABLE}`,
    `delete table ip ${DNS_TABLE}`,
    `table ip ${DNS_TABLE} {`,
    "  chain dns-dnat {",
    "    type nat hook output priority -100; policy accept;",
    `    ip daddr ${a} udp dport 53 counter dnat to ${a}:${u} comment "cnm-dns udp"`,
    `    ip daddr ${a} tcp dport 53 counter dnat to ${a}:${t} comment "cnm-dns tcp"`,
    "  }",
    "  chain dns-snat {",
    "    type nat hook postrouting priority 100; policy accept;",
    `    ip saddr ${a} udp sport ${u} counter snat to :53`,
    `    ip saddr ${a} tcp sport ${t} counter snat to :53`,
    "  }",
    "}",
    "",
  ].join("\n");
}

/** The same table as {@link dnatScript}, for `src/kernel/nat_table.ts`. */
export function dnatTable(ports: DnatPorts): NatTable {
  const u = checkPort(ports.udp, "udp");
  const t = checkPort(ports.tcp, "tcp");
  const a = RESOLVER_ADDRESS;
  const dnat = (protocol: "udp" | "tcp", port: number) => ({
    daddr: a,
    protocol,
    dport: 53,
    counter: true,
    nat: "dnat" as const,
    toAddr: a,
    toPort: port,
    comment: `cnm-dns ${protocol}`,
  });
  const snat = (protocol: "udp" | "tcp", port: number) => ({
    saddr: a,
    protocol,
    sport: port,
    counter: true,
    nat: "snat" as const,
    toPort: 53,
  });
  return {
    name: DNS_TABLE,
    chains: [
      { name: "dns-dnat", hook: "output", priority: -100, rules: [dnat("udp", u), dnat("tcp", t)] },
      {
        name: "dns-snat",
        hook: "postrouting",
        priority: 100,
        rules: [snat("udp", u), snat("tcp", t)],
      },
    ],
  };
}

/** The script that removes the table, whether or not it exists. */
export function removeScript(): string {
  return `add table ip ${DNS_TABLE}\ndelete table ip ${DNS_TABLE}\n`;
}

/** Writes `stdin` to a spawned child, waits for it; its stdout, or an error naming argv. */
async function finish(
  child: Deno.ChildProcess,
  argv: string[],
  netns: string,
  stdin: string | undefined,
): Promise<string> {
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin)).finally(() => w.close().catch(() => {}));
  }
  const out = await child.output();
  const text = new TextDecoder();
  if (!out.success) {
    throw new Error(
      `${argv.join(" ")} (in ${netns}) exited with ${out.code}: ${text.decode(out.stderr).trim()}`,
    );
  }
  return text.decode(out.stdout);
}

const piped = (stdin: string | undefined) =>
  ({ stdin: stdin === undefined ? "null" : "piped", stdout: "piped", stderr: "piped" }) as const;

/** Runs a command inside a namespace with `nsenter`. */
export const nsenterExec: NftExec = (argv, { netns, stdin }) =>
  finish(
    new Deno.Command("nsenter", { args: [`--net=${netns}`, "--", ...argv], ...piped(stdin) })
      .spawn(),
    argv,
    netns,
    stdin,
  );

/**
 * Runs a command inside a namespace by spawning it while this thread is in the namespace (the
 * child is born there: spawning is synchronous), which saves `nsenter`'s two execs — about
 * half the cost of a small `nft -f`. The exec of `conntrack` ({@link forgetDnsFlows}).
 */
export const spawnInExec: NftExec = async (argv, { netns, stdin }) => {
  const child = inNetns(
    netns,
    () => new Deno.Command(argv[0], { args: argv.slice(1), ...piped(stdin) }).spawn(),
  );
  return await finish(child, argv, netns, stdin);
};

/**
 * Installs (or replaces) the pair in the sandbox `netns`: a new table when there is none
 * (`create table`: one transaction that deletes nothing, so no RCU grace period to wait for),
 * else the whole table replaced in one transaction. Over netlink unless `exec` is given.
 */
export async function installDnat(
  netns: string,
  ports: DnatPorts,
  exec?: NftExec,
): Promise<void> {
  if (!exec) return await ensureNatTable(dnatTable(ports), netns);
  const replace = dnatScript(ports);
  const create = replace.replace(
    `add table ip ${DNS_TABLE}\ndelete table ip ${DNS_TABLE}\n`,
    `create table ip ${DNS_TABLE}\n`,
  );
  try {
    await exec(["nft", "-f", "-"], { netns, stdin: create });
  } catch (err) {
    if (!/File exists/.test((err as Error).message)) throw err;
    await exec(["nft", "-f", "-"], { netns, stdin: replace });
  }
}

/**
 * Forgets the sandbox's UDP flows to `127.0.0.11:53` (`conntrack -D`), so that a client that
 * keeps its source port follows a replaced table to the new ports: conntrack keeps a flow's
 * first DNAT while it is in use (every retry refreshes it), which after a restart would send
 * it to the dead listener's port for ever. Best effort: no flow, or no `conntrack`, is fine.
 */
export async function forgetDnsFlows(netns: string, exec: NftExec = spawnInExec): Promise<void> {
  await exec(["conntrack", "-D", "-p", "udp", "--orig-dst", RESOLVER_ADDRESS, "--dport", "53"], {
    netns,
  }).catch(() => {}); // (exits 1 when there was nothing to delete)
}

/**
 * Removes the table from the sandbox `netns`, if present (over netlink unless `exec` is
 * given). A deletion costs the kernel an RCU grace period (~16 ms here), waited for on a
 * thread-pool thread.
 */
export async function removeDnat(netns: string, exec?: NftExec): Promise<void> {
  if (!exec) return await deleteNatTable(DNS_TABLE, netns);
  await exec(["nft", "-f", "-"], { netns, stdin: removeScript() });
}

/** A canonical description of the rules, one line each, sorted (for comparing). */
export function describeRules(ports: DnatPorts): string[] {
  return [
    `dns-dnat output -100`,
    `dns-snat postrouting 100`,
    `dnat udp 53 -> ${ports.udp}`,
    `dnat tcp 53 -> ${ports.tcp}`,
    `snat udp ${ports.udp} -> 53`,
    `snat tcp ${ports.tcp} -> 53`,
  ].sort();
}

// deno-lint-ignore no-explicit-any
type Json = any;

/** Describes the table found in `nft -j list table ip cnm-dns` output (see {@link describeRules}). */
export function describeListing(json: string): string[] {
  const out: string[] = [];
  for (const item of (JSON.parse(json) as Json).nftables ?? []) {
    if (item.chain?.hook) out.push(`${item.chain.name} ${item.chain.hook} ${item.chain.prio}`);
    const rule = item.rule;
    if (!rule) continue;
    let proto = "?", dport: unknown, sport: unknown;
    let nat = "";
    for (const e of rule.expr ?? []) {
      const p = e.match?.left?.payload;
      if (p?.field === "dport") [proto, dport] = [p.protocol, e.match.right];
      if (p?.field === "sport") [proto, sport] = [p.protocol, e.match.right];
      if (e.dnat) nat = `dnat ${proto} ${dport} -> ${e.dnat.port}`;
      if (e.snat) nat = `snat ${proto} ${sport} -> ${e.snat.port}`;
    }
    out.push(nat || `rule ${rule.chain} ${rule.handle}`);
  }
  return out.sort();
}

/**
 * Describes a table read over netlink exactly as {@link describeListing} describes nft's JSON
 * of the same table; a rule that is not one `nat_table.ts` makes is `rule <chain> <handle>`.
 */
export function describeTable(table: NatTableState): string[] {
  const out: string[] = [];
  for (const c of table.chains) {
    if (c.hook !== undefined) out.push(`${c.name} ${c.hook} ${c.priority}`);
    for (const { rule: r, handle } of c.rules) {
      if (!r) {
        out.push(`rule ${c.name} ${handle}`);
        continue;
      }
      const proto = r.sport !== undefined || r.dport !== undefined ? r.protocol : "?";
      out.push(
        r.nat === "dnat"
          ? `dnat ${proto} ${r.dport} -> ${r.toPort}`
          : `snat ${proto} ${r.sport} -> ${r.toPort}`,
      );
    }
  }
  return out.sort();
}

/**
 * Reads the table in `netns`: its description, or undefined when there is none (or no
 * namespace). Over netlink unless `exec` is given (then `nft -j list table`).
 */
export async function readDnat(
  netns: string,
  exec?: NftExec,
): Promise<string[] | undefined> {
  if (!exec) {
    try {
      const table = await readNatTable(DNS_TABLE, netns);
      return table && describeTable(table);
    } catch (err) {
      // (as with nft: a namespace that is gone has no table)
      if (/No such file or directory/.test((err as Error).message)) return undefined;
      throw err;
    }
  }
  let json: string;
  try {
    json = await exec(["nft", "-j", "list", "table", "ip", DNS_TABLE], { netns });
  } catch (err) {
    if (/No such file or directory/.test((err as Error).message)) return undefined;
    throw err;
  }
  // (An exec that prints nothing — a kernel that does nothing — has no table either.)
  return json.trim() === "" ? undefined : describeListing(json);
}

/** Compares what `netns` has with the pair for `ports`; [] when they match. */
export async function checkDnat(
  netns: string,
  ports: DnatPorts,
  exec?: NftExec,
): Promise<DnatFinding[]> {
  const actual = await readDnat(netns, exec);
  const name = `ip ${DNS_TABLE} in ${netns}`;
  const expected = describeRules(ports).join("; ");
  if (!actual) return [{ resource: "dns", name, problem: "missing", expected }];
  if (actual.join("; ") === expected) return [];
  return [{ resource: "dns", name, problem: "different", expected, actual: actual.join("; ") }];
}
