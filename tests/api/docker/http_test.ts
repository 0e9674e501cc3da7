/**
 * The Docker socket on the wire (raw HTTP/1.1, real controller): negotiation, dockerd's
 * headers, refused versions, unknown routes, body and Content-Type rules, status codes of
 * empty answers, the socket's mode, and a stale socket replaced at start.
 */
import assert from "node:assert/strict";
import { serveDocker } from "../../../src/api/docker/mod.ts";
import { rawExchange, startDockerEnv } from "../../_harness/docker.ts";

const req = (line: string, headers: Record<string, string> = {}, body = "") =>
  `${line} HTTP/1.1\r\nHost: api.moby.localhost\r\n` +
  Object.entries({ ...headers, ...(body ? { "Content-Length": String(body.length) } : {}) })
    .map(([k, v]) => `${k}: ${v}\r\n`).join("") +
  `Connection: close\r\n\r\n${body}`;
const json = { "Content-Type": "application/json" };
const pick = (h: Record<string, string>, ...names: string[]) =>
  Object.fromEntries(names.filter((n) => n in h).map((n) => [n, h[n]]));

Deno.test("Docker socket (root, nats-server) speaks dockerd's HTTP", async (t) => {
  const d = await startDockerEnv("dkh");
  const { cnm, raw } = d;
  const base = {
    "api-version": "1.41",
    "docker-experimental": "false",
    "ostype": "linux",
    "server": "cnm/0.1.0 (linux)",
  };
  try {
    await cnm.createSandbox({ name: "c1" });

    await t.step("the socket is mode 0660", () => {
      assert.equal(Deno.statSync(d.path).mode! & 0o777, 0o660);
    });

    await t.step("HEAD and GET /_ping answer 200 with dockerd's headers", async () => {
      for (const line of ["HEAD /_ping", "GET /_ping", "GET /v1.41/_ping"]) {
        const r = await raw(req(line));
        assert.equal(r.status, 200, line);
        assert.deepEqual(
          pick(r.headers, ...Object.keys(base), "cache-control", "pragma", "content-type"),
          {
            ...base,
            "cache-control": "no-cache, no-store, must-revalidate",
            "pragma": "no-cache",
            "content-type": "text/plain; charset=utf-8",
          },
        );
        assert.equal(r.body, line.startsWith("HEAD") ? "" : "OK");
        if (line.startsWith("HEAD")) assert.equal(r.headers["content-length"], "0");
      }
    });

    await t.step(
      "versions above 1.41 and below 1.24 are refused as dockerd refuses them",
      async () => {
        let r = await raw(req("GET /v1.50/networks"));
        assert.equal(r.status, 400);
        assert.equal(r.headers["content-type"], "application/json");
        assert.equal(r.headers["docker-experimental"], undefined);
        assert.equal(r.headers["api-version"], "1.41");
        assert.equal(
          r.body,
          '{"message":"client version 1.50 is too new. Maximum supported API version is 1.41"}\n',
        );
        r = await raw(req("GET /v1.12/networks"));
        assert.equal(r.status, 400);
        assert.equal(r.headers["content-type"], "text/plain; charset=utf-8");
        assert.equal(
          r.body,
          "client version 1.12 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version\n",
        );
        for (const v of ["1.24", "1.30", "1.41"]) {
          assert.equal((await raw(req(`GET /v${v}/networks`))).status, 200, v);
        }
      },
    );

    await t.step("unknown routes and methods: 404 page not found, Content-Type only", async () => {
      for (const line of ["PUT /networks", "GET /v1.41/nosuchthing", "HEAD /networks"]) {
        const r = await raw(req(line));
        assert.equal(r.status, 404, line);
        assert.equal(r.headers["content-type"], "application/json");
        assert.equal(r.headers["api-version"], undefined);
        if (!line.startsWith("HEAD")) assert.equal(r.body, '{"message":"page not found"}\n');
      }
    });

    await t.step("lists are [] never null; API < 1.28 lists fill Containers", async () => {
      let r = await raw(req('GET /networks?filters={"name":{"^nothing$":true}}'));
      assert.deepEqual([r.status, r.headers["content-type"], r.body], [
        200,
        "application/json",
        "[]\n",
      ]);
      await cnm.createNetwork({ name: "old" });
      const ep = await cnm.createEndpoint("old", { name: "c1" });
      await cnm.join(ep.id, "c1");
      r = await raw(req('GET /v1.27/networks?filters={"name":["^old$"]}'));
      assert.deepEqual(Object.keys(JSON.parse(r.body)[0].Containers), [cnm.sandbox("c1")!.id]);
      r = await raw(req('GET /v1.28/networks?filters={"name":["^old$"]}'));
      assert.equal(r.body.includes('"Containers":{}'), true);
    });

    await t.step("create needs application/json; errors are {message} with that type", async () => {
      let r = await raw(
        req("POST /networks/create", { "Content-Type": "text/plain" }, '{"Name":"x"}'),
      );
      assert.deepEqual(
        [r.status, r.headers["content-type"], r.body],
        [
          400,
          "application/json",
          `{"message":"Content-Type specified (text/plain) must be 'application/json'"}\n`,
        ],
      );
      r = await raw(req("POST /networks/create", {}, '{"Name":"x"}'));
      assert.equal(
        JSON.parse(r.body).message,
        "Content-Type specified () must be 'application/json'",
      );
      r = await raw(req("POST /networks/create", json, '{"Name":"x"'));
      assert.deepEqual([r.status, r.body], [400, '{"message":"unexpected EOF"}\n']);
      r = await raw(req("POST /networks/create", json, '{"Name":"x","Internal":"yes"}'));
      assert.deepEqual(
        [r.status, JSON.parse(r.body).message],
        [
          400,
          "json: cannot unmarshal string into Go struct field NetworkCreateRequest.Internal of type bool",
        ],
      );
      r = await raw(
        req(
          "POST /networks/create",
          { "Content-Type": "application/json; charset=utf-8" },
          '{"name":"lower","Colour":"red"}',
        ),
      );
      assert.equal(r.status, 201);
      assert.deepEqual(Object.keys(JSON.parse(r.body)), ["Id", "Warning"]);
      assert.equal(JSON.parse(r.body).Id, cnm.network("lower")!.id);
      assert.equal(cnm.networks().some((n) => n.name === "x"), false);
    });

    await t.step(
      "connect and disconnect answer 200 with an empty body and no Content-Type",
      async () => {
        let r = await raw(
          req(
            "POST /networks/lower/connect",
            json,
            '{"Container":"c1","EndpointConfig":{"GwPriority":0,"DNSNames":null,"Links":null}}',
          ),
        );
        assert.deepEqual(
          [r.status, r.body, r.headers["content-length"], r.headers["content-type"]],
          [200, "", "0", undefined],
        );
        r = await raw(
          req("POST /networks/lower/disconnect", json, '{"Container":"c1","Force":false}'),
        );
        assert.deepEqual([r.status, r.body, r.headers["content-type"]], [200, "", undefined]);
        r = await raw(req("POST /networks/lower/connect"));
        assert.deepEqual([r.status, r.body], [
          400,
          '{"message":"got EOF while reading request body"}\n',
        ]);
        r = await raw(
          req(
            "POST /networks/lower/connect",
            json,
            '{"Container":"c1","EndpointConfig":{"IPAMConfig":{"IPv4Address":"not-an-ip"}}}',
          ),
        );
        assert.deepEqual([r.status, JSON.parse(r.body).message], [
          400,
          "Invalid IPv4 address: not-an-ip",
        ]);
      },
    );

    await t.step("lookups: ambiguity, scope and verbose", async () => {
      let r = await raw(req("GET /networks/lower?scope=swarm"));
      assert.deepEqual([r.status, JSON.parse(r.body).message], [404, "network lower not found"]);
      r = await raw(req("GET /networks/lower?verbose=maybe"));
      assert.deepEqual(
        [r.status, JSON.parse(r.body).message],
        [
          400,
          'invalid value for verbose: maybe: strconv.ParseBool: parsing "maybe": invalid syntax',
        ],
      );
      r = await raw(req("GET /networks/lower?verbose=true&scope=local"));
      assert.equal(r.status, 200);
      r = await raw(req("GET /networks/brid"));
      assert.deepEqual([r.status, JSON.parse(r.body).message], [404, "network brid not found"]);
      r = await raw(req("GET /networks/"));
      assert.equal(Array.isArray(JSON.parse(r.body)), true);
      r = await raw(req("DELETE /networks/"));
      const n = cnm.networks().length;
      assert.deepEqual(
        [r.status, JSON.parse(r.body).message],
        [400, `network  is ambiguous (${n} matches found based on ID prefix)`],
      );
    });

    await t.step("DELETE answers 204 with no body", async () => {
      const r = await raw(req("DELETE /networks/lower"));
      assert.deepEqual([r.status, r.body, r.headers["content-type"]], [204, "", undefined]);
      assert.equal(cnm.network("lower"), undefined);
    });

    await t.step("prune with nothing to delete answers NetworksDeleted null", async () => {
      const r = await raw(req('POST /networks/prune?filters={"label":["nobody"]}'));
      assert.deepEqual([r.status, r.body], [200, '{"NetworksDeleted":null}\n']);
    });

    await t.step(
      "a second server on a live socket is refused; a stale one is replaced",
      async () => {
        await assert.rejects(
          serveDocker(cnm, { path: d.path }),
          (e: Error) => e.message === `${d.path} is in use by a running server`,
        );
        // A server killed with SIGKILL leaves its socket file behind, with nobody answering.
        const stale = `${d.path}.stale`;
        const child = new Deno.Command(Deno.execPath(), {
          args: [
            "eval",
            `Deno.listen({ transport: "unix", path: ${
              JSON.stringify(stale)
            } }); console.log("up"); setInterval(() => {}, 1000);`,
          ],
          stdout: "piped",
        }).spawn();
        const reader = child.stdout.getReader();
        await reader.read();
        reader.releaseLock();
        child.kill("SIGKILL");
        await child.status;
        await child.stdout.cancel();
        assert.equal((await Deno.lstat(stale)).isSocket, true);
        const s = await serveDocker(cnm, { path: stale });
        try {
          const r = await rawExchange(stale, req("GET /_ping"));
          assert.equal(r.status, 200);
        } finally {
          await s.close();
        }
        assert.equal(await Deno.lstat(stale).then(() => true, () => false), false);
      },
    );
  } finally {
    await d.cleanup();
  }
});
