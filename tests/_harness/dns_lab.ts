/**
 * A DNS lab of throwaway namespaces (root): a "host" namespace with bridge `br0`
 * 172.30.0.1/24, sandboxes `<prefix>-<name>` on it (172.30.0.<n>, default route via the
 * host), and an upstream namespace `<prefix>-up` at 198.51.100.53 behind the host
 * (198.51.100.1). Real clients run inside sandboxes: `dig` and glibc's `getent` (with the
 * sandbox's resolv.conf bind-mounted over /etc/resolv.conf in a private mount namespace).
 * Every address exists only inside the lab.
 *
 * @module
 */

import { output, sh } from "./command.ts";
import { createTestHost, type TestHost } from "./netns.ts";

const NETNS_DIR = "/var/run/netns";
const deno = Deno.execPath();
const upstreamScript = new URL("./dns_upstream.ts", import.meta.url).pathname;

/** The upstream's address (in `<prefix>-up`). */
export const UPSTREAM = "198.51.100.53";

/** A sandbox namespace of the lab. */
export interface LabSandbox {
  name: string;
  /** Namespace name. */
  ns: string;
  /** Namespace path. */
  path: string;
  /** Its address on br0. */
  address: string;
}

/** A process the lab started; `stop()` kills it by pid. */
export interface LabServer {
  pid: number;
  stop(): Promise<void>;
}

/** What `dig` printed, parsed. */
export interface DigResult {
  status: string;
  flags: string[];
  /** Data of the answer section's records, in order. */
  answers: string[];
  /** Types of the answer section's records. */
  types: string[];
  /** The whole output. */
  text: string;
}

/** The lab. */
export interface DnsLab {
  host: TestHost;
  upstreamNs: string;
  /** Adds sandbox `name` with address 172.30.0.<n>. */
  addSandbox(name: string, n: number): Promise<LabSandbox>;
  /** Starts the upstream server (`dns_upstream.ts`) in namespace `ns` on address:port. */
  startServer(ns: string, address: string, port: number, tag: string): Promise<LabServer>;
  /** Runs `dig` in the sandbox (server 127.0.0.11 unless `@…` is given). */
  dig(sb: LabSandbox, args: string[]): Promise<DigResult>;
  /** Runs `getent hosts <name>` in the sandbox with its resolv.conf; null when not found. */
  getent(sb: LabSandbox, resolvConfPath: string, name: string): Promise<string | null>;
  /** Stops servers and deletes every namespace of the lab. */
  cleanup(): Promise<void>;
}

const ip = (args: string[]) => sh(["ip", ...args]);

/** Runs `dig` inside the namespace at `netns` (server 127.0.0.11 unless `@…` is given). */
export async function dig(netns: string, args: string[]): Promise<DigResult> {
  const server = args.some((a) => a.startsWith("@")) ? [] : ["@127.0.0.11"];
  const out = await output([
    "nsenter",
    `--net=${netns}`,
    "--",
    "dig",
    "+tries=1",
    "+time=3",
    ...server,
    ...args,
  ]);
  const text = out.stdout + out.stderr;
  const status = /status: ([A-Z]+)/.exec(text)?.[1] ?? (out.code === 9 ? "TIMEOUT" : "NONE");
  // The last header wins (dig prints two when it retried over TCP).
  const flagLines = [...text.matchAll(/;; flags: ([a-z ]*);/g)];
  const flags = flagLines.length ? flagLines[flagLines.length - 1][1].trim().split(/\s+/) : [];
  const answers: string[] = [];
  const types: string[] = [];
  const section = text.split(";; ANSWER SECTION:\n").at(-1)!;
  if (text.includes(";; ANSWER SECTION:")) {
    for (const line of section.split("\n")) {
      if (!line.trim()) break;
      const parts = line.split(/\s+/);
      types.push(parts[3]);
      answers.push(parts.slice(4).join(" "));
    }
  }
  return { status, flags, answers, types, text };
}

/**
 * Runs `getent hosts <name>` inside the namespace at `netns`, with `resolvConfPath`
 * bind-mounted over /etc/resolv.conf in a private mount namespace; null when not found.
 */
export async function getent(
  netns: string,
  resolvConfPath: string,
  name: string,
): Promise<string | null> {
  const out = await output([
    "nsenter",
    `--net=${netns}`,
    "--",
    "unshare",
    "-m",
    "--propagation",
    "private",
    "sh",
    "-c",
    'mount --bind "$0" /etc/resolv.conf && exec getent hosts "$1"',
    resolvConfPath,
    name,
  ]);
  if (out.code === 2) return null; // not found
  if (out.code !== 0) throw new Error(`getent hosts ${name} in ${netns}: ${out.stderr}`);
  return out.stdout.trim();
}

/** Builds the host and upstream namespaces. Always call `cleanup()` in `finally`. */
export async function createDnsLab(label = "dns"): Promise<DnsLab> {
  const host = await createTestHost(label);
  const servers: LabServer[] = [];
  const upstreamNs = `${host.prefix}-up`;
  const lab: DnsLab = {
    host,
    upstreamNs,
    async addSandbox(name, n) {
      const ns = `${host.prefix}-${name}`;
      const hostEnd = `${host.prefix}v${n}`.slice(0, 15);
      await ip(["netns", "add", ns]);
      await ip(["-n", ns, "link", "set", "lo", "up"]);
      await ip([
        "-n",
        host.name,
        "link",
        "add",
        hostEnd,
        "type",
        "veth",
        "peer",
        "eth0",
        "netns",
        ns,
      ]);
      await ip(["-n", host.name, "link", "set", hostEnd, "master", "br0", "up"]);
      const address = `172.30.0.${n}`;
      await ip(["-n", ns, "addr", "add", `${address}/24`, "dev", "eth0"]);
      await ip(["-n", ns, "link", "set", "eth0", "up"]);
      await ip(["-n", ns, "route", "add", "default", "via", "172.30.0.1"]);
      return { name, ns, path: `${NETNS_DIR}/${ns}`, address };
    },
    async startServer(ns, address, port, tag) {
      const child = new Deno.Command("ip", {
        args: [
          "netns",
          "exec",
          ns,
          deno,
          "run",
          "-A",
          "--unstable-net",
          upstreamScript,
          address,
          String(port),
          tag,
        ],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let stopped: Promise<void> | undefined;
      const server: LabServer = {
        pid: child.pid,
        stop: () =>
          stopped ??= (async () => {
            try {
              child.kill("SIGKILL");
            } catch { /* already exited */ }
            await reader.cancel().catch(() => {});
            await child.status;
          })(),
      };
      servers.push(server);
      let seen = "";
      while (!seen.includes("ready")) {
        const { value, done } = await reader.read();
        if (done) {
          await server.stop();
          throw new Error(`DNS server in ${ns} exited before listening`);
        }
        seen += value;
      }
      return server;
    },
    dig: (sb, args) => dig(sb.path, args),
    getent: (sb, resolvConfPath, name) => getent(sb.path, resolvConfPath, name),
    async cleanup() {
      const errors: unknown[] = [];
      for (const s of servers) await s.stop().catch((e) => errors.push(e));
      await host.cleanup().catch((e) => errors.push(e));
      if (errors.length) throw new AggregateError(errors, "DNS lab cleanup failed");
    },
  };
  try {
    await ip(["-n", host.name, "link", "add", "br0", "type", "bridge"]);
    await ip(["-n", host.name, "addr", "add", "172.30.0.1/24", "dev", "br0"]);
    await ip(["-n", host.name, "link", "set", "br0", "up"]);
    await sh(["ip", "netns", "exec", host.name, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    await ip(["netns", "add", upstreamNs]);
    await ip(["-n", upstreamNs, "link", "set", "lo", "up"]);
    await ip([
      "-n",
      host.name,
      "link",
      "add",
      "vup",
      "type",
      "veth",
      "peer",
      "eth0",
      "netns",
      upstreamNs,
    ]);
    await ip(["-n", host.name, "addr", "add", "198.51.100.1/24", "dev", "vup"]);
    await ip(["-n", host.name, "link", "set", "vup", "up"]);
    await ip(["-n", upstreamNs, "addr", "add", `${UPSTREAM}/24`, "dev", "eth0"]);
    await ip(["-n", upstreamNs, "link", "set", "eth0", "up"]);
    await ip(["-n", upstreamNs, "route", "add", "172.30.0.0/24", "via", "198.51.100.1"]);
  } catch (err) {
    await lab.cleanup().catch(() => {});
    throw err;
  }
  return lab;
}
