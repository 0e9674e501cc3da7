/**
 * Whether this kernel can carry an encrypted overlay: libnetwork only checks that XFRM netlink
 * exists, which passes on kernels that then fail to program any SA (reference/networking.md
 * §1.6). Here the probe adds a real ESP state — AES-GCM as libnetwork uses, and a plain
 * cbc(aes)+hmac(sha256) one to tell "no ESP at all" from "no GCM" — with `ip xfrm` inside a
 * throwaway anonymous namespace (`unshare --net`), which vanishes with the process: nothing to
 * clean up, nothing of the host's touched. Run once per process, synchronously (it backs
 * `validateNetwork`), only when a network asks for `encrypted`.
 *
 * @module
 */

/** What the probe found. */
export interface IpsecSupport {
  ok: boolean;
  /** What is missing, in words, when not ok. */
  missing: string[];
}

const KEY_GCM = "0x" + "11".repeat(20); // 128-bit key + 32-bit salt
const KEY_AES = "0x" + "22".repeat(16);
const KEY_SHA = "0x" + "33".repeat(32);

function xfrmAdd(algo: string[]): string | undefined {
  const args = [
    "--net",
    "--",
    "ip",
    "xfrm",
    "state",
    "add",
    "src",
    "192.0.2.1",
    "dst",
    "192.0.2.2",
    "proto",
    "esp",
    "spi",
    "0x100",
    "reqid",
    "1",
    "mode",
    "transport",
    ...algo,
  ];
  try {
    const out = new Deno.Command("unshare", { args, stdout: "null", stderr: "piped" })
      .outputSync();
    if (out.success) return undefined;
    return new TextDecoder().decode(out.stderr).trim().replace(/^Error: /, "").replace(/\.$/, "") ||
      `exit ${out.code}`;
  } catch (err) {
    return `cannot run unshare/ip: ${(err as Error).message}`;
  }
}

let cached: IpsecSupport | undefined;

/** Probes (once) whether ESP with AES-GCM can be programmed on this kernel. */
export function probeIpsec(): IpsecSupport {
  if (cached) return cached;
  const gcm = xfrmAdd(["aead", "rfc4106(gcm(aes))", KEY_GCM, "128"]);
  if (gcm === undefined) return cached = { ok: true, missing: [] };
  const missing: string[] = [];
  const esp = xfrmAdd(["enc", "cbc(aes)", KEY_AES, "auth-trunc", "hmac(sha256)", KEY_SHA, "128"]);
  if (esp !== undefined) missing.push(`the ESP transform (esp4: ${esp})`);
  missing.push(`the AES-GCM AEAD rfc4106(gcm(aes)) (${gcm})`);
  return cached = { ok: false, missing };
}

/** libnetwork's words, followed by what exactly is missing here. */
export function ipsecRefusal(s: IpsecSupport): string {
  return s.ok
    ? "encrypted overlay networks are not implemented by cnm yet (this kernel has ESP with AES-GCM)"
    : `cannot join secure network: required modules to install IPSEC rules are missing on host: ${
      s.missing.join("; ")
    }`;
}
