/**
 * The controller demo (`./run demo`). Everything kernel-side happens inside a throwaway
 * "host" namespace it creates, so the machine's own interfaces, routes and firewall are
 * never touched; it is removed at the end. The journal stays: run it twice and the history
 * grows.
 *
 * Environment: CNM_NATS_URL (default 127.0.0.1:4222), CNM_STREAM (CNM), CNM_PREFIX (cnm).
 *
 * @module
 */

import { connect } from "@nats-io/transport-node";
import { type Controller, createController, history, type RecordedEvent } from "../mod.ts";
import { openJournal } from "../src/journal/journal.ts";
import { connectTcp, serveTcp } from "../tests/_harness/tcp.ts";

const servers = Deno.env.get("CNM_NATS_URL") ?? "127.0.0.1:4222";
const stream = Deno.env.get("CNM_STREAM") ?? "CNM";
const prefix = Deno.env.get("CNM_PREFIX") ?? "cnm";
const tag = Array.from(
  crypto.getRandomValues(new Uint8Array(2)),
  (b) => b.toString(16).padStart(2, "0"),
)
  .join("");
// Fixed names: a demo killed half-way is cleaned up by the next run.
const namePrefix = "cnmdemo-";
const hostNs = `${namePrefix}host`;
const hostPath = `/var/run/netns/${hostNs}`;

const bold = (s: string) => Deno.stdout.isTerminal() ? `\x1b[1m${s}\x1b[0m` : s;
const say = (s: string) => console.log(s);
const step = (s: string) => say(`\n${bold(`== ${s}`)}`);

async function sh(args: string[]): Promise<string> {
  const out = await new Deno.Command(args[0], {
    args: args.slice(1),
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${args.join(" ")}: ${text.trim()}`);
  return text;
}

function open(): Promise<Controller> {
  return createController({
    nats: { servers },
    stream,
    prefix,
    hostId: "demo",
    kernel: { hostNamespace: hostPath },
    namePrefix,
  });
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

async function eventsSince(since: number): Promise<RecordedEvent[]> {
  const nc = await connect({ servers });
  try {
    const j = await openJournal(nc, { stream, prefix });
    const out: RecordedEvent[] = [];
    for await (const e of j.read({ seq: since })) out.push(e);
    return out;
  } finally {
    await nc.close();
  }
}

async function removeDemoNamespaces(): Promise<void> {
  try {
    for await (const e of Deno.readDir("/var/run/netns")) {
      if (e.name.startsWith(namePrefix)) await sh(["ip", "netns", "del", e.name]).catch(() => {});
    }
  } catch { /* no /var/run/netns yet */ }
}

async function main() {
  if (Deno.uid() !== 0) throw new Error("the demo needs root (it creates network namespaces)");
  step(`throwaway host namespace ${hostNs} (the machine's own network is not touched)`);
  await removeDemoNamespaces(); // left by a demo that was killed
  await sh(["ip", "netns", "add", hostNs]);
  let cnm: Controller | undefined;
  try {
    cnm = await open();
    const startSeq = cnm.recovery.events + 1;
    // Objects an interrupted earlier run left in the journal: delete them (journaled too).
    const leftovers = [
      ...cnm.sandboxes(),
      ...cnm.networks().filter((n) =>
        !n.labels["cnm.predefined"] && !["none", "host", "bridge"].includes(n.name)
      ),
    ];
    for (const sb of cnm.sandboxes()) await cnm.deleteSandbox(sb.id);
    for (const ep of cnm.endpoints()) await cnm.deleteEndpoint(ep.id, { force: true });
    for (const n of cnm.networks()) {
      if (!["none", "host", "bridge"].includes(n.name)) await cnm.deleteNetwork(n.id);
    }
    if (leftovers.length) {
      say(`removed ${leftovers.length} objects an interrupted earlier demo left behind`);
    }
    say(`controller ${cnm.hostId} on ${servers}, stream ${stream}, prefix ${prefix}`);
    say(
      `recovered ${cnm.recovery.objects} objects from ${cnm.recovery.events} events in ${
        cnm.recovery.ms.toFixed(1)
      } ms`,
    );
    say(table([
      ["NETWORK", "DRIVER", "STATE"],
      ...cnm.networks().map((n) => [n.name, n.driver, n.state]),
    ]));

    step("a bridge network, two sandboxes (real namespaces) and their endpoints");
    const net = await cnm.createNetwork({ name: `front-${tag}` });
    say(
      `network ${net.name}: bridge ${net.driverInfo.bridge}, subnet ${
        net.ipam.config[0].subnet
      }, gateway ${net.ipam.config[0].gateway}`,
    );
    const web = await cnm.createSandbox({ name: `web-${tag}`, labels: { app: "demo" } });
    const cli = await cnm.createSandbox({ name: `client-${tag}` });
    const epWeb = await cnm.join((await cnm.createEndpoint(net.id, { name: "web" })).id, web.id);
    const epCli = await cnm.join((await cnm.createEndpoint(net.id, { name: "client" })).id, cli.id);
    say(table([
      ["SANDBOX", "ENDPOINT", "IFNAME", "ADDRESS", "MAC", "GATEWAY"],
      ...[[web, epWeb], [cli, epCli]].map(([s, e]) => [
        (s as { name: string }).name,
        (e as { name: string }).name,
        (e as { ifname?: string }).ifname ?? "",
        (e as { ipv4Address?: string }).ipv4Address ?? "",
        (e as { macAddress?: string }).macAddress ?? "",
        (e as { gateway?: string }).gateway ?? "",
      ]),
    ]));
    const webNs = web.key.split("/").pop()!, cliNs = cli.key.split("/").pop()!;
    say((await sh(["ip", "-n", webNs, "-br", "addr"])).trim());

    step("TCP from client to web over the bridge (a listener inside web's namespace)");
    const webIp = epWeb.ipv4Address!.split("/")[0];
    const server = await serveTcp(webNs, 8080);
    try {
      say(`client → ${webIp}:8080: ${await connectTcp(cliNs, webIp, 8080) ?? "no answer"}`);

      step("a refused operation changes nothing");
      for (const f of [() => cnm!.deleteNetwork(net.id), () => cnm!.deleteNetwork("none")]) {
        try {
          await f();
        } catch (e) {
          say(`${(e as Error).name}: ${(e as Error).message}`);
        }
      }

      step("close the controller (the kernel stays as it is) and start a new one");
      const before = JSON.stringify([cnm.networks(), cnm.sandboxes(), cnm.endpoints()]);
      await cnm.close();
      say(
        `no controller running; client → web: ${
          await connectTcp(cliNs, webIp, 8080) ?? "no answer"
        }`,
      );
      cnm = await open();
      const after = JSON.stringify([cnm.networks(), cnm.sandboxes(), cnm.endpoints()]);
      say(
        `rebuilt ${cnm.recovery.objects} objects from ${cnm.recovery.events} events in ${
          cnm.recovery.ms.toFixed(1)
        } ms; same ids and states: ${
          before === after
        }; effects re-run: ${cnm.recovery.resumed.length}; ` +
          `drift repaired: ${cnm.recovery.reconcile?.findings.length ?? 0}`,
      );
      say(`client → web after the restart: ${await connectTcp(cliNs, webIp, 8080) ?? "no answer"}`);
    } finally {
      await server.close();
    }

    step(`the history of endpoint "web", from the stream alone`);
    const h = await history(epWeb.id, { nats: { servers }, stream, prefix });
    say(table([
      ["SEQ", "TIME", "TRANSITION", "EVENT", "IN STATE", "EFFECT"],
      ...h.transitions.map((x) => [
        String(x.seq),
        x.at.slice(11, 23),
        `${x.from ?? "·"} → ${x.to}`,
        x.type,
        x.inStateMs === null ? "" : `${x.inStateMs.toFixed(1)} ms`,
        x.elapsedMs === undefined ? "" : `${x.elapsedMs} ms`,
      ]),
    ]));

    step("tear down: deleting the sandboxes leaves and deletes their endpoints, then the network");
    await cnm.deleteSandbox(web.id);
    await cnm.deleteSandbox(cli.id);
    await cnm.deleteNetwork(net.id);
    say(
      `left of this run: ${
        cnm.sandboxes().filter((x) => x.name.endsWith(tag)).length
      } sandboxes, ` +
        `${cnm.networks().filter((x) => x.name.endsWith(tag)).length} networks`,
    );

    step("everything this run appended, replayed from the stream");
    const events = await eventsSince(startSeq);
    say(table([
      ["SEQ", "TIME", "OBJECT", "TRANSITION", "EVENT"],
      ...events.map((e) => [
        String(e.seq),
        e.at.slice(11, 23),
        `${e.kind} ${e.objectId.slice(0, 12)}`,
        `${e.from ?? "·"} → ${e.to}`,
        e.type + (e.data.elapsedMs !== undefined ? ` (${e.data.elapsedMs} ms)` : ""),
      ]),
    ]));
  } finally {
    await cnm?.close().catch(() => {});
    await removeDemoNamespaces();
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(`demo failed: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
