/**
 * Who may use the Docker socket: `serveDocker({ mode, group })` and
 * `cnm serve --docker-socket PATH --docker-group GID` give the socket file that mode and
 * group (read back with stat), bad values are refused before anything is made, and a group
 * the process may not give (chown refused) leaves no socket and no server behind.
 */
import assert from "node:assert/strict";
import { InvalidArgumentError } from "../../../mod.ts";
import { serveDocker } from "../../../src/api/docker/mod.ts";
import { output } from "../../_harness/command.ts";
import { CNM, serveSetup, startServe } from "../../_harness/cnm_serve.ts";
import { rawExchange, startDockerEnv } from "../../_harness/docker.ts";
import { startEnv } from "../../_harness/env.ts";

const GID = 12345; // no group needs to exist: root may give a socket any group id
const ping = "GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);
const MOD = new URL("../../../src/api/docker/mod.ts", import.meta.url).href;
const CONFIG = new URL("../../../deno.json", import.meta.url).pathname;

/** What serveDocker threw; a server it made anyway is closed, then the test fails. */
async function refusal(p: Promise<{ close(): Promise<void> }>): Promise<Error> {
  let served;
  try {
    served = await p;
  } catch (err) {
    return err as Error;
  }
  await served.close();
  throw new Error("serveDocker served");
}

Deno.test("serveDocker (root, nats-server) gives its socket the mode and group asked for, and refuses bad ones", async (t) => {
  const d = await startDockerEnv("dks");
  const { cnm } = d;
  const dir = await Deno.makeTempDir({ prefix: "cnm-docker-sock-" });
  try {
    await t.step("group: the socket's gid, mode 0660, and it answers", async () => {
      const path = `${dir}/g.sock`;
      const s = await serveDocker(cnm, { path, group: GID });
      try {
        const st = await Deno.stat(path);
        assert.equal(st.gid, GID);
        assert.equal(st.uid, 0);
        assert.equal(st.mode! & 0o7777, 0o660);
        assert.equal((await rawExchange(path, ping)).status, 200);
      } finally {
        await s.close();
      }
      assert.equal(await exists(path), false);
    });

    await t.step(
      "without group the socket keeps the process's group; mode is honoured",
      async () => {
        const path = `${dir}/m.sock`;
        const s = await serveDocker(cnm, { path, mode: 0o600 });
        try {
          const st = await Deno.stat(path);
          assert.equal(st.gid, Deno.gid());
          assert.equal(st.mode! & 0o7777, 0o600);
        } finally {
          await s.close();
        }
      },
    );

    await t.step("a group or mode that is not one is refused; no socket is made", async () => {
      const path = `${dir}/bad.sock`;
      const group = (g: number) =>
        `invalid Docker socket options: group: must be a group id (an integer from 0 to ` +
        `4294967294), got ${g}`;
      for (const g of [-1, 1.5, NaN, 2 ** 32 - 1, 2 ** 32]) {
        const e = await refusal(serveDocker(cnm, { path, group: g }));
        assert.ok(e instanceof InvalidArgumentError, String(e));
        assert.equal(e.message, group(g));
        assert.equal(await exists(path), false, String(g));
      }
      const modes: [number, string][] = [[-1, "-1"], [0o1000, "0o1000"], [0o4660, "0o4660"], [
        6.5,
        "6.5",
      ]];
      for (const [m, shown] of modes) {
        const e = await refusal(serveDocker(cnm, { path, mode: m }));
        assert.ok(e instanceof InvalidArgumentError, String(e));
        assert.equal(
          e.message,
          `invalid Docker socket options: mode: must be permission bits from 0 to 0o777, got ${shown}`,
        );
        assert.equal(await exists(path), false, shown);
      }
    });

    await t.step(
      "a group the process may not give: a clear error, no socket, no server left running",
      async () => {
        // In a user namespace mapping only root, chown to an unmapped gid fails (EINVAL) as
        // it does for a non-root server asked for a group it is not in (EPERM).
        const path = `${dir}/userns.sock`;
        const code = `
          import { serveDocker } from ${JSON.stringify(MOD)};
          const backend = {
            hostId: "h1",
            events$: { subscribe: () => ({ unsubscribe() {} }) },
            networks: () => [], endpoints: () => [], sandboxes: () => [],
          };
          try {
            await serveDocker(backend, { path: ${JSON.stringify(path)}, group: ${GID} });
            console.log("served");
          } catch (err) {
            console.log(err.name + ": " + err.message);
          }`;
        const r = await output([
          "timeout",
          "30",
          "unshare",
          "--user",
          "--map-root-user",
          Deno.execPath(),
          "eval",
          "--config",
          CONFIG,
          code,
        ]);
        // Exit 0 on its own: a server left listening would keep it alive until the timeout.
        assert.equal(r.code, 0, r.stderr);
        assert.equal(
          r.stdout,
          `Error: cannot give the Docker socket ${path} group ${GID}: Invalid argument (os ` +
            `error 22): chown '${path}'\n`,
        );
        assert.equal(await exists(path), false);
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await d.cleanup();
  }
});

Deno.test("cnm serve --docker-group (root, nats-server) gives the Docker socket that group; bad values are usage errors", async (t) => {
  const env = await startEnv("dksg");
  const dir = await Deno.makeTempDir({ prefix: "cnm-docker-sock-" });
  const sock = `${dir}/docker.sock`;
  const setup = (args: string[]) => serveSetup(env, args);
  try {
    await t.step(
      "--docker-socket PATH --docker-group GID: the socket's group, mode 0660",
      async () => {
        const server = await startServe(
          setup(["-q", "--docker-socket", sock, "--docker-group", `${GID}`]),
        );
        try {
          const st = await Deno.stat(sock);
          assert.equal(st.gid, GID);
          assert.equal(st.mode! & 0o7777, 0o660);
          assert.equal((await rawExchange(sock, ping)).status, 200);
          assert.equal(await server.stop(), 0);
        } finally {
          await server.cleanup();
        }
        assert.equal(await exists(sock), false);
      },
    );

    await t.step(
      "a bad --docker-group is a usage error (exit 2) before NATS is tried",
      async () => {
        // NATS is unreachable here: a usage error must come first.
        const down = { ...setup([]).env, CNM_NATS_URL: "127.0.0.1:1" };
        const run = (args: string[]) =>
          output([CNM, "serve", "--namespace", env.host.path, ...args], { env: down });
        const usage = (message: string) =>
          `cnm serve: ${message}\nRun 'cnm serve --help' for usage.\n`;
        for (const g of ["docker", "-1", "1.5", "", "4294967295", "99999999999"]) {
          const r = await run(["--docker-socket", sock, "--docker-group", g]);
          assert.deepEqual(
            [r.code, r.stdout, r.stderr],
            [
              2,
              "",
              usage(
                `--docker-group takes a numeric group id (0 to 4294967294), got ${
                  JSON.stringify(g)
                }`,
              ),
            ],
            g,
          );
        }
        const r = await run(["--docker-group", `${GID}`]);
        assert.deepEqual(
          [r.code, r.stdout, r.stderr],
          [2, "", usage("--docker-group needs --docker-socket")],
        );
        assert.equal(await exists(sock), false);
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await env.cleanup();
  }
});
