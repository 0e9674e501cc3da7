/**
 * A kernel that does nothing (for controllers on the `none` network, no root needed) and
 * the controller options the issue-5 tests share.
 *
 * @module
 */

import type { Kernel } from "../../src/kernel/types.ts";
import type { Driver } from "../../drivers/driver.ts";
import type { ControllerOptions } from "../../src/controller/mod.ts";

/** A do-nothing kernel: namespaces "exist", lists are empty. */
export function fakeKernel(): Kernel {
  const none = () => Promise.resolve();
  const empty = () => Promise.resolve([]);
  return {
    ensureNetns: (n: string) => Promise.resolve(`/var/run/netns/${n}`),
    deleteNetns: none,
    listNetns: empty,
    netnsExists: () => Promise.resolve(true),
    ensureLoopbackUp: none,
    ensureBridge: none,
    ensureVeth: none,
    deleteLink: none,
    listLinks: empty,
    listVxlans: empty,
    listAddrs: empty,
    listRoutes: empty,
    ensureRoute: none,
    deleteRoute: none,
    setLinkOptions: none,
    holdPort: none,
    releasePort: none,
    heldPorts: empty,
    exec: () => Promise.resolve(""),
    close: none,
  } as unknown as Kernel;
}

/** Options for a controller on `url` with a fake kernel, no default bridge, no embedded DNS. */
export function fakeOptions(
  url: string,
  stream: string,
  prefix: string,
  stateDir: string,
  hostId = "h1",
): ControllerOptions {
  return {
    nats: { servers: url },
    hostId,
    kernel: fakeKernel(),
    stream,
    prefix,
    stateDir,
    defaultBridge: false,
    // The resolver listens inside real namespaces, which this kernel only pretends to make.
    embeddedDns: false,
  };
}

/** A driver that programs nothing (like `null`, but any number of networks, with IPAM). */
export function noopDriver(name = "noop"): Driver {
  return {
    name,
    capabilities: () => ({ dataScope: "local", connectivityScope: "local" }),
    createNetwork: () => Promise.resolve(),
    deleteNetwork: () => Promise.resolve(),
    createEndpoint: () => Promise.resolve(),
    deleteEndpoint: () => Promise.resolve(),
    join: () => Promise.resolve(),
    leave: () => Promise.resolve(),
  };
}

/**
 * A global driver that programs nothing: the cluster semantics (global scope, VNIs through
 * `vniOption`) without a data plane.
 */
export function globalNoopDriver(name: string): Driver {
  return {
    name,
    capabilities: () => ({
      dataScope: "global",
      connectivityScope: "global",
      vniOption: "com.docker.network.driver.overlay.vxlanid_list",
    }),
    createNetwork: () => Promise.resolve({}),
    deleteNetwork: () => Promise.resolve(),
    createEndpoint: () => Promise.resolve({}),
    deleteEndpoint: () => Promise.resolve(),
    join: () => Promise.resolve({}),
    leave: () => Promise.resolve(),
  };
}
