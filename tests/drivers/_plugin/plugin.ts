/**
 * A Docker network + IPAM plugin for tests, run as its own process:
 *
 *   deno run -A tests/drivers/_plugin/plugin.ts --socket PATH [--port N --cert F --key F]
 *     --mode normal|err|slow|dead|malformed|badtypes|404 --log FILE [--namespace NETNS_PATH]
 *
 * Every request (method and body) is appended to the `--log` JSONL file before it is answered.
 * On Join it makes a real veth pair inside `--namespace` (the test's throwaway host namespace)
 * and hands out one end as `SrcName`; DeleteEndpoint deletes the pair.
 *
 * @module
 */

const args = new Map<string, string>();
for (let i = 0; i < Deno.args.length; i += 2) {
  args.set(Deno.args[i].replace(/^--/, ""), Deno.args[i + 1]);
}
const mode = args.get("mode") ?? "normal";
const logFile = args.get("log");
const netns = args.get("namespace");
const socket = args.get("socket");

type Body = Record<string, any>;
const networks = new Map<string, Body>(); // NetworkID → CreateNetwork Options
const addresses = new Set<string>();
let macs = 0;

async function ip(argv: string[]): Promise<{ ok: boolean; err: string }> {
  const full = netns ? ["nsenter", `--net=${netns}`, "ip", ...argv] : ["ip", ...argv];
  const out = await new Deno.Command(full[0], {
    args: full.slice(1),
    stdout: "null",
    stderr: "piped",
  })
    .output();
  return { ok: out.success, err: new TextDecoder().decode(out.stderr).trim() };
}

/** Host end and plugin-made `SrcName` of an endpoint's veth pair. */
const vethOf = (endpointId: string) => ({
  host: `pa${endpointId.slice(0, 10)}`,
  src: `pb${endpointId.slice(0, 10)}`,
});

const implementsList = (args.get("implements") ?? "NetworkDriver,IpamDriver").split(",");

/** Answers of the normal mode; `undefined` = 404. */
async function normal(method: string, b: Body): Promise<Body | undefined> {
  switch (method) {
    case "Plugin.Activate":
      return { Implements: implementsList };
    case "NetworkDriver.GetCapabilities":
      return { Scope: "local", ConnectivityScope: "global" };
    case "NetworkDriver.CreateNetwork":
      networks.set(b.NetworkID, b.Options ?? {});
      return {};
    case "NetworkDriver.DeleteNetwork":
      networks.delete(b.NetworkID);
      return {};
    case "NetworkDriver.CreateEndpoint": {
      const iface: Body = {};
      if (!b.Interface?.Address) iface.Address = "10.200.0.50/24";
      if (!b.Interface?.MacAddress) {
        // A network made with `-o test.mac=M` gets M for every endpoint (unusable ones too).
        const generic = networks.get(b.NetworkID)?.["com.docker.network.generic"] ?? {};
        iface.MacAddress = generic["test.mac"] ?? `02:42:0a:c8:00:${(++macs + 0x30).toString(16)}`;
      }
      return Object.keys(iface).length ? { Interface: iface } : {};
    }
    case "NetworkDriver.DeleteEndpoint": {
      const { host } = vethOf(b.EndpointID);
      await ip(["link", "del", host]); // absent is fine: delete is an ensure
      return {};
    }
    case "NetworkDriver.Join": {
      const { host, src } = vethOf(b.EndpointID);
      const made = await ip(["link", "add", host, "type", "veth", "peer", "name", src]);
      if (!made.ok && !made.err.includes("File exists")) return { Err: `veth: ${made.err}` };
      await ip(["link", "set", host, "up"]);
      const generic = networks.get(b.NetworkID)?.["com.docker.network.generic"] ?? {};
      return {
        InterfaceName: { SrcName: src, DstPrefix: "eth", DstName: generic["test.dstname"] ?? "" },
        Gateway: "10.200.0.1",
        GatewayIPv6: "",
        StaticRoutes: [
          { Destination: "10.201.0.0/24", RouteType: 0, NextHop: "10.200.0.254" },
          { Destination: "10.202.0.0/24", RouteType: 1 },
        ],
        DisableGatewayService: false,
      };
    }
    case "NetworkDriver.ProgramExternalConnectivity":
    case "NetworkDriver.RevokeExternalConnectivity": {
      // A network made with `-o test.noext=true` behaves like a plugin without these calls;
      // with `-o test.pecerr=true` it refuses to publish (a host port it cannot have).
      const generic = networks.get(b.NetworkID)?.["com.docker.network.generic"] ?? {};
      if (generic["test.noext"] === "true") return undefined;
      if (generic["test.pecerr"] === "true" && method.endsWith("ProgramExternalConnectivity")) {
        return { Err: "port 8080 is taken on this plugin's host" };
      }
      return {};
    }
    case "NetworkDriver.Leave":
      return {};
    case "NetworkDriver.EndpointOperInfo":
      return { Value: { plugin: "test" } };
    case "IpamDriver.GetCapabilities":
      return { RequiresMACAddress: false, RequiresRequestReplay: true };
    case "IpamDriver.GetDefaultAddressSpaces":
      return {
        LocalDefaultAddressSpace: "plugin-local",
        GlobalDefaultAddressSpace: "plugin-global",
      };
    case "IpamDriver.RequestPool": {
      const pool = b.Pool || "10.200.0.0/24";
      return {
        PoolID: `${b.AddressSpace}/${pool}`,
        Pool: pool,
        Data: { "com.docker.network.gateway": "10.200.0.1/24" },
      };
    }
    case "IpamDriver.ReleasePool":
      return {};
    case "IpamDriver.RequestAddress": {
      const base = "10.200.0.";
      let ipAddr = b.Address as string;
      if (!ipAddr && b.Options?.RequestAddressType === "com.docker.network.gateway") {
        ipAddr = `${base}1`;
      }
      for (let i = 2; !ipAddr && i < 255; i++) {
        if (!addresses.has(`${base}${i}`)) ipAddr = `${base}${i}`;
      }
      if (addresses.has(ipAddr)) return { Error: "Address already in use" };
      addresses.add(ipAddr);
      return { Address: `${ipAddr}/24`, Data: {} };
    }
    case "IpamDriver.ReleaseAddress":
      addresses.delete(b.Address);
      return {};
  }
  return undefined;
}

const BAD: Record<string, Body> = {
  "NetworkDriver.CreateEndpoint": { Interface: { Address: 7 } },
  "NetworkDriver.Join": { InterfaceName: { SrcName: 5 } },
  "NetworkDriver.CreateNetwork": [] as unknown as Body,
  "IpamDriver.GetDefaultAddressSpaces": { LocalDefaultAddressSpace: true },
  "IpamDriver.RequestPool": { PoolID: "x", Pool: "not-a-cidr" },
  "IpamDriver.RequestAddress": { Address: "10.200.0.9" },
};

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/vnd.docker.plugins.v1.2+json" },
  });

async function handle(req: Request): Promise<Response> {
  const method = new URL(req.url).pathname.slice(1);
  const text = await req.text();
  let body: Body = {};
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    body = { unparsable: text };
  }
  if (logFile) {
    const line = JSON.stringify({ method, body, accept: req.headers.get("accept") });
    await Deno.writeTextFile(logFile, line + "\n", { append: true });
  }
  const first = method === "Plugin.Activate";
  const handshake = first || method === "NetworkDriver.GetCapabilities";
  if (mode === "err" && !handshake) {
    return method.startsWith("IpamDriver.")
      ? json({ Error: `plugin says no to ${method}` }, 500)
      : json({ Err: `plugin says no to ${method}` });
  }
  if (mode === "slow" && !handshake) await new Promise((r) => setTimeout(r, 60_000));
  if (mode === "malformed" && !first) return new Response(`{"Scope": "local",`, { status: 200 });
  if (mode === "badtypes" && BAD[method]) return json(BAD[method]);
  if (mode === "404" && !handshake) {
    return new Response("404 page not found", { status: 404 });
  }
  const answer = await normal(method, body);
  return answer ? json(answer) : new Response("404 page not found", { status: 404 });
}

if (mode === "dead") {
  // A plugin killed -9: its socket file stays behind, nobody listens.
  if (socket) Deno.listen({ transport: "unix", path: socket });
  Deno.kill(Deno.pid, "SIGKILL");
}

const port = args.get("port");
const cert = args.get("cert");
const key = args.get("key");
const server = port
  ? Deno.serve({
    port: Number(port),
    hostname: "127.0.0.1",
    onListen: () => console.log("ready"),
    ...(cert && key ? { cert: Deno.readTextFileSync(cert), key: Deno.readTextFileSync(key) } : {}),
  }, handle)
  : Deno.serve({ path: socket!, onListen: () => console.log("ready") }, handle);
await server.finished;
