import { ManagedProcess } from '@k8s-auth/internal/testing';
import { closeSync, openSync, promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '..', '..', '..', '..');
const LISTENING = /listening on (http:\/\/(?:\[[0-9a-fA-F:.]+\]|[\w.-]+):(\d+))/;
const GRPC_LISTENING = /grpc listening on ((?:\[[0-9a-fA-F:.]+\]|[\w.-]+):\d+)/;

/** The services this repository builds into `dist/apps/<app>/main.js`. */
export type BuiltApp = 'api' | 'secret-store';

export interface BuiltServiceOptions {
  app: BuiltApp;
  /** Names the process in errors and its log file. @default app */
  name?: string;
  /** Where its log goes: `<name>.log`, or `<name>-2.log`, `-3`… if taken, so a restart never reads an old address. */
  logDir: string;
  /**
   * Added to this process's environment, after `LISTEN_ADDR=127.0.0.1:0` and `GRPC_LISTEN_ADDR=127.0.0.1:0` (free
   * loopback ports) and `NO_COLOR=1`.
   * `LOG_LEVEL` is the service's own default (`log`) unless given; `undefined` removes a variable.
   */
  env?: Record<string, string | undefined>;
  /** Node's own options, before the script (e.g. `--cpu-prof`). */
  nodeArgs?: string[];
  /** A CPU list for `taskset -c` (e.g. `'1'` or `'0,1'`): the process runs on those CPUs only. */
  cpus?: string;
  /** The script to run. @default `dist/apps/<app>/main.js` of this repository */
  main?: string;
  /** How long it may take to log `listening on`. @default 30 000 */
  readyTimeoutMs?: number;
  /** How long `stop()` waits after SIGTERM before SIGKILL. @default 10 000 */
  stopGraceMs?: number;
}

export interface BuiltService {
  name: string;
  /** As the service logged it, e.g. `http://127.0.0.1:40123`. */
  url: string;
  /** Its gRPC listener, `127.0.0.1:40124`, if it has one (the secret store). */
  grpcTarget?: string;
  port: number;
  pid: number;
  process: ManagedProcess;
  logFile: string;
  /** SIGTERM to its process group, SIGKILL after `stopGraceMs`. */
  stop(): Promise<void>;
}

/**
 * Starts a built service as a real process in its own process group (stopped by its pid when this process exits) and
 * resolves once it logs `listening on http://host:port` (`runService` does at every `LOG_LEVEL`), with the address it
 * got. Fails with the tail of its log if it stops or stays silent, and says what to build if the script is missing.
 */
export async function startBuiltService(options: BuiltServiceOptions): Promise<BuiltService> {
  const name = options.name ?? options.app;
  const main = options.main ?? join(ROOT, 'dist', 'apps', options.app, 'main.js');
  await fs.access(main).catch(() => {
    throw new Error(`${main} is missing: build it first (npx nx run-many -t build -p api secret-store)`);
  });
  await fs.mkdir(options.logDir, { recursive: true });
  const logFile = claimLogFile(options.logDir, name);
  const command = [process.execPath, ...(options.nodeArgs ?? []), main];
  const [binary, ...args] = options.cpus ? ['taskset', '-c', options.cpus, ...command] : command;
  const child = new ManagedProcess(name, binary, args, {
    logFile,
    env: { ...process.env, LISTEN_ADDR: '127.0.0.1:0', GRPC_LISTEN_ADDR: '127.0.0.1:0', NO_COLOR: '1', ...options.env },
  });
  const listening = async () => LISTENING.exec(await fs.readFile(logFile, 'utf8'));
  try {
    await child.waitUntilReady(async () => (await listening()) !== null, options.readyTimeoutMs ?? 30_000);
  } catch (err) {
    await child.stop(1000);
    throw err;
  }
  const [, url, port] = (await listening()) ?? [];
  const grpcTarget = GRPC_LISTENING.exec(await fs.readFile(logFile, 'utf8'))?.[1];
  return {
    name,
    url,
    ...(grpcTarget ? { grpcTarget } : {}),
    port: Number(port),
    pid: child.pid ?? 0,
    process: child,
    logFile,
    stop: () => child.stop(options.stopGraceMs ?? 10_000),
  };
}

/** Creates the first of `<name>.log`, `<name>-2.log`, … that does not exist yet. */
function claimLogFile(dir: string, name: string): string {
  for (let n = 1; ; n++) {
    const file = join(dir, n === 1 ? `${name}.log` : `${name}-${n}.log`);
    try {
      closeSync(openSync(file, 'wx'));
      return file;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}
