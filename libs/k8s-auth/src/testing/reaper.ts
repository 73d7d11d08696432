import { type ChildProcess, spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { hasProcFs, startTimeOf } from './process-identity';
import { REAPER_SCRIPT } from './reaper-script';

/**
 * The reaper: a small `node` process that kills this process's servers and removes their folders if this process
 * dies without running its exit hooks (SIGKILL, a Jest worker killed by its parent). Its stdin is a pipe from this
 * process, which it reads until the end: the kernel closes the pipe however this process dies. It is started when
 * there is first something to watch and told to end when nothing is left, so an idle process has none.
 */

type Message = ['watch', number, string | null] | ['forget', number] | ['dir', string] | ['keep', string];

const groups = new Map<number, string | null>();
const dirs = new Set<string>();
let reaper: ChildProcess | undefined;

/**
 * Kills the process group led by `pid` if this process dies first; the returned function forgets it (call it once
 * the process has exited).
 */
export function watchProcessGroup(pid: number): () => void {
  const startTime = startTimeOf(pid) ?? null;
  // Already exited: nothing to watch, and its pid may be reused.
  if (startTime === null && hasProcFs()) return () => undefined;
  groups.set(pid, startTime);
  tell(['watch', pid, startTime]);
  return () => {
    if (groups.delete(pid)) tell(['forget', pid]);
  };
}

/** Removes `dir` if this process dies without removing it; the returned function keeps it. */
export function removeDirIfDead(dir: string): () => void {
  dirs.add(dir);
  tell(['dir', dir]);
  return () => {
    if (dirs.delete(dir)) tell(['keep', dir]);
  };
}

/** The reaper's pid while one runs, for the kit's own specs. */
export function reaperPid(): number | undefined {
  return reaper?.pid;
}

function tell(message: Message): void {
  if (groups.size === 0 && dirs.size === 0) {
    // The reaper exits quietly at the end of its input, with nothing left to do.
    reaper?.stdin?.end();
    reaper = undefined;
  } else if (reaper) {
    send(reaper, message);
  } else {
    reaper = startReaper();
    for (const [pid, startTime] of groups) send(reaper, ['watch', pid, startTime]);
    for (const dir of dirs) send(reaper, ['dir', dir]);
  }
}

function send(child: ChildProcess, message: Message): void {
  child.stdin?.write(`${JSON.stringify(message)}\n`);
}

function startReaper(): ChildProcess {
  // NODE_OPTIONS could load modules or open an inspector port in it.
  const env = { ...process.env };
  delete env['NODE_OPTIONS'];
  const child = spawn(process.execPath, ['-e', REAPER_SCRIPT], {
    // Its own session: Ctrl-C in a terminal signals this process's group, and the reaper must outlive it.
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
    env,
  });
  // Neither the reaper nor the pipe keeps this process alive.
  child.unref();
  (child.stdin as Socket | null)?.unref();
  // A reaper that died (or never started) gets its writes refused; the next change starts another.
  child.stdin?.on('error', () => undefined);
  const gone = () => {
    if (reaper === child) reaper = undefined;
  };
  child.on('error', gone);
  child.on('exit', gone);
  return child;
}
