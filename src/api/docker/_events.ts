/**
 * `GET /events` for networks, mapped from the journal: `network.created` → `create`,
 * `endpoint.joined` → `connect`, `endpoint.left` (or the deletion of a joined endpoint) →
 * `disconnect`, `network.deleted` → `destroy`; `prune` is not journaled and is kept in
 * memory from the prunes this server answered. `since`/`until` read the whole journal
 * (dockerd keeps only its last 256 events); without `until`, or with one in the future, the
 * stream goes on live from this controller's own events.
 *
 * Only this host's events are shown, as a dockerd shows its own. Filters follow moby's
 * events filter (`type`, `event`, `network`, `container`, `scope`, `label`, …).
 *
 * @module
 */

import type { RecordedEvent } from "../../journal/events.ts";
import {
  borrowConnection,
  type Borrowed,
  type NatsTarget,
  readEvents,
} from "../../journal/watch.ts";
import { DockerApiError } from "./_errors.ts";
import {
  exactMatch,
  type Filters,
  fuzzyMatch,
  matchLabels,
  parseFilters,
  parseTime,
} from "./_filters.ts";
import type { Reply, RequestContext } from "./_http.ts";
import type { DockerBackend } from "./_lookup.ts";

/** One Docker event (`events.Message`), with its time in nanoseconds. */
export interface DockerEvent {
  Type: "network";
  Action: "create" | "connect" | "disconnect" | "destroy" | "prune";
  Actor: { ID: string; Attributes: Record<string, string> };
  scope: "local";
  timeNano: bigint;
}

/** Encodes an event as dockerd's event stream does (HTML-escaped, one line). */
export function encodeEvent(e: DockerEvent): string {
  const head = JSON.stringify({ Type: e.Type, Action: e.Action, Actor: e.Actor, scope: e.scope })
    .replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(/&/g, "\\u0026");
  return `${head.slice(0, -1)},"time":${e.timeNano / 1_000_000_000n},"timeNano":${e.timeNano}}\n`;
}

const nanosOf = (iso: string) => BigInt(Date.parse(iso)) * 1_000_000n;

/**
 * Folds journal events into what Docker events need (network names and drivers, which
 * sandbox an endpoint is joined to) and maps each one to its Docker event, if any.
 */
export function createEventMapper(hostId: string) {
  const networks = new Map<string, { name: string; driver: string }>();
  const endpoints = new Map<string, { networkId: string; sandboxId?: string }>();
  const event = (
    action: DockerEvent["Action"],
    netId: string,
    at: string,
    container?: string,
  ): DockerEvent | undefined => {
    const n = networks.get(netId);
    if (!n) return undefined;
    const attributes: Record<string, string> = container ? { container } : {};
    attributes.name = n.name;
    attributes.type = n.driver;
    return {
      Type: "network",
      Action: action,
      Actor: { ID: netId, Attributes: attributes },
      scope: "local",
      timeNano: nanosOf(at),
    };
  };
  return {
    /** Seeds the state from a snapshot (for a live-only stream). */
    seed(backend: DockerBackend) {
      for (const n of backend.networks()) networks.set(n.id, { name: n.name, driver: n.driver });
      for (const e of backend.endpoints()) {
        endpoints.set(e.id, { networkId: e.networkId, sandboxId: e.sandboxId ?? undefined });
      }
    },
    /** Folds one journal event; returns its Docker event when it has one. */
    apply(e: RecordedEvent): DockerEvent | undefined {
      const d = e.data as Record<string, any>;
      const ours = e.host === hostId;
      switch (e.type) {
        case "network.create.requested":
          networks.set(e.objectId, { name: d.name, driver: d.driver });
          return undefined;
        case "network.created":
          return ours ? event("create", e.objectId, e.at) : undefined;
        case "network.deleted":
          return ours ? event("destroy", e.objectId, e.at) : undefined;
        case "endpoint.create.requested":
          endpoints.set(e.objectId, { networkId: d.networkId });
          return undefined;
        case "endpoint.join.requested": {
          const ep = endpoints.get(e.objectId);
          if (ep) ep.sandboxId = d.sandboxId;
          return undefined;
        }
        case "endpoint.join.failed": {
          const ep = endpoints.get(e.objectId);
          if (ep) delete ep.sandboxId;
          return undefined;
        }
        case "endpoint.joined": {
          const ep = endpoints.get(e.objectId);
          return ep && ours ? event("connect", ep.networkId, e.at, ep.sandboxId) : undefined;
        }
        case "endpoint.left":
        case "endpoint.deleted": {
          const ep = endpoints.get(e.objectId);
          if (!ep?.sandboxId) return undefined;
          const sandboxId = ep.sandboxId;
          delete ep.sandboxId;
          return ours ? event("disconnect", ep.networkId, e.at, sandboxId) : undefined;
        }
        default:
          return undefined;
      }
    },
  };
}

/** moby's events filter (`daemon/events/filter.go`), for network events. */
export function includeEvent(f: Filters, e: DockerEvent): boolean {
  const byName = (key: string) =>
    fuzzyMatch(f, key, e.Actor.ID) || fuzzyMatch(f, key, e.Actor.Attributes.name ?? "");
  return exactMatch(f, "event", e.Action) && exactMatch(f, "type", e.Type) &&
    (!f.has("scope") || exactMatch(f, "scope", e.scope)) &&
    [
      "daemon",
      "container",
      "plugin",
      "volume",
      "network",
      "image",
      "node",
      "service",
      "secret",
      "config",
    ]
      .every(byName) &&
    (!f.has("label") || matchLabels(f, "label", e.Actor.Attributes));
}

/** Options of {@link createEventSource}. */
export interface EventSourceOptions {
  /** Where the journal is, for `since`/`until` (history). Without it only live events. */
  nats?: NatsTarget;
  stream: string;
  prefix: string;
}

/** Serves `GET /events` and remembers prunes. */
export function createEventSource(backend: DockerBackend, options: EventSourceOptions) {
  const prunes: DockerEvent[] = [];
  const listeners = new Set<(e: DockerEvent) => void>();
  const open = new Set<() => void>();
  // One connection for every history read, opened on first use.
  let journal: Promise<Borrowed> | undefined;
  const connection = () => journal ??= borrowConnection(options.nats!);
  return {
    /** Ends every open stream and the journal connection (the server is closing). */
    async closeAll() {
      for (const stop of [...open]) stop();
      const j = journal;
      journal = undefined;
      if (j) await (await j.catch(() => undefined))?.release();
    },
    /** Records a prune this server answered (and tells live streams). */
    pruned(_names: string[]) {
      const e: DockerEvent = {
        Type: "network",
        Action: "prune",
        Actor: { ID: "", Attributes: { reclaimed: "0" } },
        scope: "local",
        timeNano: BigInt(Date.now()) * 1_000_000n,
      };
      prunes.push(e);
      if (prunes.length > 1024) prunes.shift();
      for (const l of listeners) l(e);
    },
    /** Handles `GET /events`. */
    handle(ctx: RequestContext): Reply {
      const q = ctx.url.searchParams;
      const since = q.get("since") ? parseTime(q.get("since")!) : undefined;
      const until = q.get("until") ? parseTime(q.get("until")!) : undefined;
      if (until !== undefined && until < (since ?? 0n)) {
        throw new DockerApiError(
          400,
          `\`since\` time (${q.get("since")}) cannot be after \`until\` time (${q.get("until")})`,
        );
      }
      const f = parseFilters(q.get("filters"));
      const history = since !== undefined || until !== undefined;
      if (history && !options.nats) {
        throw new DockerApiError(
          501,
          "events since/until need the journal: serveDocker has no nats option",
        );
      }
      const onlyPast = until !== undefined && until < BigInt(Date.now()) * 1_000_000n;
      const inWindow = (e: DockerEvent) =>
        e.timeNano >= (since ?? 0n) && (until === undefined || e.timeNano <= until);
      const enc = new TextEncoder();
      let stop = () => {};
      const body = new ReadableStream<Uint8Array>({
        start: (out) => {
          let closed = false;
          const emit = (e: DockerEvent | undefined) => {
            if (!closed && e && inWindow(e) && includeEvent(f, e)) {
              out.enqueue(enc.encode(encodeEvent(e)));
            }
          };
          const mapper = createEventMapper(backend.hostId);
          const buffered: RecordedEvent[] = [];
          // While the journal is read, live events wait; then those past its end follow.
          let reading = history;
          const sub = onlyPast ? undefined : backend.events$.subscribe((e) => {
            if (reading) buffered.push(e);
            else emit(mapper.apply(e));
          });
          const onPrune = (e: DockerEvent) => emit(e);
          if (!onlyPast) listeners.add(onPrune);
          let timer: ReturnType<typeof setTimeout> | undefined;
          stop = () => {
            if (closed) return;
            closed = true;
            open.delete(stop);
            sub?.unsubscribe();
            listeners.delete(onPrune);
            clearTimeout(timer);
            try {
              out.close();
            } catch { /* already closed */ }
          };
          open.add(stop);
          // `until` in the future: stop then, but never before the journal has been read.
          let expired = false;
          if (until !== undefined && !onlyPast) {
            timer = setTimeout(
              () => (reading ? (expired = true) : stop()),
              Number((until - BigInt(Date.now()) * 1_000_000n) / 1_000_000n),
            );
          }
          if (!history) {
            mapper.seed(backend);
            return;
          }
          (async () => {
            const { nc } = await connection();
            let seq = 0;
            const pending = prunes.filter(inWindow);
            for await (
              const e of readEvents(nc, { stream: options.stream, prefix: options.prefix })
            ) {
              if (closed) break;
              seq = e.seq;
              const d = mapper.apply(e);
              while (pending.length && d && pending[0].timeNano <= d.timeNano) {
                emit(pending.shift());
              }
              emit(d);
            }
            for (const p of pending) emit(p);
            if (onlyPast) return stop();
            for (const e of buffered.splice(0)) if (e.seq > seq) emit(mapper.apply(e));
            reading = false;
            if (expired) stop();
          })().catch((err) => {
            if (!closed) out.error(err);
            closed = true;
          });
        },
        cancel: () => stop(),
      });
      return { stream: body };
    },
  };
}
