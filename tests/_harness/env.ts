/**
 * A test environment: a real nats-server and a throwaway host namespace, and a way to open
 * controllers on them with a per-run stream, prefix and name prefix.
 *
 * @module
 */

import { connect } from "@nats-io/transport-node";
import { createController } from "../../mod.ts";
import type { Controller, ControllerOptions, RecordedEvent } from "../../mod.ts";
import { type Journal, openJournal } from "../../src/journal/journal.ts";
import { startNats, type TestNats } from "./nats.ts";
import { createTestHost, listPrefixed, type TestHost } from "./netns.ts";

/** What a test gets. */
export interface TestEnv {
  nats: TestNats;
  host: TestHost;
  stream: string;
  prefix: string;
  /** Directory for sandbox files. */
  stateDir: string;
  /** Options to open a controller on this environment. */
  options(extra?: Partial<ControllerOptions>): ControllerOptions;
  /** Opens a controller (closed by cleanup if still open). */
  open(extra?: Partial<ControllerOptions>): Promise<Controller>;
  /** Runs `f` with a journal on this environment's stream (own connection). */
  withJournal<T>(f: (j: Journal) => Promise<T>): Promise<T>;
  /** Every event of the stream, in order. */
  readAll(): Promise<RecordedEvent[]>;
  /** Namespaces of this run other than the host's. */
  sandboxesInKernel(): Promise<string[]>;
  cleanup(): Promise<void>;
}

/** Starts nats-server and a test host. Always call `cleanup()` in `finally`. */
export async function startEnv(label?: string): Promise<TestEnv> {
  const host = await createTestHost(label);
  let nats: TestNats;
  try {
    nats = await startNats();
  } catch (err) {
    await host.cleanup();
    throw err;
  }
  const opened: Controller[] = [];
  const stateDir = await Deno.makeTempDir({ prefix: `cnm-${host.prefix}-` });
  const stream = `T_${host.prefix}`.toUpperCase();
  const prefix = host.prefix;
  const options = (extra: Partial<ControllerOptions> = {}): ControllerOptions => ({
    nats: { servers: nats.url },
    stream,
    prefix,
    hostId: "h1",
    kernel: { hostNamespace: host.path },
    namePrefix: `${host.prefix}-`,
    stateDir,
    ...extra,
  });
  const withJournal = async <T>(f: (j: Journal) => Promise<T>): Promise<T> => {
    const nc = await connect({ servers: nats.url });
    try {
      return await f(await openJournal(nc, { stream, prefix }));
    } finally {
      await nc.close();
    }
  };
  return {
    nats,
    host,
    stream,
    prefix,
    stateDir,
    options,
    async open(extra) {
      const c = await createController(options(extra));
      opened.push(c);
      return c;
    },
    withJournal,
    async readAll() {
      return await withJournal(async (j) => {
        const out: RecordedEvent[] = [];
        for await (const e of j.read()) out.push(e);
        return out;
      });
    },
    async sandboxesInKernel() {
      // Sandboxes only: overlay namespaces (`<prefix>-ov-…`) belong to networks.
      return (await listPrefixed(`${host.prefix}-`)).filter((n) =>
        n !== host.name && !n.startsWith(`${host.prefix}-ov-`)
      );
    },
    async cleanup() {
      const errors: unknown[] = [];
      for (const c of opened) await c.close().catch((e) => errors.push(e));
      await nats.cleanup().catch((e) => errors.push(e));
      await Deno.remove(stateDir, { recursive: true }).catch((e) => errors.push(e));
      await host.cleanup().catch((e) => errors.push(e));
      if (errors.length) throw new AggregateError(errors, "test environment cleanup failed");
    },
  };
}

export { sh } from "./command.ts";
