/**
 * The real `docker` CLI (28, the machine's) against `serveDocker` on a unix socket, with a
 * real controller in a throwaway host namespace and a real nats-server. Every step checks
 * exit code, stdout and stderr as ../shared/reference/docker-api.md gives them. No Docker
 * daemon is involved: the CLI talks only to cnm's socket.
 */
import assert from "node:assert/strict";
import type { NetworkInfo } from "../../../mod.ts";
import { goTable, naturalLess, startDockerEnv } from "../../_harness/docker.ts";

const ERR = "Error response from daemon: ";

/** `docker network ls --format json`'s CreatedAt: Go's time.String() in UTC. */
function goTimeString(iso: string): string {
  const [date, time] = iso.replace("Z", "").split("T");
  const [hms, frac = ""] = time.split(".");
  const f = frac.replace(/0+$/, "");
  return `${date} ${hms}${f ? `.${f}` : ""} +0000 UTC`;
}

function lsTable(nets: NetworkInfo[]): string {
  const sorted = [...nets].sort((a, b) => (naturalLess(a.name, b.name) ? -1 : 1));
  return goTable([
    ["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
    ...sorted.map((n) => [n.id.slice(0, 12), n.name, n.driver, n.scope]),
  ]);
}

Deno.test("docker CLI (root, nats-server, docker CLI) manages cnm networks through the Docker socket", async (t) => {
  const d = await startDockerEnv("dkc");
  const { cnm, docker } = d;
  // What the client itself prints differs before CLI 23 (Debian's 20.10 fallback).
  const legacy = d.cliMajor < 23;
  const status1 = legacy ? "" : "exit status 1\n";
  const notFound = (name: string) =>
    legacy ? `Error: No such network: ${name}\n` : `${ERR}network ${name} not found\n`;
  try {
    const c1 = await cnm.createSandbox({ name: "c1" });
    const c2 = await cnm.createSandbox({ name: "c2" });
    await cnm.createSandbox({ name: "c3" });

    await t.step("network ls prints the predefined networks as docker's table", async () => {
      const r = await docker("network", "ls");
      assert.equal(r.stderr, "");
      assert.equal(r.code, 0);
      assert.equal(r.stdout, lsTable(cnm.networks()));
      assert.match(r.stdout, /^NETWORK ID {5}NAME {6}DRIVER {4}SCOPE\n/);
    });

    let subId = "";
    await t.step(
      "create with subnet, gateway, ip-range, aux-address, options and labels",
      async () => {
        const r = await docker(
          "network",
          "create",
          "--subnet",
          "10.10.0.0/24",
          "--ip-range",
          "10.10.0.128/25",
          "--gateway",
          "10.10.0.254",
          "--aux-address",
          "a=10.10.0.5",
          "--aux-address",
          "b=10.10.0.6",
          "-o",
          "colour=red",
          "-o",
          "com.example.unknown=1",
          "--label",
          "env=dev",
          "sub",
        );
        assert.equal(r.stderr, "");
        assert.equal(r.code, 0);
        subId = cnm.network("sub")!.id;
        assert.equal(r.stdout, `${subId}\n`);
        const n = cnm.network("sub")!;
        assert.deepEqual(n.ipam.config, [{
          subnet: "10.10.0.0/24",
          ipRange: "10.10.0.128/25",
          gateway: "10.10.0.254",
          auxAddresses: { a: "10.10.0.5/24", b: "10.10.0.6/24" },
        }]);
        assert.deepEqual(n.options, { colour: "red", "com.example.unknown": "1" });
        assert.deepEqual(n.labels, { env: "dev" });
        assert.deepEqual(d.createFlags.at(-1), { unknownOptions: "accept" });
      },
    );

    await t.step("create --internal, and --ipv6 with a dual-stack config", async () => {
      let r = await docker("network", "create", "--internal", "--label", "flag", "intern");
      assert.equal(r.code, 0, r.stderr);
      assert.equal(cnm.network("intern")!.internal, true);
      assert.deepEqual(cnm.network("intern")!.labels, { flag: "" });
      r = await docker(
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.11.0.0/24",
        "--subnet",
        "fd00:11::/64",
        "dual",
      );
      assert.equal(r.code, 0, r.stderr);
      const n = cnm.network("dual")!;
      assert.equal(n.enableIPv6, true);
      assert.deepEqual(n.ipam.config.map((c) => c.subnet), ["10.11.0.0/24", "fd00:11::/64"]);
    });

    await t.step("create refuses duplicates, overlaps, predefined names, bad input", async () => {
      const cases: [string[], string][] = [
        [["sub"], "network with name sub already exists"],
        [
          ["--subnet", "10.10.0.0/25", "over"],
          "Pool overlaps with other one on this address space",
        ],
        [["bridge"], "operation is not permitted on predefined bridge network"],
        [["-d", "nosuchdriver", "x"], 'plugin "nosuchdriver" not found'],
        [["-d", "host", "x"], 'only one instance of "host" network is allowed'],
        [
          ["--subnet", "300.1.2.0/24", "x"],
          "invalid network config:\ninvalid subnet 300.1.2.0/24: invalid CIDR block notation",
        ],
        [
          ["-o", "com.docker.network.driver.mtu=abc", "x"],
          'failed to parse com.docker.network.driver.mtu value: abc (strconv.Atoi: parsing "abc": invalid syntax)',
        ],
        [
          ["-o", "com.docker.network.bridge.enable_icc=maybe", "x"],
          'failed to parse com.docker.network.bridge.enable_icc value: maybe (strconv.ParseBool: parsing "maybe": invalid syntax)',
        ],
        [
          ["--subnet", "10.20.0.0/24", "--subnet", "10.21.0.0/24", "x"],
          "bridge driver doesn't support multiple subnets",
        ],
      ];
      const before = cnm.networks().length;
      for (const [args, message] of cases) {
        const r = await docker("network", "create", ...args);
        assert.deepEqual(
          [r.code, r.stdout, r.stderr],
          [1, "", `${ERR}${message}\n`],
          args.join(" "),
        );
      }
      // The CLI checks these itself: nothing reaches the socket, no daemon prefix.
      const r = await docker(
        "network",
        "create",
        "--subnet",
        "10.40.0.0/24",
        "--ip-range",
        "10.43.0.0/25",
        "x",
      );
      assert.deepEqual([r.code, r.stderr], [1, "no matching subnet for range 10.43.0.0/25\n"]);
      assert.equal(cnm.networks().length, before);
    });

    await t.step("IPAM options are kept and shown (IPAM.Options)", async () => {
      const r = await docker("network", "create", "--ipam-opt", "foo=bar", "ipamopts");
      assert.equal(r.code, 0, r.stderr);
      const i = await docker(
        "network",
        "inspect",
        "--format",
        "{{json .IPAM.Options}}",
        "ipamopts",
      );
      assert.deepEqual([i.code, i.stdout], [0, '{"foo":"bar"}\n']);
      const p = await docker("network", "inspect", "--format", "{{json .IPAM.Options}}", "bridge");
      assert.deepEqual([p.code, p.stdout], [0, "null\n"]);
      assert.equal((await docker("network", "rm", "ipamopts")).code, 0);
    });

    await t.step(
      "an unknown com.docker.network.* option is accepted and echoed, as dockerd does",
      async () => {
        const r = await docker("network", "create", "-o", "com.docker.network.foo=1", "lenient");
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(d.createFlags.at(-1), { unknownOptions: "accept" });
        assert.equal(cnm.network("lenient")?.options["com.docker.network.foo"], "1");
        const i = await docker("network", "inspect", "--format", "{{json .Options}}", "lenient");
        assert.deepEqual([i.code, i.stdout], [0, '{"com.docker.network.foo":"1"}\n']);
        // The native API stays strict.
        await assert.rejects(
          cnm.createNetwork({ name: "strict", options: { "com.docker.network.foo": "1" } }),
          (err: Error) =>
            err.message === "invalid option com.docker.network.foo: not a bridge driver option" ||
            /not a bridge driver option/.test(err.message),
        );
        assert.equal((await docker("network", "rm", "lenient")).code, 0);
      },
    );

    await t.step(
      "connect with --ip and --alias joins the sandbox; plain connect takes the range's first address",
      async () => {
        let r = await docker(
          "network",
          "connect",
          "--ip",
          "10.10.0.130",
          "--alias",
          "web",
          "--alias",
          "www",
          "sub",
          "c1",
        );
        assert.deepEqual([r.code, r.stdout, r.stderr], [0, "", ""]);
        r = await docker("network", "connect", "sub", c2.id.slice(0, 12));
        assert.deepEqual([r.code, r.stdout, r.stderr], [0, "", ""]);
        const eps = cnm.endpoints({ network: "sub" });
        const e1 = eps.find((e) => e.sandboxId === c1.id)!;
        const e2 = eps.find((e) => e.sandboxId === c2.id)!;
        assert.equal(e1.state, "joined");
        assert.equal(e1.ipv4Address, "10.10.0.130/24");
        assert.deepEqual(e1.aliases, ["web", "www"]);
        assert.deepEqual(e1.labels, {});
        assert.equal(e2.ipv4Address, "10.10.0.128/24");
      },
    );

    await t.step(
      "connect refuses: already connected, unknown container or network, bad address",
      async () => {
        const cases: [string[], string][] = [
          [["sub", "c1"], "endpoint with name c1 already exists in network sub"],
          [["sub", "nosuchctr"], "No such container: nosuchctr"],
          [["nonet", "c3"], "network nonet not found"],
          [
            ["--ip", "10.99.0.5", "sub", "c3"],
            "Invalid address 10.99.0.5: It does not belong to any of this network's subnets",
          ],
          [["--ip", "10.10.0.254", "sub", "c3"], "Address already in use"],
          [["--ip", "10.10.0.5", "sub", "c3"], "Address already in use"],
          [
            ["host", "c3"],
            "container cannot be disconnected from host network or connected to host network",
          ],
        ];
        for (const [args, message] of cases) {
          const r = await docker("network", "connect", ...args);
          assert.deepEqual(
            [r.code, r.stdout, r.stderr],
            [1, "", `${ERR}${message}\n`],
            args.join(" "),
          );
        }
        assert.equal(cnm.endpoints({ network: "sub" }).length, 2);
      },
    );

    await t.step(
      "inspect prints dockerd's NetworkResource, containers keyed by sandbox id",
      async () => {
        const r = await docker("network", "inspect", "sub");
        assert.equal(r.code, 0, r.stderr);
        const n = cnm.network("sub")!;
        const eps = cnm.endpoints({ network: "sub" });
        const e1 = eps.find((e) => e.sandboxId === c1.id)!;
        const e2 = eps.find((e) => e.sandboxId === c2.id)!;
        const containers = [[c1, e1], [c2, e2]].sort((a, b) => (a[0].id < b[0].id ? -1 : 1))
          .map(([s, e]) => [s.id, {
            Name: s.name,
            EndpointID: e.id,
            MacAddress: (e as typeof e1).macAddress,
            IPv4Address: (e as typeof e1).ipv4Address,
            IPv6Address: "",
          }]);
        const expected = [{
          Name: "sub",
          Id: subId,
          Created: n.created.replace(/\.?0+Z$/, "Z"),
          Scope: "local",
          Driver: "bridge",
          EnableIPv6: false,
          IPAM: {
            Driver: "default",
            Options: {},
            Config: [{
              Subnet: "10.10.0.0/24",
              IPRange: "10.10.0.128/25",
              Gateway: "10.10.0.254",
              AuxiliaryAddresses: { a: "10.10.0.5", b: "10.10.0.6" },
            }],
          },
          Internal: false,
          Attachable: false,
          Ingress: false,
          ConfigFrom: { Network: "" },
          ConfigOnly: false,
          Containers: Object.fromEntries(containers),
          Options: { colour: "red", "com.example.unknown": "1" },
          Labels: { env: "dev" },
        }];
        assert.equal(r.stdout, JSON.stringify(expected, null, 4) + "\n");
        assert.equal(r.stderr, "");
      },
    );

    await t.step(
      "inspect of several names with one missing: found ones, the error, exit 1",
      async () => {
        let r = await docker("network", "inspect", "nope");
        assert.deepEqual([r.code, r.stdout, r.stderr], [1, "[]\n", notFound("nope")]);
        const intern = await docker("network", "inspect", "intern");
        r = await docker("network", "inspect", "intern", "nope");
        assert.deepEqual([r.code, r.stdout, r.stderr], [1, intern.stdout, notFound("nope")]);
        assert.match(r.stdout, /^\[\n {4}\{\n {8}"Name": "intern",/);
        r = await docker(
          "network",
          "inspect",
          "-f",
          "{{.Name}} {{.Driver}}",
          "intern",
          "nope",
          subId.slice(0, 5),
        );
        assert.deepEqual(
          [r.code, r.stdout, r.stderr],
          [1, "intern bridge\nsub bridge\n", notFound("nope")],
        );
      },
    );

    await t.step("ls: --format json, --filter (CLI encoding), -q", async () => {
      // CLI 23+ knows `--format json` (and prints IPv4, "false" against API 1.41); 20.10 needs
      // the template and has no IPv4 field.
      const format = legacy ? "{{json .}}" : "json";
      let r = await docker("network", "ls", "--format", format, "--filter", "name=^sub$");
      assert.equal(r.code, 0, r.stderr);
      const n = cnm.network("sub")!;
      assert.equal(
        r.stdout,
        JSON.stringify({
          CreatedAt: goTimeString(n.created),
          Driver: "bridge",
          ID: n.id.slice(0, 12),
          ...(legacy ? {} : { IPv4: "false" }),
          IPv6: "false",
          Internal: "false",
          Labels: "env=dev",
          Name: "sub",
          Scope: "local",
        }) + "\n",
      );
      r = await docker("network", "ls", "--filter", "type=custom", "--filter", "driver=bridge");
      assert.equal(r.stdout, lsTable(["dual", "intern", "sub"].map((x) => cnm.network(x)!)));
      r = await docker("network", "ls", "--filter", "label=flag", "-q");
      assert.deepEqual([r.code, r.stdout], [0, `${cnm.network("intern")!.id.slice(0, 12)}\n`]);
      r = await docker("network", "ls", "--filter", "dangling=true", "-q", "--no-trunc");
      assert.equal(r.stdout, ["dual", "intern"].map((x) => cnm.network(x)!.id + "\n").join(""));
      r = await docker("network", "ls", "-f", "colour=red");
      assert.deepEqual([r.code, r.stdout, r.stderr], [1, "", `${ERR}Invalid filter 'colour'\n`]);
      r = await docker("network", "ls", "-f", "type=foo");
      assert.deepEqual([r.code, r.stderr], [1, `${ERR}invalid filter: 'type'='foo'\n`]);
      r = await docker("network", "ls", "-f", "nonsense");
      assert.equal(r.code, 125);
      assert.match(
        r.stderr,
        /^invalid argument "nonsense" for "-f, --filter" flag: bad format of filter \(expected name=value\)\n/,
      );
    });

    await t.step("rm: in use, predefined, -f on a missing one, then a real removal", async () => {
      const e1 = cnm.endpoints({ network: "sub" }).find((e) => e.name === "c1")!;
      const e2 = cnm.endpoints({ network: "sub" }).find((e) => e.name === "c2")!;
      let r = await docker("network", "rm", "sub");
      const inUse = (eps: typeof e1[]) =>
        `${ERR}error while removing network: network sub has active endpoints (${
          eps.map((e) => `name:"${e.name}" id:"${e.id.slice(0, 12)}"`).join(", ")
        })\n${status1}`;
      assert.deepEqual([r.code, r.stdout], [1, ""]);
      assert.ok([inUse([e1, e2]), inUse([e2, e1])].includes(r.stderr), r.stderr);
      r = await docker("network", "rm", "bridge");
      assert.deepEqual([r.code, r.stdout, r.stderr], [
        1,
        "",
        `${ERR}bridge is a pre-defined network and cannot be removed\n${status1}`,
      ]);
      r = await docker("network", "rm", "none");
      assert.deepEqual([r.code, r.stderr], [
        1,
        `${ERR}none is a pre-defined network and cannot be removed\n${status1}`,
      ]);
      if (!legacy) { // `rm -f` (ignore 404 only) came after 20.10's CLI
        r = await docker("network", "rm", "-f", "nope");
        assert.deepEqual([r.code, r.stdout, r.stderr], [0, "", ""]);
      }
      r = await docker("network", "rm", "nope");
      assert.deepEqual([r.code, r.stdout, r.stderr], [
        1,
        "",
        `${notFound("nope")}${status1}`,
      ]);
      r = await docker("network", "rm", "dual");
      assert.deepEqual([r.code, r.stdout, r.stderr], [0, "dual\n", ""]);
      assert.equal(cnm.network("dual"), undefined);
    });

    await t.step("disconnect, and disconnect -f; not connected is refused", async () => {
      let r = await docker("network", "disconnect", "sub", "c2");
      assert.deepEqual([r.code, r.stdout, r.stderr], [0, "", ""]);
      r = await docker("network", "disconnect", "-f", "sub", "c1");
      assert.deepEqual([r.code, r.stdout, r.stderr], [0, "", ""]);
      assert.deepEqual(cnm.endpoints({ network: "sub" }), []);
      r = await docker("network", "disconnect", "sub", "c1");
      assert.deepEqual([r.code, r.stdout, r.stderr], [
        1,
        "",
        `${ERR}container ${c1.id} is not connected to network sub\n`,
      ]);
      r = await docker("network", "disconnect", "sub", "ghost");
      assert.deepEqual([r.code, r.stderr], [1, `${ERR}No such container: ghost\n`]);
    });

    await t.step("prune -f --filter removes unused custom networks that match", async () => {
      for (const [name, label] of [["pa", "team=a"], ["pb", "team=b"]]) {
        const r = await docker("network", "create", "--label", label, name);
        assert.equal(r.code, 0, r.stderr);
      }
      await docker("network", "connect", "intern", "c3");
      let r = await docker("network", "prune", "-f", "--filter", "label=team=a");
      assert.deepEqual([r.code, r.stdout, r.stderr], [0, "Deleted Networks:\npa\n\n", ""]);
      r = await docker("network", "prune", "-f", "--filter", "label!=team");
      assert.deepEqual([r.code, r.stdout, r.stderr], [0, "Deleted Networks:\nsub\n\n", ""]);
      r = await docker("network", "prune", "-f", "--filter", "until=1h");
      assert.deepEqual([r.code, r.stdout, r.stderr], [0, "", ""]);
      r = await docker("network", "prune", "-f", "--filter", "colour=red");
      assert.deepEqual([r.code, r.stderr], [1, `${ERR}Invalid filter 'colour'\n`]);
      r = await docker("network", "prune", "-f", "--filter", "until=yesterday");
      assert.deepEqual([r.code, r.stderr], [
        1,
        `${ERR}failed to parse value as time or duration: "yesterday"\n`,
      ]);
      assert.deepEqual(cnm.networks().map((n) => n.name).sort(), [
        "bridge",
        "host",
        "intern",
        "none",
        "pb",
      ]);
    });

    await t.step(
      "cnm network inspect --format docker prints what docker network inspect prints",
      async () => {
        const cnmCli = new URL("../../../cnm", import.meta.url).pathname;
        const o = await new Deno.Command(cnmCli, {
          args: ["network", "inspect", "--format", "docker", "intern", "bridge"],
          env: {
            CNM_NATS_URL: d.env.nats.url,
            CNM_STREAM: d.env.stream,
            CNM_PREFIX: d.env.prefix,
            CNM_HOST_ID: d.cnm.hostId,
          },
        }).output();
        const r = await docker("network", "inspect", "intern", "bridge");
        assert.equal(r.code, 0, r.stderr);
        assert.equal(new TextDecoder().decode(o.stderr), "");
        assert.equal(new TextDecoder().decode(o.stdout), r.stdout);
        assert.match(r.stdout, new RegExp(`"${cnm.sandbox("c3")!.id}": \\{\\n {16}"Name": "c3"`));
      },
    );
  } finally {
    await d.cleanup();
  }
});

Deno.test("docker events (root, nats-server, docker CLI) reach the whole journal, then go on live", async (t) => {
  const d = await startDockerEnv("dke");
  const { cnm, docker } = d;
  try {
    const start = new Date(cnm.networks().find((n) => n.name === "none")!.created).getTime();
    const sb = await cnm.createSandbox({ name: "e1" });
    // More than the 256 events dockerd keeps in memory.
    for (let i = 0; i < 130; i++) {
      await cnm.createNetwork({ name: `n${i}` });
      await cnm.deleteNetwork(`n${i}`);
    }
    let r = await docker("network", "create", "--label", "x=1", "ev");
    const evId = r.stdout.trim();
    await docker("network", "connect", "ev", "e1");
    await docker("network", "disconnect", "ev", "e1");
    await docker("network", "prune", "-f", "--filter", "label=x");
    const stop = Math.ceil(Date.now() / 1000) + 1;
    const window = ["--since", String(Math.floor(start / 1000) - 1), "--until", String(stop)];

    await t.step("--since before the first event lists every network event in order", async () => {
      r = await docker("events", ...window, "--filter", "type=network");
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trimEnd().split("\n");
      assert.equal(lines.length, 3 + 260 + 1 + 1 + 1 + 1 + 1);
      const line = (action: string, id: string, attrs: string) =>
        new RegExp(
          `^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{9}Z network ${action} ${id} \\(${attrs}\\)$`,
        );
      assert.match(lines[0], line("create", cnm.network("none")!.id, "name=none, type=null"));
      assert.match(lines[3], line("create", "[0-9a-f]{64}", "name=n0, type=bridge"));
      assert.match(lines[4], line("destroy", "[0-9a-f]{64}", "name=n0, type=bridge"));
      assert.deepEqual(lines.slice(-5).map((l) => l.split(" ").slice(1, 3).join(" ")), [
        "network create",
        "network connect",
        "network disconnect",
        "network destroy",
        "network prune",
      ]);
      assert.match(
        lines.at(-4)!,
        line("connect", evId, `container=${sb.id}, name=ev, type=bridge`),
      );
      assert.match(lines.at(-1)!, /Z network prune {2}\(reclaimed=0\)$/);
    });

    await t.step("--filter event=connect and --until before the rest select a window", async () => {
      r = await docker(
        "events",
        ...window,
        "--filter",
        "type=network",
        "--filter",
        "event=connect",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
      );
      assert.deepEqual([r.code, r.stdout, r.stderr], [0, "connect ev\n", ""]);
      r = await docker("events", "--since", "1", "--until", "2", "--filter", "type=network");
      assert.deepEqual([r.code, r.stdout, r.stderr], [0, "", ""]);
    });

    await t.step("without --until the stream goes on with live events", async () => {
      const child = new Deno.Command(d.cli, {
        args: [
          "events",
          "--filter",
          "type=network",
          "--format",
          "{{.Action}} {{.Actor.Attributes.name}}",
        ],
        env: d.dockerEnv,
        stdout: "piped",
        stderr: "null",
      }).spawn();
      try {
        // The CLI has subscribed once its request is in; give it that moment.
        await new Promise((res) => setTimeout(res, 500));
        await cnm.createNetwork({ name: "live" });
        const reader = child.stdout.getReader();
        let text = "";
        while (!text.includes("\n")) {
          const { value, done } = await reader.read();
          if (done) break;
          text += new TextDecoder().decode(value);
        }
        reader.releaseLock();
        assert.equal(text, "create live\n");
      } finally {
        child.kill("SIGTERM");
        await child.status;
        await child.stdout.cancel().catch(() => {});
      }
    });
  } finally {
    await d.cleanup();
  }
});
