/**
 * Throwaway network namespaces for tests that need root: a per-run prefix, a host namespace
 * named `<prefix>-host`, and a cleanup that deletes every namespace carrying the prefix
 * (sandboxes made by the code under test carry it too).
 *
 * @module
 */

const NETNS_DIR = "/var/run/netns";

/** A throwaway host namespace and the prefix every namespace of this run carries. */
export interface TestHost {
  /** Per-run prefix, e.g. `t3f9a1` (label, or "t", plus 5 random hex digits). */
  prefix: string;
  /** `${prefix}-host`. */
  name: string;
  /** `/var/run/netns/${name}`. */
  path: string;
  /** Deletes every `/var/run/netns/<prefix>*` namespace; safe to call twice. */
  cleanup(): Promise<void>;
}

async function ip(args: string[]): Promise<string> {
  const out = await new Deno.Command("ip", { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`ip ${args.join(" ")} exited with ${out.code}: ${err}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/** Throws a clear error when not running as root or when iproute2's `ip` is missing. */
export function requireRoot(): void {
  if (Deno.uid() !== 0) {
    throw new Error("this test needs root (network namespaces); run it with sudo");
  }
  try {
    const out = new Deno.Command("ip", { args: ["-V"], stdout: "null", stderr: "null" })
      .outputSync();
    if (!out.success) throw new Error(`ip -V exited with ${out.code}`);
  } catch (err) {
    throw new Error(`this test needs iproute2's ip: ${(err as Error).message}`, { cause: err });
  }
}

/** Names of the namespaces in /var/run/netns starting with `prefix`. */
export async function listPrefixed(prefix: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(NETNS_DIR)) {
      if (e.name.startsWith(prefix)) names.push(e.name);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return names.sort();
}

/**
 * A fresh per-run prefix: `label` (letters/digits, up to 4 kept; default "t") plus 5 random
 * hex digits, short enough to leave room in link names.
 */
export function runPrefix(label?: string): string {
  const head = (label ?? "t").toLowerCase().replace(/[^a-z0-9]/g, "").slice(0, 4) || "t";
  const hex = Array.from(crypto.getRandomValues(new Uint8Array(3)), (b) => b.toString(16))
    .map((h) => h.padStart(2, "0")).join("").slice(0, 5);
  return `${head}${hex}`;
}

/** Deletes every `/var/run/netns/<prefix>*` namespace, reporting all failures together. */
export async function deletePrefixed(prefix: string): Promise<void> {
  const errors: unknown[] = [];
  for (const ns of await listPrefixed(prefix)) {
    try {
      await ip(["netns", "del", ns]);
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length) {
    throw new AggregateError(errors, `cleanup of ${prefix}*: ${errors.length} failure(s)`);
  }
}

/**
 * Creates `<prefix>-host` with loopback up. `label` (letters/digits, up to 4 kept) replaces
 * the default "t" at the start of the prefix, so names stay short enough for links.
 */
export async function createTestHost(label?: string): Promise<TestHost> {
  requireRoot();
  const prefix = runPrefix(label);
  const name = `${prefix}-host`;
  const host: TestHost = {
    prefix,
    name,
    path: `${NETNS_DIR}/${name}`,
    cleanup: () => deletePrefixed(prefix),
  };
  try {
    await ip(["netns", "add", name]);
    await ip(["-n", name, "link", "set", "lo", "up"]);
  } catch (err) {
    await host.cleanup().catch(() => {});
    throw err;
  }
  return host;
}
