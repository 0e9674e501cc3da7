/**
 * Tiny TCP peers run inside namespaces a test made: a server that answers `ok <peer>` and a
 * client that reports the answer, or null when it cannot connect. Traffic stays inside the
 * test's namespaces.
 *
 * @module
 */

const deno = Deno.execPath();

const serverCode = (port: number, hostname: string, greeting: string) => `
const l = Deno.listen({ hostname: ${JSON.stringify(hostname)}, port: ${port} });
console.log("ready");
for await (const c of l) {
  const peer = c.remoteAddr.hostname${greeting === "ok" ? "" : '.replace(/^::ffff:/, "")'};
  await c.write(new TextEncoder().encode(${JSON.stringify(greeting)} + " " + peer)).catch(() => {});
  c.close();
}`;

const clientCode = (host: string, port: number) => `
setTimeout(() => { console.log("timeout"); Deno.exit(2); }, 1500);
try {
  const c = await Deno.connect({ hostname: ${JSON.stringify(host)}, port: ${port} });
  const buf = new Uint8Array(256);
  const n = await c.read(buf);
  console.log(new TextDecoder().decode(buf.subarray(0, n ?? 0)));
  Deno.exit(0);
} catch (err) {
  console.log(String(err));
  Deno.exit(3);
}`;

/** A running server; close() kills it by pid. */
export interface TcpServer {
  close(): Promise<void>;
}

/**
 * Starts a TCP server inside the namespace `netns` (a name under /var/run/netns), listening on
 * `hostname` (default `::`, which also takes IPv4 and reports it as `::ffff:a.b.c.d`). It
 * answers `<greeting> <peer>`; with a greeting other than the default `ok`, IPv4 peers are
 * reported plainly (`a.b.c.d`), so a test can tell which server answered and who it saw.
 */
export async function serveTcp(
  netns: string,
  port: number,
  hostname = "::",
  greeting = "ok",
): Promise<TcpServer> {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", netns, deno, "eval", serverCode(port, hostname, greeting)],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let closed: Promise<void> | undefined;
  const server: TcpServer = {
    close: () =>
      closed ??= (async () => {
        try {
          child.kill("SIGKILL");
        } catch { /* already exited */ }
        await reader.cancel().catch(() => {});
        await child.status;
      })(),
  };
  let seen = "";
  while (!seen.includes("ready")) {
    const { value, done } = await reader.read();
    if (done) {
      await server.close();
      throw new Error(`server in ${netns} exited before listening`);
    }
    seen += value;
  }
  return server;
}

/** Connects from `netns` to host:port; the server's answer, or null. */
export async function connectTcp(
  netns: string,
  host: string,
  port: number,
): Promise<string | null> {
  const out = await new Deno.Command("ip", {
    args: ["netns", "exec", netns, deno, "eval", clientCode(host, port)],
    stdout: "piped",
    stderr: "null",
  }).output();
  return out.code === 0 ? new TextDecoder().decode(out.stdout).trim() : null;
}
