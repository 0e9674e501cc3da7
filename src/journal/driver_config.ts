/**
 * Driver configurations in the journal: kind `driver`, one subject per host and driver
 * (`<prefix>.driver.<hostId>.<driver>`), one `driver.configured` event per change carrying
 * the full resulting configuration. The configuration in force at any point is the `config`
 * of the last such event before it; folding needs no state machine.
 *
 * @example
 * ```ts
 * import { driverObjectId, foldDriverEvent, type DriverConfigState } from "./driver_config.ts";
 * import assert from "node:assert/strict";
 *
 * const drivers = new Map<string, DriverConfigState>();
 * foldDriverEvent(drivers, {
 *   v: 1, eventId: "e1", kind: "driver", objectId: driverObjectId("h1", "bridge"),
 *   type: "driver.configured", from: null, to: "configured", at: "2025-01-01T00:00:00Z",
 *   host: "h1", seq: 7,
 *   data: { driver: "bridge", config: { mtu: 9000 }, changed: { mtu: { from: null, to: 9000 } } },
 * });
 * assert.deepEqual(drivers.get("h1.bridge")?.config, { mtu: 9000 });
 * ```
 *
 * @module
 */

import { DRIVER_KIND, type RecordedEvent } from "./events.ts";

export { DRIVER_KIND } from "./events.ts";

/** Type of a configuration change. */
export const DRIVER_CONFIGURED = "driver.configured";
/** The state name in a driver event's `to` (`from` is null on the first event). */
export const CONFIGURED = "configured";

/** The objectId of a host's driver configuration: `<hostId>.<driver>`. */
export function driverObjectId(hostId: string, driver: string): string {
  return `${hostId}.${driver}`;
}

/** One changed key: the value before (null when nothing was journaled) and after. */
export interface ConfigChange {
  from: unknown;
  to: unknown;
  /**
   * What the change reaches: `"new networks"` (existing ones keep the configuration they were
   * created under), `"next joins"` (every network's next joins; endpoints joined before keep
   * what they joined with) or `"all networks"`.
   */
  appliesTo?: "all networks" | "new networks" | "next joins";
}

/** `data` of a `driver.configured` event. */
export interface DriverConfiguredData {
  driver: string;
  config: Record<string, unknown>;
  changed: Record<string, ConfigChange>;
  warnings?: string[];
}

/** A host's driver configuration as folded from the journal. */
export interface DriverConfigState {
  /** `<hostId>.<driver>` (the objectId of its events). */
  id: string;
  /** The driver's name. */
  name: string;
  host: string;
  /** The configuration in force. */
  config: Record<string, unknown>;
  /** Sequence and time of the event that set it. */
  seq: number;
  at: string;
  /** Number of changes journaled. */
  changes: number;
}

/**
 * Applies one event of kind `driver` (mutates `drivers`, keyed by objectId); returns a reason
 * when a `driver.configured` event does not apply. Types added later are skipped.
 */
export function foldDriverEvent(
  drivers: Map<string, DriverConfigState>,
  event: RecordedEvent,
): string | undefined {
  if (event.kind !== DRIVER_KIND) return `${event.kind} is not a driver event`;
  if (event.type !== DRIVER_CONFIGURED) return undefined;
  const d = event.data as Partial<DriverConfiguredData>;
  if (!d.config || typeof d.config !== "object" || typeof d.driver !== "string") {
    return "driver.configured without driver and config";
  }
  const prev = drivers.get(event.objectId);
  drivers.set(event.objectId, {
    id: event.objectId,
    name: d.driver,
    host: event.host,
    config: d.config,
    seq: event.seq,
    at: event.at,
    changes: (prev?.changes ?? 0) + 1,
  });
  return undefined;
}

/**
 * What changed from `before` (null: nothing journaled yet, every key is reported with
 * `from: null`) to `after`, by key; values compared as JSON. Keys missing on one side are
 * reported as null there.
 */
export function configChanges(
  before: Record<string, unknown> | null,
  after: Record<string, unknown>,
): Record<string, ConfigChange> {
  const out: Record<string, ConfigChange> = {};
  const keys = new Set([...Object.keys(before ?? {}), ...Object.keys(after)]);
  for (const key of [...keys].sort()) {
    const from = before === null ? null : before[key] ?? null;
    const to = after[key] ?? null;
    if (before === null || JSON.stringify(from) !== JSON.stringify(to)) out[key] = { from, to };
  }
  return out;
}

/** A host's driver configuration in force at the replayed point (the read model). */
export type DriverConfigInfo = DriverConfigState;

/** The read model of folded driver configurations, sorted by id. */
export function driverConfigInfos(
  drivers: Map<string, DriverConfigState>,
): DriverConfigInfo[] {
  return [...drivers.values()].map((d) => ({ ...d }))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
