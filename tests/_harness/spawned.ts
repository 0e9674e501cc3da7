/**
 * A long-running command (`cnm events --follow`, …) as a child process for tests: its
 * stdout and stderr collected in the background, waited on, and stopped by its pid.
 *
 * @module
 */

/** A running child. */
export interface Spawned {
  pid: number;
  /** Everything it wrote on stdout so far. */
  stdout(): string;
  /** Everything it wrote on stderr so far. */
  stderr(): string;
  /**
   * Waits until `ok()` holds; throws with both outputs when the process ends first or after
   * `timeoutMs` (default 30 s).
   */
  waitFor(ok: () => boolean, what: string, timeoutMs?: number): Promise<void>;
  /** Sends `signal` (default SIGTERM) and returns the exit code once its output is read. */
  stop(signal?: Deno.Signal): Promise<number>;
  /** SIGKILL if still running, then waits for it; safe to call twice. */
  cleanup(): Promise<void>;
}

/** Starts `argv` with `env` (merged with the test's environment). */
export function spawnCollecting(argv: string[], env: Record<string, string> = {}): Spawned {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const text = { out: "", err: "" };
  let ended = false;
  const pump = async (s: ReadableStream<Uint8Array>, key: "out" | "err") => {
    const dec = new TextDecoder();
    for await (const chunk of s) text[key] += dec.decode(chunk, { stream: true });
  };
  const pumps = Promise.all([pump(child.stdout, "out"), pump(child.stderr, "err")])
    .catch(() => {})
    .finally(() => ended = true);
  const kill = (signal: Deno.Signal) => {
    try {
      child.kill(signal);
    } catch { /* already exited */ }
  };
  return {
    pid: child.pid,
    stdout: () => text.out,
    stderr: () => text.err,
    async waitFor(ok, what, timeoutMs = 30_000) {
      const until = Date.now() + timeoutMs;
      while (!ok()) {
        const state = ended ? "it ended" : Date.now() > until ? `${timeoutMs} ms passed` : "";
        if (state) {
          throw new Error(
            `${
              argv.join(" ")
            }: ${state} before ${what}\nstdout:\n${text.out}\nstderr:\n${text.err}`,
          );
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop(signal = "SIGTERM") {
      kill(signal);
      const timer = setTimeout(() => kill("SIGKILL"), 10_000);
      const { code } = await child.status;
      clearTimeout(timer);
      await pumps;
      return code;
    },
    async cleanup() {
      kill("SIGKILL");
      await child.status;
      await pumps;
    },
  };
}
