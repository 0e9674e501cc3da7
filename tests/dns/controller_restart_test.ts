/**
 * The embedded resolver across a `kill -9` of `cnm serve` (root, nats-server): the sockets die
 * with the process (nothing answers 127.0.0.11 meanwhile), and the restarted controller answers
 * exactly what the journal says — every name, from every sandbox, against a fold of the stream
 * made here — as soon as it says it is answering, with one DNAT pair per sandbox on new ports.
 */

import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { createApiClient, type SandboxInfo } from "../../mod.ts";
import { readDnat } from "../../src/dns/dnat.ts";
import { listenUdpIn } from "../../src/dns/netns_sockets.ts";
import { asBuffer, decode, encode, FLAG } from "../../src/dns/_packet.ts";
import { createDnsFold } from "../../src/dns/records_fold.ts";
import { openJournal } from "../../src/journal/journal.ts";
import { type ServeProcess, startServe } from "../_harness/cnm_serve.ts";
import { UPSTREAM } from "../_harness/dns_lab.ts";
import { connected, createControllerLab, digIn } from "./_controller_lab.ts";

/** A client that keeps its source port (as long-lived resolvers do): one A query, 500 ms. */
function fixedPortClient(netns: string) {
  const conn = listenUdpIn(netns, "0.0.0.0");
  let id = 0;
  return {
    async ask(name: string): Promise<string[] | null> {
      id = (id + 1) & 0xffff;
      const q = encode({ type: "query", id, flags: FLAG.RD, questions: [{ type: "A", name }] });
      await conn.send(q, { transport: "udp", hostname: "127.0.0.11", port: 53 });
      const timer = new Promise<null>((r) => setTimeout(() => r(null), 500));
      for (;;) {
        const got = await Promise.race([conn.receive(), timer]);
        if (!got) return null;
        const r = decode(asBuffer(got[0]));
        if (r.id === id) return (r.answers ?? []).map((a) => String((a as { data: unknown }).data));
      }
    },
    close: () => conn.close(),
  };
}

/** The ports of a sandbox's DNAT pair, as `dnat udp 53 -> N` lines. */
const dnatPorts = async (sb: SandboxInfo) =>
  (await readDnat(sb.key) ?? []).filter((r) => r.startsWith("dnat"));

Deno.test("embedded DNS after kill -9 of cnm serve (root, nats-server): exactly the journal's names, at once", async (t) => {
  const cl = await createControllerLab("dnsk");
  const { lab } = cl;
  const opts = cl.options();
  const api = await createApiClient({
    nats: { servers: cl.nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 250 },
    prefix: opts.prefix!,
    hostId: "h1",
    timeoutMs: 20_000,
  });
  let serve: ServeProcess | undefined;
  const start = async () => {
    serve = await startServe({
      env: {
        CNM_NATS_URL: cl.nats.url,
        CNM_STREAM: opts.stream!,
        CNM_PREFIX: opts.prefix!,
        CNM_HOST_ID: "h1",
      },
      hostNamespace: lab.host.path,
      namePrefix: opts.namePrefix!,
      stateDir: opts.stateDir!,
      args: ["-q", "--resolv-conf", cl.resolvFile],
    });
  };
  try {
    // Names that are not local are forwarded: the lab's upstream answers NXDOMAIN for them.
    await lab.startServer(lab.upstreamNs, UPSTREAM, 53, "up");
    await start();
    await api.createNetwork({ name: "front", ipam: { config: [{ subnet: "10.92.1.0/24" }] } });
    await api.createNetwork({ name: "back", ipam: { config: [{ subnet: "10.92.2.0/24" }] } });
    const web = await connected(api, "web", { front: ["portal"] }, { hostname: "www" });
    const db = await connected(api, "db", { front: [], back: ["store"] });
    const cache = await connected(api, "cache", { back: ["kv"] });
    const gone = await connected(api, "gone", { front: ["old"] });
    await api.leave(gone.eps.front.id, gone.sb.id);
    const sandboxes = [web, db, cache].map((x) => x.sb);
    const names = [
      "web",
      "www",
      "portal",
      "db",
      "store",
      "cache",
      "kv",
      "gone",
      "old",
      "web.front",
      "db.back",
      "db.front",
      "cache.back",
      "kv.back",
      "portal.back",
    ];
    const before = new Map<string, string[]>();
    for (const sb of sandboxes) before.set(sb.id, await dnatPorts(sb));

    const dbIp = db.eps.front.ipv4Address!.split("/")[0];
    const sticky = fixedPortClient(web.sb.key);

    await t.step("before: names resolve", async () => {
      assert.deepEqual((await digIn(web.sb, "db")).answers, [dbIp]);
      assert.deepEqual(await sticky.ask("db"), [dbIp]);
    });

    await t.step("kill -9: nothing answers 127.0.0.11 while the controller is dead", async () => {
      await serve!.cleanup();
      serve = undefined;
      const r = await digIn(web.sb, "+time=1", "db");
      assert.equal(r.status, "TIMEOUT");
      assert.match(r.text, /connection refused/);
      assert.equal(await sticky.ask("db"), null, "its flow still goes to the dead port");
    });

    await t.step("restarted: every answer is the journal's, from the first query", async () => {
      await start();
      // What the journal says, folded here.
      const nc = await connect({ servers: cl.nats.url });
      const fold = createDnsFold();
      try {
        const journal = await openJournal(nc, { stream: opts.stream, prefix: opts.prefix });
        for await (const e of journal.read()) fold.apply(e);
      } finally {
        await nc.close();
      }
      let compared = 0;
      for (const sb of sandboxes) {
        for (const name of names) {
          const want = fold.records.lookup(sb.id, name);
          const got = await digIn(sb, name);
          if (want) {
            assert.deepEqual(
              [got.status, [...got.answers].sort()],
              ["NOERROR", [...want.ipv4].sort()],
              `${name} from ${sb.name}`,
            );
            compared++;
          } else {
            assert.equal(got.status, "NXDOMAIN", `${name} from ${sb.name}: ${got.text}`);
          }
        }
      }
      assert.ok(compared >= 15, `only ${compared} names resolved`);
      const ptr = await digIn(web.sb, "-x", dbIp);
      assert.deepEqual(ptr.answers, ["db.front."]);
    });

    await t.step(
      "a client that kept its source port is answered too (its flow was forgotten)",
      async () => {
        assert.deepEqual(await sticky.ask("db"), [dbIp]);
        sticky.close();
      },
    );

    await t.step("one DNAT pair per sandbox, on the new sockets' ports", async () => {
      for (const sb of sandboxes) {
        const now = await dnatPorts(sb);
        assert.equal(now.length, 2, sb.name);
        assert.notDeepEqual(now, before.get(sb.id), `${sb.name}: the old ports`);
      }
      assert.equal(await readDnat(gone.sb.key), undefined, "gone left its last DNS network");
    });

    await t.step("the restart's reconcile found nothing to repair", async () => {
      assert.deepEqual((await api.reconcile({ dryRun: true })).findings, []);
    });

    await t.step("SIGTERM keeps the tables (the kernel stays as it is)", async () => {
      assert.equal(await serve!.stop(), 0);
      serve = undefined;
      assert.equal((await dnatPorts(web.sb)).length, 2);
    });
  } finally {
    await serve?.cleanup();
    await api.close();
    await cl.cleanup();
  }
});
