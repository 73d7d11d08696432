import { execFile, spawn } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The Docker client: $DOCKER, else Debian's docker.io client, else `docker` on the PATH. */
export const DOCKER = process.env['DOCKER'] ?? (existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker');

/** Runs a docker command and returns its stdout, trimmed; a failure carries its stderr. */
export async function docker(...args: string[]): Promise<string> {
  try {
    const { stdout } = await run(DOCKER, args, { maxBuffer: 64 * 1024 * 1024 });
    return stdout.trim();
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`docker ${args.slice(0, 2).join(' ')} failed: ${(e.stderr ?? e.message).trim()}`);
  }
}

/**
 * Runs a long docker command (a build) with its output in `logFile`. The classic builder, as Skaffold's default
 * (the Docker Engine API) and `minikube image build` use it: the Dockerfile must not need BuildKit.
 */
export function dockerLogged(args: string[], logFile: string, cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const log = createWriteStream(logFile, { flags: 'a' });
    const child = spawn(DOCKER, args, { cwd, env: { ...process.env, DOCKER_BUILDKIT: '0' } });
    child.stdout.pipe(log, { end: false });
    child.stderr.pipe(log, { end: false });
    child.on('error', reject);
    child.on('close', (code) => {
      log.end();
      if (code === 0) resolve();
      else reject(new Error(`docker ${args.slice(0, 2).join(' ')} exited with ${code}: see ${logFile}`));
    });
  });
}

/** A container's log, stdout and stderr together. */
export async function containerLog(id: string, tail = 'all'): Promise<string> {
  try {
    const { stdout, stderr } = await run(DOCKER, ['logs', '--tail', tail, id], { maxBuffer: 64 * 1024 * 1024 });
    return stdout + stderr;
  } catch {
    return '(no log)';
  }
}

/** Size in bytes of an image (all its layers). */
export async function imageSize(image: string): Promise<number> {
  return Number(await docker('image', 'inspect', '--format', '{{.Size}}', image));
}
