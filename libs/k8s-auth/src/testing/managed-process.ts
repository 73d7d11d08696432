import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { ControlPlaneError } from './control-plane-error';
import { removeDirIfDead, watchProcessGroup } from './reaper';

const LOG_TAIL_LINES = 40;
const LOG_TAIL_BYTES = 16 * 1024;

export interface ManagedProcessOptions {
  /** Where stdout and stderr go; the tail is quoted in errors. */
  logFile: string;
  /**
   * Leave the process running when this process exits (the CLI's `up`); it is then stopped by pid
   * from the state file. @default false
   */
  persistent?: boolean;
  /** The child's environment. @default this process's */
  env?: NodeJS.ProcessEnv;
}

/**
 * A server process of the control plane: started in its own process group, so that stopping it
 * stops everything it started, and killed by its own pid when this process exits or is interrupted.
 * Where those hooks never run (SIGKILL; inside Jest, whose test files get a copy of `process` that
 * receives no signal and no `exit`), the reaper kills it when this process is gone.
 */
export class ManagedProcess {
  private readonly child: ChildProcess;
  private readonly logFile: string;
  private exit: { code: number | null; signal: NodeJS.Signals | null; error?: string } | undefined;
  private readonly exited: Promise<void>;

  constructor(
    readonly name: string,
    binary: string,
    args: string[],
    options: ManagedProcessOptions,
  ) {
    this.logFile = options.logFile;
    // The child writes straight to the file: no pipe that breaks when this process goes away.
    const log = openSync(this.logFile, 'a');
    try {
      this.child = spawn(binary, args, {
        detached: true,
        stdio: ['ignore', log, log],
        env: options.env ?? process.env,
      });
    } finally {
      closeSync(log);
    }
    const forget =
      options.persistent || this.child.pid === undefined ? () => undefined : watchProcessGroup(this.child.pid);
    this.exited = new Promise<void>((resolve) => {
      this.child.on('error', (err) => {
        this.exit = { code: null, signal: null, error: `could not start ${binary}: ${err.message}` };
        resolve();
      });
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve();
      });
    }).finally(() => {
      liveProcesses.delete(this);
      forget();
    });
    if (options.persistent) {
      this.child.unref();
    } else {
      liveProcesses.add(this);
      installExitHooks();
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  logTail(): string {
    return [readTail(this.logFile), this.exit?.error].filter(Boolean).join('\n');
  }

  /** Resolves when the process has exited (at once if it already has). */
  whenExited(): Promise<void> {
    return this.exited;
  }

  /** Polls `isReady` until it answers true; fails with the log tail if the process dies first. */
  async waitUntilReady(isReady: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.running) throw this.diedError();
      if (await isReady().catch(() => false)) return;
      await Promise.race([new Promise((r) => setTimeout(r, 100)), this.exited]);
    }
    throw new ControlPlaneError(
      `${this.name} was not ready after ${Math.round(timeoutMs / 1000)} s. Last lines of its log:\n${this.logTail()}`,
    );
  }

  diedError(): ControlPlaneError {
    const how = this.exit?.signal ? `signal ${this.exit.signal}` : `exit code ${this.exit?.code}`;
    return new ControlPlaneError(
      `${this.name} stopped during start-up (${how}). Last lines of its log:\n${this.logTail()}`,
    );
  }

  /** SIGTERM to the process group, SIGKILL after `graceMs`. */
  async stop(graceMs = 2000): Promise<void> {
    if (!this.running) return;
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Synchronous last resort, for exit hooks. */
  kill(): void {
    this.signal('SIGKILL');
  }

  private signal(signal: NodeJS.Signals): void {
    const pid = this.child.pid;
    if (pid === undefined || !this.running) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // Already gone.
    }
  }
}

function readTail(file: string): string {
  try {
    const size = statSync(file).size;
    const length = Math.min(size, LOG_TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    const fd = openSync(file, 'r');
    try {
      readSync(fd, buffer, 0, length, size - length);
    } finally {
      closeSync(fd);
    }
    return buffer.toString('utf8').split('\n').filter(Boolean).slice(-LOG_TAIL_LINES).join('\n');
  } catch {
    return '';
  }
}

const liveProcesses = new Set<ManagedProcess>();
const foldersToRemove = new Set<string>();
let hooksInstalled = false;

/** Removes `dir` when this process exits or dies, even if nobody called stop(). */
export function removeOnExit(dir: string): () => void {
  foldersToRemove.add(dir);
  installExitHooks();
  const keep = removeDirIfDead(dir);
  return () => {
    foldersToRemove.delete(dir);
    keep();
  };
}

function killEverything(): void {
  for (const proc of liveProcesses) proc.kill();
  for (const dir of foldersToRemove) rmSync(dir, { recursive: true, force: true });
  foldersToRemove.clear();
}

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killEverything);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      killEverything();
      // Only this hook was listening: do what the signal would have done without it.
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
}
