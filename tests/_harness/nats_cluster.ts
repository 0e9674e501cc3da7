/**
 * A real nats-server JetStream cluster on loopback for tests (reference/networking.md §1.9):
 * N servers (default 3) named `n1`…, each with its own client, route and monitoring port and
 * store directory, routes to every other node. Nodes are started, stopped and killed by the
 * pid the harness holds, never by name.
 *
 * nats-server 2.9.10 quirks this harness accounts for: the meta leader needs a few hundred
 * milliseconds after the routes form ({@link TestNatsCluster.waitReady}), a stream leader
 * election takes 6–8 s, and a stream deleted and re-created under the same name can keep a
 * stale replica as leader — give every test its own stream name ({@link uniqueStreamName}).
 *
 * @example
 * ```ts ignore
 * const cluster = await startNatsCluster();
 * try {
 *   const nc = await cluster.connect();
 *   // ... jetstreamManager(nc).streams.add({ name, subjects, num_replicas: 3 })
 *   await cluster.kill(cluster.index((await cluster.streamLeader(name))!));
 * } finally {
 *   await cluster.cleanup();
 * }
 * ```
 *
 * @module
 */

import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { endProcess, freePort } from "./nats.ts";

/** One server of the cluster. */
export interface ClusterNode {
  /** `n1`, `n2`, … (the server_name). */
  name: string;
  /** Client port on 127.0.0.1. */
  port: number;
  clusterPort: number;
  httpPort: number;
  storeDir: string;
  /** `127.0.0.1:<port>`. */
  url: string;
  /** Pid while running, else undefined. */
  pid: number | undefined;
}

/** A running cluster. */
export interface TestNatsCluster {
  name: string;
  nodes: ClusterNode[];
  /** Every node's client URL, in node order. */
  servers: string[];
  /** Connects to the cluster (all servers, in order, no randomisation). */
  connect(options?: Partial<ConnectionOptions>): Promise<NatsConnection>;
  /** Starts node `i` (0-based) again on its ports and store. */
  start(i: number): Promise<void>;
  /** SIGTERM to node `i`, waits for it to exit. */
  stop(i: number): Promise<void>;
  /** SIGKILL to node `i`, waits for it to exit. */
  kill(i: number): Promise<void>;
  /** Waits until every running node agrees on a meta leader and sees the whole cluster. */
  waitReady(timeoutMs?: number): Promise<void>;
  /** The JetStream meta leader as node `i` sees it (default: the first running node). */
  metaLeader(i?: number): Promise<string | undefined>;
  /** The leader of `stream` (a node name), or undefined during an election. */
  streamLeader(stream: string): Promise<string | undefined>;
  /** The index of a node by name. */
  index(name: string): number;
  /** Kills every node and removes the stores. Safe to call twice. */
  cleanup(): Promise<void>;
}

/** Options of {@link startNatsCluster}. */
export interface NatsClusterOptions {
  /** Number of servers. Default 3. */
  size?: number;
  /** How long to wait for the cluster to form. Default 20000 ms. */
  readyTimeoutMs?: number;
}

/** A stream name no earlier test used: `<label>_<random>`. */
export function uniqueStreamName(label = "T"): string {
  const hex = Array.from(
    crypto.getRandomValues(new Uint8Array(4)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  return `${label}_${hex}`.toUpperCase();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function config(node: ClusterNode, cluster: string, all: ClusterNode[]): string {
  const routes = all.filter((n) => n !== node).map((n) =>
    `nats-route://127.0.0.1:${n.clusterPort}`
  );
  return [
    `server_name: ${node.name}`,
    `listen: 127.0.0.1:${node.port}`,
    `http: 127.0.0.1:${node.httpPort}`,
    `jetstream { store_dir: "${node.storeDir}", max_memory_store: 256MB, max_file_store: 1GB }`,
    `cluster { name: ${cluster}, listen: 127.0.0.1:${node.clusterPort}, routes: [ ${
      routes.join(", ")
    } ] }`,
    "",
  ].join("\n");
}

async function jsz(node: ClusterNode): Promise<any | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${node.httpPort}/jsz`, {
      signal: AbortSignal.timeout(1000),
    });
    return res.ok ? await res.json() : (await res.body?.cancel(), undefined);
  } catch {
    return undefined;
  }
}

/**
 * Starts the cluster and waits until it has formed.
 *
 * @throws {Error} when nats-server is missing or the cluster does not form in time.
 */
export async function startNatsCluster(options: NatsClusterOptions = {}): Promise<TestNatsCluster> {
  const size = options.size ?? 3;
  const dir = await Deno.makeTempDir({ prefix: "cnm-natscluster-" });
  const name = `cnm-${uniqueStreamName("c").toLowerCase()}`;
  const nodes: ClusterNode[] = Array.from({ length: size }, (_, i) => {
    const port = freePort();
    return {
      name: `n${i + 1}`,
      port,
      clusterPort: freePort(),
      httpPort: freePort(),
      storeDir: `${dir}/n${i + 1}`,
      url: `127.0.0.1:${port}`,
      pid: undefined,
    };
  });
  const children = new Map<number, Deno.ChildProcess>();
  const confs = nodes.map((n) => `${dir}/${n.name}.conf`);
  for (const [i, n] of nodes.entries()) await Deno.writeTextFile(confs[i], config(n, name, nodes));

  const start = async (i: number) => {
    if (children.has(i)) return;
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command("nats-server", {
        args: ["-c", confs[i]],
        stdout: "null",
        stderr: "null",
      }).spawn();
    } catch (err) {
      throw new Error("nats-server not found: install it with `apt-get install nats-server`", {
        cause: err,
      });
    }
    children.set(i, child);
    nodes[i].pid = child.pid;
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port: nodes[i].port })).close();
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`${nodes[i].name} did not listen within 10 s`);
        await sleep(50);
      }
    }
  };
  const end = async (i: number, signal: Deno.Signal) => {
    const child = children.get(i);
    if (!child) return;
    children.delete(i);
    nodes[i].pid = undefined;
    await endProcess(child, signal);
  };
  const running = () => nodes.map((_, i) => i).filter((i) => children.has(i));

  const cluster: TestNatsCluster = {
    name,
    nodes,
    servers: nodes.map((n) => n.url),
    connect: (o = {}) => connect({ servers: nodes.map((n) => n.url), noRandomize: true, ...o }),
    start,
    stop: (i) => end(i, "SIGTERM"),
    kill: (i) => end(i, "SIGKILL"),
    async waitReady(timeoutMs = options.readyTimeoutMs ?? 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const views = await Promise.all(running().map((i) => jsz(nodes[i])));
        const leaders = new Set(views.map((v) => v?.meta_cluster?.leader));
        const leader = [...leaders][0];
        const complete = views.every((v) => v?.meta_cluster?.cluster_size === size);
        if (views.length && leaders.size === 1 && leader && complete) return;
        await sleep(100);
      }
      throw new Error(`the NATS cluster ${name} did not form within ${timeoutMs} ms`);
    },
    async metaLeader(i) {
      const n = i ?? running()[0];
      return n === undefined ? undefined : (await jsz(nodes[n]))?.meta_cluster?.leader || undefined;
    },
    async streamLeader(stream) {
      const nc = await cluster.connect({ timeout: 2000 });
      try {
        const jsm = await jetstreamManager(nc, { timeout: 2000 });
        return (await jsm.streams.info(stream)).cluster?.leader || undefined;
      } catch {
        return undefined; // no leader (or no JetStream) right now
      } finally {
        await nc.close();
      }
    },
    index(n) {
      const i = nodes.findIndex((x) => x.name === n);
      if (i < 0) throw new Error(`no node ${n} in ${name}`);
      return i;
    },
    async cleanup() {
      for (const i of [...children.keys()]) await end(i, "SIGKILL");
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  try {
    for (let i = 0; i < size; i++) await start(i);
    await cluster.waitReady();
  } catch (err) {
    await cluster.cleanup();
    throw err;
  }
  return cluster;
}
