/**
 * Port publishing, controller side: binding requests (Docker's `-p` syntax and the
 * `createEndpoint` schema), the host port allocator, and the ephemeral range of the host
 * namespace. The data plane (held ports, nftables) is the bridge driver's
 * (`programExternalConnectivity`).
 *
 * @example
 * ```ts
 * import { createPortAllocator, parsePortSpec } from "./mod.ts";
 * import assert from "node:assert/strict";
 * const ports = createPortAllocator({ range: { start: 32768, end: 60999 } });
 * const decided = ports.allocate("ep1", parsePortSpec("127.0.0.1::80"));
 * assert.deepEqual(decided[0].hostPort, 32768);
 * ```
 *
 * @module
 */

export {
  type AllocateOptions,
  createPortAllocator,
  type PortAllocator,
  type PortAllocatorOptions,
  type PortRange,
} from "./allocator.ts";
export {
  describeMapping,
  type ExposedPort,
  ExposedPortInput,
  formatHostPort,
  type LibnetworkPortBinding,
  type LibnetworkPortOptions,
  libnetworkPortOptions,
  type LibnetworkTransportPort,
  parsePortSpec,
  type PortBinding,
  PortBindingInput,
  type PortMapping,
  PortMappingSchema,
  type PortProto,
  publishAllExposed,
  validatePortBindings,
} from "./binding.ts";
export {
  type EphemeralPorts,
  FALLBACK_RANGE,
  parseLocalPortRange,
  parseReservedPorts,
  readEphemeralPorts,
} from "./range.ts";
