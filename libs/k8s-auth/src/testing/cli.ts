#!/usr/bin/env node
import { existsSync, promises as fs } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { type ControlPlaneState, startControlPlane, stopControlPlaneByState } from './control-plane';
import { defaultCacheDirectory } from './control-plane-binaries';
import { ControlPlaneError } from './control-plane-error';

const USAGE = `Usage: k8s-auth-control-plane <up|down|env> [--state FILE]

  up     start etcd and kube-apiserver on loopback and leave them running
  down   stop what 'up' started (by pid) and remove its files
  env    print the shell line that points kubectl and 'nx serve' at it

  --state FILE  where 'up' records the pids and kubeconfig
                (default: control-plane.json in $K8S_AUTH_CACHE_DIR,
                 else $XDG_CACHE_HOME/k8s-auth, else ~/.cache/k8s-auth)`;

async function readState(file: string): Promise<ControlPlaneState | undefined> {
  if (!existsSync(file)) return undefined;
  return JSON.parse(await fs.readFile(file, 'utf8')) as ControlPlaneState;
}

function running(state: ControlPlaneState): boolean {
  return [state.pids.etcd, state.pids.kubeApiServer].every((pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  });
}

/** The word as a shell reads it back: quoted unless it is made of safe characters only. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const stateIndex = rest.indexOf('--state');
  const stateArg = stateIndex >= 0 ? rest[stateIndex + 1] : undefined;
  if (stateIndex >= 0 && !stateArg) {
    process.stderr.write(`--state needs a file.\n${USAGE}\n`);
    return 2;
  }
  const stateFile = resolve(stateArg ?? join(defaultCacheDirectory(), 'control-plane.json'));
  // The commands it prints must find the same state file, so they repeat a --state that was given.
  const cliCommand = (name: string) =>
    `k8s-auth-control-plane ${name}${stateArg ? ` --state ${shellWord(stateFile)}` : ''}`;
  const state = await readState(stateFile);

  switch (command) {
    case 'up': {
      if (state && running(state)) {
        process.stdout.write(`Already running at ${state.server}.\nexport KUBECONFIG=${state.kubeconfigPath}\n`);
        return 0;
      }
      if (state) await stopControlPlaneByState(state);
      const started = Date.now();
      const cp = await startControlPlane({ persistent: true });
      await fs.mkdir(dirname(stateFile), { recursive: true });
      await fs.writeFile(stateFile, JSON.stringify(cp.state, null, 2));
      process.stdout.write(
        `Control plane ready at ${cp.server} in ${((Date.now() - started) / 1000).toFixed(1)} s.\n` +
          `export KUBECONFIG=${cp.kubeconfigPath}\n` +
          `Stop it with: ${cliCommand('down')}\n`,
      );
      return 0;
    }
    case 'down': {
      if (!state) {
        process.stdout.write('No control plane recorded; nothing to stop.\n');
        return 0;
      }
      await stopControlPlaneByState(state);
      await fs.rm(stateFile, { force: true });
      process.stdout.write(`Stopped the control plane at ${state.server}.\n`);
      return 0;
    }
    case 'env': {
      if (!state || !running(state)) {
        process.stderr.write(`No control plane is running; start one with: ${cliCommand('up')}\n`);
        return 1;
      }
      process.stdout.write(`export KUBECONFIG=${state.kubeconfigPath}\n`);
      return 0;
    }
    default:
      process.stderr.write(`${USAGE}\n`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof ControlPlaneError ? err.message : String((err as Error)?.stack ?? err)}\n`);
    process.exit(1);
  },
);
