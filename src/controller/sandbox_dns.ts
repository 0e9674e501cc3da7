/**
 * The embedded DNS resolver in the controller (issue 12): which sandboxes get a listener at
 * `127.0.0.11`, their resolv.conf, the listeners' restart after a controller restart, and
 * what reconcile checks and repairs of them. The resolver itself (src/dns) knows nothing of
 * the controller; its records follow the journal through dns_feed.ts.
 *
 * A sandbox needs the resolver while it has an endpoint joined (or joining) on a network with
 * embedded DNS — user-defined networks; not the predefined `bridge`, nor `host` or `none`
 * (`networkHasDns`). Its listener is started in the join that first makes it need one (before
 * the join's outcome is journaled: a failure fails the join) and stopped in the leave that
 * makes it need none, and when the sandbox is deleted (before its namespace: an open socket
 * would keep the namespace alive). Its resolv.conf is rewritten when that need changes: the
 * embedded file (`nameserver 127.0.0.11`, `options ndots:0`) or the legacy one.
 *
 * @module
 */

import type { EndpointContext } from "../../actors/endpoint.ts";
import type { SandboxContext } from "../../actors/sandbox.ts";
import { errText } from "../errors.ts";
import { createResolver } from "../dns/resolver.ts";
import { networkHasDns } from "../dns/records.ts";
import { dnsNetworkOf } from "../dns/records_fold.ts";
import { readDnat, removeDnat } from "../dns/dnat.ts";
import { readHostResolvConf, RESOLVER_ADDRESS } from "../dns/resolv_conf.ts";
import type { ControllerContext } from "./context.ts";
import type { Finding } from "./drift.ts";
import { createDnsFeed } from "./dns_feed.ts";
import { endpointsOfSandbox, networkContext } from "./objects.ts";
import { resolvConf, writeIfChanged } from "./sandbox_config.ts";
import type { SandboxDns } from "./sandbox_types.ts";
export type { SandboxDns } from "./sandbox_types.ts";

/** Options of {@link createSandboxDns}. */
export interface SandboxDnsOptions {
  /** Per upstream, ms (default 4000: libnetwork's). */
  timeoutMs?: number;
  /** Listeners started at once on restart (default 8). */
  parallel?: number;
  /** Where problems are said (default stderr). */
  log?(line: string): void;
}

/** The inode of a namespace file, to tell a re-made namespace from the one listened in. */
function inodeOf(path: string): number | undefined {
  try {
    return Deno.statSync(path).ino ?? undefined;
  } catch {
    return undefined;
  }
}

const isListener = (f: Finding) => f.resource === "dns" && f.name.startsWith("resolver ");
const EMBEDDED = new RegExp(`^nameserver ${RESOLVER_ADDRESS.replaceAll(".", "\\.")}$`, "m");

/** Creates the glue; the records follow the runtime's and the world's events from now on. */
export function createSandboxDns(
  ctx: ControllerContext,
  options: SandboxDnsOptions = {},
): SandboxDns {
  const rt = ctx.runtime;
  // The host's file, systemd-resolved's stub followed (the controller option hostResolvConf).
  const hostResolvConf = () => readHostResolvConf(ctx.settings.hostResolvConf);
  const resolver = createResolver({
    ...(ctx.settings.hostNamespace ? { hostNamespace: ctx.settings.hostNamespace } : {}),
    hostResolvConf,
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
  });
  const feed = createDnsFeed({
    records: resolver.records,
    own$: rt.events$,
    world$: ctx.world.changes$,
  });
  const log = options.log ?? ((line: string) => console.error(`cnm: ${line}`));
  /** The namespace (inode) each listener was started in. */
  const listenedIn = new Map<string, number | undefined>();

  const needs = (endpointIds: Iterable<string>) => {
    if (!ctx.settings.embeddedDns) return false;
    for (const id of endpointIds) {
      const rec = rt.objects.endpoint.get(id);
      const nc = rec && networkContext(rt, rt.context<EndpointContext>(rec).networkId);
      if (nc && networkHasDns(dnsNetworkOf(nc))) return true;
    }
    return false;
  };
  const joinedTo = (sandboxId: string) =>
    endpointsOfSandbox(rt, sandboxId)
      .filter((r) => rt.state(r) === "joined")
      .map((r) => r.id);
  const start = async (sb: SandboxContext, replacing = false) => {
    const ino = inodeOf(sb.key);
    const started = await resolver.start(sb.id, {
      netns: sb.key,
      ...(replacing ? { replacing } : {}),
      ...(sb.config?.dns?.length ? { dns: sb.config.dns } : {}),
      ...(sb.config?.dnsSearch ? { dnsSearch: sb.config.dnsSearch } : {}),
    });
    listenedIn.set(sb.id, ino);
    return started.resolvConf.content;
  };
  const stop = async (sandboxId: string) => {
    listenedIn.delete(sandboxId);
    await resolver.stop(sandboxId);
  };
  const legacy = async (sb: SandboxContext) =>
    resolvConf({ name: sb.name, ...(sb.config ?? {}) }, await hostResolvConf());
  const resolvPath = (id: string) => `${ctx.sandboxes.dir(id)}/resolv.conf`;
  /** Writes the embedded file unless the sandbox's file already is one (a restart). */
  const ensureEmbeddedFile = async (id: string, content: string) => {
    const now = await Deno.readTextFile(resolvPath(id)).catch(() => "");
    if (!EMBEDDED.test(now)) {
      await Deno.mkdir(ctx.sandboxes.dir(id), { recursive: true });
      await writeIfChanged(resolvPath(id), content);
    }
  };
  const readySandboxes = () =>
    [...rt.objects.sandbox.values()].filter((r) => rt.state(r) === "ready")
      .map((r) => rt.context<SandboxContext>(r));

  return {
    resolver,
    feed,
    needs,
    async program(sb, endpointIds, initial) {
      const running = resolver.listener(sb.id);
      if (needs(endpointIds)) {
        if (running && !initial) return undefined; // serving already: the file is right
        return await start(sb);
      }
      if (running) {
        await stop(sb.id);
        return await legacy(sb);
      }
      return initial ? await legacy(sb) : undefined;
    },
    async deleting(sandboxId) {
      await stop(sandboxId).catch((err) =>
        log(`stopping the DNS listener of sandbox ${sandboxId}: ${errText(err)}`)
      );
    },
    async restartAll() {
      if (!ctx.settings.embeddedDns) return { started: 0, failed: [] };
      const queue = readySandboxes().filter((sb) => needs(joinedTo(sb.id)));
      const failed: string[] = [];
      let started = 0;
      const worker = async () => {
        for (let sb = queue.shift(); sb; sb = queue.shift()) {
          const s = sb;
          try {
            await rt.locks.with([`sandbox-config:${s.id}`], async () => {
              await ensureEmbeddedFile(s.id, await start(s, true));
            });
            started++;
          } catch (err) {
            failed.push(s.id);
            log(`the DNS listener of sandbox ${s.name} did not start: ${errText(err)}`);
          }
        }
      };
      await Promise.all(Array.from({ length: options.parallel ?? 8 }, worker));
      return { started, failed };
    },
    async inspect() {
      await resolver.idle(); // (stops remove their tables in the background)
      const out: Finding[] = [];
      const finding = (sb: SandboxContext, f: Omit<Finding, "kind" | "objectId" | "resource">) =>
        out.push({ kind: "sandbox", objectId: sb.id, resource: "dns", ...f });
      for (const sb of readySandboxes()) {
        const running = resolver.listener(sb.id);
        const name = `resolver ${RESOLVER_ADDRESS} in ${sb.key}`;
        if (needs(joinedTo(sb.id))) {
          const ino = inodeOf(sb.key);
          if (!running) finding(sb, { name, problem: "missing" });
          else if (ino === undefined || ino !== listenedIn.get(sb.id)) {
            finding(sb, {
              name,
              problem: "different",
              expected: `listening in namespace ${listenedIn.get(sb.id)}`,
              actual: ino === undefined ? "the namespace is gone" : `namespace ${ino}`,
            });
          } else {
            for (
              const f of await resolver.check(sb.id).catch((err) => [{
                resource: "dns" as const,
                name: `ip cnm-dns in ${sb.key}`,
                problem: "missing" as const,
                actual: errText(err),
              }])
            ) finding(sb, f);
          }
          continue;
        }
        if (running) finding(sb, { name, problem: "unexpected" });
        if (inodeOf(sb.key) === undefined) continue;
        const table = await readDnat(sb.key).catch(() => undefined);
        if (table) {
          finding(sb, {
            name: `ip cnm-dns in ${sb.key}`,
            problem: "unexpected",
            actual: table.join("; "),
          });
        }
      }
      return out;
    },
    async repair(sandboxId, findings) {
      const rec = rt.objects.sandbox.get(sandboxId);
      if (!rec) return;
      const sb = rt.context<SandboxContext>(rec);
      const dns = findings.filter((f) => f.resource === "dns");
      await rt.locks.with([`sandbox-config:${sb.id}`], async () => {
        if (dns.some((f) => f.problem === "unexpected")) {
          if (resolver.listener(sb.id)) await stop(sb.id);
          await removeDnat(sb.key);
        } else if (dns.some(isListener) || findings.some((f) => f.resource === "netns")) {
          // Not listening, or in a namespace that was replaced: new sockets, new table.
          await stop(sb.id).catch(() => {});
          await ensureEmbeddedFile(sb.id, await start(sb, true));
        } else if (dns.length) {
          await resolver.listener(sb.id)?.repair();
        }
      });
    },
    async close() {
      feed.close();
      await resolver.close();
    },
  };
}
