/**
 * Runs the real `./cnm` against a real nats-server and a controller served in this process
 * (fake kernel, `none` network: no root needed), and checks what it prints.
 */
import assert from "node:assert/strict";
import { createController } from "../../mod.ts";
import { startNats } from "../_harness/nats.ts";
import { serve } from "../../src/api/serve.ts";
import { fakeOptions } from "./_fake_kernel.ts";

import { output } from "../_harness/command.ts";

const CNM = new URL("../../cnm", import.meta.url).pathname;

async function cnm(env: Record<string, string>, args: string[], stdin?: string) {
  const o = await output([CNM, ...args], { env, stdin });
  return { code: o.code, out: o.stdout, err: o.stderr };
}

Deno.test("cnm CLI (needs nats-server): mutating verbs through the API, read verbs from the stream", async () => {
  const nats = await startNats();
  const dir = await Deno.makeTempDir();
  const controller = await createController(fakeOptions(nats.url, "C1", "c1", dir));
  const server = await serve(controller, { nats: { servers: nats.url } });
  const env = { CNM_NATS_URL: nats.url, CNM_STREAM: "C1", CNM_PREFIX: "c1", CNM_HOST_ID: "h1" };
  try {
    let r = await cnm(env, ["network", "ls"]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^NETWORK ID\s+NAME\s+DRIVER\s+SCOPE\s+STATE/);
    assert.match(r.out, /\snone\s+null\s+local\s+active/);

    r = await cnm(env, ["sandbox", "create", "c1"]);
    assert.equal(r.code, 0, r.err);
    const sbId = r.out.trim();
    assert.match(sbId, /^[0-9a-f]{16,}$/);
    const afterCreate = await cnm(env, ["state", "--format", "json"]);
    const seqBefore = JSON.parse(afterCreate.out).seq;

    r = await cnm(env, ["connect", "none", "c1"]);
    assert.equal(r.code, 0, r.err);
    const epId = r.out.trim();
    r = await cnm(env, ["endpoint", "ls"]);
    assert.match(r.out, new RegExp(`${epId.slice(0, 12)}\\s+c1\\s+none\\s+c1\\s+joined`));

    r = await cnm(env, ["--format", "json", "sandbox", "inspect", "c1"]);
    assert.deepEqual(JSON.parse(r.out)[0].endpointIds, [epId]);

    r = await cnm(env, ["history", epId.slice(0, 8)]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, new RegExp(`^endpoint ${epId} "c1" in network none, host h1: now joined`));
    assert.match(r.out, /creating → created\s+endpoint\.created\s+\S+\s+answers #\d+, driver took/);
    assert.match(r.out, /joining → joined/);
    assert.match(
      r.out,
      /time in each state: creating \S+, created \S+, joining \S+, joined \S+ \(joined until now\)/,
    );

    r = await cnm(env, ["state", "--at", String(seqBefore)]);
    assert.match(r.out, new RegExp(`^state at #${seqBefore} `));
    assert.doesNotMatch(r.out, new RegExp(epId.slice(0, 12)));

    r = await cnm(env, ["diff", "--from", String(seqBefore)]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, new RegExp(`added\\s+endpoint\\s+${epId.slice(0, 12)}\\s+c1`));
    assert.match(
      r.out,
      new RegExp(
        `changed\\s+sandbox\\s+${sbId.slice(0, 12)}\\s+c1\\s+endpointIds: \\[\\] → \\["${epId}"\\]`,
      ),
    );

    r = await cnm(env, ["events", "--kind", "endpoint", "--format", "json"]);
    const evs = r.out.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(evs.map((e) => e.type), [
      "endpoint.create.requested",
      "endpoint.created",
      "endpoint.join.requested",
      "endpoint.joined",
    ]);

    r = await cnm(env, ["disconnect", "none", "c1"]);
    assert.equal(r.code, 0, r.err);
    r = await cnm(env, ["endpoint", "ls", "--format", "json"]);
    assert.deepEqual(JSON.parse(r.out), []);

    // export → import into a fresh stream → the same state.
    const exported = await cnm(env, ["export"]);
    assert.equal(exported.code, 0, exported.err);
    const env2 = { ...env, CNM_STREAM: "C1COPY", CNM_PREFIX: "c1copy" };
    r = await cnm(env2, ["import"], exported.out);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^imported \d+ events into stream C1COPY/);
    const a = JSON.parse((await cnm(env, ["state", "--format", "json"])).out);
    const b = JSON.parse((await cnm(env2, ["state", "--format", "json"])).out);
    assert.deepEqual(b.sandboxes, a.sandboxes);
    assert.deepEqual(b.networks, a.networks);
    r = await cnm(env2, ["import"], exported.out);
    assert.equal(r.code, 1);
    assert.match(r.err, /ConflictError: stream C1COPY already has \d+ events/);

    // Errors and exit codes.
    r = await cnm(env, ["sandbox", "rm", "nope"]);
    assert.equal(r.code, 1);
    assert.match(r.err, /NotFoundError: sandbox nope not found/);
    r = await cnm({ ...env, CNM_HOST_ID: "ghost" }, ["sandbox", "create", "x"]);
    assert.equal(r.code, 4);
    assert.match(r.err, /no controller running for host ghost \(start one with `cnm serve`\)/);
    r = await cnm({ ...env, CNM_NATS_URL: "127.0.0.1:1" }, ["network", "ls"]);
    assert.equal(r.code, 3);
    assert.match(r.err, /cannot connect to NATS at 127.0.0.1:1/);
    r = await cnm(env, ["network", "ls", "--bogus"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /unknown flag --bogus/);
    r = await cnm(env, ["state", "--at", "yesterday-ish"]);
    assert.equal(r.code, 2);
    for (const verb of [["network", "create"], ["history"], ["events"], ["serve"], ["import"]]) {
      r = await cnm(env, [...verb, "--help"]);
      assert.equal(r.code, 0);
      assert.match(r.out, new RegExp(`^Usage: cnm ${verb.join(" ")}`));
    }
  } finally {
    await server.close();
    await controller.close();
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
