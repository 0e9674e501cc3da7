/**
 * Starts the test plugin (`plugin.ts`) as a separate process and reads its request log; plus
 * the fixtures the remote driver tests share.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { DriverEndpoint, DriverNetwork, EffectContext } from "../../../drivers/driver.ts";

const PLUGIN = new URL("./plugin.ts", import.meta.url).pathname;

/** One request the plugin received. */
export interface LoggedRequest {
  method: string;
  body: Record<string, unknown>;
  accept: string | null;
}

/** A running test plugin. */
export interface TestPlugin {
  /** Unix socket path (also for `dead`, whose socket stays behind). */
  socket: string;
  /** Port when served over TCP. */
  port?: number;
  /** Requests received so far, in order. */
  requests(): Promise<LoggedRequest[]>;
  /** Methods received so far, in order. */
  methods(): Promise<string[]>;
  /** Forgets the requests received so far. */
  clearLog(): Promise<void>;
  /** Kills the process (by its pid) and waits for it. Safe to call twice. */
  stop(): Promise<void>;
}

/** Options of {@link startPlugin}. */
export interface StartPluginOptions {
  /** Directory for the socket and the log. */
  dir: string;
  /** Plugin (and socket) name; default "tp". */
  name?: string;
  mode?: "normal" | "err" | "slow" | "dead" | "malformed" | "badtypes" | "404";
  /** Namespace path in which Join makes its veth pairs. */
  namespace?: string;
  /** Serve on 127.0.0.1:port instead of a unix socket, with TLS when cert/key are given. */
  port?: number;
  cert?: string;
  key?: string;
  /** Activate's `Implements`; default both. */
  implements?: string[];
}

/** Starts the plugin and waits until it listens (or, for `dead`, until it has exited). */
export async function startPlugin(options: StartPluginOptions): Promise<TestPlugin> {
  const name = options.name ?? "tp";
  const socket = `${options.dir}/${name}.sock`;
  const log = `${options.dir}/${name}.log.jsonl`;
  await Deno.writeTextFile(log, "");
  const args = ["run", "-A", PLUGIN, "--mode", options.mode ?? "normal", "--log", log];
  if (options.port) {
    args.push("--port", String(options.port));
    if (options.cert && options.key) args.push("--cert", options.cert, "--key", options.key);
  } else args.push("--socket", socket);
  if (options.namespace) args.push("--namespace", options.namespace);
  if (options.implements) args.push("--implements", options.implements.join(","));
  const child = new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "inherit" })
    .spawn();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      Deno.kill(child.pid, "SIGKILL");
    } catch { /* already gone */ }
    await child.status;
  };
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (options.mode !== "dead" && !seen.includes("ready")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`test plugin exited before listening (mode ${options.mode})`);
      seen += value;
    }
    // Drain the rest so the pipe never blocks the plugin.
    (async () => {
      while (!(await reader.read()).done) { /* drain */ }
    })().catch(() => {});
    if (options.mode === "dead") await child.status;
  } catch (err) {
    await stop();
    throw err;
  }
  const requests = async () =>
    (await Deno.readTextFile(log)).split("\n").filter((l) => l).map((l) =>
      JSON.parse(l) as LoggedRequest
    );
  return {
    socket,
    ...(options.port ? { port: options.port } : {}),
    requests,
    methods: async () => (await requests()).map((r) => r.method),
    clearLog: () => Deno.writeTextFile(log, ""),
    stop,
  };
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Short bounds for tests. */
export const FAST = { retryTimeout: 300, callTimeout: 2_000, backoffInitial: 20 };
/** An effect context whose kernel refuses every call (tests that must not touch it). */
export const NO_KERNEL = {
  effectId: "e1",
  prefix: "t",
  kernel: new Proxy({}, {
    get: () => () => Promise.reject(new Error("no kernel in this test")),
  }),
} as unknown as EffectContext;

/** A network as the controller hands it over. */
export function net(id = "n1", options: Record<string, string> = { "test.k": "v" }): DriverNetwork {
  return {
    id,
    internal: false,
    enableIPv6: false,
    options,
    labels: { "com.example.l": "x" },
    ipv4: [{
      addressSpace: "plugin-local",
      pool: "10.200.0.0/24",
      gateway: "10.200.0.1/24",
      auxAddresses: { r: "10.200.0.254/24" },
    }],
    ipv6: [],
    facts: {},
  };
}
/** An endpoint as the controller hands it over. */
export function ep(id: string, extra: Partial<DriverEndpoint> = {}): DriverEndpoint {
  return {
    id,
    networkId: "n1",
    options: { "com.docker.network.endpoint.exposedports": "" },
    facts: {},
    ...extra,
  };
}

/** Runs `f` with a plugin in a fresh temp dir; stops the plugin and removes the dir after. */
export async function withPlugin(
  options: Omit<StartPluginOptions, "dir">,
  f: (p: Awaited<ReturnType<typeof startPlugin>>, dir: string) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "cnm-remote-" });
  const plugin = await startPlugin({ ...options, dir }).catch(async (err) => {
    await Deno.remove(dir, { recursive: true });
    throw err;
  });
  try {
    await f(plugin, dir);
  } finally {
    await plugin.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Asserts `p` rejects with an instance of `cls` whose message matches. */
export async function rejects(
  p: Promise<unknown>,
  cls: new (...a: any[]) => Error,
  message: RegExp,
) {
  await assert.rejects(p, (err: Error) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err.name}: ${err.message}`);
    assert.match(err.message, message);
    return true;
  });
}
