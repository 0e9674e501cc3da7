/**
 * A process that takes a host's lease and holds it until killed (for the lease tests):
 * `deno run -A _lease_holder.ts NATS_URL STREAM PREFIX HOST_ID`. Prints `held` once it has it.
 *
 * @module
 */

import { connect } from "@nats-io/transport-node";
import { acquireLease } from "../../src/controller/lease.ts";

const [servers, stream, prefix, hostId] = Deno.args;
const nc = await connect({ servers });
await acquireLease(nc, { stream, prefix, hostId, ttlMs: 10_000, waitMs: 30_000 });
console.log("held");
await new Promise(() => {}); // until killed
