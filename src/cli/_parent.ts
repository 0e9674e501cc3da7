/**
 * Stopping `cnm serve` when the process that started it dies. `deno task cnm serve` runs the
 * server as a child of the task runner; a SIGKILL of the runner (what a supervisor does last)
 * cannot be passed on, and the server would keep running with PPID 1, holding the host's
 * lease. With `--exit-with-parent` (set by the `deno task cnm` definition) the server polls
 * its parent pid and stops, as on SIGTERM, when it changes. `./cnm` execs Deno, so under a
 * supervisor `./cnm serve` is the server's own pid and needs no watch.
 *
 * @module
 */

/** Options of {@link watchParent}. */
export interface WatchParentOptions {
  /** Poll interval in ms. Default 500. */
  intervalMs?: number;
  /** Reads the parent pid. Default `Deno.ppid` (live: the kernel's current parent). */
  ppid?: () => number;
}

/**
 * Calls `onDeath` once when the parent pid changes (the parent died and the process was
 * re-parented to init or a subreaper). Does nothing when the parent is already init.
 *
 * @returns a function that stops watching.
 */
export function watchParent(onDeath: () => void, options: WatchParentOptions = {}): () => void {
  const ppid = options.ppid ?? (() => Deno.ppid);
  const parent = ppid();
  if (parent <= 1) return () => {};
  const timer = setInterval(() => {
    if (ppid() === parent) return;
    clearInterval(timer);
    onDeath();
  }, options.intervalMs ?? 500);
  Deno.unrefTimer(timer);
  return () => clearInterval(timer);
}
