/**
 * Port publishing on a bridge endpoint: the order of the steps and their undoing.
 *
 * Program (an ensure, all or nothing):
 * 1. refuse internal networks (they publish nothing; saying so beats silently ignoring);
 * 2. hold every host port (a bound socket in the host namespace, `Kernel.holdPort`): a
 *    conflict with another process fails here, before any rule exists;
 * 3. `route_localnet` on the bridge (127.0.0.1 bindings and 127.0.0.1 → a 0.0.0.0 binding)
 *    and hairpin mode on the endpoint's bridge port (a container reaching its own published
 *    port when br_netfilter bridges the DNATed frame back out of the port it came from);
 * 4. the DNAT rules, in one nft transaction (`Firewall.publishPorts`);
 * 5. release host ports a previous call held and this one no longer maps;
 * 6. flush the UDP conntrack entries of each published host port, so a client that was
 *    already sending (whose un-NATed entry it keeps refreshing) reaches the container.
 * A failure at any step runs the revoke below and rethrows: the endpoint ends up publishing
 * nothing.
 *
 * Revoke: rules, sockets, hairpin mode, UDP conntrack entries; every step is tried and all
 * failures are reported together.
 *
 * @module
 */

import { InvalidArgumentError } from "../../src/errors.ts";
import { familyOf, isUnspecified, type PortMapping } from "../../src/ports/binding.ts";
import type { Kernel } from "../../src/kernel/types.ts";
import type { Firewall } from "./_firewall.ts";
import { portSpec } from "./_portmap.ts";

/** One endpoint to publish on. */
export interface PublishTarget {
  networkId: string;
  internal: boolean;
  bridge: string;
  endpointId: string;
  /** The endpoint's host-side veth (its bridge port). */
  hostVeth: string;
  ipv4Address?: string;
  ipv6Address?: string;
  mappings: PortMapping[];
}

/** What {@link createPublisher} needs. */
export interface PublisherDeps {
  firewall(): Firewall;
}

/** Publishes and revokes endpoints' ports; remembers what it published in this process. */
export interface Publisher {
  /** Programs `target`; returns the mappings programmed (a family without address is skipped). */
  program(kernel: Kernel, target: PublishTarget): Promise<PortMapping[]>;
  /** Removes everything of the endpoint; `mappings` adds what the caller knows was published. */
  revoke(
    kernel: Kernel,
    target: Pick<PublishTarget, "networkId" | "endpointId" | "hostVeth" | "mappings">,
  ): Promise<void>;
  /** Whether this process published for the endpoint (and has not revoked since). */
  has(endpointId: string): boolean;
  /** Endpoints this process published for on a network. */
  endpointsOf(networkId: string): { endpointId: string; hostVeth: string }[];
}

const keyOf = (m: Pick<PortMapping, "proto" | "hostIp" | "hostPort">) =>
  `${m.proto} ${m.hostIp} ${m.hostPort}`;

/** Creates the publisher of a bridge driver instance. */
export function createPublisher(deps: PublisherDeps): Publisher {
  const live = new Map<string, { networkId: string; hostVeth: string; mappings: PortMapping[] }>();

  async function revoke(
    kernel: Kernel,
    t: Pick<PublishTarget, "networkId" | "endpointId" | "hostVeth" | "mappings">,
  ): Promise<void> {
    const errors: unknown[] = [];
    const step = async (f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (err) {
        errors.push(err);
      }
    };
    const known = new Map(
      [...(live.get(t.endpointId)?.mappings ?? []), ...t.mappings].map((m) => [keyOf(m), m]),
    );
    await step(() =>
      deps.firewall().unpublishPorts({
        networkId: t.networkId,
        endpointId: t.endpointId,
        mappings: [...known.values()],
      })
    );
    await step(async () => {
      for (const p of await kernel.heldPorts()) {
        if (p.owner === t.endpointId) await kernel.releasePort(p);
      }
    });
    await step(() =>
      kernel.setLinkOptions(t.hostVeth, { hairpin: false }).catch((err) => {
        // The bridge port is gone (left already): nothing to turn off.
        if (!/no such link/.test(String(err))) throw err;
      })
    );
    await step(() => flushUdp(kernel, [...known.values()]));
    live.delete(t.endpointId);
    if (errors.length === 1) throw errors[0];
    if (errors.length) {
      throw new AggregateError(errors, `revoking ports of endpoint ${t.endpointId}`);
    }
  }

  return {
    async program(kernel, t) {
      if (t.internal) {
        throw new InvalidArgumentError(
          `network ${t.networkId.slice(0, 12)} is internal: it publishes no ports`,
        );
      }
      const mappings = portSpec({ ...t }).mappings; // validates before anything is touched
      try {
        for (const m of mappings) {
          await kernel.holdPort({
            proto: m.proto,
            hostIp: m.hostIp,
            hostPort: m.hostPort,
            owner: t.endpointId,
          });
        }
        if (mappings.some((m) => familyOf(m.hostIp) === 4)) {
          await kernel.setLinkOptions(t.bridge, { routeLocalnet: true });
        }
        await kernel.setLinkOptions(t.hostVeth, { hairpin: true });
        live.set(t.endpointId, { networkId: t.networkId, hostVeth: t.hostVeth, mappings });
        await deps.firewall().publishPorts({ ...t, mappings });
        const wanted = new Set(mappings.map(keyOf));
        for (const p of await kernel.heldPorts()) {
          if (p.owner === t.endpointId && !wanted.has(keyOf(p))) await kernel.releasePort(p);
        }
        await flushUdp(kernel, mappings);
      } catch (err) {
        await revoke(kernel, { ...t, mappings }).catch(() => {});
        throw err;
      }
      return mappings;
    },
    revoke,
    has: (endpointId) => live.has(endpointId),
    endpointsOf: (networkId) =>
      [...live].filter(([, v]) => v.networkId === networkId)
        .map(([endpointId, v]) => ({ endpointId, hostVeth: v.hostVeth })),
  };
}

/**
 * Deletes the UDP conntrack entries of the mappings' host ports (`conntrack -D`, Debian
 * package `conntrack`), run in the host namespace. "0 flow entries" is success.
 */
async function flushUdp(kernel: Kernel, mappings: PortMapping[]): Promise<void> {
  for (const m of mappings) {
    if (m.proto !== "udp") continue;
    const argv = ["conntrack", "-D", "-f", familyOf(m.hostIp) === 6 ? "ipv6" : "ipv4"];
    argv.push("-p", "udp", "--orig-port-dst", String(m.hostPort));
    if (!isUnspecified(m.hostIp)) argv.push("--orig-dst", m.hostIp);
    await kernel.exec(argv).catch((err) => {
      if (!/0 flow entries have been deleted/.test(String(err))) throw err;
    });
  }
}
