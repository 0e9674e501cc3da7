/**
 * A sorted set of bigints stored as disjoint, non-adjacent inclusive ranges, so that a /8
 * or a /64 with thousands of consecutive allocations costs a few objects, not one per address.
 *
 * @module
 */

/** An inclusive range of offsets. */
export interface Range {
  lo: bigint;
  hi: bigint;
}

/** Mutable set of bigints kept as sorted, merged ranges. */
export class RangeSet {
  #ranges: Range[] = [];

  /** Index of the first range whose end is at or after `x` (ranges.length if none). */
  #search(x: bigint): number {
    let lo = 0, hi = this.#ranges.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#ranges[mid].hi < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Whether `x` is in the set. */
  has(x: bigint): boolean {
    const r = this.#ranges[this.#search(x)];
    return r !== undefined && r.lo <= x;
  }

  /** Adds `x`; returns false when it was already there. */
  add(x: bigint): boolean {
    const rs = this.#ranges;
    const i = this.#search(x);
    if (i < rs.length && rs[i].lo <= x) return false;
    const joinsLeft = i > 0 && rs[i - 1].hi === x - 1n;
    const joinsRight = i < rs.length && rs[i].lo === x + 1n;
    if (joinsLeft && joinsRight) {
      rs[i - 1].hi = rs[i].hi;
      rs.splice(i, 1);
    } else if (joinsLeft) {
      rs[i - 1].hi = x;
    } else if (joinsRight) {
      rs[i].lo = x;
    } else {
      rs.splice(i, 0, { lo: x, hi: x });
    }
    return true;
  }

  /** Removes `x`; returns false when it was not there. */
  delete(x: bigint): boolean {
    const rs = this.#ranges;
    const i = this.#search(x);
    const r = rs[i];
    if (r === undefined || r.lo > x) return false;
    if (r.lo === r.hi) rs.splice(i, 1);
    else if (x === r.lo) r.lo = x + 1n;
    else if (x === r.hi) r.hi = x - 1n;
    else {
      rs.splice(i + 1, 0, { lo: x + 1n, hi: r.hi });
      r.hi = x - 1n;
    }
    return true;
  }

  /** Smallest value in [lo, hi] not in the set, or undefined when all are taken. */
  firstFree(lo: bigint, hi: bigint): bigint | undefined {
    let x = lo;
    for (let i = this.#search(lo); i < this.#ranges.length && x <= hi; i++) {
      const r = this.#ranges[i];
      if (r.lo > x) break;
      x = r.hi + 1n;
    }
    return x <= hi ? x : undefined;
  }

  /** Copies of the ranges, in order. */
  ranges(): Range[] {
    return this.#ranges.map((r) => ({ ...r }));
  }

  /** Every value in order (only for sets known to be small enough to list). */
  *values(): Generator<bigint> {
    for (const r of this.#ranges) for (let x = r.lo; x <= r.hi; x++) yield x;
  }
}
