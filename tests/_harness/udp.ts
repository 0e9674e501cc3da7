/**
 * Tiny UDP peers run inside namespaces a test made: a server that answers `<greeting> <peer>`
 * to every datagram and records each sender, a one-shot request, and a sender that keeps
 * sending from a fixed source port (the client of the conntrack staleness case). Traffic
 * stays inside the test's namespaces. Deno's UDP API needs `--unstable-net`.
 *
 * @module
 */

const deno = Deno.execPath();

const serverCode = (port: number, greeting: string) => `
const s = Deno.listenDatagram({ transport: "udp", hostname: "::", port: ${port} });
console.log("ready");
for await (const [, from] of s) {
  const peer = from.hostname.replace(/^::ffff:/, "");
  console.log("from " + peer + " " + from.port);
  await s.send(new TextEncoder().encode(${JSON.stringify(greeting)} + " " + peer), from)
    .catch(() => {});
}`;

const requestCode = (host: string, port: number) => `
setTimeout(() => { console.log("timeout"); Deno.exit(2); }, 1500);
const s = Deno.listenDatagram({
  transport: "udp", hostname: ${JSON.stringify(host.includes(":") ? "::" : "0.0.0.0")}, port: 0,
});
await s.send(new TextEncoder().encode("hi"), { transport: "udp", hostname: ${
  JSON.stringify(host)
}, port: ${port} });
const [data] = await s.receive();
console.log(new TextDecoder().decode(data));
Deno.exit(0);`;

const senderCode = (host: string, port: number, sourcePort: number, everyMs: number) => `
const s = Deno.listenDatagram({ transport: "udp", hostname: "0.0.0.0", port: ${sourcePort} });
console.log("ready");
const to = { transport: "udp", hostname: ${JSON.stringify(host)}, port: ${port} };
setInterval(() => s.send(new TextEncoder().encode("tick"), to).catch(() => {}), ${everyMs});
for await (const _ of s) { /* replies are not needed */ }`;

/** A process started in a namespace; stop() kills it by pid. */
export interface Peer {
  stop(): Promise<void>;
}

/** A UDP server: who sent it datagrams so far. */
export interface UdpServer extends Peer {
  /** `address port` of every datagram received, in order. */
  received(): string[];
}

async function start(netns: string, code: string, onLine?: (line: string) => void) {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", netns, deno, "eval", "--unstable-net", code],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stopped: Promise<void> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      try {
        child.kill("SIGKILL");
      } catch { /* already exited */ }
      await lines.cancel().catch(() => {});
      await child.status;
    })();
  let buf = "", ready = false;
  const pump = (async () => {
    for (;;) {
      const { value, done } = await lines.read().catch(() => ({ value: "", done: true }));
      if (done) return;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line === "ready") ready = true;
        else onLine?.(line);
      }
    }
  })();
  for (let waited = 0; !ready; waited += 10) {
    if (waited > 10_000) {
      await stop();
      throw new Error(`UDP peer in ${netns} did not start`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return {
    stop: async () => {
      await stop();
      await pump;
    },
  };
}

/** Starts a UDP server in `netns` on `[::]:port` (IPv4 too). */
export async function serveUdp(netns: string, port: number, greeting = "ok"): Promise<UdpServer> {
  const seen: string[] = [];
  const peer = await start(netns, serverCode(port, greeting), (line) => {
    if (line.startsWith("from ")) seen.push(line.slice(5));
  });
  return { ...peer, received: () => [...seen] };
}

/** Sends one datagram from `netns` and returns the answer, or null after 1.5 s. */
export async function requestUdp(
  netns: string,
  host: string,
  port: number,
): Promise<string | null> {
  const out = await new Deno.Command("ip", {
    args: ["netns", "exec", netns, deno, "eval", "--unstable-net", requestCode(host, port)],
    stdout: "piped",
    stderr: "null",
  }).output();
  return out.code === 0 ? new TextDecoder().decode(out.stdout).trim() : null;
}

/** Starts sending a datagram every `everyMs` from `0.0.0.0:sourcePort` in `netns`. */
export function sendUdpForever(
  netns: string,
  host: string,
  port: number,
  options: { sourcePort: number; everyMs?: number },
): Promise<Peer> {
  return start(netns, senderCode(host, port, options.sourcePort, options.everyMs ?? 50));
}
