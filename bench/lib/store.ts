import { join } from 'node:path';
import { type BuiltService, startBuiltService } from '@k8s-auth/service-runtime/testing';

export type RunningStore = BuiltService;

/**
 * Starts the built secret store (`dist/apps/secret-store/main.js`) as a production process on a free loopback port,
 * with its own kubeconfig, its log in `dir`. `LOG_LEVEL=warn`: the guarded route logs every call at `log` level, which
 * would measure the console, not the guard. With a CPU profile, `stop()` lets it exit normally first (SIGUSR2, see
 * exit-on-sigusr2.js) so that the profile is written.
 */
export async function startStore(options: {
  name: string;
  dir: string;
  kubeconfig: string;
  env?: Record<string, string>;
  /** Writes a V8 CPU profile (`node --cpu-prof`) into this folder when the store stops. */
  cpuProfileDir?: string;
  /** A CPU list for `taskset -c`: the store runs on those CPUs only. */
  cpus?: string;
}): Promise<RunningStore> {
  const profiling = options.cpuProfileDir
    ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`, '--require', join(__dirname, 'exit-on-sigusr2.js')]
    : [];
  const store = await startBuiltService({
    app: 'secret-store',
    name: options.name,
    logDir: options.dir,
    nodeArgs: profiling,
    cpus: options.cpus,
    stopGraceMs: 5_000,
    env: { NODE_ENV: 'production', KUBECONFIG: options.kubeconfig, LOG_LEVEL: 'warn', ...options.env },
  });
  return {
    ...store,
    stop: async () => {
      if (options.cpuProfileDir && store.process.running) {
        process.kill(store.pid, 'SIGUSR2');
        await Promise.race([store.process.whenExited(), new Promise((r) => setTimeout(r, 10_000))]);
      }
      await store.stop();
    },
  };
}
