/**
 * `./cnm serve` as a child process for tests and benchmarks: started inside a throwaway
 * host namespace with the given extra flags, its stderr log followed, stopped by its pid.
 *
 * @module
 */

/** The repository's `cnm` launcher. */
export const CNM = new URL("../../cnm", import.meta.url).pathname;

/** A running `cnm serve`. */
export interface ServeProcess {
  /** Everything it wrote on stderr so far. */
  log(): string;
  /** Reads stderr until `re` matches the log (or the process ends: then it throws). */
  waitFor(re: RegExp): Promise<string>;
  /** Sends SIGTERM and returns the exit code. */
  stop(): Promise<number>;
  /** SIGKILL if still running, then releases its pipes; safe to call twice. */
  cleanup(): Promise<void>;
}

/** What `cnm serve` needs: the journal and the host namespace. */
export interface ServeSetup {
  env: Record<string, string>;
  hostNamespace: string;
  namePrefix: string;
  stateDir: string;
  /** Extra flags (`-q`, `--docker-socket PATH`, …). */
  args?: string[];
}

/** Spawns `cnm serve` and waits until it answers (`answering on …` in its log). */
export async function startServe(setup: ServeSetup): Promise<ServeProcess> {
  const child = new Deno.Command(CNM, {
    args: [
      "serve",
      "--namespace",
      setup.hostNamespace,
      "--name-prefix",
      setup.namePrefix,
      "--state-dir",
      setup.stateDir,
      ...(setup.args ?? []),
    ],
    env: setup.env,
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.getReader();
  const dec = new TextDecoder();
  let text = "";
  let released = false;
  const proc: ServeProcess = {
    log: () => text,
    async waitFor(re) {
      while (!re.test(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`cnm serve ended before ${re}: ${text}`);
        text += dec.decode(value);
      }
      return text;
    },
    async stop() {
      child.kill("SIGTERM");
      return (await child.status).code;
    },
    async cleanup() {
      try {
        child.kill("SIGKILL");
      } catch { /* already exited */ }
      await child.status;
      if (released) return;
      released = true;
      reader.releaseLock();
      await child.stderr.cancel().catch(() => {});
    },
  };
  try {
    await proc.waitFor(/answering on/);
  } catch (err) {
    await proc.cleanup();
    throw err;
  }
  return proc;
}
