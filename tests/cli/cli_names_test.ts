/**
 * Host ids, stream names and prefixes are checked at the command line: a bad one is a usage
 * error (exit 2) naming its flag or variable, before anything connects. (Before, `cnm serve
 * --host "a b"` reached the lease and failed with a raw `invalid key: cnm.a b`.)
 */
import assert from "node:assert/strict";
import { output } from "../_harness/command.ts";
import { freePort } from "../_harness/nats.ts";
import { watchParent } from "../../src/cli/_parent.ts";

const CNM = new URL("../../cnm", import.meta.url).pathname;

// Nothing listens there: a name that passes the checks fails later with exit 3, not 2.
const NOWHERE = { CNM_NATS_URL: `127.0.0.1:${freePort()}` };

async function cnm(env: Record<string, string>, ...args: string[]) {
  const o = await output([CNM, ...args], { env: { ...NOWHERE, ...env } });
  return { code: o.code, err: o.stderr };
}

Deno.test("cnm refuses bad host ids, stream names and prefixes with a usage error", async (t) => {
  await t.step("--host with a space, a dot, a wildcard; $CNM_HOST_ID too", async () => {
    for (const host of ["a b", "vm.example", "h*", ">", ""]) {
      const r = await cnm({}, "serve", "--host", host);
      assert.equal(r.code, 2, `${JSON.stringify(host)}: ${r.err}`);
      assert.match(r.err, /^cnm serve: --host takes a host id of letters, digits, "-" and "_" /);
      assert.ok(r.err.includes(`got ${JSON.stringify(host)}\nRun 'cnm serve --help'`), r.err);
    }
    const r = await cnm({ CNM_HOST_ID: "a b" }, "network", "create", "web");
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /^cnm network create: \$CNM_HOST_ID takes a host id .* got "a b"/);
  });
  await t.step("--stream and --prefix", async () => {
    let r = await cnm({}, "--stream", "my stream", "events");
    assert.equal(r.code, 2, r.err);
    assert.match(
      r.err,
      /^cnm events: --stream takes a stream name of letters, digits.* got "my stream"/,
    );
    r = await cnm({ CNM_STREAM: "A.B" }, "events");
    assert.match(r.err, /^cnm events: \$CNM_STREAM takes a stream name .* got "A\.B"/);
    r = await cnm({}, "--prefix", "a..b", "events");
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /^cnm events: --prefix takes a subject prefix .* got "a\.\.b"/);
  });
  await t.step("good names pass the checks (and then find no NATS: exit 3)", async () => {
    const r = await cnm(
      {},
      "--host",
      "vm-1_a",
      "--stream",
      "CNM_2",
      "--prefix",
      "org.cnm",
      "network",
      "ls",
    );
    assert.equal(r.code, 3, r.err);
  });
});

Deno.test("watchParent calls back once when the parent pid changes, never when it is init", () => {
  let ppid = 4242;
  const calls: string[] = [];
  const timers: (() => void)[] = [];
  const realSetInterval = globalThis.setInterval;
  // Drive the poll by hand: no sleeping in tests.
  globalThis.setInterval = ((f: () => void) => {
    timers.push(f);
    return realSetInterval(() => {}, 1e9);
  }) as typeof setInterval;
  try {
    const stop = watchParent(() => calls.push("died"), { ppid: () => ppid });
    timers[0]();
    assert.equal(calls.length, 0);
    ppid = 1; // re-parented to init
    timers[0]();
    assert.deepEqual([...calls], ["died"]);
    stop();
    ppid = 1;
    const none = watchParent(() => calls.push("again"), { ppid: () => 1 });
    assert.equal(timers.length, 1, "no watch when the parent is already init");
    none();
  } finally {
    globalThis.setInterval = realSetInterval;
  }
});
