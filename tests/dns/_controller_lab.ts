/**
 * A controller in the DNS lab's host namespace (root, nats-server): its host resolv.conf
 * names the lab's upstream (198.51.100.53, a namespace of its own), so nothing is ever
 * forwarded to the machine's resolvers. Helpers to make connected sandboxes and to ask
 * from inside them.
 *
 * @module
 */

import { createController } from "../../mod.ts";
import type { Controller, ControllerOptions, EndpointInfo, SandboxInfo } from "../../mod.ts";
import { sh } from "../_harness/command.ts";
import { createDnsLab, dig, type DigResult, type DnsLab, UPSTREAM } from "../_harness/dns_lab.ts";
import { startNats, type TestNats } from "../_harness/nats.ts";

/** The host's resolv.conf every sandbox's is made from. */
export const HOST_RESOLV = `nameserver ${UPSTREAM}\nsearch lab.example\noptions timeout:1\n`;

/** The lab. */
export interface ControllerLab {
  lab: DnsLab;
  nats: TestNats;
  dir: string;
  /** Path of the host resolv.conf file. */
  resolvFile: string;
  /** Controller options on this lab (stream, prefix, host namespace, files). */
  options(extra?: Partial<ControllerOptions>): ControllerOptions;
  /** Opens a controller (closed by cleanup). */
  open(extra?: Partial<ControllerOptions>): Promise<Controller>;
  cleanup(): Promise<void>;
}

/** Builds the lab. Always call `cleanup()` in `finally`. */
export async function createControllerLab(label = "cdns"): Promise<ControllerLab> {
  const lab = await createDnsLab(label);
  const opened: Controller[] = [];
  let nats: TestNats | undefined;
  const dir = await Deno.makeTempDir({ prefix: `cnm-${lab.host.prefix}-` });
  try {
    nats = await startNats();
    const resolvFile = `${dir}/host-resolv.conf`;
    await Deno.writeTextFile(resolvFile, HOST_RESOLV);
    // Replies to sandboxes that dial the upstream themselves go back through the host.
    await sh(["ip", "-n", lab.upstreamNs, "route", "add", "10.0.0.0/8", "via", "198.51.100.1"]);
    const url = nats.url;
    const options = (extra: Partial<ControllerOptions> = {}): ControllerOptions => ({
      nats: { servers: url },
      stream: `T_${lab.host.prefix}`.toUpperCase(),
      prefix: lab.host.prefix,
      hostId: "h1",
      kernel: { hostNamespace: lab.host.path },
      // (Not the lab's own prefix: its upstream namespace would be another's, to reconcile.)
      namePrefix: `${lab.host.prefix}-c`,
      stateDir: `${dir}/state`,
      hostResolvConf: resolvFile,
      dnsTimeoutMs: 700,
      ...extra,
    });
    const n = nats;
    return {
      lab,
      nats: n,
      dir,
      resolvFile,
      options,
      async open(extra) {
        const c = await createController(options(extra));
        opened.push(c);
        return c;
      },
      async cleanup() {
        const errors: unknown[] = [];
        for (const c of opened) await c.close().catch((e) => errors.push(e));
        await n.cleanup().catch((e) => errors.push(e));
        await lab.cleanup().catch((e) => errors.push(e));
        await Deno.remove(dir, { recursive: true }).catch((e) => errors.push(e));
        if (errors.length) throw new AggregateError(errors, "controller DNS lab cleanup failed");
      },
    };
  } catch (err) {
    await nats?.cleanup().catch(() => {});
    await lab.cleanup().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
}

/** The controller's commands a sandbox needs (a Controller or an ApiClient). */
export interface Commands {
  createSandbox(o: { name: string; hostname?: string; dns?: string[] }): Promise<SandboxInfo>;
  createEndpoint(network: string, o: { name: string; aliases?: string[] }): Promise<EndpointInfo>;
  join(endpointId: string, sandbox: string): Promise<EndpointInfo>;
}

/** Creates a sandbox and connects it to networks (with aliases per network). */
export async function connected(
  cnm: Commands,
  name: string,
  networks: Record<string, string[]>,
  extra: { hostname?: string; dns?: string[] } = {},
): Promise<{ sb: SandboxInfo; eps: Record<string, EndpointInfo> }> {
  const sb = await cnm.createSandbox({ name, ...extra });
  const eps: Record<string, EndpointInfo> = {};
  for (const [net, aliases] of Object.entries(networks)) {
    const ep = await cnm.createEndpoint(net, {
      name,
      ...(aliases.length ? { aliases } : {}),
    });
    eps[net] = await cnm.join(ep.id, sb.id);
  }
  return { sb, eps };
}

/** The address of a CIDR. */
export const ipOf = (cidr?: string): string => cidr!.split("/")[0];

/** `dig` inside a sandbox. */
export const digIn = (sb: SandboxInfo, ...args: string[]): Promise<DigResult> => dig(sb.key, args);

/** Polls `f` every 5 ms until it is true; throws after `ms`. Returns the time it took. */
export async function until(what: string, f: () => Promise<boolean>, ms = 2000): Promise<number> {
  const t0 = performance.now();
  while (!(await f())) {
    if (performance.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return performance.now() - t0;
}
