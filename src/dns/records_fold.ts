/**
 * Feeding the records from CNM objects: mappers from actor contexts (what the controller
 * has in memory) and a pure fold of journal events (what any subscriber — a remote host
 * learning overlay endpoints, a restart — reads from the stream). The fold runs the same
 * machines as the controller's recovery (`src/journal/fold.ts`), so "what resolves" follows exactly
 * the states the journal says: an endpoint's names appear with `endpoint.joined` and go
 * with `endpoint.leave.requested`.
 *
 * @example
 * ```ts ignore
 * import { createDnsFold } from "./records_fold.ts";
 * const fold = createDnsFold();
 * for await (const event of journal.read()) fold.apply(event);
 * fold.records.lookup(sandboxId, "db");
 * ```
 *
 * @module
 */

import type { EndpointContext } from "../../actors/endpoint.ts";
import type { NetworkContext } from "../../actors/network.ts";
import type { SandboxContext } from "../../actors/sandbox.ts";
import type { RecordedEvent } from "../journal/events.ts";
import { emptyFold, foldEvent, stateOf } from "../journal/fold.ts";
import {
  createDnsRecords,
  type DnsEndpoint,
  type DnsNetwork,
  type DnsRecords,
  type DnsSandbox,
} from "./records.ts";

/** Valid names of an `aliases` option (non-empty strings; anything else is ignored). */
export function aliasesOf(value: unknown): string[] {
  if (!Array.isArray(value)) return [];
  return value.filter((a): a is string => typeof a === "string" && a.trim() !== "")
    .map((a) => a.trim());
}

/** The records' view of a network context. */
export function dnsNetworkOf(c: NetworkContext): DnsNetwork {
  return {
    id: c.id,
    name: c.name,
    driver: c.driver,
    internal: c.internal,
    predefined: c.predefined,
  };
}

/** The records' view of a sandbox context. */
export function dnsSandboxOf(c: SandboxContext): DnsSandbox {
  return { id: c.id, name: c.name, ...(c.config?.hostname ? { hostname: c.config.hostname } : {}) };
}

/**
 * The records' view of an endpoint context in `state`. Its aliases are the context's (journaled
 * in `endpoint.create.requested`); `aliases` is used when the context has none (snapshots of
 * contexts made before it carried them).
 */
export function dnsEndpointOf(state: string, c: EndpointContext, aliases?: unknown): DnsEndpoint {
  return {
    id: c.id,
    networkId: c.networkId,
    sandboxId: c.sandboxId,
    state,
    ...(c.ipv4Address ? { ipv4Address: c.ipv4Address } : {}),
    ...(c.ipv6Address ? { ipv6Address: c.ipv6Address } : {}),
    aliases: aliasesOf(c.aliases ?? aliases),
  };
}

/** A pure fold of events into records. */
export interface DnsFold {
  readonly records: DnsRecords;
  /** Applies one event (events of unknown kinds or types are ignored). */
  apply(event: RecordedEvent): void;
  /** Highest sequence applied. */
  readonly lastSeq: number;
  /** Events that did not apply to their object's state (kept count only). */
  readonly warnings: number;
}

/** Creates a fold writing into `records` (default: new, empty records). */
export function createDnsFold(records: DnsRecords = createDnsRecords()): DnsFold {
  const fold = emptyFold();
  let warnings = 0;
  return {
    records,
    get lastSeq() {
      return fold.lastSeq;
    },
    get warnings() {
      return warnings;
    },
    apply(event) {
      foldEvent(fold, event);
      warnings += fold.warnings.length;
      fold.warnings.length = 0;
      const obj = fold.objects.get(event.objectId);
      if (!obj) return;
      const state = stateOf(obj.snapshot);
      const context = obj.snapshot.context;
      const gone = state === "deleted";
      if (gone) fold.objects.delete(obj.id); // nothing follows a delete; keep the fold small
      switch (obj.kind) {
        case "network":
          if (gone) records.removeNetwork(obj.id);
          else records.setNetwork(dnsNetworkOf(context as NetworkContext));
          break;
        case "sandbox":
          if (gone) records.removeSandbox(obj.id);
          else records.setSandbox(dnsSandboxOf(context as SandboxContext));
          break;
        case "endpoint":
          if (gone) records.removeEndpoint(obj.id);
          else {
            records.setEndpoint(
              dnsEndpointOf(
                state,
                context as EndpointContext,
                (obj.snapshot.context as { aliases?: string[] }).aliases ??
                  obj.createIntent?.data.aliases,
              ),
            );
          }
          break;
      }
    },
  };
}
