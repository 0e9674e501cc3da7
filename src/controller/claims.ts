/**
 * Cluster-wide claims: what must be unique across hosts (a global network's name, its VNIs
 * and subnets, the addresses inside it) is claimed with JetStream KV `create` — put if
 * absent, one winner however many hosts race — before the intent that uses it is appended.
 * The decision itself is then written into the intent, as every decision is, and rebuilt
 * from the stream on start; the claim only closes the window between two hosts deciding the
 * same thing before either has seen the other's event. Released once the object no longer
 * holds it (its delete or failed create is durable).
 *
 * Bucket `<stream>_GLOBAL`, keys `<prefix>.<what>.<value>` (the value base64url-encoded where
 * it could hold characters a key may not), each holding `{ objectId, host, at }`.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { type KV, Kvm } from "@nats-io/kv";
import { jetstreamManager } from "@nats-io/jetstream";
import { errText, UnavailableError } from "../errors.ts";

/** Who holds a claim. */
export interface ClaimHolder {
  objectId: string;
  host: string;
  at: string;
}

/** The claims of one stream and prefix. */
export interface Claims {
  /**
   * Claims `key` for `objectId`; false when another object holds it (true if it already
   * does). A holder `isStale` says is dead (its object never reached the journal) is
   * replaced, compare-and-set on its revision.
   */
  claim(
    key: string,
    objectId: string,
    isStale?: (holder: ClaimHolder) => boolean,
  ): Promise<boolean>;
  /** Releases `key` if `objectId` holds it. */
  release(key: string, objectId: string): Promise<void>;
  /**
   * Releases `key` if `objectId` holds it, retrying in the background until JetStream
   * answers (a claim must not outlive its object because a release met an election).
   */
  releaseSoon(key: string, objectId: string): void;
  /**
   * Stops the background releases, after waiting (at most `waitMs`, default 2000) for the
   * ones under way or due: a clean stop right after a delete must not leave its claims held
   * (the next start would sweep them, but other hosts may want the value before that).
   */
  close(waitMs?: number): Promise<void>;
  /** The holder of `key`, if any. */
  holder(key: string): Promise<ClaimHolder | undefined>;
  /** Every claim whose key starts with `<prefix>.`, with its holder. */
  list(prefix: string): Promise<{ key: string; holder: ClaimHolder }[]>;
}

/** Claim keys. */
export const claimKey = {
  networkName: (prefix: string, name: string) => `${prefix}.netname.${b64(name)}`,
  vni: (prefix: string, vni: number) => `${prefix}.vni.${vni}`,
  subnet: (prefix: string, cidr: string) => `${prefix}.subnet.${b64(cidr)}`,
  address: (prefix: string, networkId: string, ip: string) =>
    `${prefix}.ip.${networkId.slice(0, 12)}.${b64(ip.split("/")[0])}`,
};

/** The kind of object a claim's holder is: an address's is an endpoint, the others' a network. */
export function claimKindOf(prefix: string, key: string): "endpoint" | "network" {
  return key.startsWith(`${prefix}.ip.`) ? "endpoint" : "network";
}

/** The KV bucket holding a stream's claims. */
export function claimBucketOf(stream: string): string {
  return `${stream}_GLOBAL`;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function b64(text: string): string {
  return btoa(String.fromCharCode(...enc.encode(text)))
    .replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

const isTaken = (err: unknown) => /wrong last sequence|key exists/i.test(errText(err));

/** Opens (creating if missing) the claims bucket. */
export async function openClaims(
  nc: NatsConnection,
  options: { stream: string; hostId: string; replicas?: number },
): Promise<Claims> {
  let kv: KV;
  try {
    kv = await new Kvm(nc).create(claimBucketOf(options.stream), {
      history: 1,
      ...(options.replicas ? { replicas: options.replicas } : {}),
    });
  } catch (err) {
    throw new UnavailableError(`cannot open the claims bucket: ${errText(err)}`, { cause: err });
  }
  const read = async (key: string) => {
    const e = await kv.get(key);
    if (!e || e.operation !== "PUT" || !e.value.length) return undefined;
    return { revision: e.revision, holder: JSON.parse(dec.decode(e.value)) as ClaimHolder };
  };
  const unavailable = (what: string, err: unknown) =>
    new UnavailableError(`journal unavailable: cannot ${what}: ${errText(err)}`, { cause: err });
  const release = async (key: string, objectId: string) => {
    const now = await read(key).catch((err) => {
      throw unavailable(`read claim ${key}`, err);
    });
    if (!now || now.holder.objectId !== objectId) return;
    await kv.delete(key, { previousSeq: now.revision }).catch((err) => {
      if (!isTaken(err)) throw unavailable(`release ${key}`, err);
    });
  };
  const later = new Map<string, string>();
  let timer: ReturnType<typeof setInterval> | undefined;
  const running = new Set<Promise<void>>();
  const retry = (): Promise<void> => {
    const run = (async () => {
      for (const [key, objectId] of [...later]) {
        try {
          await release(key, objectId);
          later.delete(key);
        } catch { /* still unavailable: next round */ }
      }
      if (!later.size && timer !== undefined) {
        clearInterval(timer);
        timer = undefined;
      }
    })();
    running.add(run);
    run.finally(() => running.delete(run));
    return run;
  };
  return {
    async claim(key, objectId, isStale) {
      const value = enc.encode(JSON.stringify({
        objectId,
        host: options.hostId,
        at: new Date().toISOString(),
      }));
      try {
        await kv.create(key, value);
        return true;
      } catch (err) {
        if (!isTaken(err)) throw unavailable(`claim ${key}`, err);
      }
      const now = await read(key).catch((err) => {
        throw unavailable(`read claim ${key}`, err);
      });
      if (now && now.holder.objectId !== objectId && isStale?.(now.holder)) {
        await kv.delete(key, { previousSeq: now.revision }).catch(() => {});
      } else if (now) return now.holder.objectId === objectId;
      // Deleted between our create and our read: try once more.
      try {
        await kv.create(key, value);
        return true;
      } catch (err) {
        if (isTaken(err)) return (await read(key))?.holder.objectId === objectId;
        throw unavailable(`claim ${key}`, err);
      }
    },
    release,
    releaseSoon(key, objectId) {
      later.set(key, objectId);
      retry();
      if (timer === undefined) {
        timer = setInterval(retry, 2000);
        Deno.unrefTimer(timer as unknown as number);
      }
    },
    async close(waitMs = 2000) {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      if (!later.size && !running.size) return;
      let bound: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all([...running, ...(later.size ? [retry()] : [])]),
        new Promise<void>((r) => (bound = setTimeout(r, waitMs))),
      ]);
      clearTimeout(bound);
    },
    async holder(key) {
      return (await read(key))?.holder;
    },
    async list(prefix) {
      const out: { key: string; holder: ClaimHolder }[] = [];
      try {
        // The keys from the bucket stream's per-subject state, not `kv.keys()`: its consumer
        // can wait forever for the end of a listing while other hosts write claims (seen here
        // under the crash test), and a controller's start must not.
        const bucket = claimBucketOf(options.stream);
        const subject = `$KV.${bucket}.`;
        const jsm = await jetstreamManager(nc);
        const info = await jsm.streams.info(`KV_${bucket}`, {
          subjects_filter: `${subject}${prefix}.>`,
        });
        const keys = Object.keys(info.state.subjects ?? {}).map((s) => s.slice(subject.length));
        for (const key of keys.sort()) {
          const now = await read(key);
          if (now) out.push({ key, holder: now.holder });
        }
      } catch (err) {
        throw unavailable("list claims", err);
      }
      return out;
    },
  };
}
