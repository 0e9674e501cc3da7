import assert from "node:assert/strict";
import { createController } from "../mod.ts";
import { startNats } from "./_harness/nats.ts";
import { serve } from "../src/api/serve.ts";
import { createApiClient, NoControllerError } from "../src/api/client.ts";
import {
  ConflictError,
  ForbiddenError,
  InvalidArgumentError,
  NotFoundError,
} from "../src/errors.ts";
import { fakeOptions } from "./cli/_fake_kernel.ts";

Deno.test("api (needs nats-server) runs commands on the host's controller and rebuilds typed errors", async () => {
  const nats = await startNats();
  const dir = await Deno.makeTempDir();
  const cnm = await createController(fakeOptions(nats.url, "A1", "a1", dir));
  const server = await serve(cnm, { nats: { servers: nats.url } });
  const api = await createApiClient({ nats: { servers: nats.url }, prefix: "a1", hostId: "h1" });
  try {
    assert.equal(server.subject, "a1-api.h1.*");
    assert.deepEqual(await api.ping(), { hostId: "h1", stream: "A1", prefix: "a1" });
    const sb = await api.createSandbox({ name: "c1" });
    assert.equal(sb.state, "ready");
    const ep = await api.createEndpoint("none", { name: "c1-none" });
    const joined = await api.join(ep.id, "c1");
    assert.equal(joined.state, "joined");
    assert.equal((await api.sandbox("c1"))?.endpointIds[0], ep.id);
    assert.equal(await api.network("no-such-net"), undefined);
    assert.deepEqual((await api.endpoints({ network: "none" })).map((e) => e.id), [ep.id]);
    assert.ok((await api.networks()).some((n) => n.name === "host"));

    await assert.rejects(
      () => api.deleteEndpoint(ep.id),
      (e: Error) => e instanceof ForbiddenError && /has active containers/.test(e.message),
    );
    await assert.rejects(
      () => api.deleteNetwork("none"),
      (e: Error) =>
        e instanceof ForbiddenError && e.message === 'network of type "null" cannot be deleted',
    );
    await assert.rejects(
      () => api.createSandbox({ name: "c1" }),
      (e: Error) => e instanceof ForbiddenError && /already present in sandbox/.test(e.message),
    );
    await assert.rejects(
      () => api.deleteSandbox("nope"),
      (e: Error) => e instanceof NotFoundError && e.message === "sandbox nope not found",
    );
    await assert.rejects(
      () => api.createSandbox({ name: "x", bogus: 1 } as never),
      (e: Error) => e instanceof InvalidArgumentError && /bogus: unknown field/.test(e.message),
    );
    await assert.rejects(
      () => api.join("", "c1"),
      (e: Error) =>
        e instanceof InvalidArgumentError &&
        /invalid join request: endpoint: must not be empty/.test(e.message),
    );
    await api.leave(ep.id, "c1");
    await api.deleteEndpoint(ep.id);
    await api.deleteSandbox("c1");
    assert.deepEqual(await api.sandboxes(), []);
    void ConflictError;
  } finally {
    await api.close();
    await server.close();
    await cnm.close();
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("api (needs nats-server) says so when no controller runs for the host", async () => {
  const nats = await startNats();
  const api = await createApiClient({ nats: { servers: nats.url }, prefix: "a2", hostId: "ghost" });
  try {
    await assert.rejects(() => api.networks(), (e: Error) =>
      e instanceof NoControllerError &&
      e.message === "no controller running for host ghost (start one with `cnm serve`)");
  } finally {
    await api.close();
    await nats.cleanup();
  }
});
