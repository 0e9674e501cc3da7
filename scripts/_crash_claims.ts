/**
 * The crash test's look at the cluster-wide claims, read straight from the KV bucket
 * `<stream>_GLOBAL` with @nats-io/kv: every live global object's claims (a network's name,
 * subnets and VNIs, an endpoint's addresses) are held by it; no claim is held by an object
 * the journal says is deleted or failed (its release was lost); no claim of an object that
 * never reached the journal is older than the stale threshold at the restart (a create
 * killed between its claims and its intent holds them that long, then they are free).
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { jetstreamManager } from "@nats-io/jetstream";
import type { Journal } from "../src/journal/journal.ts";
import { claimBucketOf, claimKey } from "../src/controller/claims.ts";
import type { Verdict } from "./_crash_model.ts";
import { globalNets, type OverlaySite } from "./_crash_overlay.ts";
import { vnisOf } from "./_crash_workload.ts";

/** A claim whose object never reached the journal is dead after this long (claims_sweep.ts). */
export const STALE_CLAIM_MS = 60_000;

/** One claim as the bucket holds it. */
export interface ClaimEntry {
  key: string;
  objectId: string;
  host: string;
  at: string;
}

/** Every claim of `prefix` in the stream's bucket. */
export async function readClaims(
  nc: NatsConnection,
  stream: string,
  prefix: string,
): Promise<ClaimEntry[]> {
  const bucket = claimBucketOf(stream);
  const kv = await new Kvm(nc).open(bucket);
  // The keys from the stream's per-subject state (`kv.keys()` can wait forever for the end of
  // its listing while another host writes claims).
  const subject = `$KV.${bucket}.`;
  const info = await (await jetstreamManager(nc)).streams.info(`KV_${bucket}`, {
    subjects_filter: `${subject}${prefix}.>`,
  });
  const keys = Object.keys(info.state.subjects ?? {}).map((s) => s.slice(subject.length));
  const out: ClaimEntry[] = [];
  for (const key of keys.sort()) {
    const e = await kv.get(key);
    if (!e || e.operation !== "PUT" || !e.value.length) continue;
    out.push({ key, ...JSON.parse(new TextDecoder().decode(e.value)) });
  }
  return out;
}

/** The claims each live global object must hold: key → object id. */
export function liveClaims(hosts: OverlaySite[], prefix: string): Map<string, string> {
  const want = new Map<string, string>();
  for (const n of globalNets(hosts[0].ctl)) {
    want.set(claimKey.networkName(prefix, n.name), n.id);
    for (const c of n.ipam.config) want.set(claimKey.subnet(prefix, c.subnet), n.id);
    for (const vni of vnisOf(n)) want.set(claimKey.vni(prefix, vni), n.id);
    for (const h of hosts) {
      for (const e of h.ctl.endpoints({ network: n.id }).filter((e) => e.state !== "failed")) {
        for (const a of [e.ipv4Address, e.ipv6Address]) {
          if (a) want.set(claimKey.address(prefix, n.id, a), e.id);
        }
      }
    }
  }
  return want;
}

/**
 * Compares the bucket with the live objects (see the module doc); `restartedAt` is when the
 * restart began (ms since the epoch). Returns the keys dead objects may still hold (younger
 * than the threshold). Releases run in the background, so it looks again for a moment.
 */
export async function compareClaims(
  nc: NatsConnection,
  journal: Journal,
  hosts: OverlaySite[],
  restartedAt: number,
  v: Verdict,
  deadline = Date.now() + 2000,
): Promise<Set<string>> {
  const prefix = journal.prefix;
  const inJournal = new Map<string, boolean>();
  for (;;) {
    const found: Verdict = { divergences: [], leaks: [] };
    const dead = new Set<string>();
    const want = liveClaims(hosts, prefix);
    const live = new Set(want.values());
    const claims = await readClaims(nc, hosts[0].stream, prefix);
    const byKey = new Map(claims.map((c) => [c.key, c]));
    for (const [key, id] of want) {
      const c = byKey.get(key);
      if (c?.objectId !== id) {
        found.divergences.push(
          `claim ${key} of live ${id.slice(0, 12)} is ${
            c ? `held by ${c.objectId.slice(0, 12)}` : "missing"
          }`,
        );
      }
    }
    for (const c of claims) {
      if (want.get(c.key) === c.objectId) continue;
      if (live.has(c.objectId)) {
        found.leaks.push(
          `claim ${c.key} held by live ${c.objectId.slice(0, 12)}, which does not use it`,
        );
        continue;
      }
      const kind = c.key.startsWith(`${prefix}.ip.`) ? "endpoint" : "network";
      if (!inJournal.has(c.objectId)) {
        inJournal.set(c.objectId, (await journal.last(kind, c.objectId)) !== undefined);
      }
      if (inJournal.get(c.objectId)) {
        found.leaks.push(
          `claim ${c.key} (from ${c.host}) held by ${kind} ${c.objectId.slice(0, 12)}, ` +
            "which the journal says is gone: never released",
        );
      } else if (Date.parse(c.at) < restartedAt - STALE_CLAIM_MS) {
        found.leaks.push(
          `claim ${c.key} (from ${c.host}, ${c.at}) of an object that never reached the ` +
            `journal, older than ${STALE_CLAIM_MS / 1000} s at the restart`,
        );
      } else dead.add(c.key);
    }
    const bad = found.divergences.length + found.leaks.length;
    if (!bad || Date.now() > deadline) {
      v.divergences.push(...found.divergences);
      v.leaks.push(...found.leaks);
      return dead;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
