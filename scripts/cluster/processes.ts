import { execFile } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import { promisify } from 'node:util';

export const run = promisify(execFile);

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** SIGTERM to the process group led by `pid`, SIGKILL after `graceMs`; the group is the one ManagedProcess made. */
export async function stopGroup(pid: number, graceMs = 5000): Promise<void> {
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(-pid, s);
    } catch {
      // Already gone.
    }
  };
  signal('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  signal('SIGKILL');
}

/** SIGKILL to one process by its pid, read from a pid file that a shim wrote; a missing file is no error. */
export async function killPidFile(file: string): Promise<number | undefined> {
  const pid = Number((await fs.readFile(file, 'utf8').catch(() => '')).trim());
  if (!(pid > 0)) return undefined;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
  return pid;
}

/** Mount points at or under `dir`, deepest first (the order to unmount them in). */
export function mountsUnder(dir: string): string[] {
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => !!p)
    // mountinfo escapes spaces and the like as octal.
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Polls `check` until it is true or `timeoutMs` passes; returns whether it became true. */
export async function poll(check: () => Promise<boolean>, timeoutMs: number, everyMs = 250): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return true;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return false;
}

/**
 * Pids of the processes started from `binary` with `arg` among their arguments: containerd's shims, which detach from
 * containerd's process group and record their pid nowhere, are found this way, each one then stopped by its pid.
 */
export async function pidsRunning(binary: string, arg: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await fs.readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv[0] === binary && argv.includes(arg)) pids.push(Number(entry));
  }
  return pids;
}
