/**
 * cnm — Docker's Container Network Model as an event-sourced actor system.
 *
 * Networks, endpoints and sandboxes are XState actors; every transition is appended to a
 * NATS JetStream stream before its side effect runs, so a controller rebuilds itself after
 * a restart and anyone can subscribe to or replay what happened.
 *
 * @example
 * ```ts ignore
 * import { createController } from "./mod.ts";
 *
 * const cnm = await createController({ nats: { servers: "127.0.0.1:4222" }, hostId: "h1" });
 * const sb = await cnm.createSandbox({ name: "c1" });
 * const ep = await cnm.createEndpoint("none", { name: "c1-none" });
 * await cnm.join(ep.id, sb.id);
 * cnm.events$.subscribe((e) => console.log(e.seq, e.type));
 * await cnm.close(); // the namespace stays; a new controller picks it up
 * ```
 *
 * @module
 */

export { createController } from "./src/controller/mod.ts";
export type {
  ConfigureDriverResult,
  Controller,
  ControllerOptions,
  CrashPoint,
  RecoveryReport,
} from "./src/controller/mod.ts";
export type { Finding, ReconcileReport } from "./src/controller/drift.ts";
export type {
  EndpointInfo,
  EndpointState,
  IpamConfigInfo,
  NetworkInfo,
  NetworkState,
  PortInfo,
  SandboxInfo,
  SandboxState,
} from "./src/info.ts";
export type {
  CreateEndpointOptions,
  CreateNetworkOptions,
  CreateSandboxOptions,
  DeleteEndpointOptions,
} from "./src/controller/inputs.ts";
export {
  CnmError,
  ConflictError,
  DriverError,
  ErrorCode,
  ForbiddenError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
} from "./src/errors.ts";
export type { ErrorCodeValue, ErrorRecord } from "./src/errors.ts";
export {
  decodeEvent,
  DRIVER_KIND,
  EnvelopeSchema,
  EVENT_VERSION,
  EventValidationError,
  Kinds,
  subjectOf,
  validateEvent,
} from "./src/journal/events.ts";
export type { CnmEvent, Kind, RecordedEvent } from "./src/journal/events.ts";
export type {
  Driver,
  DriverCapabilities,
  DriverConfig,
  DriverEndpoint,
  DriverNetwork,
  DriverSandbox,
  EffectContext,
  GatewayConnectivity,
  IpamData,
  JoinResult,
  ValidateNetworkOptions,
} from "./drivers/driver.ts";
export type { Kernel } from "./src/kernel/types.ts";
export type { KernelOptions } from "./src/kernel/mod.ts";
export { NatsUnreachableError, readEvents, watch } from "./src/journal/watch.ts";
export { NatsAuthError } from "./src/journal/nats_errors.ts";
export type { ReadOptions, StreamPoint, WatchOptions } from "./src/journal/watch.ts";
export { replay, replayEvents } from "./src/journal/replay.ts";
export type {
  DriverConfigInfo,
  ReplayOptions,
  ReplayPoint,
  ReplayState,
} from "./src/journal/replay.ts";
export { verifySnapshot } from "./src/journal/verify.ts";
export type { SnapshotCheck, VerifyOptions } from "./src/journal/verify.ts";
export { describeMapping, parsePortSpec } from "./src/ports/binding.ts";
export type { ExposedPort, PortBinding, PortMapping, PortProto } from "./src/ports/binding.ts";
export { BridgeConfigSchema } from "./drivers/bridge/config.ts";
export type { BridgeDriverConfig } from "./drivers/bridge/config.ts";
export { OverlayConfigSchema } from "./drivers/overlay/config.ts";
export type { OverlayDriverConfig } from "./drivers/overlay/config.ts";
export { history } from "./src/journal/history.ts";
export type { HistoryOptions, ObjectHistory, Transition } from "./src/journal/history.ts";
export { apiSubject, createApiClient, NoControllerError } from "./src/api/client.ts";
export type { ApiClient, ApiClientOptions } from "./src/api/client.ts";
export { serve } from "./src/api/serve.ts";
export type { ServeOptions, Server } from "./src/api/serve.ts";
export { serveDocker } from "./src/api/docker/mod.ts";
export type {
  DockerBackend,
  DockerServeOptions,
  DockerServer,
  NetworkResource,
} from "./src/api/docker/mod.ts";
