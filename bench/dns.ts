/**
 * `deno task bench:dns`: cnm's embedded resolver, managed by a real controller, against
 * aardvark-dns (Podman's resolver, Debian 1.4.0), serving the same names in the same
 * throwaway namespaces, in one run.
 *
 * - cnm: a controller (h1) in the lab's host namespace made a bridge network `bench` and
 *   joined the client and `web` sandboxes to it, so each has its listener at `127.0.0.11`
 *   (DNAT to the listener's random ports, as containers do) and its records from the journal.
 * - aardvark-dns: run standalone in the host namespace with a config directory, listening
 *   on the same bridge's gateway 10.93.0.1:53 (as Podman runs it), the same names and
 *   addresses, the same upstream.
 * - latency: sequential A queries from a separate client process in the sandbox
 *   (`bench/_dns_client.ts`), for a local name and a forwarded one (the upstream is a small
 *   server in a namespace of its own); rounds alternate between the two resolvers so machine
 *   noise hits both alike.
 * - throughput: `dnsperf` in the sandbox for 4 s per resolver, local names, 4 runs each.
 * - floor: the upstream asked directly (what a forward cannot beat).
 * - update: a new name's time to be answered in another sandbox — cnm: from a join's command
 *   returning (its `endpoint.joined` durable) to the answer, on the same host and from a
 *   second controller (h2, its own host namespace, same stream) on a global network;
 *   aardvark: the line appended to its config, SIGHUP, polled until answered.
 * - restart: `cnm serve` for h1 killed with SIGKILL and started again; from the new
 *   process's spawn to the first answer in the client sandbox (goal: within 2 s), beside the
 *   time to its API answering.
 *
 * Usage (root): `deno task bench:dns [N=2000]`. Needs `dig`, `dnsperf` and
 * `/usr/lib/podman/aardvark-dns` (`./run` installs them).
 *
 * @module
 */

import { createController } from "../mod.ts";
import type { Controller } from "../mod.ts";
import { output, sh } from "../tests/_harness/command.ts";
import { createDnsLab, type LabSandbox, UPSTREAM } from "../tests/_harness/dns_lab.ts";
import { startNats, type TestNats } from "../tests/_harness/nats.ts";
import { createTestHost, type TestHost } from "../tests/_harness/netns.ts";
import { joined, labOptions, makeAsker, restartTimes } from "./_dns_controller.ts";
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

async function main() {
  const lab = await createDnsLab("bdns");
  let aardvarkPid: number | undefined;
  const dir = await Deno.makeTempDir({ prefix: "cnm-bench-dns-" });
  let nats: TestNats | undefined;
  let host2: TestHost | undefined;
  const open: Controller[] = [];
  try {
    nats = await startNats();
    host2 = await createTestHost("bdn2");
    const resolvFile = `${dir}/host-resolv.conf`;
    await Deno.writeTextFile(resolvFile, `nameserver ${UPSTREAM}\n`);
    // The floor's replies (the client asks the upstream itself) go back through the host.
    await sh(["ip", "-n", lab.upstreamNs, "route", "add", "10.0.0.0/8", "via", "198.51.100.1"]);
    await lab.startServer(lab.upstreamNs, UPSTREAM, 53, "up");
    const opts1 = labOptions(lab, nats.url, resolvFile, dir, "h1", lab.host.path);
    const h1 = await createController(opts1);
    open.push(h1);
    const h2 = await createController(
      labOptions(lab, nats.url, resolvFile, dir, "h2", host2.path),
    );
    open.push(h2);

    // cnm: the two containers on bridge network "bench"; the client also on global "g".
    await h1.createNetwork({
      name: "bench",
      ipam: { config: [{ subnet: "10.93.0.0/24", gateway: "10.93.0.1" }] },
    });
    await h1.createNetwork({ name: "g", driver: "gnames" });
    const client = await joined(h1, "client", "bench");
    await joined(h1, client.sb, "g");
    const web = await joined(h1, "web", "bench", ["webalias"]);
    const ipOf = (cidr?: string) => cidr!.split("/")[0];
    const clientIp = ipOf(client.ep.ipv4Address);
    const webIp = ipOf(web.ep.ipv4Address);
    const cl: LabSandbox = {
      name: "client",
      ns: client.sb.key.split("/").at(-1)!,
      path: client.sb.key,
      address: clientIp,
    };

    // aardvark-dns: one network file, the client and web containers.
    const hex = (c: string) => c.repeat(64);
    const config = `${dir}/aardvark`;
    await Deno.mkdir(config);
    const netFile = `${config}/bench`;
    await Deno.writeTextFile(
      netFile,
      `10.93.0.1 ${UPSTREAM}\n${hex("a")} ${clientIp}  client\n${
        hex("b")
      } ${webIp}  web,webalias\n`,
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

    const servers = { cnm: "127.0.0.11", aardvark: "10.93.0.1" } as const;
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
    // A new name: cnm — a join returned (here, or on h2) → answered in the client;
    // aardvark — recorded in its file and SIGHUP → answered.
    const asker = makeAsker(cl.path);
    const update: Record<Who, number[]> = { cnm: [], aardvark: [] };
    const remote: number[] = [];
    for (let i = 0; i < 20; i++) {
      const box = await h1.createSandbox({ name: `new${i}` });
      const ep = await h1.createEndpoint("bench", { name: `new${i}` });
      const done = await h1.join(ep.id, box.id);
      update.cnm.push(
        await asker.until(servers.cnm, `new${i}`, ipOf(done.ipv4Address), performance.now()),
      );
      const rbox = await h2.createSandbox({ name: `far${i}` });
      const rep = await h2.createEndpoint("g", { name: `far${i}` });
      const rdone = await h2.join(rep.id, rbox.id);
      remote.push(
        await asker.until(servers.cnm, `far${i}`, ipOf(rdone.ipv4Address), performance.now()),
      );
    }
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      await Deno.writeTextFile(netFile, `${hex(String(i + 1))} 10.93.0.${200 + i}  newer${i}\n`, {
        append: true,
      });
      Deno.kill(aardvarkPid, "SIGHUP");
      for (let tries = 0;; tries++) {
        const got = await asker.ask(servers.aardvark, `newer${i}`);
        if (got?.[0] === `10.93.0.${200 + i}`) break;
        if (tries > 2000) throw new Error(`aardvark never answered newer${i}`);
        await new Promise((res) => setTimeout(res, 1));
      }
      update.aardvark.push(performance.now() - t0);
    }
    await asker.close();

    progress("restart");
    // h1 restarted as a `cnm serve` process (the names-only driver is h1's and h2's in this
    // process only: the global network goes first).
    for (const c of [h2, h1]) {
      for (const sb of c.sandboxes()) {
        for (const id of sb.endpointIds) {
          const e = c.endpoint(id);
          if (e && c.network(e.networkId)?.name === "g") {
            await c.deleteEndpoint(id, { force: true });
          }
        }
      }
    }
    await h1.deleteNetwork("g");
    const listeners = h1.sandboxes().filter((sb) => sb.endpointIds.length > 0).length;
    for (const c of [h2, h1]) await c.close();
    open.length = 0;
    const restart = await restartTimes(opts1, nats.url, resolvFile, cl.path, "web", webIp, 5);

    const ms = (v: number) => `${v.toFixed(3)} ms`;
    const rows: [string, (w: Who) => string][] = [
      ["local A, median", (w) => ms(median(local[w]))],
      ["local A, p99", (w) => ms(percentile(local[w], 99))],
      ["forwarded A, median", (w) => ms(median(forwarded[w]))],
      ["forwarded A, p99", (w) => ms(percentile(forwarded[w], 99))],
      ["local A, queries/s (dnsperf, median)", (w) => `${Math.round(median(qps[w]))}`],
      ["  queries lost", (w) => String(lost[w])],
      ["new name answered after, median", (w) => ms(median(update[w]))],
      ["new name answered after, max", (w) => ms(Math.max(...update[w]))],
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
    console.log(
      `cnm: a join's name answered in another sandbox after the join returned: same host ` +
        `median ${ms(median(update.cnm))} (max ${ms(Math.max(...update.cnm))}); ` +
        `from another host (h2) median ${ms(median(remote))} (max ${ms(Math.max(...remote))})`,
    );
    console.log(
      `cnm: kill -9 of cnm serve (${listeners} sandboxes with a listener), spawn -> first answer ` +
        `median ${ms(median(restart.dns))} (max ${ms(Math.max(...restart.dns))}); ` +
        `spawn -> API answering median ${ms(median(restart.api))}`,
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
    console.log(
      `goal a join's name answered elsewhere <= 10 ms: ${
        goal(Math.max(...update.cnm) <= 10)
      } (same host), ${goal(Math.max(...remote) <= 10)} (other host)`,
    );
    console.log(
      `goal answering within 2 s of a restart: ${goal(Math.max(...restart.dns) <= 2000)}`,
    );
  } finally {
    if (aardvarkPid) {
      try {
        Deno.kill(aardvarkPid, "SIGKILL");
      } catch { /* gone */ }
    }
    for (const c of open) await c.close().catch((e) => console.error(e));
    await nats?.cleanup().catch((e) => console.error(e));
    await host2?.cleanup().catch((e) => console.error(e));
    await lab.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
}

await main();
