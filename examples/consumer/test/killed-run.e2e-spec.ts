import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// However a test run that started a control plane ends, its etcd and kube-apiserver end with it. A run is started as
// a user's is (a process group of its own, the kit from the installed package), stopped by a signal, and its servers
// are then looked for by pid. The verdict is the number of survivors, never how fast they went: they get a minute.

const APP = join(__dirname, '..');
const READY_LIMIT_MS = 120_000; // a Jest start, then a control plane start
const GONE_LIMIT_MS = 60_000;

type Kind = 'jest' | 'plain';

/** What a starter fixture reports once its control plane is ready (fixtures/report-control-plane.js). */
interface Report {
  starter: number;
  dir: string;
  etcd: number;
  kubeApiServer: number;
}

/** A process as first seen: its start time tells it from a later process given the same pid. */
interface Seen {
  name: string;
  pid: number;
  startTime?: string;
}

const HAS_PROC = existsSync('/proc/self/stat');

/** The start time of `pid` from /proc (Linux); undefined when it is gone or a zombie. */
function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' ? undefined : fields[19];
  } catch {
    return undefined;
  }
}

function isRunning({ pid, startTime }: Seen): boolean {
  if (HAS_PROC) return startTime !== undefined && startTimeOf(pid) === startTime;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}

async function until(done: () => boolean, limitMs: number): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
}

const work = mkdtempSync(join(tmpdir(), 'killed-run-'));
mkdirSync(join(work, 'tmp'));
let child: ChildProcess | undefined;
let servers: Seen[] = [];
let dir: string | undefined;
let starts = 0;

function commandFor(kind: Kind): string[] {
  if (kind === 'plain') return [join(__dirname, 'fixtures/plain-starter.js')];
  const jest = require.resolve('jest/bin/jest');
  const only = ['--testRegex', 'fixtures/jest-starter\\.fixture\\.js$'];
  // Jest's default cache, which the starter's own TMPDIR would move: what this run transformed is not done again.
  const cache = join(realpathSync(tmpdir()), process.getuid ? `jest_${process.getuid().toString(36)}` : 'jest');
  return [jest, '--config', 'test/jest-e2e.json', ...only, '--ci', '--runInBand', '--cacheDirectory', cache];
}

/** Starts a starter in a process group of its own, as a shell does, and waits for its report. */
async function start(kind: Kind): Promise<{ report: Report; group: number; exited: () => boolean }> {
  const file = join(work, `report-${++starts}.json`);
  // A temporary folder of their own: a control plane started elsewhere on the machine removes the leftovers of dead
  // runs in its temporary folder, which would hide survivors here.
  const env: NodeJS.ProcessEnv = { ...process.env, CONTROL_PLANE_REPORT: file, TMPDIR: join(work, 'tmp') };
  delete env.JEST_WORKER_ID;
  const started = spawn(process.execPath, commandFor(kind), { cwd: APP, env, detached: true, stdio: 'pipe' });
  child = started;
  let output = '';
  started.stdout?.on('data', (chunk) => (output += chunk));
  started.stderr?.on('data', (chunk) => (output += chunk));
  let exited = false;
  started.once('exit', () => (exited = true));

  await until(() => exited || existsSync(file), READY_LIMIT_MS);
  if (!existsSync(file)) throw new Error(`The ${kind} starter reported no control plane:\n${output}`);
  const report = JSON.parse(readFileSync(file, 'utf8')) as Report;
  // Seen while the starter waits, so they surely run.
  servers = [
    { name: 'etcd', pid: report.etcd, startTime: startTimeOf(report.etcd) },
    { name: 'kube-apiserver', pid: report.kubeApiServer, startTime: startTimeOf(report.kubeApiServer) },
  ];
  dir = report.dir;
  return { report, group: started.pid ?? report.starter, exited: () => exited };
}

/** The servers still running, and the control plane's folder if it is still there. */
function survivors(): string[] {
  return [
    ...servers.filter(isRunning).map((s) => `${s.name} ${s.pid}`),
    ...(dir && existsSync(dir) ? [`folder ${dir}`] : []),
  ];
}

// What a failed case left, stopped by the pids it reported.
afterEach(() => {
  if (child?.pid && child.exitCode === null && child.signalCode === null) signal(-child.pid, 'SIGKILL');
  for (const server of servers.filter(isRunning)) signal(-server.pid, 'SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
  child = undefined;
  servers = [];
  dir = undefined;
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.each([
  ['a Jest run', 'SIGKILL', 'jest'],
  ['a Jest run', 'SIGTERM', 'jest'],
  ['a Jest run', 'SIGINT', 'jest'],
  ['a plain Node process', 'SIGKILL', 'plain'],
] as const)('the control plane of %s stopped by %s', (_, name, kind) => {
  it(
    'leaves no etcd, no kube-apiserver and no folder behind',
    async () => {
      const { report, group, exited } = await start(kind);
      expect(survivors()).toHaveLength(3);
      // Ctrl-C signals the terminal's whole process group; the other signals are sent to the starter alone.
      signal(name === 'SIGINT' ? -group : report.starter, name);
      await until(exited, GONE_LIMIT_MS);
      expect(exited()).toBe(true);
      await until(() => survivors().length === 0, GONE_LIMIT_MS);
      expect(survivors()).toEqual([]);
    },
    READY_LIMIT_MS + 2 * GONE_LIMIT_MS,
  );
});
