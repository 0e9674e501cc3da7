/**
 * The embedded DNS resolver of one controller: one listener per sandbox (see
 * `listener.ts`), all answering from one records projection and forwarding through one
 * forwarder. The controller starts a sandbox's listener when it joins its first network
 * with embedded DNS and stops it when it leaves the last one or is deleted; records follow
 * joins and leaves through `records`.
 *
 * @example
 * ```ts ignore
 * import { createResolver } from "./resolver.ts";
 * const resolver = createResolver({ hostNamespace: "/var/run/netns/cnm-host" });
 * resolver.records.setNetwork({ id: "n1", name: "front", driver: "bridge", internal: false });
 * const { listener, resolvConf } = await resolver.start("s1", { netns: "/var/run/netns/cnm-s1" });
 * await Deno.writeTextFile("/var/lib/cnm/h1/sandboxes/s1/resolv.conf", resolvConf.content);
 * await resolver.stop("s1");
 * ```
 *
 * @module
 */

import { type DnatFinding, type NftExec, removeDnat } from "./dnat.ts";
import { createForwarder, type Forwarder, type Upstream } from "./forwarder.ts";
import { type SandboxListener, startListener } from "./listener.ts";
import { createDnsRecords, type DnsRecords } from "./records.ts";
import {
  type EmbeddedResolvConf,
  embeddedResolvConf,
  readHostResolvConf,
  type ResolvConfInput,
  type UpstreamSpec,
} from "./resolv_conf.ts";

/** Options of {@link createResolver}. */
export interface ResolverOptions {
  /** The projection answered from. Default: a new, empty one. */
  records?: DnsRecords;
  /**
   * Namespace path the host's upstream servers are dialled from (the controller's host
   * namespace; a loopback upstream of the host works from there). Default: the process's own.
   */
  hostNamespace?: string;
  /** The host's resolv.conf text. Default: `/etc/resolv.conf` (systemd-resolved followed). */
  hostResolvConf?: () => string | Promise<string>;
  /** Per upstream (default 4000 ms). */
  timeoutMs?: number;
  /** Forwards in flight at most (default 1024). */
  maxConcurrent?: number;
  /** Run `nft` through this instead of netlink (see `ListenerOptions.exec`). Default: netlink. */
  exec?: NftExec;
  /** Install the DNAT pair in sandboxes (default true). */
  nat?: boolean;
}

/** A sandbox's DNS settings: its namespace and the options of its resolv.conf. */
export interface SandboxDnsConfig extends ResolvConfInput {
  /** Path of the sandbox's network namespace. */
  netns: string;
  /** An earlier process's listener may have served it (a restart); see `ListenerOptions`. */
  replacing?: boolean;
}

/** What {@link Resolver.start} returns. */
export interface StartedListener {
  listener: SandboxListener;
  /** The sandbox's resolv.conf for the embedded resolver (the caller writes it). */
  resolvConf: EmbeddedResolvConf;
}

/** The embedded resolver of one controller. */
export interface Resolver {
  readonly records: DnsRecords;
  readonly forwarder: Forwarder;
  /**
   * Starts the sandbox's listener, or re-configures the running one (same namespace: its
   * sockets and ports stay; another namespace: it is replaced).
   */
  start(sandboxId: string, config: SandboxDnsConfig): Promise<StartedListener>;
  /**
   * Stops the sandbox's listener: its sockets are closed when this resolves; its DNAT pair is
   * removed right after, in the sandbox's queue (a removal waits for the kernel's RCU grace
   * period, ~16 ms: not worth holding a leave for) — a later `start` of the sandbox waits for
   * it, and {@link Resolver.idle} tells when it is done. No-op when none.
   */
  stop(sandboxId: string): Promise<void>;
  /** Resolves once the queued starts, stops and removals (of one sandbox, or all) are done. */
  idle(sandboxId?: string): Promise<void>;
  /** The running listener of a sandbox. */
  listener(sandboxId: string): SandboxListener | undefined;
  /** Sandboxes with a running listener. */
  sandboxes(): string[];
  /** What reconcile should know about a sandbox that must have a listener. */
  check(sandboxId: string): Promise<DnatFinding[]>;
  /** Stops every listener; DNAT pairs are kept unless `removeRules` (a restart replaces them). */
  close(options?: { removeRules?: boolean }): Promise<void>;
}

/** Maps the resolv.conf upstreams to where they are dialled from. */
export function upstreamsOf(
  specs: readonly UpstreamSpec[],
  hostNamespace: string | undefined,
  sandboxNetns: string,
): Upstream[] {
  return specs.map((s) => ({
    address: s.address,
    port: s.port,
    ...(s.from === "sandbox"
      ? { netns: sandboxNetns }
      : hostNamespace
      ? { netns: hostNamespace }
      : {}),
  }));
}

/** Creates a resolver with no listeners. */
export function createResolver(options: ResolverOptions = {}): Resolver {
  const records = options.records ?? createDnsRecords();
  const forwarder = createForwarder({
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.maxConcurrent !== undefined ? { maxConcurrent: options.maxConcurrent } : {}),
  });
  const hostResolv = options.hostResolvConf ?? (() => readHostResolvConf());
  const listeners = new Map<string, SandboxListener>();
  // One start or stop at a time per sandbox.
  const queues = new Map<string, Promise<unknown>>();
  const serial = <T>(sandboxId: string, f: () => Promise<T>): Promise<T> => {
    const prev = queues.get(sandboxId) ?? Promise.resolve();
    const next = prev.then(f, f);
    const tail = next.catch(() => {});
    queues.set(sandboxId, tail);
    tail.then(() => {
      if (queues.get(sandboxId) === tail) queues.delete(sandboxId);
    });
    return next;
  };
  let closed = false;

  return {
    records,
    forwarder,
    start(sandboxId, config) {
      return serial(sandboxId, async () => {
        if (closed) throw new Error("the DNS resolver is closed");
        const resolvConf = embeddedResolvConf(config, await hostResolv());
        const upstreams = upstreamsOf(resolvConf.upstreams, options.hostNamespace, config.netns);
        const running = listeners.get(sandboxId);
        if (running && running.netns === config.netns) {
          running.configure({ upstreams, ndotsSet: resolvConf.ndotsSet });
          return { listener: running, resolvConf };
        }
        if (running) {
          listeners.delete(sandboxId);
          await running.close().catch(() => {}); // the old namespace may be gone
        }
        const listener = await startListener({
          sandboxId,
          netns: config.netns,
          records,
          forwarder,
          upstreams,
          ndotsSet: resolvConf.ndotsSet,
          ...(config.replacing ? { replacing: true } : {}),
          ...(options.exec ? { exec: options.exec } : {}),
          ...(options.nat !== undefined ? { nat: options.nat } : {}),
        });
        listeners.set(sandboxId, listener);
        return { listener, resolvConf };
      });
    },
    stop(sandboxId) {
      return serial(sandboxId, async () => {
        const l = listeners.get(sandboxId);
        if (!l) return;
        listeners.delete(sandboxId);
        await l.close({ keepRule: true });
        if (options.nat === false) return;
        void serial(sandboxId, () =>
          removeDnat(l.netns, options.exec).catch((err) => {
            // A namespace that is already gone took its table with it.
            if (!/No such file|does not exist/.test(String(err))) {
              console.error(`cnm: removing the DNS table of sandbox ${sandboxId}: ${err}`);
            }
          }));
      });
    },
    async idle(sandboxId) {
      const ids = sandboxId === undefined ? [...queues.keys()] : [sandboxId];
      await Promise.all(ids.map((id) => queues.get(id)));
    },
    listener: (sandboxId) => listeners.get(sandboxId),
    sandboxes: () => [...listeners.keys()],
    async check(sandboxId) {
      const l = listeners.get(sandboxId);
      if (!l) return [{ resource: "dns", name: `listener of ${sandboxId}`, problem: "missing" }];
      return await l.check();
    },
    async close(opts = {}) {
      closed = true;
      await Promise.all([...queues.values()]); // (tables being removed)
      const errors: unknown[] = [];
      for (const [id, l] of [...listeners]) {
        listeners.delete(id);
        await l.close({ keepRule: !opts.removeRules }).catch((err) => errors.push(err));
      }
      forwarder.close();
      if (errors.length) throw new AggregateError(errors, "closing the DNS resolver failed");
    },
  };
}
