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
  /**
   * Waits until `re` matches the log; throws with the log when the process ends first or
   * after `timeoutMs` (default 30 s).
   */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
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

/** What {@link serveSetup} reads of a test environment (tests/_harness/env.ts's TestEnv). */
export interface ServeEnv {
  nats: { url: string };
  host: { path: string; prefix: string };
  stream: string;
  prefix: string;
  stateDir: string;
}

/** The setup of `cnm serve` for host `h1` on a test environment, with extra flags. */
export function serveSetup(env: ServeEnv, args: string[] = []): ServeSetup {
  return {
    env: {
      CNM_NATS_URL: env.nats.url,
      CNM_STREAM: env.stream,
      CNM_PREFIX: env.prefix,
      CNM_HOST_ID: "h1",
    },
    hostNamespace: env.host.path,
    namePrefix: `${env.host.prefix}-`,
    stateDir: env.stateDir,
    args,
  };
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
  // stderr is read in the background, so a chatty server never blocks on a full pipe.
  const reader = child.stderr.getReader();
  const dec = new TextDecoder();
  let text = "";
  let ended = false;
  const pump = (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += dec.decode(value, { stream: true });
      }
    } catch {
      /* cancelled by cleanup */
    } finally {
      ended = true;
    }
  })();
  let cleaned = false;
  const proc: ServeProcess = {
    log: () => text,
    async waitFor(re, timeoutMs = 30_000) {
      const until = Date.now() + timeoutMs;
      while (!re.test(text)) {
        if (ended) throw new Error(`cnm serve ended before ${re}: ${text}`);
        if (Date.now() > until) {
          throw new Error(`cnm serve: no ${re} in ${timeoutMs} ms; its log so far:\n${text}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      return text;
    },
    async stop() {
      child.kill("SIGTERM");
      const { code } = await child.status;
      await pump;
      return code;
    },
    async cleanup() {
      try {
        child.kill("SIGKILL");
      } catch { /* already exited */ }
      await child.status;
      if (cleaned) return;
      cleaned = true;
      await reader.cancel().catch(() => {});
      await pump;
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
