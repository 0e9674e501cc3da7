/**
 * Claims of dead objects, given back. A global object's claims (claims.ts) are released once
 * its delete or failed create is durable — by the controller that wrote that outcome, right
 * after it. A controller killed between the two leaves them held by an object the journal
 * says is gone, and nothing else would ever take them: the name, VNI, subnet or address stayed
 * taken for good. So every controller, at start, releases the claims whose holder is deleted
 * or failed in the journal, and those whose holder never reached it and is older than
 * {@link STALE_CLAIM_MS} (which a later claim would take over anyway). A holder missing from
 * the fold is judged by its last event in the journal: a snapshot keeps live objects only, so
 * one deleted before the snapshot's watermark is not in the fold, and one created after the
 * fold was read is not either (its last event says it lives).
 *
 * @module
 */

import { stateOf } from "../journal/fold.ts";
import { errText } from "../errors.ts";
import { type ClaimHolder, claimKindOf } from "./claims.ts";
import type { ControllerContext } from "./context.ts";

/**
 * A claim whose object has not reached the journal this long after it was made is dead (its
 * host failed between the claim and the intent, or during an election) and may be taken.
 */
export const STALE_CLAIM_MS = 60_000;

/** States of an object that holds nothing any more. */
const GONE = new Set(["deleted", "failed"]);

/** Claims whose object never reached the journal (see {@link STALE_CLAIM_MS}). */
export function staleIn(ctx: ControllerContext): (holder: ClaimHolder) => boolean {
  return (h) =>
    !ctx.world.fold.objects.has(h.objectId) && Date.now() - Date.parse(h.at) > STALE_CLAIM_MS;
}

/**
 * Releases every claim of this prefix whose holder is dead (see the module doc); returns the
 * keys released. A claim that cannot be released now is retried in the background; a bucket
 * that cannot be read is reported on `log` and left for the next start.
 */
export async function sweepDeadClaims(
  ctx: ControllerContext,
  log: (line: string) => void,
): Promise<string[]> {
  const stale = staleIn(ctx);
  const prefix = ctx.runtime.journal.prefix;
  const released: string[] = [];
  let claims;
  try {
    claims = await ctx.claims.list(prefix);
  } catch (err) {
    log(`cannot read the claims to release those of dead objects: ${errText(err)}`);
    return released;
  }
  for (const { key, holder } of claims) {
    const o = ctx.world.fold.objects.get(holder.objectId);
    let dead: boolean;
    if (o) dead = GONE.has(stateOf(o.snapshot));
    else {
      const last = await ctx.runtime.journal.last(claimKindOf(prefix, key), holder.objectId)
        .catch(() => undefined);
      dead = last ? GONE.has(last.to) : stale(holder);
    }
    if (!dead) continue;
    try {
      await ctx.claims.release(key, holder.objectId);
    } catch {
      ctx.claims.releaseSoon(key, holder.objectId);
    }
    released.push(key);
  }
  return released;
}
