/**
 * `deno task bench:dns`: cnm's embedded resolver against aardvark-dns (Podman's resolver,
 * Debian 1.4.0), serving the same names in the same throwaway namespaces, in one run.
 *
 * - cnm: this process runs `createResolver`; the client sandbox asks `127.0.0.11:53`
 *   (DNAT to the listener's random ports, as containers do).
 * - aardvark-dns: run standalone in the host namespace with a config directory, listening
 *   on the bridge gateway 172.30.0.1:53 (as Podman runs it); same upstream.
 * - latency: sequential A queries from a separate client process in the sandbox
 *   (`bench/_dns_client.ts`), for a local name and a forwarded one (the upstream is a small
 *   server in a namespace of its own); rounds alternate between the two resolvers so machine
 *   noise hits both alike.
 * - throughput: `dnsperf` in the sandbox for 4 s per resolver, local names, 4 runs each.
 * - floor: the upstream asked directly (what a forward cannot beat).
 * - update: a new name's time from "recorded" to "answered" — cnm: set in the records, then
 *   the next query; aardvark: the line appended to its config, SIGHUP, polled until answered.
 *
 * Usage (root): `deno task bench:dns [N=2000]`. Needs `dig`, `dnsperf` and
 * `/usr/lib/podman/aardvark-dns` (`./run` installs them).
 *
 * @module
 */

import { createResolver } from "../src/dns/resolver.ts";
import { createDnsRecords } from "../src/dns/records.ts";
import { listenUdpIn } from "../src/dns/netns_sockets.ts";
import { asBuffer, decode, encode, FLAG } from "../src/dns/_packet.ts";
import { output } from "../tests/_harness/command.ts";
import { createDnsLab, type LabSandbox, UPSTREAM } from "../tests/_harness/dns_lab.ts";
import { median, percentile } from "./_stats.ts";

const N = Number(Deno.args[0] ?? 2000);
if (!Number.isInteger(N) || N < 100 || N > 100_000) throw new Error(`bad N ${Deno.args[0]}`);
const AARDVARK = "/usr/lib/podman/aardvark-dns";
const ROUNDS = 10;
const client = new URL("./_dns_client.ts", import.meta.url).pathname;

const tools: [string, string[]][] = [["dnsperf", ["dnsperf", "-h"]], ["aardvark-dns", [
  AARDVARK,
  "-V",
]]];
for (const [what, argv] of tools) {
  const ok = await output(argv).then(() => true, () => false);
  if (!ok) throw new Error(`bench:dns needs ${what} (Debian: apt-get install ${what})`);
}

async function latency(sb: LabSandbox, server: string, name: string, n: number) {
  const out = await output([
    "nsenter",
    `--net=${sb.path}`,
    "--",
    Deno.execPath(),
    "run",
    "-A",
    "--unstable-net",
    client,
    server,
    "53",
    name,
    String(n),
  ]);
  if (out.code !== 0) throw new Error(`latency client against ${server}: ${out.stderr}`);
  return JSON.parse(out.stdout) as number[];
}

async function dnsperf(sb: LabSandbox, server: string, file: string) {
  const out = await output([
    "nsenter",
    `--net=${sb.path}`,
    "--",
    "dnsperf",
    "-s",
    server,
    "-p",
    "53",
    "-d",
    file,
    "-l",
    "4",
    "-c",
    "2",
    "-q",
    "100",
  ]);
  const qps = /Queries per second:\s+([0-9.]+)/.exec(out.stdout)?.[1];
  const lost = /Queries lost:\s+([0-9]+)/.exec(out.stdout)?.[1];
  if (!qps) throw new Error(`dnsperf against ${server}: ${out.stdout}${out.stderr}`);
  return { qps: Number(qps), lost: Number(lost ?? 0) };
}

/** Queries from this process, from inside `sb`; an unanswered one resolves null after 200 ms. */
function makeAsker(sb: LabSandbox) {
  const conn = listenUdpIn(sb.path, "0.0.0.0");
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
        }, 200);
        waiting.set(myId, (answers) => {
          clearTimeout(timer);
          waiting.delete(myId);
          resolve(answers);
        });
        conn.send(q, { transport: "udp", hostname: server, port: 53 }).catch(() => {});
      });
    },
    async close() {
      conn.close();
      await loop;
    },
  };
}

async function main() {
  const lab = await createDnsLab("bdns");
  let aardvarkPid: number | undefined;
  const dir = await Deno.makeTempDir({ prefix: "cnm-bench-dns-" });
  const resolver = createResolver({
    records: createDnsRecords(),
    hostNamespace: lab.host.path,
    hostResolvConf: () => `nameserver ${UPSTREAM}\n`,
  });
  try {
    const cl = await lab.addSandbox("cl", 2);
    await lab.addSandbox("web", 3);
    await lab.startServer(lab.upstreamNs, UPSTREAM, 53, "up");

    // cnm: the same two containers on network "bench".
    const r = resolver.records;
    r.setNetwork({ id: "nb", name: "bench", driver: "bridge", internal: false });
    r.setSandbox({ id: "cl", name: "client" });
    r.setSandbox({ id: "web", name: "web" });
    r.setEndpoint({
      id: "e1",
      networkId: "nb",
      sandboxId: "cl",
      state: "joined",
      ipv4Address: "172.30.0.2/24",
    });
    r.setEndpoint({
      id: "e2",
      networkId: "nb",
      sandboxId: "web",
      state: "joined",
      ipv4Address: "172.30.0.3/24",
      aliases: ["webalias"],
    });
    await resolver.start("cl", { netns: cl.path });

    // aardvark-dns: one network file, the client and web containers.
    const hex = (c: string) => c.repeat(64);
    const config = `${dir}/aardvark`;
    await Deno.mkdir(config);
    const netFile = `${config}/bench`;
    await Deno.writeTextFile(
      netFile,
      `172.30.0.1 ${UPSTREAM}\n${hex("a")} 172.30.0.2  client\n${
        hex("b")
      } 172.30.0.3  web,webalias\n`,
    );
    const started = await output([
      "ip",
      "netns",
      "exec",
      lab.host.name,
      AARDVARK,
      "--config",
      config,
      "-p",
      "53",
      "run",
    ]);
    if (started.code !== 0) throw new Error(`aardvark-dns did not start: ${started.stderr}`);
    aardvarkPid = Number((await Deno.readTextFile(`${config}/aardvark.pid`)).trim());

    const servers = { cnm: "127.0.0.11", aardvark: "172.30.0.1" } as const;
    type Who = keyof typeof servers;
    const local: Record<Who, number[]> = { cnm: [], aardvark: [] };
    const forwarded: Record<Who, number[]> = { cnm: [], aardvark: [] };
    const order: Who[][] = [["cnm", "aardvark"], ["aardvark", "cnm"]];
    const progress = (what: string) => console.error(`[bench:dns] ${what}`);
    progress("latency");
    for (const who of order[0]) await latency(cl, servers[who], "web", 200); // warm up
    for (let round = 0; round < ROUNDS; round++) {
      for (const who of order[round % 2]) {
        local[who].push(...await latency(cl, servers[who], "web", Math.ceil(N / ROUNDS)));
        forwarded[who].push(
          ...await latency(cl, servers[who], "example.test", Math.ceil(N / 4 / ROUNDS)),
        );
      }
    }

    const floor: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      floor.push(...await latency(cl, UPSTREAM, "example.test", Math.ceil(N / 4 / ROUNDS)));
    }

    progress("throughput");
    const qfile = `${dir}/queries.txt`;
    await Deno.writeTextFile(qfile, "web A\nwebalias A\n");
    const qps: Record<Who, number[]> = { cnm: [], aardvark: [] };
    const lost: Record<Who, number> = { cnm: 0, aardvark: 0 };
    for (let i = 0; i < 4; i++) {
      for (const who of order[i % 2]) {
        const res = await dnsperf(cl, servers[who], qfile);
        qps[who].push(res.qps);
        lost[who] += res.lost;
      }
    }

    progress("updates");
    // A new name: recorded → answered.
    const asker = makeAsker(cl);
    const update: Record<Who, number[]> = { cnm: [], aardvark: [] };
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      r.setSandbox({ id: `n${i}`, name: `new${i}` });
      r.setEndpoint({
        id: `en${i}`,
        networkId: "nb",
        sandboxId: `n${i}`,
        state: "joined",
        ipv4Address: `172.30.0.${50 + i}/24`,
      });
      const got = await asker.ask(servers.cnm, `new${i}`);
      update.cnm.push(performance.now() - t0);
      if (got?.[0] !== `172.30.0.${50 + i}`) throw new Error(`cnm answered ${got} for new${i}`);
    }
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      await Deno.writeTextFile(netFile, `${hex(String(i + 1))} 172.30.0.${80 + i}  newer${i}\n`, {
        append: true,
      });
      Deno.kill(aardvarkPid, "SIGHUP");
      for (let tries = 0;; tries++) {
        const got = await asker.ask(servers.aardvark, `newer${i}`);
        if (got?.[0] === `172.30.0.${80 + i}`) break;
        if (tries > 2000) throw new Error(`aardvark never answered newer${i}`);
        await new Promise((res) => setTimeout(res, 1));
      }
      update.aardvark.push(performance.now() - t0);
    }
    await asker.close();

    const ms = (v: number) => `${v.toFixed(3)} ms`;
    const rows: [string, (w: Who) => string][] = [
      ["local A, median", (w) => ms(median(local[w]))],
      ["local A, p99", (w) => ms(percentile(local[w], 99))],
      ["forwarded A, median", (w) => ms(median(forwarded[w]))],
      ["forwarded A, p99", (w) => ms(percentile(forwarded[w], 99))],
      ["local A, queries/s (dnsperf, median)", (w) => `${Math.round(median(qps[w]))}`],
      ["  queries lost", (w) => String(lost[w])],
      ["new name answered after, median", (w) => ms(median(update[w]))],
    ];
    const width = Math.max(...rows.map(([l]) => l.length)) + 2;
    console.log(
      `\nembedded DNS, ${local.cnm.length} local + ${forwarded.cnm.length} forwarded queries per resolver`,
    );
    console.log(`${"".padEnd(width)}${"cnm".padStart(16)}${"aardvark-dns".padStart(18)}`);
    for (const [label, f] of rows) {
      console.log(`${label.padEnd(width)}${f("cnm").padStart(16)}${f("aardvark").padStart(18)}`);
    }
    console.log(
      `dnsperf runs (queries/s): cnm ${qps.cnm.map(Math.round).join(" ")}; ` +
        `aardvark-dns ${qps.aardvark.map(Math.round).join(" ")}`,
    );
    console.log(
      `floor: the upstream asked directly from the sandbox, median ${ms(median(floor))}, ` +
        `p99 ${ms(percentile(floor, 99))}`,
    );
    const goal = (ok: boolean) => (ok ? "met" : "NOT met");
    console.log(
      `\ngoal median latency <= aardvark-dns: ${
        goal(median(local.cnm) <= median(local.aardvark))
      }` +
        ` (local), ${goal(median(forwarded.cnm) <= median(forwarded.aardvark))} (forwarded)`,
    );
    console.log(
      `goal throughput >= aardvark-dns: ${goal(median(qps.cnm) >= median(qps.aardvark))}`,
    );
  } finally {
    if (aardvarkPid) {
      try {
        Deno.kill(aardvarkPid, "SIGKILL");
      } catch { /* gone */ }
    }
    await resolver.close({ removeRules: true }).catch((e) => console.error(e));
    await lab.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
}

await main();
