/**
 * The real `./cnm` against a real nats-server (2.9) secured each way a deployment does it:
 * user/password, token, NKey, operator/JWT credentials, TLS with a private CA, and mutual TLS.
 * A controller (fake kernel, no root) runs in this process, connected with the options the
 * CLI builds from the same flags. Checks that each way works from flags, environment and URL,
 * that failures get exit code 5 (3 stays "unreachable") and a message without a stack trace,
 * and that no secret is ever printed.
 */
import assert from "node:assert/strict";
import { nkeys } from "@nats-io/transport-node";
import { createController } from "../../mod.ts";
import type { Controller } from "../../mod.ts";
import { serve } from "../../src/api/serve.ts";
import type { Server } from "../../src/api/serve.ts";
import { natsSettings } from "../../src/cli/_nats.ts";
import { output } from "../_harness/command.ts";
import { freePort, startNats, type TestNats } from "../_harness/nats.ts";
import { operatorSetup } from "../_harness/nats_jwt.ts";
import { makeTestCerts, type TestCerts } from "../_harness/tls.ts";
import { fakeOptions } from "./_fake_kernel.ts";

const CNM = new URL("../../cnm", import.meta.url).pathname;

/** Every variable the CLI reads, unset unless a test sets it. */
const CLEAN: Record<string, string> = Object.fromEntries(
  [
    "CNM_NATS_URL",
    "NATS_URL",
    "NATS_USER",
    "NATS_PASSWORD",
    "NATS_TOKEN",
    "NATS_CREDS",
    "NATS_NKEY",
    "NATS_CERT",
    "NATS_KEY",
    "NATS_CA",
  ].map((v) => [v, ""]),
);

interface Run {
  code: number;
  out: string;
  err: string;
}

async function cnm(env: Record<string, string>, ...args: string[]): Promise<Run> {
  // An empty variable is "unset" for the test: Deno.Command cannot unset one, so drop them.
  const vars: Record<string, string> = {
    ...CLEAN,
    CNM_STREAM: "A",
    CNM_PREFIX: "a",
    CNM_HOST_ID: "h1",
    ...env,
  };
  const o = await output([
    "env",
    ...Object.keys(vars).filter((k) => !vars[k]).map((k) => `-u${k}`),
    CNM,
    ...args,
  ], {
    env: Object.fromEntries(Object.entries(vars).filter(([, v]) => v)),
  });
  return { code: o.code, out: o.stdout, err: o.stderr };
}

/** Asserts a successful `network ls` (the controller's `none` network is listed). */
function assertListed(r: Run, what: string) {
  assert.equal(r.code, 0, `${what}: ${r.err}`);
  assert.match(r.out, /\snone\s+null\s+local\s+active/, what);
}

/** Asserts a clean failure: the code, the message, no stack trace, none of the secrets. */
function assertFails(r: Run, code: number, message: RegExp, secrets: string[] = []) {
  assert.equal(r.code, code, `expected exit ${code}, got ${r.code}: ${r.err}`);
  assert.match(r.err, message);
  assert.doesNotMatch(r.err, /Uncaught|\n\s+at /, "a stack trace was printed");
  for (const s of secrets) {
    assert.ok(!r.err.includes(s) && !r.out.includes(s), `secret ${s} printed: ${r.err}`);
  }
}

/** A secured server with a controller (connected with `flags`) serving host h1. */
async function securedServer(
  config: string,
  flags: Record<string, string>,
  t: (nats: TestNats) => Promise<void>,
) {
  const nats = await startNats({ config });
  const dir = await Deno.makeTempDir();
  let controller: Controller | undefined;
  let server: Server | undefined;
  try {
    const url = flags.server ?? nats.url;
    const { options } = natsSettings({ ...flags, server: url }, new Map());
    controller = await createController({ ...fakeOptions(url, "A", "a", dir), nats: options });
    server = await serve(controller, { nats: options });
    await t(nats);
  } finally {
    await server?.close();
    await controller?.close();
    await nats.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("cnm CLI (needs nats-server) authenticates with user and password", async (t) => {
  const config = `authorization { users: [ { user: alice, password: "pw-s3cret-1" } ] }`;
  await securedServer(config, { user: "alice", password: "pw-s3cret-1" }, async (nats) => {
    const url = nats.url;
    await t.step("from the environment", async () => {
      const env = { NATS_URL: url, NATS_USER: "alice", NATS_PASSWORD: "pw-s3cret-1" };
      assertListed(await cnm(env, "network", "ls"), "env");
      const r = await cnm(env, "sandbox", "create", "c1"); // through the API
      assert.equal(r.code, 0, r.err);
      assert.equal(r.err, "", "no warning when the secret is in the environment");
    });
    await t.step("in the URL (flag: warned; CNM_NATS_URL: not)", async () => {
      let r = await cnm({}, "--server", `nats://alice:pw-s3cret-1@${url}`, "network", "ls");
      assertListed(r, "URL flag");
      assert.match(r.err, /warning: credentials in --server on the command line is visible/);
      assert.ok(!r.err.includes("pw-s3cret-1"));
      r = await cnm({ CNM_NATS_URL: `nats://alice:pw-s3cret-1@${url}` }, "network", "ls");
      assertListed(r, "URL env");
      assert.equal(r.err, "");
    });
    await t.step("--user with --password warns about ps", async () => {
      const r = await cnm(
        {},
        "-s",
        url,
        "--user",
        "alice",
        "--password",
        "pw-s3cret-1",
        "network",
        "ls",
      );
      assertListed(r, "flags");
      assert.match(r.err, /warning: --password on the command line is visible .*\(ps\)/);
      assert.ok(!r.err.includes("pw-s3cret-1"));
    });
    await t.step("a wrong password: exit 5, the user named, no password printed", async () => {
      const env = { NATS_URL: url, NATS_USER: "alice", NATS_PASSWORD: "pw-wrong-77" };
      assertFails(
        await cnm(env, "network", "ls"),
        5,
        /^cnm network ls: NatsAuthError: NATS at 127\.0\.0\.1:\d+ refused the credentials: .*Authorization Violation.* \(credentials: user alice \(\$NATS_USER, \$NATS_PASSWORD\)\)/,
        ["pw-wrong-77", "pw-s3cret-1"],
      );
      assertFails(
        await cnm({}, "--server", `nats://alice:pw-wrong-77@${url}`, "network", "ls"),
        5,
        /refused the credentials/,
        ["pw-wrong-77"],
      );
      assertFails(
        await cnm({ NATS_URL: url }, "--format", "json", "network", "ls"),
        5,
        /"name":"NatsAuthError".*credentials: none; give credentials with --user\/--password/,
      );
    });
    await t.step("a server that is not there is still exit 3", async () => {
      const env = {
        NATS_URL: `127.0.0.1:${freePort()}`,
        NATS_USER: "alice",
        NATS_PASSWORD: "pw-wrong-77",
      };
      assertFails(await cnm(env, "network", "ls"), 3, /NatsUnreachableError: cannot connect/, [
        "pw-wrong-77",
      ]);
    });
    await t.step("bad combinations are usage errors naming the flags", async () => {
      assertFails(
        await cnm({ NATS_URL: url }, "--password", "x", "network", "ls"),
        2,
        /--password needs a user/,
      );
      assertFails(
        await cnm(
          { NATS_URL: url },
          "--user",
          "alice",
          "--password",
          "pw-s3cret-1",
          "--token",
          "tok-9",
          "network",
          "ls",
        ),
        2,
        /give one way to authenticate to NATS, got user alice \(--user, --password\) and token \(--token\)/,
        ["pw-s3cret-1", "tok-9"],
      );
      // The command line beats the environment, also across ways to authenticate.
      const r = await cnm(
        { NATS_URL: url, NATS_TOKEN: "tok-env-1" },
        "--user",
        "alice",
        "--password",
        "pw-s3cret-1",
        "network",
        "ls",
      );
      assertListed(r, "command line over env");
      assertFails(
        await cnm({}, "--server", "ws://h:1", "network", "ls"),
        2,
        /unsupported scheme ws:\/\//,
      );
    });
  });
});

Deno.test("cnm CLI (needs nats-server) authenticates with a token", async (t) => {
  await securedServer(
    `authorization { token: "tok-s3cret-2" }`,
    { token: "tok-s3cret-2" },
    async (nats) => {
      await t.step("NATS_TOKEN, nats://TOKEN@host, --user TOKEN (as the nats CLI)", async () => {
        assertListed(
          await cnm({ NATS_URL: nats.url, NATS_TOKEN: "tok-s3cret-2" }, "network", "ls"),
          "env",
        );
        assertListed(
          await cnm({ NATS_URL: `nats://tok-s3cret-2@${nats.url}` }, "network", "ls"),
          "URL",
        );
        assertListed(
          await cnm({ NATS_URL: nats.url, NATS_USER: "tok-s3cret-2" }, "network", "ls"),
          "user",
        );
      });
      await t.step("a wrong token: exit 5, masked", async () => {
        assertFails(
          await cnm({ NATS_URL: `nats://tok-wrong-3@${nats.url}` }, "network", "ls"),
          5,
          /refused the credentials: .*Authorization Violation.*credentials: token \(URL in \$NATS_URL\)/,
          ["tok-wrong-3"],
        );
      });
    },
  );
});

Deno.test("cnm CLI (needs nats-server) authenticates with an NKey seed file", async (t) => {
  const user = nkeys.createUser();
  const dir = await Deno.makeTempDir();
  try {
    const seedFile = `${dir}/user.nk`;
    await Deno.writeTextFile(seedFile, new TextDecoder().decode(user.getSeed()) + "\n");
    const config = `authorization { users: [ { nkey: ${user.getPublicKey()} } ] }`;
    await securedServer(config, { nkey: seedFile }, async (nats) => {
      await t.step("--nkey and NATS_NKEY", async () => {
        assertListed(
          await cnm({ NATS_URL: nats.url }, "--nkey", seedFile, "network", "ls"),
          "flag",
        );
        assertListed(
          await cnm({ NATS_URL: nats.url, NATS_NKEY: seedFile }, "network", "ls"),
          "env",
        );
      });
      await t.step("another user's seed: exit 5; not a seed or no file: exit 2", async () => {
        const other = `${dir}/other.nk`;
        await Deno.writeTextFile(other, new TextDecoder().decode(nkeys.createUser().getSeed()));
        assertFails(
          await cnm({ NATS_URL: nats.url, NATS_NKEY: other }, "network", "ls"),
          5,
          /refused the credentials.*nkey \(\$NATS_NKEY/,
        );
        await Deno.writeTextFile(`${dir}/junk`, "not a seed");
        assertFails(
          await cnm({ NATS_URL: nats.url }, "--nkey", `${dir}/junk`, "network", "ls"),
          2,
          /--nkey .*junk: not a user NKey seed/,
        );
        assertFails(
          await cnm({ NATS_URL: nats.url }, "--nkey", `${dir}/none`, "network", "ls"),
          2,
          /--nkey .*none: cannot read/,
        );
      });
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cnm CLI (needs nats-server) authenticates with operator/JWT credentials", async (t) => {
  const op = operatorSetup();
  const dir = await Deno.makeTempDir();
  try {
    const creds = `${dir}/u.creds`;
    await Deno.writeTextFile(creds, op.userCreds("cnm-user"));
    await securedServer(op.config, { creds }, async (nats) => {
      await t.step("--creds and NATS_CREDS", async () => {
        assertListed(await cnm({ NATS_URL: nats.url }, "--creds", creds, "network", "ls"), "flag");
        assertListed(await cnm({ NATS_URL: nats.url, NATS_CREDS: creds }, "network", "ls"), "env");
      });
      await t.step("credentials of another operator: exit 5; a bad file: exit 2", async () => {
        const foreign = `${dir}/foreign.creds`;
        await Deno.writeTextFile(foreign, operatorSetup().userCreds("stranger"));
        assertFails(
          await cnm({ NATS_URL: nats.url, NATS_CREDS: foreign }, "network", "ls"),
          5,
          /refused the credentials/,
        );
        await Deno.writeTextFile(`${dir}/bad.creds`, "hello");
        assertFails(
          await cnm({ NATS_URL: nats.url, NATS_CREDS: `${dir}/bad.creds` }, "network", "ls"),
          2,
          /\$NATS_CREDS .*bad\.creds: not a NATS credentials file/,
        );
      });
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function tlsConfig(c: TestCerts, verify: boolean): string {
  return `tls { cert_file: "${c.serverCert}", key_file: "${c.serverKey}"${
    verify ? `, ca_file: "${c.ca}", verify: true` : ""
  } }`;
}

Deno.test("cnm CLI (needs nats-server, openssl) speaks TLS with a private CA", async (t) => {
  const certs = await makeTestCerts();
  try {
    await securedServer(tlsConfig(certs, false), { tlsca: certs.ca }, async (nats) => {
      await t.step("--tlsca, NATS_CA with tls://, no DENO_CERT needed", async () => {
        assertListed(
          await cnm({ NATS_URL: nats.url }, "--tlsca", certs.ca, "network", "ls"),
          "flag",
        );
        assertListed(
          await cnm({ NATS_URL: `tls://${nats.url}`, NATS_CA: certs.ca }, "network", "ls"),
          "env",
        );
      });
      await t.step("without the CA: exit 5 saying to give --tlsca", async () => {
        assertFails(
          await cnm({ NATS_URL: `tls://${nats.url}` }, "network", "ls"),
          5,
          /NatsAuthError: TLS with NATS at 127\.0\.0\.1:\d+ failed: .*give the server's CA with --tlsca/,
        );
      });
      await t.step("half a client certificate is a usage error", async () => {
        assertFails(
          await cnm({ NATS_URL: nats.url, NATS_CERT: certs.clientCert }, "network", "ls"),
          2,
          /a client certificate needs both --tlscert and --tlskey .* got \$NATS_CERT only/,
        );
      });
    });
  } finally {
    await certs.cleanup();
  }
});

Deno.test("cnm CLI (needs nats-server, openssl) presents a client certificate (mTLS)", async (t) => {
  const certs = await makeTestCerts();
  try {
    const flags = { tlsca: certs.ca, tlscert: certs.clientCert, tlskey: certs.clientKey };
    await securedServer(tlsConfig(certs, true), flags, async (nats) => {
      const env = { NATS_URL: nats.url, NATS_CA: certs.ca };
      await t.step("--tlscert/--tlskey and NATS_CERT/NATS_KEY", async () => {
        assertListed(
          await cnm(
            env,
            "--tlscert",
            certs.clientCert,
            "--tlskey",
            certs.clientKey,
            "network",
            "ls",
          ),
          "flags",
        );
        assertListed(
          await cnm(
            { ...env, NATS_CERT: certs.clientCert, NATS_KEY: certs.clientKey },
            "network",
            "ls",
          ),
          "env",
        );
      });
      await t.step("no client certificate: exit 5, no stack trace", async () => {
        assertFails(
          await cnm(env, "network", "ls"),
          5,
          /^cnm network ls: NatsAuthError: NATS at 127\.0\.0\.1:\d+ requires a client certificate: give --tlscert and --tlskey/,
        );
      });
      await t.step("a certificate of another CA: exit 5, no stack trace", async () => {
        assertFails(
          await cnm(env, "--tlscert", certs.rogueCert, "--tlskey", certs.rogueKey, "network", "ls"),
          5,
          /NatsAuthError: (TLS with NATS at 127\.0\.0\.1:\d+ failed|NATS at .* refused)/,
        );
      });
    });
  } finally {
    await certs.cleanup();
  }
});
