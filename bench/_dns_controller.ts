/**
 * The controller side of `bench/dns.ts`: two controllers on one stream in the DNS lab (h1 in
 * the lab's host namespace with real bridges, h2 in a host namespace of its own), a global
 * network between them through a driver that programs nothing (names only: the resolver does
 * not care how packets travel), and what is measured through them — a join's name answered in
 * another sandbox (same host, other host) and the resolver back after a `kill -9` of
 * `cnm serve`.
 *
 * @module
 */

import type { Controller, ControllerOptions, Driver, SandboxInfo } from "../mod.ts";
import { listenUdpIn } from "../src/dns/netns_sockets.ts";
import { asBuffer, decode, encode, FLAG } from "../src/dns/_packet.ts";
import { startServe } from "../tests/_harness/cnm_serve.ts";
import { globalNoopDriver } from "../tests/cli/_fake_kernel.ts";
import type { DnsLab } from "../tests/_harness/dns_lab.ts";

/** A global driver with no data plane. */
export const namesOnlyDriver = (): Driver => globalNoopDriver("gnames");

/** Controller options on the lab, for host `hostId` in namespace `nsPath`. */
export function labOptions(
  lab: DnsLab,
  url: string,
  resolvFile: string,
  stateDir: string,
  hostId: string,
  nsPath: string,
): ControllerOptions {
  return {
    nats: { servers: url },
    stream: `B_${lab.host.prefix}`.toUpperCase(),
    prefix: lab.host.prefix,
    hostId,
    kernel: { hostNamespace: nsPath },
    namePrefix: `${lab.host.prefix}-${hostId}`,
    stateDir: `${stateDir}/${hostId}`,
    hostResolvConf: resolvFile,
    defaultBridge: false,
    drivers: [namesOnlyDriver()],
  };
}

/** Creates a sandbox and joins it to `network` with `aliases`. */
export async function joined(
  cnm: Controller,
  sb: SandboxInfo | string,
  network: string,
  aliases: string[] = [],
) {
  const box = typeof sb === "string" ? await cnm.createSandbox({ name: sb }) : sb;
  const name = `${box.name}-${network}`;
  const ep = await cnm.createEndpoint(network, { name, ...(aliases.length ? { aliases } : {}) });
  return { sb: box, ep: await cnm.join(ep.id, box.id) };
}

/** Queries from this process, from inside a namespace; unanswered after `timeoutMs`: null. */
export function makeAsker(netnsPath: string, timeoutMs = 200) {
  const conn = listenUdpIn(netnsPath, "0.0.0.0");
  const waiting = new Map<number, (answers: string[]) => void>();
  const loop = (async () => {
    try {
      for (;;) {
        const [bytes] = await conn.receive();
        const r = decode(asBuffer(bytes));
        waiting.get(r.id ?? -1)?.(
          (r.answers ?? []).map((a) => String((a as { data: unknown }).data)),
        );
      }
    } catch { /* closed */ }
  })();
  let id = 0;
  return {
    ask(server: string, name: string): Promise<string[] | null> {
      id = (id + 1) & 0xffff;
      const myId = id;
      const q = encode({ type: "query", id, flags: FLAG.RD, questions: [{ type: "A", name }] });
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          waiting.delete(myId);
          resolve(null);
        }, timeoutMs);
        waiting.set(myId, (answers) => {
          clearTimeout(timer);
          waiting.delete(myId);
          resolve(answers);
        });
        conn.send(q, { transport: "udp", hostname: server, port: 53 }).catch(() => {});
      });
    },
    /** Asks until the answer holds `ip`; the milliseconds from `t0` to that answer. */
    async until(server: string, name: string, ip: string, t0: number, maxMs = 5000) {
      for (;;) {
        const got = await this.ask(server, name);
        const now = performance.now();
        if (got?.includes(ip)) return now - t0;
        if (now - t0 > maxMs) throw new Error(`${name} never answered ${ip} (last: ${got})`);
      }
    },
    async close() {
      conn.close();
      await loop;
    },
  };
}

/**
 * `cnm serve` for h1 killed with SIGKILL and started again, `rounds` times: from the new
 * process's spawn to the first answer of `name` in `client` (polled every query), and to the
 * controller's "answering on" (its API ready).
 */
export async function restartTimes(
  opts: ControllerOptions,
  url: string,
  resolvFile: string,
  client: string,
  name: string,
  ip: string,
  rounds: number,
): Promise<{ dns: number[]; api: number[] }> {
  const setup = {
    env: {
      CNM_NATS_URL: url,
      CNM_STREAM: opts.stream!,
      CNM_PREFIX: opts.prefix!,
      CNM_HOST_ID: opts.hostId!,
    },
    hostNamespace: (opts.kernel as { hostNamespace: string }).hostNamespace,
    namePrefix: opts.namePrefix!,
    stateDir: opts.stateDir!,
    args: ["-q", "--resolv-conf", resolvFile],
  };
  const asker = makeAsker(client, 20);
  const out = { dns: [] as number[], api: [] as number[] };
  let serve = await startServe(setup);
  try {
    for (let i = 0; i < rounds; i++) {
      await serve.cleanup(); // SIGKILL
      const t0 = performance.now();
      const next = startServe(setup).then((s) => ({ s, at: performance.now() - t0 }));
      out.dns.push(await asker.until("127.0.0.11", name, ip, t0, 20_000));
      const { s, at } = await next;
      out.api.push(at);
      serve = s;
    }
  } finally {
    await serve.cleanup();
    await asker.close();
  }
  return out;
}
