/**
 * `ls` and failed creates (issue 10, item 6): a failed create is listed only with `--all`,
 * with its error, and its name can be used again. Real `./cnm`, real nats-server, a controller
 * in this process on a fake kernel (no root).
 */
import assert from "node:assert/strict";
import { createController } from "../../mod.ts";
import { startNats } from "../_harness/nats.ts";
import { serve } from "../../src/api/serve.ts";
import { output } from "../_harness/command.ts";
import { fakeKernel, fakeOptions } from "./_fake_kernel.ts";

const CNM = new URL("../../cnm", import.meta.url).pathname;

Deno.test("cnm CLI (needs nats-server): ls shows failed creates only with --all, and their names are free", async () => {
  const nats = await startNats();
  const dir = await Deno.makeTempDir();
  const kernel = fakeKernel();
  kernel.netnsExists = (path) => Promise.resolve(!path.startsWith("/nope"));
  const controller = await createController({ ...fakeOptions(nats.url, "CF", "cf", dir), kernel });
  const server = await serve(controller, { nats: { servers: nats.url } });
  const env = { CNM_NATS_URL: nats.url, CNM_STREAM: "CF", CNM_PREFIX: "cf", CNM_HOST_ID: "h1" };
  const cnm = async (...args: string[]) => {
    const o = await output([CNM, ...args], { env });
    assert.equal(o.code, 0, o.stderr);
    return o.stdout;
  };
  try {
    await assert.rejects(() => controller.createSandbox({ name: "fk", key: "/nope/ns" }));
    assert.doesNotMatch(await cnm("sandbox", "ls"), /\sfk\s/);
    const all = await cnm("sandbox", "ls", "--all");
    assert.match(all, /^SANDBOX ID\s+NAME\s+STATE\s+ENDPOINTS\s+KEY\s+HOST\s+ERROR$/m);
    assert.match(
      all,
      /\sfk\s+failed\s+0\s+\/nope\/ns\s+h1\s+sandbox key \/nope\/ns is not a network namespace$/m,
    );
    assert.deepEqual(JSON.parse(await cnm("--format", "json", "sandbox", "ls")), []);
    const failed = JSON.parse(await cnm("--format", "json", "sandbox", "ls", "--all"));
    assert.deepEqual(failed.map((s: { state: string }) => s.state), ["failed"]);
    const id = (await cnm("sandbox", "create", "fk")).trim();
    assert.match(
      await cnm("sandbox", "ls"),
      new RegExp(`^${id.slice(0, 12)}\\s+fk\\s+ready\\s`, "m"),
    );
    const inspected = JSON.parse(await cnm("sandbox", "inspect", "fk"));
    assert.equal(inspected[0].id, id, "the name finds the live sandbox");
  } finally {
    await server.close();
    await controller.close();
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
