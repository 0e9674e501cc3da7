/**
 * driver.Config: configuring drivers through the controller, journaled like everything else.
 * A change is validated against the driver's zod schema (nothing is journaled on refusal),
 * appended as `driver.configured` on `<prefix>.driver.<hostId>.<driver>` with the full
 * resulting configuration and what changed, and only then applied: to the driver
 * (`configure`), to the default IPAM (the bridge's `defaultAddressPools`), and to every network
 * created from then on, which records it. Configure and network creation take the driver's
 * lock, so a change is in force before the next network of that driver is decided.
 *
 * @module
 */

import { z } from "zod";
import type { Driver, DriverConfig } from "../../drivers/driver.ts";
import type { BridgeDriverConfig } from "../../drivers/bridge/config.ts";
import { formatIssues } from "../journal/events.ts";
import {
  type ConfigChange,
  configChanges,
  CONFIGURED,
  DRIVER_CONFIGURED,
  DRIVER_KIND,
  type DriverConfigState,
  driverObjectId,
} from "../journal/driver_config.ts";
import { errText, InvalidArgumentError, UnavailableError } from "../errors.ts";
import { LocalDefault } from "../ipam/mod.ts";
import type { ControllerContext, StoredDriverConfig } from "./context.ts";

export type { StoredDriverConfig } from "./context.ts";
import { parseRef } from "./inputs.ts";

/** What {@link configureDriver} did. */
export interface ConfigureDriverResult {
  driver: string;
  host: string;
  /** The configuration in force now (defaults filled). */
  config: DriverConfig;
  /** What the event recorded as changed (`from: null` on the driver's first event); `{}` when nothing changed. */
  changed: Record<string, ConfigChange>;
  /** E.g. that a key reaches only new networks. */
  warnings: string[];
  /** Whether a `driver.configured` event was appended (false: nothing differed). */
  journaled: boolean;
  /** Sequence of the event in force (0: none journaled, the driver's defaults are in force). */
  seq: number;
}

/** Drivers without a schema take no configuration: only `{}`. */
const NO_CONFIG = z.strictObject({});
const Options = z.record(z.string(), z.unknown(), { error: "must be an object" });
/** Driver names become subject tokens: nothing NATS reads as a wildcard or a separator. */
const NAME = /^[^\s*>]+$/;

const schemaOf = (driver: Driver) => driver.configSchema ?? NO_CONFIG;
const lockOf = (name: string) => `driver:${name}`;
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** What a change would do: validated, not journaled. */
interface Plan {
  driver: Driver;
  config: DriverConfig;
  /** The configuration in force before (defaults when nothing is journaled). */
  current: DriverConfig;
  stored?: StoredDriverConfig;
}

/**
 * Configures a driver: merges `options` into the configuration in force (a key set to
 * `null` goes back to its default), validates, journals, applies. Nothing is journaled when
 * the result equals the configuration in force, so `configureDriver(name, {})` just reports it.
 *
 * @throws {NotFoundError} `unknown driver "X"`.
 * @throws {InvalidArgumentError} an unknown key or a bad value, naming the key; nothing is journaled.
 * @throws {UnavailableError|ConflictError} the journal refused; nothing is applied.
 */
export async function configureDriver(
  ctx: ControllerContext,
  name: string,
  options: Record<string, unknown>,
): Promise<ConfigureDriverResult> {
  ctx.runtime.assertOpen();
  const driver = await resolveDriver(ctx, name);
  const patch = parseOptions(driver.name, options);
  return await ctx.runtime.locks.with([lockOf(driver.name)], async () => {
    await settle(ctx, driver);
    return await commit(ctx, plan(ctx, driver, patch));
  });
}

/**
 * Applies the controller option `driverConfig` at start: every entry is validated first (one
 * bad entry refuses them all), then each is journaled only when it differs from the
 * configuration in force in the journal, so restarts with the same options write nothing.
 *
 * @throws {NotFoundError|InvalidArgumentError} as {@link configureDriver}.
 */
export async function applyStartConfig(
  ctx: ControllerContext,
  driverConfig: Record<string, Record<string, unknown>> | undefined,
): Promise<ConfigureDriverResult[]> {
  if (driverConfig === undefined) return [];
  const entries = Object.entries(parseOptions("", driverConfig, "driverConfig"));
  const plans: Plan[] = [];
  for (const [name, options] of entries) {
    const driver = await resolveDriver(ctx, name);
    await settle(ctx, driver);
    plans.push(plan(ctx, driver, parseOptions(driver.name, options)));
  }
  const out: ConfigureDriverResult[] = [];
  for (const p of plans) {
    out.push(await ctx.runtime.locks.with([lockOf(p.driver.name)], () => commit(ctx, p)));
  }
  return out;
}

/**
 * The configuration a new network of `driver` records: the one in force (its defaults when
 * none is journaled), or undefined for drivers that take none. Call it holding the driver's
 * lock (`driverLock`).
 */
export async function driverConfigInForce(
  ctx: ControllerContext,
  driver: Driver,
): Promise<DriverConfig | undefined> {
  if (!driver.configSchema) return undefined;
  await settle(ctx, driver);
  return ctx.driverConfigs.get(driver.name)?.config ?? driver.configSchema.parse({});
}

/** The lock that orders configuring `driver` against creating its networks. */
export function driverLock(name: string): string {
  return lockOf(name);
}

/**
 * Takes this host's journaled configurations (recovery, before anything runs) and applies
 * each to its driver if it is known yet; the others are applied by {@link applyJournaled}
 * when their plugin is resolved. Returns the reasons of the ones that could not be applied.
 */
export function loadJournaled(
  ctx: ControllerContext,
  drivers: Iterable<DriverConfigState>,
): [string, string][] {
  const failures: [string, string][] = [];
  for (const d of drivers) {
    if (d.host !== ctx.settings.hostId) continue;
    ctx.driverConfigs.set(d.name, { config: d.config, seq: d.seq });
    const driver = ctx.drivers.driver(d.name);
    const reason = driver ? applyJournaled(ctx, driver) : undefined;
    if (reason) failures.push([d.id, reason]);
  }
  return failures;
}

/** Names of the drivers with a journaled configuration on this host. */
export function configuredDrivers(ctx: ControllerContext): string[] {
  return [...ctx.driverConfigs.keys()];
}

/**
 * Applies the journaled configuration of `driver`, if any (a plugin resolved after start).
 * A configuration the driver's schema refuses now (a plugin whose schema changed) leaves the
 * driver's defaults in force; the reason is returned.
 */
export function applyJournaled(ctx: ControllerContext, driver: Driver): string | undefined {
  const stored = ctx.driverConfigs.get(driver.name);
  if (!stored) return undefined;
  const schema = schemaOf(driver);
  const r = schema.safeParse(stored.config);
  if (!r.success) {
    // The defaults are in force; the next change is recorded against them.
    const defaults = schema.safeParse({});
    const config = (defaults.success ? defaults.data : {}) as DriverConfig;
    apply(ctx, driver, { config, seq: stored.seq });
    return `journaled configuration of driver "${driver.name}" no longer applies: ${
      formatIssues(r.error)
    }; its defaults are in force`;
  }
  apply(ctx, driver, { config: r.data as DriverConfig, seq: stored.seq });
  return undefined;
}

async function resolveDriver(ctx: ControllerContext, name: string): Promise<Driver> {
  const ref = parseRef(name, "driver");
  if (!NAME.test(ref)) {
    throw new InvalidArgumentError(`invalid driver: ${JSON.stringify(ref)} is not a driver name`);
  }
  return await ctx.drivers.resolve(ref);
}

function parseOptions(
  driver: string,
  options: unknown,
  what = `configuration of driver "${driver}"`,
): Record<string, any> {
  const r = Options.safeParse(options ?? {});
  if (!r.success) throw new InvalidArgumentError(`invalid ${what}: ${formatIssues(r.error)}`);
  return r.data;
}

function plan(ctx: ControllerContext, driver: Driver, patch: Record<string, unknown>): Plan {
  const schema = schemaOf(driver);
  const stored = ctx.driverConfigs.get(driver.name);
  const current = stored?.config ?? (schema.parse({}) as DriverConfig);
  const merged: Record<string, unknown> = { ...current };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete merged[key];
    else merged[key] = value;
  }
  const r = schema.safeParse(merged);
  if (!r.success) {
    throw new InvalidArgumentError(
      `invalid configuration of driver "${driver.name}": ${formatIssues(r.error)}`,
    );
  }
  return { driver, config: r.data as DriverConfig, current, ...(stored ? { stored } : {}) };
}

async function commit(ctx: ControllerContext, p: Plan): Promise<ConfigureDriverResult> {
  const rt = ctx.runtime;
  const { driver, config, current, stored } = p;
  const base = { driver: driver.name, host: ctx.settings.hostId, config };
  if (same(config, current)) {
    return { ...base, changed: {}, warnings: [], journaled: false, seq: stored?.seq ?? 0 };
  }
  const later = new Set(driver.configNewNetworksOnly ?? []);
  const joins = new Set(driver.configNextJoins ?? []);
  const effective = configChanges(current, config);
  const changed = stored ? effective : configChanges(null, config);
  const warnings: string[] = [];
  for (const key of Object.keys(effective)) {
    changed[key] ??= effective[key];
    if (later.has(key)) {
      changed[key].appliesTo = "new networks";
      warnings.push(
        `${key} applies to new networks only: existing ${driver.name} networks keep the ` +
          "configuration they were created under",
      );
    } else if (joins.has(key)) {
      changed[key].appliesTo = "next joins";
      warnings.push(
        `${key} applies to the next joins, of existing ${driver.name} networks too: ` +
          "endpoints joined before keep what they joined with until they join again",
      );
    } else changed[key].appliesTo = "all networks";
  }
  const data = { driver: driver.name, config, changed, ...(warnings.length ? { warnings } : {}) };
  const objectId = driverObjectId(ctx.settings.hostId, driver.name);
  const event = rt.event(
    DRIVER_KIND,
    objectId,
    DRIVER_CONFIGURED,
    stored ? CONFIGURED : null,
    CONFIGURED,
    data,
  );
  let seq: number;
  try {
    seq = await rt.append(event, stored?.seq ?? 0);
  } catch (err) {
    // A timeout may still have stored it, a conflict means another writer did: read the
    // journal before the driver is used again.
    ctx.driverConfigs.set(driver.name, { ...(stored ?? { config: current, seq: 0 }), stale: true });
    throw err;
  }
  apply(ctx, driver, { config, seq });
  return { ...base, changed, warnings, journaled: true, seq };
}

/** Makes a configuration the one in force: the driver, and what the controller derives from it. */
function apply(ctx: ControllerContext, driver: Driver, stored: StoredDriverConfig): void {
  ctx.driverConfigs.set(driver.name, stored);
  driver.configure?.(stored.config);
  // daemon.json's default-address-pools, here a bridge option: the default IPAM's local pools.
  if (driver.name === "bridge") {
    const pools = (stored.config as Partial<BridgeDriverConfig>).defaultAddressPools;
    ctx.ipam.setDefaultPools(LocalDefault, pools);
  }
}

/** After an append of unknown outcome: takes the journal's last configuration of `driver`. */
async function settle(ctx: ControllerContext, driver: Driver): Promise<void> {
  const stored = ctx.driverConfigs.get(driver.name);
  if (!stored?.stale) return;
  const objectId = driverObjectId(ctx.settings.hostId, driver.name);
  let last;
  try {
    last = await ctx.runtime.journal.last(DRIVER_KIND, objectId);
  } catch (err) {
    throw new UnavailableError(
      `configuration of driver "${driver.name}" is unknown until the journal answers: ${
        errText(err)
      }`,
      { cause: err },
    );
  }
  if (!last || last.type !== DRIVER_CONFIGURED) {
    if (stored.seq === 0) ctx.driverConfigs.delete(driver.name);
    else ctx.driverConfigs.set(driver.name, { config: stored.config, seq: stored.seq });
    return;
  }
  ctx.driverConfigs.set(driver.name, {
    config: (last.data as { config: DriverConfig }).config,
    seq: last.seq,
  });
  applyJournaled(ctx, driver);
}
