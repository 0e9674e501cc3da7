/**
 * createController at its edge: names that become subject tokens and KV keys are refused with
 * the option named before anything connects, and a server refusing the credentials is
 * NatsAuthError (not "unreachable"), from the controller and from the read side alike (needs
 * nats-server for the second).
 */

import assert from "node:assert/strict";
import { createController, InvalidArgumentError, NatsAuthError, replay } from "../../mod.ts";
import { startNats } from "../_harness/nats.ts";

Deno.test("createController refuses host ids, streams and prefixes NATS cannot take", async () => {
  const nats = { servers: "127.0.0.1:1" }; // never dialled: the names are checked first
  for (
    const [o, message] of [
      [{ hostId: "a b" }, 'invalid controller options: hostId: "a b" is not letters'],
      [{ hostId: "h1.*" }, 'invalid controller options: hostId: "h1.*" is not'],
      [{ stream: "a.b" }, 'invalid controller options: stream: "a.b" is not'],
      [{ prefix: "cnm.>" }, 'invalid controller options: prefix: "cnm.>" is not'],
    ] as const
  ) {
    await assert.rejects(
      createController({ nats, ...o }),
      (err: Error) => err instanceof InvalidArgumentError && err.message.startsWith(message),
    );
  }
});

Deno.test("a server refusing the credentials is NatsAuthError (needs nats-server)", async () => {
  const server = await startNats({
    config: `authorization { users: [ { user: cnm, password: right } ] }`,
  });
  try {
    const nats = { servers: server.url, user: "cnm", pass: "wrong", maxReconnectAttempts: 0 };
    await assert.rejects(
      createController({ nats, hostId: "h1" }),
      (err: Error) =>
        err instanceof NatsAuthError && /refused the credentials/.test(err.message) &&
        !err.message.includes("wrong"),
    );
    await assert.rejects(
      replay({ nats }),
      (err: Error) => err instanceof NatsAuthError && /refused the credentials/.test(err.message),
    );
  } finally {
    await server.cleanup();
  }
});
