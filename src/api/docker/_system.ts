/**
 * `HEAD|GET /_ping` (the negotiation every CLI run starts with) and `GET /version`
 * (`docker version`).
 *
 * @module
 */

import { API_VERSION, baseHeaders, CNM_VERSION, MIN_API_VERSION, type Reply } from "./_http.ts";
import { sortedMap } from "./_json.ts";

/** Handles `HEAD /_ping` and `GET /_ping`: 200, dockerd's headers, body `OK` for GET. */
export function ping(req: Request): Reply {
  const headers = baseHeaders();
  headers.set("Cache-Control", "no-cache, no-store, must-revalidate");
  headers.set("Content-Type", "text/plain; charset=utf-8");
  headers.set("Pragma", "no-cache");
  if (req.method === "HEAD") headers.set("Content-Length", "0");
  return { response: new Response(req.method === "HEAD" ? null : "OK", { headers }) };
}

const GO_ARCH: Record<string, string> = { x86_64: "amd64", aarch64: "arm64" };

/** Handles `GET /version` (dockerd's `types.Version` shape). */
export function version(): Reply {
  const arch = GO_ARCH[Deno.build.arch] ?? Deno.build.arch;
  const kernel = Deno.osRelease();
  const runtime = `deno ${Deno.version.deno}`;
  return {
    json: {
      Platform: { Name: "cnm" },
      Components: [{
        Name: "Engine",
        Version: CNM_VERSION,
        Details: sortedMap({
          ApiVersion: API_VERSION,
          Arch: arch,
          BuildTime: "",
          Experimental: "false",
          GitCommit: "",
          GoVersion: runtime,
          KernelVersion: kernel,
          MinAPIVersion: MIN_API_VERSION,
          Os: "linux",
        }),
      }],
      Version: CNM_VERSION,
      ApiVersion: API_VERSION,
      MinAPIVersion: MIN_API_VERSION,
      GitCommit: "",
      GoVersion: runtime,
      Os: "linux",
      Arch: arch,
      KernelVersion: kernel,
    },
  };
}
