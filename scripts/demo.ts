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
import { type Controller, createController, type RecordedEvent } from "../mod.ts";
import { openJournal } from "../src/journal.ts";

const servers = Deno.env.get("CNM_NATS_URL") ?? "127.0.0.1:4222";
const stream = Deno.env.get("CNM_STREAM") ?? "CNM";
const prefix = Deno.env.get("CNM_PREFIX") ?? "cnm";
const tag = Array.from(
  crypto.getRandomValues(new Uint8Array(2)),
  (b) => b.toString(16).padStart(2, "0"),
)
  .join("");
const hostNs = `cnmdemo${tag}-host`;
const hostPath = `/var/run/netns/${hostNs}`;
const namePrefix = `cnmdemo${tag}-`;

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

async function history(since: number): Promise<RecordedEvent[]> {
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

async function main() {
  if (Deno.uid() !== 0) throw new Error("the demo needs root (it creates network namespaces)");
  step(`throwaway host namespace ${hostNs} (the machine's own network is not touched)`);
  await sh(["ip", "netns", "add", hostNs]);
  let cnm: Controller | undefined;
  try {
    cnm = await open();
    const startSeq = cnm.recovery.events + 1;
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

    step("create a sandbox (a real network namespace) and an endpoint on `none`, then join");
    const sb = await cnm.createSandbox({ name: `web-${tag}`, labels: { app: "demo" } });
    const ep = await cnm.createEndpoint("none", { name: `web-${tag}-none` });
    const joined = await cnm.join(ep.id, sb.id);
    say(`sandbox ${sb.name} key ${sb.key}`);
    say(`endpoint ${ep.name} ${joined.state} as ${joined.ifname} in ${sb.name}`);
    say((await sh(["ip", "-n", sb.key.split("/").pop()!, "-br", "link"])).trim());

    step("a refused operation changes nothing");
    try {
      await cnm.deleteNetwork("none");
    } catch (e) {
      say(`${(e as Error).name}: ${(e as Error).message}`);
    }

    step("close the controller (the kernel stays as it is) and start a new one");
    const before = JSON.stringify([cnm.sandboxes(), cnm.endpoints()]);
    await cnm.close();
    cnm = await open();
    const after = JSON.stringify([cnm.sandboxes(), cnm.endpoints()]);
    say(
      `rebuilt ${cnm.recovery.objects} objects from ${cnm.recovery.events} events in ${
        cnm.recovery.ms.toFixed(1)
      } ms; ` +
        `same ids and states: ${before === after}`,
    );

    step("tear down: deleting the sandbox leaves and deletes its endpoint");
    await cnm.deleteSandbox(sb.id);
    say(`sandboxes left: ${cnm.sandboxes().filter((s) => s.name === sb.name).length}`);

    step("the history of this run, replayed from the stream");
    const events = await history(startSeq);
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
    await sh(["ip", "netns", "del", hostNs]).catch(() => {});
    for await (const e of Deno.readDir("/var/run/netns")) {
      if (e.name.startsWith(namePrefix)) await sh(["ip", "netns", "del", e.name]).catch(() => {});
    }
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
