/**
 * The `null` driver: a network with no connectivity (Docker's `none`). Endpoints on it get
 * no interface; the sandbox keeps only its loopback. Exactly one `null` network may exist.
 *
 * @module
 */

import type { Driver } from "../driver.ts";

/** Creates the `null` driver. */
export function createNullDriver(): Driver {
  return {
    name: "null",
    capabilities: () => ({ dataScope: "local", connectivityScope: "local" }),
    createNetwork: () => Promise.resolve(),
    deleteNetwork: () => Promise.resolve(),
    createEndpoint: () => Promise.resolve(),
    deleteEndpoint: () => Promise.resolve(),
    join: () => Promise.resolve(),
    leave: () => Promise.resolve(),
  };
}
