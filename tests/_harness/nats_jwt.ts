/**
 * A decentralized-auth (operator/JWT) setup for nats-server 2.9 made at run time: an operator,
 * one account with JetStream (plus the system account JetStream needs), and user credentials files (`.creds`) as `nsc` would write them.
 * JWTs are signed here with NKeys (ed25519); the server resolves the account from memory.
 *
 * @module
 */

import { nkeys } from "@nats-io/transport-node";

type KeyPair = ReturnType<typeof nkeys.createUser>;

const enc = new TextEncoder();
const b64url = (b: Uint8Array) =>
  btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

function jwt(issuer: KeyPair, subject: string, name: string, nats: Record<string, unknown>) {
  const header = b64url(enc.encode(JSON.stringify({ typ: "JWT", alg: "ed25519-nkey" })));
  const claims = {
    jti: crypto.randomUUID().replace(/-/g, "").toUpperCase(),
    iat: Math.floor(Date.now() / 1000),
    iss: issuer.getPublicKey(),
    name,
    sub: subject,
    nats: { ...nats, version: 2 },
  };
  const payload = b64url(enc.encode(JSON.stringify(claims)));
  const sig = b64url(issuer.sign(enc.encode(`${header}.${payload}`)));
  return `${header}.${payload}.${sig}`;
}

/** An operator with one JetStream-enabled account. */
export interface OperatorSetup {
  /** The server configuration (operator, memory resolver, the account preloaded). */
  config: string;
  /** Text of a `.creds` file for a new user of the account. */
  userCreds(name: string): string;
}

/** Makes the operator, the account and its signing setup. */
export function operatorSetup(): OperatorSetup {
  const operator = nkeys.createOperator();
  const account = nkeys.createAccount();
  const system = nkeys.createAccount(); // JetStream needs a system account
  const sysJwt = jwt(operator, system.getPublicKey(), "SYS", { type: "account", limits: {} });
  const opJwt = jwt(operator, operator.getPublicKey(), "cnm-test-operator", { type: "operator" });
  const unlimited = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, conn: -1 };
  const accJwt = jwt(operator, account.getPublicKey(), "cnm-test-account", {
    type: "account",
    limits: {
      ...unlimited,
      wildcards: true,
      leaf: -1,
      mem_storage: -1,
      disk_storage: -1,
      streams: -1,
      consumer: -1,
    },
  });
  return {
    config: [
      `operator: ${opJwt}`,
      "resolver: MEMORY",
      `system_account: ${system.getPublicKey()}`,
      `resolver_preload: {`,
      `  ${account.getPublicKey()}: ${accJwt}`,
      `  ${system.getPublicKey()}: ${sysJwt}`,
      "}",
    ].join("\n"),
    userCreds(name) {
      const user = nkeys.createUser();
      const userJwt = jwt(account, user.getPublicKey(), name, {
        type: "user",
        pub: {},
        sub: {},
        subs: -1,
        data: -1,
        payload: -1,
      });
      const seed = new TextDecoder().decode(user.getSeed());
      return [
        "-----BEGIN NATS USER JWT-----",
        userJwt,
        "------END NATS USER JWT------",
        "",
        "-----BEGIN USER NKEY SEED-----",
        seed,
        "------END USER NKEY SEED------",
        "",
      ].join("\n");
    },
  };
}
