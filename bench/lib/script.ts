import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';

const BENCH_DIR = resolve(__dirname, '..');

/**
 * Runs one of the benchmark's TypeScript scripts (`script`, relative to bench/) in a process of its own (on `cpus` if
 * given), its input as JSON in `env`, and returns the JSON of its last line of output: the other side of
 * {@link scriptMain}.
 */
export function runScript<I, O>(
  script: string,
  env: string,
  input: I,
  options: { cpus?: string; nodeArgs?: string[] } = {},
): Promise<O> {
  const node = [process.execPath, ...(options.nodeArgs ?? []), '-r', '@swc-node/register', join(BENCH_DIR, script)];
  const [command, ...args] = options.cpus ? ['taskset', '-c', options.cpus, ...node] : node;
  return new Promise((resolveOutput, reject) => {
    execFile(
      command,
      args,
      {
        cwd: resolve(BENCH_DIR, '..'),
        env: { ...process.env, SWC_NODE_PROJECT: 'tsconfig.base.json', [env]: JSON.stringify(input) },
        timeout: 400_000,
        maxBuffer: 1 << 20,
      },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`${script} failed: ${err.message}\n${stderr}`));
        try {
          resolveOutput(JSON.parse(stdout.trim().split('\n').pop() ?? '') as O);
        } catch {
          reject(new Error(`${script} printed no result:\n${stdout}\n${stderr}`));
        }
      },
    );
  });
}

/**
 * The body of such a script: `work` gets the input the benchmark put in `env`, and what it returns is printed as JSON
 * on the last line; a failure is printed to stderr and exits with 1.
 */
export function scriptMain<I, O>(env: string, work: (input: I) => Promise<O>): void {
  work(JSON.parse(process.env[env] ?? '') as I).then(
    (output) => process.stdout.write(`${JSON.stringify(output)}\n`),
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
