/**
 * The interfaces of the sandbox services every command shares through the controller's
 * context: programming (routes, files), the embedded DNS glue and port publishing. They live
 * apart from their implementations so that `context.ts` names them without importing the
 * modules that take the context (no import cycle, not even of types).
 *
 * @module
 */

import type { SandboxContext } from "../../actors/sandbox.ts";
import type { GatewayConnectivity } from "../../drivers/driver.ts";
import type { Resolver } from "../dns/resolver.ts";
import type { FoldWarning } from "../journal/fold.ts";
import type { PortAllocator, PortMapping } from "../ports/mod.ts";
import type { DnsFeed } from "./dns_feed.ts";
import type { Finding } from "./drift.ts";
import type { SandboxChange } from "./effects.ts";
import type { SandboxMember } from "./sandbox_config.ts";

/** Sandbox-level programming. */
export interface SandboxProgrammer {
  /** Directory of a sandbox's files. */
  dir(sandboxId: string): string;
  /** Reprograms a sandbox after a change of its members (serialised per sandbox). */
  changed(sandboxId: string, change: SandboxChange): Promise<void>;
  /** Forgets an endpoint's pending join facts once its outcome is applied. */
  settled(endpointId: string): void;
  /** The sandbox's members now: joined endpoints, and joining ones whose driver join is done. */
  members(sandboxId: string): SandboxMember[];
}

/** The controller's embedded DNS. */
export interface SandboxDns {
  readonly resolver: Resolver;
  readonly feed: DnsFeed;
  /** Whether a sandbox whose members are these endpoints needs the resolver. */
  needs(endpointIds: Iterable<string>): boolean;
  /**
   * Starts or stops the sandbox's listener for its members (endpoints joined or joining);
   * returns the resolv.conf to write now, or undefined to leave the file alone. `initial`:
   * the sandbox was just made (or its files are remade): a file is always returned.
   */
  program(sb: SandboxContext, endpointIds: string[], initial: boolean): Promise<string | undefined>;
  /** Stops the listener of a sandbox being deleted (before its namespace goes). */
  deleting(sandboxId: string): Promise<void>;
  /** Starts the listener of every ready sandbox that needs one (restart); never throws. */
  restartAll(): Promise<{ started: number; failed: string[] }>;
  /** What reconcile finds about listeners and DNAT tables. Reads only. */
  inspect(): Promise<Finding[]>;
  /** Repairs a sandbox's `dns` findings. */
  repair(sandboxId: string, findings: Finding[]): Promise<void>;
  /** Closes the listeners (their DNAT tables stay, like the rest of the kernel). */
  close(): Promise<void>;
}

/** What one sandbox publishes, and on which endpoint. */
export interface Publication {
  sandboxId: string;
  /** The publishing (gateway) endpoint. */
  endpointId: string;
  networkId: string;
  /** The union of the members' ports, less those of a family the gateway has no address of. */
  mappings: PortMapping[];
}

/** Options of {@link SandboxPorts.sync}. */
export interface SyncOptions {
  /** Rethrow a failure (a join, a repair); otherwise it is logged and left to reconcile. */
  strict?: boolean;
  /** Program even when nothing changed (a rebuilt interface lost its hairpin mode). */
  force?: boolean;
}

/** The controller's port publishing state. */
export interface SandboxPorts {
  /** Host port decisions (endpoint_ports.ts). */
  readonly allocator: PortAllocator;
  /**
   * Makes the sandbox publish what `members` ask, on their gateway.
   *
   * @throws the wrapped driver error, when `strict`.
   */
  sync(sandboxId: string, members: SandboxMember[], options?: SyncOptions): Promise<void>;
  /** Revokes the sandbox's publication when `endpointId`, about to leave, publishes it. */
  beforeLeave(sandboxId: string, endpointId: string): Promise<void>;
  /** What every ready sandbox should publish now (reconcile's expectation). */
  expected(): Publication[];
  /** What this process last programmed for a sandbox. */
  published(sandboxId: string): Publication | undefined;
  /** The plugin side: what a sandbox's gateway plugin was told. */
  readonly plugins: Pick<PluginPorts, "told">;
  /**
   * At start, before interrupted effects and reconcile (see the module doc). `resuming`: ids
   * of objects whose interrupted effect runs again next (their actors still show the state
   * before it): they are no members, their effect publishes or revokes for them.
   */
  republish(warnings: FoldWarning[], resuming: ReadonlySet<string>): Promise<void>;
  /** Removes what an endpoint publishes (or published before a crash), through its driver. */
  revokeEndpoint(networkId: string, endpointId: string, mappings?: PortMapping[]): Promise<void>;
}

/** What a sandbox asks of its gateway endpoint's plugin. */
export interface PluginPublication {
  sandboxId: string;
  /** The gateway endpoint. */
  endpointId: string;
  networkId: string;
  request: GatewayConnectivity;
}

/** The plugin side of a sandbox's publishing. */
export interface PluginPorts {
  /** What `members` ask of their gateway's plugin; undefined when the gateway is no plugin's. */
  desired(sandboxId: string, members: SandboxMember[]): PluginPublication | undefined;
  /** Revokes what was told to a gateway that `want` no longer names (before any program). */
  revokeStale(sandboxId: string, want: PluginPublication | undefined): Promise<void>;
  /**
   * Tells `want`'s gateway, unless it was told exactly that. A failure is Docker's
   * `driver failed programming external connectivity …` (the caller wraps it); the plugin
   * hears RevokeExternalConnectivity then, so nothing stays half-programmed.
   */
  program(want: PluginPublication | undefined): Promise<void>;
  /** Revokes the sandbox's publication when `endpointId`, about to leave, is its gateway. */
  beforeLeave(sandboxId: string, endpointId: string): Promise<void>;
  /** At start: what every ready sandbox's gateway was told, from the journal; no calls. */
  restore(): void;
  /** What a sandbox's gateway plugin was last told (tests, inspection). */
  told(sandboxId: string): PluginPublication | undefined;
}
