/**
 * The embedded DNS resolver: containers find each other by name at `127.0.0.11`, answered
 * from a projection of the CNM objects (records), forwarded upstream otherwise.
 *
 * - `records.ts` — what resolves, for which sandbox (pure, incremental, indexed by network);
 * - `records_fold.ts` — feeding the records from actor contexts or from journal events;
 * - `answer.ts` — one query → a response or "forward" (pure);
 * - `resolv_conf.ts` — a sandbox's resolv.conf and its upstreams (pure);
 * - `listener.ts` — one sandbox's sockets (setns trick) and DNAT pair (`dnat.ts`);
 * - `forwarder.ts` — upstreams, timeouts, SERVFAIL;
 * - `resolver.ts` — all the listeners of one controller.
 *
 * Needs Deno's `--unstable-net` (`Deno.listenDatagram`); this repository's deno.json sets
 * `"unstable": ["net"]`.
 *
 * @example
 * ```ts ignore
 * import { createResolver } from "./mod.ts";
 * const resolver = createResolver({ hostNamespace: "/var/run/netns/cnm-host" });
 * const { resolvConf } = await resolver.start(sandboxId, { netns: sandboxKey });
 * ```
 *
 * @module
 */

export { answerQuery, errorReply, reverseAddress, TTL } from "./answer.ts";
export type { AnswerOptions, Outcome } from "./answer.ts";
export { checkDnat, dnatScript, DNS_TABLE, installDnat, readDnat, removeDnat } from "./dnat.ts";
export type { DnatFinding, DnatPorts, NftExec } from "./dnat.ts";
export { createForwarder } from "./forwarder.ts";
export type { Forwarder, ForwarderOptions, ForwardResult, Upstream } from "./forwarder.ts";
export { startListener } from "./listener.ts";
export type { ListenerOptions, ListenerStats, SandboxListener } from "./listener.ts";
export { createDnsRecords, networkHasDns, normalizeName } from "./records.ts";
export type {
  DnsEndpoint,
  DnsNetwork,
  DnsRecords,
  DnsSandbox,
  DnsScope,
  NameAnswer,
} from "./records.ts";
export {
  aliasesOf,
  createDnsFold,
  dnsEndpointOf,
  dnsNetworkOf,
  dnsSandboxOf,
} from "./records_fold.ts";
export type { DnsFold } from "./records_fold.ts";
export {
  embeddedResolvConf,
  MAX_UPSTREAMS,
  parseResolvConf,
  readHostResolvConf,
  RESOLVER_ADDRESS,
} from "./resolv_conf.ts";
export type {
  EmbeddedResolvConf,
  ParsedResolvConf,
  ResolvConfInput,
  UpstreamSpec,
} from "./resolv_conf.ts";
export { createResolver, upstreamsOf } from "./resolver.ts";
export type { Resolver, ResolverOptions, SandboxDnsConfig, StartedListener } from "./resolver.ts";
