import { promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';
import { freePort, ManagedProcess } from '@k8s-auth/nestjs/testing';

const ROOT = resolve(__dirname, '..', '..');
export const STORE_MAIN = join(ROOT, 'dist', 'apps', 'secret-store', 'main.js');

export interface RunningStore {
  name: string;
  url: string;
  pid: number;
  logFile: string;
  /** Stops the process by its own pid; with a CPU profile, lets it exit normally first so the profile is written. */
  stop(): Promise<void>;
}

/**
 * Starts the built secret store (`dist/apps/secret-store/main.js`) as a production process on a free loopback port,
 * as `e2e/src/demo-environment.ts` does, with its own kubeconfig. `LOG_LEVEL=warn`: the guarded route logs every call
 * at `log` level, which would measure the console, not the guard.
 */
export async function startStore(options: {
  name: string;
  dir: string;
  kubeconfig: string;
  env?: Record<string, string>;
  /** Writes a V8 CPU profile (`node --cpu-prof`) into this folder when the store stops. */
  cpuProfileDir?: string;
}): Promise<RunningStore> {
  await fs.access(STORE_MAIN).catch(() => {
    throw new Error(`${STORE_MAIN} is missing: build first (npx nx run-many -t build -p api secret-store)`);
  });
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const logFile = join(options.dir, `${options.name}.log`);
  const profiling = options.cpuProfileDir
    ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`, '--require', join(__dirname, 'exit-on-sigusr2.js')]
    : [];
  const child = new ManagedProcess(options.name, process.execPath, [...profiling, STORE_MAIN], {
    logFile,
    env: {
      ...process.env,
      NODE_ENV: 'production',
      LISTEN_ADDR: `127.0.0.1:${port}`,
      KUBECONFIG: options.kubeconfig,
      LOG_LEVEL: 'warn',
      NO_COLOR: '1',
      ...options.env,
    },
  });
  await child.waitUntilReady(async () => (await fetch(`${url}/public/ping`)).ok, 30_000);
  const pid = child.pid ?? 0;
  return {
    name: options.name,
    url,
    pid,
    logFile,
    stop: async () => {
      if (options.cpuProfileDir && child.running) {
        process.kill(pid, 'SIGUSR2');
        await Promise.race([child.whenExited(), new Promise((r) => setTimeout(r, 10_000))]);
      }
      await child.stop(5_000);
    },
  };
}
