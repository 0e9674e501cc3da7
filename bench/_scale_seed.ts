/**
 * Seeds a stream for the scale benchmark directly through JetStream (the controller path is
 * too slow to build 150,000 events quickly): valid events of real objects, exactly what a
 * controller with a no-op driver would have journaled — networks with default-IPAM pools,
 * sandboxes, endpoints created and joined, and the churn of containers that came and went.
 *
 * @module
 */

import { headers, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { Driver } from "../drivers/driver.ts";
import { type CnmEvent, encodeEvent, subjectOf } from "../src/journal/events.ts";
import { streamConfig } from "../src/journal/journal.ts";
import { newEventId, newObjectId } from "../src/ids.ts";
import { noopDriver } from "../tests/cli/_fake_kernel.ts";

/** A driver that programs nothing, named `bench`. */
export function benchDriver(): Driver {
  return noopDriver("bench");
}

/** What the seeding made. */
export interface Seeded {
  events: number;
  live: number;
  networks: { id: string; name: string }[];
  /** Names of live sandboxes (`s0`, `s1`, …). */
  sandboxes: string[];
  /** Ids of live endpoints. */
  endpoints: string[];
}

/** Options of {@link seedStream}. */
export interface SeedOptions {
  stream: string;
  prefix: string;
  host: string;
  /** Live objects to leave (networks + sandboxes + endpoints). */
  live: number;
  /** Total events (the rest is churn: containers created, joined, left and deleted). */
  total: number;
  networks?: number;
  /** Publishes in flight. Default 256. */
  inFlight?: number;
}

/**
 * Appends the events and returns what is live at the end. The stream must not exist yet.
 */
export async function seedStream(nc: NatsConnection, o: SeedOptions): Promise<Seeded> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add(streamConfig(o.stream, o.prefix));
  const js = jetstream(nc, { timeout: 30_000 });
  const nNets = o.networks ?? 20;
  let clock = Date.now() - o.total * 2;
  let count = 0;
  let pending: Promise<unknown>[] = [];
  const inFlight = o.inFlight ?? 256;
  const put = async (e: CnmEvent) => {
    const h = headers();
    h.set("Cnm-Type", e.type);
    h.set("Cnm-Kind", e.kind);
    pending.push(
      js.publish(subjectOf(o.prefix, e.kind, e.objectId), encodeEvent(e), {
        msgID: e.eventId,
        headers: h,
      }),
    );
    count++;
    if (pending.length >= inFlight) {
      await Promise.all(pending);
      pending = [];
    }
  };
  const ev = (
    kind: string,
    objectId: string,
    type: string,
    from: string | null,
    to: string,
    data: Record<string, unknown>,
    extra: { effectId?: string; cause?: string } = {},
  ): CnmEvent => ({
    v: 1,
    eventId: newEventId(),
    kind,
    objectId,
    type,
    from,
    to,
    at: new Date(clock += 2).toISOString(),
    host: o.host,
    data,
    ...extra,
  });
  /** An intent and its outcome. */
  const step = async (
    kind: string,
    id: string,
    verb: string,
    from: string | null,
    via: string,
    to: string,
    data: Record<string, unknown>,
    outcome: string,
    facts: Record<string, unknown> = {},
  ) => {
    const effectId = newEventId();
    const intent = ev(kind, id, `${kind}.${verb}.requested`, from, via, data, { effectId });
    await put(intent);
    await put(
      ev(kind, id, `${kind}.${outcome}`, via, to, { ...facts, elapsedMs: 0.1 }, {
        effectId,
        cause: intent.eventId,
      }),
    );
  };

  const networks: { id: string; name: string; next: number; churn: number }[] = [];
  for (let i = 0; i < nNets; i++) {
    const id = newObjectId();
    const name = `n${i}`;
    await step("network", id, "create", null, "creating", "active", {
      name,
      driver: "bench",
      scope: "local",
      internal: false,
      enableIPv6: false,
      labels: {},
      options: {},
      ipam: {
        driver: "default",
        ipv4: [{
          poolId: `LocalDefault/10.${i}.0.0/16`,
          pool: `10.${i}.0.0/16`,
          gateway: `10.${i}.0.1/16`,
          auxAddresses: {},
        }],
        ipv6: [],
      },
    }, "created");
    networks.push({ id, name, next: 2, churn: 0 });
  }
  const address = (n: number, k: number) => `10.${n}.${k >> 8}.${k & 255}/16`;
  const sandbox = async (name: string) => {
    const id = newObjectId();
    await step("sandbox", id, "create", null, "creating", "ready", {
      name,
      key: `/var/run/netns/bench-${id.slice(0, 12)}`,
      owned: true,
      labels: {},
    }, "created");
    return id;
  };
  const endpoint = async (net: number, name: string, sb: string, k: number) => {
    const id = newObjectId();
    await step("endpoint", id, "create", null, "creating", "created", {
      networkId: networks[net].id,
      name,
      labels: {},
      options: {},
      ipv4Address: address(net, k),
      macAddress: `02:42:0a:${net.toString(16).padStart(2, "0")}:${
        ((k >> 8) & 255).toString(16).padStart(2, "0")
      }:${(k & 255).toString(16).padStart(2, "0")}`,
    }, "created");
    await step(
      "endpoint",
      id,
      "join",
      "created",
      "joining",
      "joined",
      {
        sandboxId: sb,
        ifname: "eth0",
      },
      "joined",
      { facts: { gateway: `10.${net}.0.1` } },
    );
    return id;
  };

  const live: Seeded = { events: 0, live: nNets, networks, sandboxes: [], endpoints: [] };
  // Containers: a live one is a sandbox with two joined endpoints (3 objects, 10 events);
  // a churned one (12 events) comes, joins, leaves and goes, interleaved with the live ones.
  const liveContainers = Math.max(0, Math.ceil((o.live - nNets) / 3));
  const churnContainers = Math.max(0, Math.floor((o.total - count - liveContainers * 10) / 12));
  const ratio = liveContainers ? churnContainers / liveContainers : 0;
  let churned = 0;
  for (let c = 0; c < liveContainers; c++) {
    const name = `s${c}`;
    const sb = await sandbox(name);
    const a = c % nNets, b = (c + 1) % nNets;
    live.endpoints.push(await endpoint(a, `${name}-a`, sb, networks[a].next++));
    live.endpoints.push(await endpoint(b, `${name}-b`, sb, networks[b].next++));
    live.sandboxes.push(name);
    live.live += 3;
    for (; churned < Math.round((c + 1) * ratio); churned++) await churn(churned);
  }
  for (; churned < churnContainers; churned++) await churn(churned);
  await Promise.all(pending);
  live.events = count;
  return live;

  async function churn(i: number) {
    const net = i % nNets;
    const sb = await sandbox(`gone${i}`);
    const n = networks[net];
    const ep = await endpoint(net, `gone${i}`, sb, 32768 + (n.churn++ % 30000));
    await step("endpoint", ep, "leave", "joined", "leaving", "created", { sandboxId: sb }, "left");
    await step(
      "endpoint",
      ep,
      "delete",
      "created",
      "deleting",
      "deleted",
      { force: false },
      "deleted",
    );
    await step("sandbox", sb, "delete", "ready", "deleting", "deleted", {}, "deleted");
  }
}
