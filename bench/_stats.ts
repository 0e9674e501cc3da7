/**
 * Timing helpers shared by the benchmarks: percentiles over millisecond samples and a
 * one-line summary.
 *
 * @module
 */

/** Returns the `p`-th percentile (0-100, nearest-rank) of `samples`; NaN when empty. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Returns the median of `samples` (mean of the middle two for even counts); NaN when empty. */
export function median(samples: readonly number[]): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Returns the arithmetic mean of `samples`; NaN when empty. */
export function mean(samples: readonly number[]): number {
  return samples.reduce((a, b) => a + b, 0) / samples.length;
}

/** Summary statistics of a set of samples (milliseconds). */
export interface Summary {
  n: number;
  median: number;
  p95: number;
  mean: number;
  min: number;
  max: number;
}

/** Summarises `samples` (median, p95, mean, min, max). */
export function summarize(samples: readonly number[]): Summary {
  return {
    n: samples.length,
    median: median(samples),
    p95: percentile(samples, 95),
    mean: mean(samples),
    min: Math.min(...samples),
    max: Math.max(...samples),
  };
}

/** Formats a summary as `median 0.412 ms  p95 0.530 ms  mean 0.430 ms  (n=200)`. */
export function formatSummary(s: Summary, digits = 3): string {
  const f = (v: number) => v.toFixed(digits).padStart(8);
  return `median ${f(s.median)} ms  p95 ${f(s.p95)} ms  mean ${f(s.mean)} ms  (n=${s.n})`;
}

/** Times one call of `fn` in milliseconds. */
export async function timeMs(fn: () => unknown): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}
