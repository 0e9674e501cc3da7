/**
 * The latency client of `bench/dns.ts`, run inside a sandbox namespace as its own process:
 * sequential UDP queries, one at a time, each timed from send to reply. Prints a JSON
 * array of round-trip times in milliseconds (lost queries, after 1 s, are left out and
 * counted on stderr).
 *
 * Usage: `deno run -A --unstable-net bench/_dns_client.ts <server> <port> <name> <n>`
 *
 * @module
 */

import { asBuffer, decode, encode, FLAG } from "../src/dns/_packet.ts";

const [server, portText, name, countText] = Deno.args;
const port = Number(portText);
const n = Number(countText);
const conn = Deno.listenDatagram({ hostname: "0.0.0.0", port: 0, transport: "udp" });
const waiting = new Map<number, (t: number) => void>();
(async () => {
  try {
    for (;;) {
      const [bytes] = await conn.receive();
      const t = performance.now();
      const id = (bytes[0] << 8) | bytes[1];
      waiting.get(id)?.(t);
      waiting.delete(id);
    }
  } catch { /* closed */ }
})();

const queries = Array.from(
  { length: 256 },
  (_, i) =>
    encode({
      type: "query",
      id: i * 251 % 65536,
      flags: FLAG.RD,
      questions: [{ type: "A", name }],
    }),
);
// Check once that the server answers what we think it answers.
const first = await new Promise<Uint8Array>((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`no answer from ${server}:${port}`)), 3000);
  (async () => {
    const probe = Deno.listenDatagram({ hostname: "0.0.0.0", port: 0, transport: "udp" });
    await probe.send(queries[0], { transport: "udp", hostname: server, port });
    const [bytes] = await probe.receive();
    probe.close();
    clearTimeout(timer);
    resolve(bytes);
  })();
});
const answers = decode(asBuffer(first)).answers ?? [];
if (answers.length === 0) throw new Error(`${server}:${port} gave no answer for ${name}`);

const samples: number[] = [];
let lost = 0;
for (let i = 0; i < n; i++) {
  const q = queries[i % queries.length];
  const id = (q[0] << 8) | q[1];
  const t0 = performance.now();
  const t1 = await new Promise<number | undefined>((resolve) => {
    const timer = setTimeout(() => {
      waiting.delete(id);
      resolve(undefined);
    }, 1000);
    waiting.set(id, (t) => {
      clearTimeout(timer);
      resolve(t);
    });
    conn.send(q, { transport: "udp", hostname: server, port });
  });
  if (t1 === undefined) lost++;
  else samples.push(t1 - t0);
}
conn.close();
if (lost) console.error(`${lost} lost`);
console.log(JSON.stringify(samples));
Deno.exit(0);
