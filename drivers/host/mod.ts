/**
 * The `host` driver: endpoints share the host's network stack. Like libnetwork's host
 * driver it programs nothing — a sandbox that uses it should be the host's own namespace
 * (create the sandbox with `key` set to the host namespace path). Exactly one `host`
 * network may exist.
 *
 * @module
 */

import type { Driver } from "../driver.ts";

/** Creates the `host` driver. */
export function createHostDriver(): Driver {
  return {
    name: "host",
    capabilities: () => ({ dataScope: "local", connectivityScope: "local" }),
    createNetwork: () => Promise.resolve(),
    deleteNetwork: () => Promise.resolve(),
    createEndpoint: () => Promise.resolve(),
    deleteEndpoint: () => Promise.resolve(),
    join: () => Promise.resolve(),
    leave: () => Promise.resolve(),
  };
}
