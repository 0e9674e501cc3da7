/**
 * The README's security model and docs/nats-permissions.conf tell the same story: every KV
 * bucket the example layout grants rights on is in the role table, and so is its host.
 */

import assert from "node:assert/strict";

const root = new URL("../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, root));

/** The README's "Security model" section. */
async function securitySection(): Promise<string> {
  const readme = await read("README.md");
  const start = readme.indexOf("### Security model");
  assert.ok(start >= 0, "README has a Security model section");
  const end = readme.indexOf("\n## ", start);
  return readme.slice(start, end < 0 ? undefined : end);
}

Deno.test("security docs: the README's role table names every KV bucket of docs/nats-permissions.conf", async () => {
  const conf = await read("docs/nats-permissions.conf");
  const buckets = new Set([...conf.matchAll(/\$KV\.(\w+)\./g)].map((m) => m[1]));
  assert.deepEqual([...buckets].sort(), ["CNM_GLOBAL", "CNM_LEASES", "CNM_SNAPSHOT"]);
  const section = await securitySection();
  const table = section.split("\n").filter((l) => l.startsWith("| "));
  const row = (role: string) => table.find((l) => l.startsWith(`| ${role} `)) ?? "";
  for (const b of buckets) {
    assert.match(row("controller of host vm"), new RegExp(`\`${b}\``), `${b}: the controller's`);
  }
  // Readers and operators read the snapshot only, as the file grants.
  for (const role of ["operator", "reader"]) {
    assert.match(row(role), /read `CNM_SNAPSHOT`/, role);
    assert.match(row(role), /nothing of `CNM_LEASES` or `CNM_GLOBAL`/, role);
  }
  assert.match(section, /must be\s+edited per host/, "the example is for host vm");
  assert.match(section, /whole claims bucket/);
  assert.match(section, /whole snapshot bucket/);
});
