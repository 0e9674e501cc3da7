/**
 * The sandbox commands: a sandbox is a network namespace (made by cnm, or the caller's
 * `key`) with its own hosts and resolv.conf files. Names are unique; deleting a sandbox
 * leaves and deletes its endpoints first, like libnetwork.
 *
 * @module
 */

import { ConflictError, ForbiddenError, InvalidArgumentError, NotFoundError } from "../errors.ts";
import { newObjectId } from "../ids.ts";
import { type SandboxInfo, sandboxInfo } from "../info.ts";
import type { ControllerContext } from "./context.ts";
import { checkLimits } from "./limits.ts";
import { deleteEndpoint, leave } from "./endpoints.ts";
import { CreateSandboxInput, type CreateSandboxOptions, parseInput, parseRef } from "./inputs.ts";
import {
  endpointsOfSandbox,
  findSandbox,
  namedCount,
  namedObject,
  pendingJoins,
  type Reservation,
  reserve,
} from "./objects.ts";
import { sandboxNetnsName } from "./ownership.ts";
import type { Rec } from "./runtime.ts";

/**
 * Creates a sandbox.
 *
 * @throws {InvalidArgumentError|ForbiddenError} with libnetwork's messages.
 */
export async function createSandbox(
  ctx: ControllerContext,
  options: CreateSandboxOptions,
): Promise<SandboxInfo> {
  const rt = ctx.runtime;
  rt.assertOpen();
  checkLimits(options, "sandbox options");
  const input = parseInput(CreateSandboxInput, options, "sandbox options");
  if (input.name === "") throw new InvalidArgumentError("invalid name: name is empty");
  const id = newObjectId();
  // The name is decided under one lock, held only while deciding, then reserved until the
  // intent is in the registry. (A failed create holds no name.)
  let reservation: Reservation;
  let data: Record<string, unknown>;
  const unlock = await rt.locks.lock("sandbox-names");
  try {
    const other = namedObject(rt, "sandbox", input.name);
    if (other) {
      throw new ForbiddenError(`container ${input.name} is already present in sandbox ${other.id}`);
    }
    if (namedCount(rt, "sandbox", input.name)) {
      throw new ForbiddenError(`container ${input.name} is already being created`);
    }
    const owned = input.key === undefined;
    const key = input.key ??
      `/var/run/netns/${sandboxNetnsName(ctx.settings.namePrefix, ctx.settings.owner, id)}`;
    const config = {
      ...(input.hostname ? { hostname: input.hostname } : {}),
      ...(input.dns ? { dns: input.dns } : {}),
      ...(input.dnsSearch ? { dnsSearch: input.dnsSearch } : {}),
      ...(input.extraHosts ? { extraHosts: input.extraHosts } : {}),
    };
    data = {
      name: input.name,
      key,
      owned,
      labels: input.labels,
      // Where its hosts and resolv.conf live, so replay shows the real paths.
      stateDir: ctx.sandboxes.dir(id),
      ...(Object.keys(config).length ? { config } : {}),
    };
    reservation = reserve(rt, { kind: "sandbox", id, name: input.name });
  } finally {
    unlock();
  }
  try {
    await rt.decide("sandbox", undefined, rt.createIntent("sandbox", id, data));
  } finally {
    reservation.release();
  }
  return sandbox(ctx, id)!;
}

/**
 * Deletes a sandbox, leaving and deleting its endpoints first.
 *
 * @throws {NotFoundError|ConflictError}
 */
export async function deleteSandbox(ctx: ControllerContext, idOrName: string): Promise<void> {
  const rt = ctx.runtime;
  rt.assertOpen();
  const ref = parseRef(idOrName, "sandbox");
  const found = findSandbox(rt, ref);
  if (!found) throw new NotFoundError(`sandbox ${ref} not found`);
  // libnetwork: deleting a sandbox leaves and deletes each of its endpoints.
  for (let round = 0; round < 3; round++) {
    const eps = endpointsOfSandbox(rt, found.id);
    if (!eps.length) break;
    for (const ep of eps) {
      if (rt.state(ep) === "joined") await leave(ctx, ep.id, found.id);
      if (rt.objects.endpoint.has(ep.id)) await deleteEndpoint(ctx, ep.id, { force: true });
    }
  }
  await rt.locks.with([found.id], async () => {
    const rec = rt.objects.sandbox.get(found.id);
    if (!rec) throw new NotFoundError(`sandbox ${ref} not found`);
    if (endpointsOfSandbox(rt, rec.id).length || pendingJoins(rt, rec.id).size) {
      throw new ConflictError(`sandbox ${ref} gained endpoints while being deleted`);
    }
    const intent = rt.intent(rec, "sandbox.delete.requested", "deleting", {});
    await rt.decide("sandbox", rec, intent);
  });
}

/** A sandbox by id, name or unique id prefix. */
export function sandbox(ctx: ControllerContext, idOrName: string): SandboxInfo | undefined {
  const rec = typeof idOrName === "string" ? findSandbox(ctx.runtime, idOrName) : undefined;
  return rec ? info(ctx, rec) : undefined;
}

/** Every live sandbox. */
export function sandboxes(ctx: ControllerContext): SandboxInfo[] {
  return [...ctx.runtime.objects.sandbox.values()].map((r) => info(ctx, r));
}

function info(ctx: ControllerContext, rec: Rec): SandboxInfo {
  const rt = ctx.runtime;
  const eps = endpointsOfSandbox(rt, rec.id).map((r) => r.id);
  return sandboxInfo(rt.state(rec), rt.context(rec), eps, ctx.sandboxes.dir(rec.id));
}
