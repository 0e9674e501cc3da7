/**
 * Running a command from a test: its exit code and output, or (with {@link sh}) its stdout
 * and an error carrying its stderr when it fails.
 *
 * @module
 */

/** What a finished command printed. */
export interface CommandOutput {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@link output}. */
export interface OutputOptions {
  /** Text written to the command's stdin (closed after). Default: no stdin. */
  stdin?: string;
  /** Environment of the command (replaces nothing: merged with the test's). */
  env?: Record<string, string>;
}

/** Runs argv (argv[0] and its arguments) to the end. */
export async function output(argv: string[], options: OutputOptions = {}): Promise<CommandOutput> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    ...(options.env ? { env: options.env } : {}),
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Runs argv; its stdout, or an error naming the command with its stderr. */
export async function sh(argv: string[], stdin?: string): Promise<string> {
  const out = await output(argv, { stdin });
  if (out.code !== 0) throw new Error(`${argv.join(" ")}: ${out.stderr}`);
  return out.stdout;
}
