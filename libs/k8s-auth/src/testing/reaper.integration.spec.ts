import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startControlPlane, stopControlPlaneByState } from './control-plane';
import { ensureControlPlaneBinaries } from './control-plane-binaries';
import { isGone, type ProcessRef, processRef } from './process-identity';
import { reaperPid } from './reaper';
import type { StarterState } from './reaper-fixtures/starter-state.spec-support';

// Real starters (a plain process, a Jest run) that start a real control plane and are then stopped by real signals
// or time out. The verdict is the number of survivors once they have had time to go, never how fast they went.

const ROOT = join(__dirname, '../../../..');
const FIXTURES = join(__dirname, 'reaper-fixtures');
const READY_LIMIT_MS = 120_000;
const GONE_LIMIT_MS = 30_000;
const TEST_TIMEOUT_MS = READY_LIMIT_MS + 2 * GONE_LIMIT_MS;

type StarterKind = 'plain' | 'jest' | 'jest-worker' | 'jest-timeout';

interface Starter {
  child: ChildProcess;
  output: () => string;
  exited: () => boolean;
  state: StarterState;
}

const work = mkdtempSync(join(tmpdir(), 'k8s-auth-reaper-spec-'));
const started: Starter[] = [];
let starts = 0;

function commandFor(kind: StarterKind, stateFile: string): string[] {
  if (kind === 'plain') {
    return ['-r', '@swc-node/register', join(FIXTURES, 'plain-starter.spec-support.ts'), stateFile];
  }
  const jest = [
    require.resolve('jest/bin/jest'),
    '-c',
    'libs/k8s-auth/jest.config.cts',
    '--testMatch',
    '**/reaper-fixtures/jest-starter.spec-support.ts',
    '--ci',
  ];
  // A memory limit makes Jest use a worker even for one test file.
  if (kind === 'jest-worker') return [...jest, '--workerIdleMemoryLimit=4GB'];
  // Without --forceExit, Jest would wait for the control plane's processes after the failed beforeAll.
  if (kind === 'jest-timeout') return [...jest, '--runInBand', '--forceExit'];
  return [...jest, '--runInBand'];
}

/** `tmp` is the starter's temporary folder, where its control plane's folder goes. */
async function startStarter(kind: StarterKind, tmp?: string): Promise<Starter> {
  const stateFile = join(work, `state-${++starts}.json`);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SWC_NODE_PROJECT: 'tsconfig.base.json',
    REAPER_STATE_FILE: stateFile,
    ...(kind === 'jest-timeout' ? { REAPER_HANG_TIMEOUT_MS: '1000' } : {}),
    ...(tmp ? { TMPDIR: tmp } : {}),
  };
  delete env['JEST_WORKER_ID'];
  // Its own process group, as a test run started from a shell is: signals go to it alone.
  const child = spawn(process.execPath, commandFor(kind, stateFile), {
    cwd: ROOT,
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (c) => (output += c));
  child.stderr?.on('data', (c) => (output += c));
  let exited = false;
  child.once('exit', () => (exited = true));
  const starter: Starter = { child, output: () => output, exited: () => exited, state: undefined as never };
  started.push(starter);

  // A timing-out run may exit right after its report, so the report counts even when it has exited.
  await until(() => exited || existsSync(stateFile), READY_LIMIT_MS);
  if (!existsSync(stateFile)) throw new Error(`The ${kind} starter did not report a control plane:\n${output}`);
  starter.state = JSON.parse(readFileSync(stateFile, 'utf8')) as StarterState;
  return starter;
}

/** What is left of a starter's control plane: servers still running, its folder, its reaper. */
function survivors({ state }: Starter): string[] {
  return [
    ...state.servers.filter((s) => !isGone(s)).map((s) => `${s.name} ${s.pid}`),
    ...(existsSync(state.dir) ? [`folder ${state.dir}`] : []),
    ...(state.reaper && !isGone(state.reaper) ? [`reaper ${state.reaper.pid}`] : []),
  ];
}

/** The servers and the folder, as long as they are there. */
function running(starter: Starter): string[] {
  return survivors(starter).filter((s) => !s.startsWith('reaper'));
}

async function until(done: () => boolean, limitMs: number): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
}

async function expectNoSurvivors(starter: Starter): Promise<void> {
  await until(() => survivors(starter).length === 0, GONE_LIMIT_MS);
  expect(survivors(starter)).toEqual([]);
}

async function expectExited(starter: Starter): Promise<void> {
  await until(starter.exited, GONE_LIMIT_MS);
  expect(starter.exited()).toBe(true);
}

function kill(ref: ProcessRef | undefined, signal: NodeJS.Signals): void {
  if (ref && !isGone(ref)) process.kill(ref.pid, signal);
}

beforeAll(() => ensureControlPlaneBinaries(), READY_LIMIT_MS);

// Whatever a failed case left, stopped by the pids it recorded.
afterEach(() => {
  for (const { child, state } of started.splice(0)) {
    if (child.pid && child.exitCode === null && child.signalCode === null) signal(-child.pid, 'SIGKILL');
    if (!state) continue;
    for (const ref of [state.starter, state.reaper, ...state.servers]) {
      if (ref && !isGone(ref)) signal(ref === state.starter ? ref.pid : -ref.pid, 'SIGKILL');
    }
    rmSync(state.dir, { recursive: true, force: true });
  }
});

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.each([
  ['a plain process', 'plain'],
  ['a Jest run', 'jest'],
] as const)('the control plane of %s', (_, kind) => {
  it.each(['SIGINT', 'SIGTERM', 'SIGKILL'] as const)(
    'is gone, folder and all, once the starter is stopped by %s',
    async (signal) => {
      const starter = await startStarter(kind);
      expect(running(starter)).toHaveLength(3);
      kill(starter.state.starter, signal);
      await expectExited(starter);
      await expectNoSurvivors(starter);
    },
    TEST_TIMEOUT_MS,
  );
});

it(
  'is gone once the Jest worker that started it is killed with SIGKILL',
  async () => {
    const starter = await startStarter('jest-worker');
    expect(starter.state.starter.pid).not.toBe(starter.child.pid);
    expect(running(starter)).toHaveLength(3);
    kill(starter.state.starter, 'SIGKILL');
    await expectNoSurvivors(starter);
  },
  TEST_TIMEOUT_MS,
);

it(
  'is gone once a Jest run whose beforeAll timed out exits with --forceExit, with no afterAll to stop it',
  async () => {
    const starter = await startStarter('jest-timeout');
    await expectExited(starter);
    expect(starter.output()).toMatch(/Exceeded timeout of 1000 ms for a hook/);
    await expectNoSurvivors(starter);
  },
  TEST_TIMEOUT_MS,
);

it(
  'is removed by a later start when its starter was killed together with its reaper, and the start says so',
  async () => {
    // A temporary folder of their own: no other start (another spec, another run) may clean up before the second.
    const tmp = join(work, 'tmp');
    mkdirSync(tmp);
    const first = await startStarter('plain', tmp);
    kill(first.state.reaper, 'SIGKILL');
    kill(first.state.starter, 'SIGKILL');
    await expectExited(first);
    // Nobody is left to clean up: both servers run on and the folder stays.
    expect(survivors(first)).toEqual(running(first));
    expect(running(first)).toHaveLength(3);

    const second = await startStarter('plain', tmp);
    await expectNoSurvivors(first);
    expect(second.output()).toContain(first.state.dir);
    kill(second.state.starter, 'SIGTERM');
    await expectExited(second);
    await expectNoSurvivors(second);
  },
  TEST_TIMEOUT_MS * 2,
);

it(
  'has its reaper exit once it is stopped, and a persistent one (the CLI) has no reaper and no owner record',
  async () => {
    const cp = await startControlPlane();
    const reaper = processRef(reaperPid() ?? 0);
    expect(isGone(reaper)).toBe(false);
    await cp.stop();
    await until(() => isGone(reaper), GONE_LIMIT_MS);
    expect(isGone(reaper)).toBe(true);

    const persistent = await startControlPlane({ persistent: true });
    try {
      expect(reaperPid()).toBeUndefined();
      expect(existsSync(join(persistent.state?.dir ?? '', 'owner.json'))).toBe(false);
    } finally {
      if (persistent.state) await stopControlPlaneByState(persistent.state);
    }
  },
  TEST_TIMEOUT_MS,
);
