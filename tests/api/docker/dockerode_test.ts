/**
 * dockerode 5 (npm) against `serveDocker`: unversioned paths, its JSON-array filter
 * encoding, parameters repeated in the query string, and its error mapping (404 → "no such
 * network"). Real controller, real nats-server, throwaway host namespace.
 */
import assert from "node:assert/strict";
import Docker from "dockerode";
import { startDockerEnv } from "../../_harness/docker.ts";

/** dockerode's error: the status, and the server's JSON. */
async function refusal(p: Promise<unknown>): Promise<[number, string, string]> {
  try {
    await p;
  } catch (err) {
    const e = err as { statusCode: number; json: { message: string }; message: string };
    return [e.statusCode, e.json?.message, e.message];
  }
  throw new Error("expected a refusal");
}

Deno.test("dockerode (root, nats-server) manages cnm networks through the Docker socket", async (t) => {
  const d = await startDockerEnv("dko");
  const { cnm } = d;
  try {
    const c1 = await cnm.createSandbox({ name: "c1" });
    const docker = new Docker({ socketPath: d.path });

    await t.step("ping and version", async () => {
      assert.equal(String(await docker.ping()), "OK");
      const v = await docker.version();
      assert.equal(v.ApiVersion, "1.41");
      assert.equal(v.MinAPIVersion, "1.24");
      assert.equal(v.Os, "linux");
    });

    let id = "";
    await t.step("createNetwork sends its options twice; cnm reads the body", async () => {
      const net = await docker.createNetwork({
        Name: "dn",
        CheckDuplicate: true,
        Internal: true,
        IPAM: { Driver: "default", Config: [{ Subnet: "10.77.0.0/24", Gateway: "10.77.0.1" }] },
        Labels: { team: "a" },
        Options: { "com.docker.network.driver.mtu": "1400" },
      });
      id = net.id;
      assert.match(id, /^[0-9a-f]{64}$/);
      const n = cnm.network("dn")!;
      assert.equal(n.id, id);
      assert.equal(n.internal, true);
      assert.deepEqual(n.ipam.config, [{ subnet: "10.77.0.0/24", gateway: "10.77.0.1" }]);
      assert.equal(n.driverInfo.mtu, 1400);
    });

    await t.step("create refusals carry dockerd's status and message", async () => {
      assert.deepEqual(
        (await refusal(docker.createNetwork({ Name: "dn" }))).slice(0, 2),
        [409, "network with name dn already exists"],
      );
      assert.deepEqual(
        (await refusal(docker.createNetwork({ Name: "x", Driver: "nosuch" }))).slice(0, 2),
        [404, 'plugin "nosuch" not found'],
      );
      assert.deepEqual(
        (await refusal(docker.createNetwork({
          Name: "x",
          IPAM: { Config: [{ Subnet: "10.78.0.0/24", IPRange: "10.79.0.0/25" }] },
        }))).slice(0, 2),
        [
          400,
          "invalid network config:\ninvalid ip-range 10.79.0.0/25: parent subnet 10.78.0.0/24 doesn't contain ip-range",
        ],
      );
      assert.deepEqual(
        (await refusal(docker.createNetwork({ Name: "" }))).slice(0, 2),
        [400, "invalid name: "],
      );
    });

    await t.step("listNetworks with dockerode's filter encoding", async () => {
      const names = async (filters: Record<string, string[]>) =>
        (await docker.listNetworks({ filters })).map((n: { Name: string }) => n.Name).sort();
      assert.deepEqual(await names({ label: ["team=a"] }), ["dn"]);
      assert.deepEqual(await names({ type: ["builtin"] }), ["bridge", "host", "none"]);
      assert.deepEqual(await names({ name: ["^d"], driver: ["bridge"] }), ["dn"]);
      assert.deepEqual(await names({ id: [id.slice(10, 30)] }), ["dn"]);
      assert.deepEqual(await names({ scope: ["swarm"] }), []);
      const all = await docker.listNetworks();
      assert.ok(all.every((n: { Containers: unknown }) => JSON.stringify(n.Containers) === "{}"));
    });

    await t.step("connect, inspect, disconnect (Force)", async () => {
      const net = docker.getNetwork("dn");
      await net.connect({
        Container: "c1",
        EndpointConfig: { IPAMConfig: { IPv4Address: "10.77.0.10" }, Aliases: ["dn"] },
      });
      const info = await net.inspect();
      assert.deepEqual(Object.keys(info.Containers), [c1.id]);
      assert.equal(info.Containers[c1.id].IPv4Address, "10.77.0.10/24");
      assert.equal(info.Containers[c1.id].Name, "c1");
      assert.deepEqual(
        (await refusal(net.connect({ Container: "c1" }))).slice(0, 2),
        [403, "endpoint with name c1 already exists in network dn"],
      );
      assert.deepEqual(
        (await refusal(net.connect({ Container: "" }))).slice(0, 2),
        [400, 'invalid name or ID supplied: ""'],
      );
      // dockerode sends no body at all for empty options.
      assert.deepEqual(
        (await refusal(net.connect({}))).slice(0, 2),
        [400, "got EOF while reading request body"],
      );
      await net.disconnect({ Container: c1.id, Force: true });
      assert.deepEqual(cnm.endpoints({ network: "dn" }), []);
    });

    await t.step("a missing network is dockerode's 'no such network'", async () => {
      const [status, message, text] = await refusal(docker.getNetwork("nope").inspect());
      assert.deepEqual([status, message], [404, "network nope not found"]);
      assert.match(text, /no such network/);
      assert.deepEqual(
        (await refusal(docker.getNetwork("nope").remove())).slice(0, 2),
        [404, "network nope not found"],
      );
    });

    await t.step("pruneNetworks with filters, then remove", async () => {
      await docker.createNetwork({ Name: "keep", Labels: { team: "b" } });
      assert.deepEqual(await docker.pruneNetworks({ filters: { label: ["team=a"] } }), {
        NetworksDeleted: ["dn"],
      });
      assert.deepEqual(await docker.pruneNetworks({ filters: { label: ["team=a"] } }), {
        NetworksDeleted: null,
      });
      await docker.getNetwork("keep").remove();
      assert.equal(cnm.network("keep"), undefined);
    });

    await t.step("getEvents with since/until returns the journal's network events", async () => {
      const since = Math.floor(new Date(cnm.network("none")!.created).getTime() / 1000) - 1;
      const stream = await docker.getEvents({
        since,
        until: Math.ceil(Date.now() / 1000) + 1,
        filters: { type: ["network"], network: [id.slice(0, 12)] },
      });
      let text = "";
      for await (const chunk of stream as AsyncIterable<Uint8Array>) {
        text += new TextDecoder().decode(chunk);
      }
      const events = text.trimEnd().split("\n").map((l) => JSON.parse(l));
      assert.deepEqual(events.map((e) => e.Action), ["create", "connect", "disconnect", "destroy"]);
      const [create, connect] = events;
      assert.deepEqual(Object.keys(create), [
        "Type",
        "Action",
        "Actor",
        "scope",
        "time",
        "timeNano",
      ]);
      assert.deepEqual(create.Actor, { ID: id, Attributes: { name: "dn", type: "bridge" } });
      assert.deepEqual(connect.Actor.Attributes, { container: c1.id, name: "dn", type: "bridge" });
      assert.equal(create.time, Math.floor(create.timeNano / 1e9));
    });
  } finally {
    await d.cleanup();
  }
});
