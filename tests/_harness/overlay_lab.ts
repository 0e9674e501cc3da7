/**
 * The multi-host lab with one real `cnm serve` process per host, all on one stream: host i
 * is the lab's namespace `<prefix>-h<i>` (underlay address 192.0.2.i, its VTEP), its
 * controller a child process reached through the NATS API as host `h<i>`. For overlay tests:
 * start, kill -9 and restart a host's controller; read the kernel of a host.
 *
 * @module
 */

import { createApiClient } from "../../mod.ts";
import type { ApiClient } from "../../mod.ts";
import { sh } from "./command.ts";
import { createLab, type Lab } from "./multihost.ts";
import { startNats, type TestNats } from "./nats.ts";
import { type ServeProcess, startServe } from "./cnm_serve.ts";

/** One lab host with its controller. */
export interface OverlayHost {
  index: number;
  /** `h<i>`. */
  hostId: string;
  /** Its namespace (a name). */
  ns: string;
  vtep: string;
  namePrefix: string;
  api: ApiClient;
  serve?: ServeProcess;
}

/** The address of a CIDR (`10.0.0.2/24` → `10.0.0.2`). */
export const ipOf = (cidr?: string): string => cidr!.split("/")[0];
/** A namespace's name from its path (a sandbox key). */
export const nsOf = (key: string): string => key.slice(key.lastIndexOf("/") + 1);

/** Polls `f` every 10 ms until it holds; throws naming `what` after `ms`. Returns the ms taken. */
export async function until(what: string, f: () => Promise<boolean>, ms = 3000): Promise<number> {
  const t0 = performance.now();
  while (!(await f())) {
    if (performance.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return performance.now() - t0;
}

/** A running overlay lab. */
export interface OverlayLab {
  lab: Lab;
  nats: TestNats;
  /** NATS URLs the controllers use (one, or a cluster's). */
  urls: string[];
  stream: string;
  prefix: string;
  hosts: OverlayHost[];
  /** (Re)starts host i's controller and waits until it answers. */
  start(i: number): Promise<void>;
  /** SIGKILLs host i's controller. */
  kill(i: number): Promise<void>;
  /** `ip -j` output of a command run in host i's namespace (or one of its namespaces). */
  ipJson(ns: string, ...args: string[]): Promise<any[]>;
  cleanup(): Promise<void>;
}

/** Options of {@link createOverlayLab}. */
export interface OverlayLabOptions {
  hosts?: number;
  label?: string;
  /** NATS URLs to use instead of a fresh single server (a cluster's). */
  urls?: string[];
  /** Stream name (clusters need a fresh one per test). */
  stream?: string;
  /** Extra `cnm serve` flags (`--replicas 3`). */
  serveArgs?: string[];
  /**
   * Start each controller with `--advertise-addr <its VTEP>`. Default true; false leaves the
   * VTEP to auto-detection (the host namespace then needs a default route on `ul0`).
   */
  advertise?: boolean;
}

/** Builds the lab, starts NATS (unless given) and every host's controller. */
export async function createOverlayLab(options: OverlayLabOptions = {}): Promise<OverlayLab> {
  const lab = await createLab({ hosts: options.hosts ?? 3, label: options.label ?? "ovl" });
  let nats: TestNats | undefined;
  const stateDir = await Deno.makeTempDir({ prefix: `cnm-${lab.prefix}-` });
  const hosts: OverlayHost[] = [];
  try {
    if (!options.urls) nats = await startNats();
    const urls = options.urls ?? [nats!.url];
    const stream = options.stream ?? `T_${lab.prefix}`.toUpperCase();
    const prefix = lab.prefix;
    for (const h of lab.hosts) {
      hosts.push({
        index: h.index,
        hostId: `h${h.index}`,
        ns: h.name,
        vtep: h.address,
        namePrefix: h.namePrefix,
        api: await createApiClient({
          nats: { servers: urls, maxReconnectAttempts: -1, reconnectTimeWait: 250 },
          prefix,
          hostId: `h${h.index}`,
          timeoutMs: 20_000,
        }),
      });
    }
    const out: OverlayLab = {
      lab,
      nats: nats!,
      urls,
      stream,
      prefix,
      hosts,
      async start(i) {
        const h = hosts[i];
        await h.serve?.cleanup();
        h.serve = await startServe({
          env: {
            CNM_NATS_URL: urls.join(","),
            CNM_STREAM: stream,
            CNM_PREFIX: prefix,
            CNM_HOST_ID: h.hostId,
          },
          hostNamespace: lab.hosts[i].path,
          namePrefix: h.namePrefix,
          stateDir: `${stateDir}/${h.hostId}`,
          args: [
            "-q",
            ...(options.advertise === false ? [] : ["--advertise-addr", h.vtep]),
            ...(options.serveArgs ?? []),
          ],
        });
      },
      async kill(i) {
        await hosts[i].serve?.cleanup();
        hosts[i].serve = undefined;
      },
      async ipJson(ns, ...args) {
        return JSON.parse(await sh(["ip", "-n", ns, "-j", ...args]) || "[]");
      },
      async cleanup() {
        const errors: unknown[] = [];
        for (const h of hosts) {
          await h.serve?.cleanup().catch((e) => errors.push(e));
          await h.api.close().catch((e) => errors.push(e));
        }
        await nats?.cleanup().catch((e) => errors.push(e));
        await lab.cleanup().catch((e) => errors.push(e));
        await Deno.remove(stateDir, { recursive: true }).catch((e) => errors.push(e));
        if (errors.length) throw new AggregateError(errors, "overlay lab cleanup failed");
      },
    };
    for (let i = 0; i < hosts.length; i++) await out.start(i);
    return out;
  } catch (err) {
    for (const h of hosts) {
      await h.serve?.cleanup().catch(() => {});
      await h.api.close().catch(() => {});
    }
    await nats?.cleanup().catch(() => {});
    await lab.cleanup().catch(() => {});
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    throw err;
  }
}
