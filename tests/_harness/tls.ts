/**
 * Test certificates made with `openssl` at run time in a temp dir: a CA, a server certificate
 * for 127.0.0.1 only (no "localhost": nats.js checks IP servers against that name, which must
 * not pass by accident), a client certificate signed by the CA, and a client certificate
 * signed by another CA (one the server does not trust).
 *
 * @module
 */

import { sh } from "./command.ts";

/** Paths of the PEM files made by {@link makeTestCerts}. */
export interface TestCerts {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A client certificate the server's CA did not sign. */
  rogueCert: string;
  rogueKey: string;
  /** Removes the directory. */
  cleanup(): Promise<void>;
}

const EC = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

/**
 * Makes the certificates (valid for one day).
 *
 * @throws {Error} when openssl is missing or fails (its stderr in the message).
 */
export async function makeTestCerts(): Promise<TestCerts> {
  const dir = await Deno.makeTempDir({ prefix: "cnm-certs-" });
  const run = (script: string) => sh(["sh", "-c", `cd '${dir}' && ${script}`]);
  try {
    for (const ca of ["ca", "rogue-ca"]) {
      await run(`openssl req -x509 ${EC} -keyout ${ca}.key -out ${ca}.pem -days 1 -subj /CN=${ca}`);
    }
    await Deno.writeTextFile(`${dir}/srv.ext`, "subjectAltName=IP:127.0.0.1\n");
    await Deno.writeTextFile(`${dir}/cli.ext`, "extendedKeyUsage=clientAuth\n");
    const sign = async (name: string, ca: string, ext: string) => {
      await run(`openssl req ${EC} -keyout ${name}.key -out ${name}.csr -subj /CN=${name}`);
      await run(
        `openssl x509 -req -in ${name}.csr -CA ${ca}.pem -CAkey ${ca}.key -CAcreateserial ` +
          `-out ${name}.pem -days 1 -extfile ${ext}`,
      );
    };
    await sign("server", "ca", "srv.ext");
    await sign("client", "ca", "cli.ext");
    await sign("rogue", "rogue-ca", "cli.ext");
  } catch (err) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
  return {
    dir,
    ca: `${dir}/ca.pem`,
    serverCert: `${dir}/server.pem`,
    serverKey: `${dir}/server.key`,
    clientCert: `${dir}/client.pem`,
    clientKey: `${dir}/client.key`,
    rogueCert: `${dir}/rogue.pem`,
    rogueKey: `${dir}/rogue.key`,
    cleanup: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
  };
}
