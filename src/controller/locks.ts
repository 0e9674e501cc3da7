/**
 * A keyed mutex: commands on the same object run one after another, commands on different
 * objects run concurrently. Several keys are taken in sorted order, so two commands that
 * need overlapping sets of keys cannot deadlock.
 *
 * @module
 */

/** Releases what {@link KeyedMutex.lock} took. */
export type Release = () => void;

/** A set of named locks. */
export class KeyedMutex {
  #tails = new Map<string, Promise<void>>();

  /** Waits for every key (in sorted order) and returns one release for all of them. */
  async lock(...keys: string[]): Promise<Release> {
    const sorted = [...new Set(keys)].sort();
    const releases: Release[] = [];
    for (const key of sorted) releases.push(await this.#lockOne(key));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const r of releases.reverse()) r();
    };
  }

  /** Runs `fn` holding `keys`. */
  async with<T>(keys: string[], fn: () => Promise<T>): Promise<T> {
    const release = await this.lock(...keys);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  async #lockOne(key: string): Promise<Release> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.#tails.set(key, tail);
    await prev;
    return () => {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    };
  }
}
