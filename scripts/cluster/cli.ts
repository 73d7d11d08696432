import { existsSync, promises as fs, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultCacheDirectory } from '@k8s-auth/nestjs/testing';
import { ensureClusterBinaries } from './binaries';
import { type ClusterState, startCluster, stopCluster } from './node';
import { deploySeed } from './seed';
import { testCluster } from './test';
import { smokeTest } from './smoke';

const USAGE = `Usage: npm run cluster -- <up|down|smoke|build>

  build  build every binary of the node from its pinned module (once; cached)
  up     start a control plane, containerd, a kubelet and kube-proxy on this machine (root)
  smoke  run the node's checks: a pod from a locally built image, a projected token read as uid 1000
  seed [projected|legacy]
         deploy the seed's overlay with app images made here, run the walkthrough, delete the api pod
  down   stop what 'up' started, by pid, and remove its files
  test   up, smoke, 'skaffold run' of both profiles (images from the Dockerfile, pushed to the node's registry),
         the walkthrough, the api's token, the store restarted under load, down; its last line sums it up`;

const STATE_FILE = join(defaultCacheDirectory(), 'cluster.json');
const say = (line: string) => process.stderr.write(`[cluster] ${line}\n`);

async function readState(): Promise<ClusterState | undefined> {
  if (!existsSync(STATE_FILE)) return undefined;
  return JSON.parse(await fs.readFile(STATE_FILE, 'utf8')) as ClusterState;
}

async function main(command: string | undefined): Promise<number> {
  switch (command) {
    case 'build': {
      const started = Date.now();
      const binaries = await ensureClusterBinaries(say);
      say(`binaries ready in ${Math.round((Date.now() - started) / 1000)} s:\n${JSON.stringify(binaries, null, 2)}`);
      return 0;
    }
    case 'up': {
      if (process.getuid?.() !== 0) {
        say('The node needs root (mounts, network namespaces, cgroups).');
        return 1;
      }
      if (await readState()) {
        say(`A node is recorded in ${STATE_FILE}: run 'npm run cluster -- down' first.`);
        return 1;
      }
      const binaries = await ensureClusterBinaries(say);
      const write = (state: ClusterState) => writeFileSync(STATE_FILE, JSON.stringify(state, null, 2));
      const state = await startCluster(binaries, say, write);
      process.stdout.write(
        `Node ready in ${state.timings['node Ready']} s at ${state.server}.\nexport KUBECONFIG=${state.kubeconfigPath}\n`,
      );
      return 0;
    }
    case 'smoke': {
      const state = await readState();
      if (!state) {
        say("No node recorded: run 'npm run cluster -- up' first.");
        return 1;
      }
      const times = await smokeTest(await ensureClusterBinaries(say), state, say);
      process.stdout.write(`smoke passed: ${JSON.stringify(times)}\n`);
      return 0;
    }
    case 'seed': {
      const state = await readState();
      if (!state) {
        say("No node recorded: run 'npm run cluster -- up' first.");
        return 1;
      }
      const result = await deploySeed(await ensureClusterBinaries(say), state, process.argv[3] ?? 'projected', say);
      process.stdout.write(`seed passed: ${JSON.stringify(result)}\n`);
      return 0;
    }
    case 'test': {
      if (await readState()) {
        say(`A node is recorded in ${STATE_FILE}: run 'npm run cluster -- down' first.`);
        return 1;
      }
      return testCluster(STATE_FILE, say);
    }
    case 'down': {
      const state = await readState();
      if (!state) {
        say('No node recorded; nothing to stop.');
        return 0;
      }
      await stopCluster(state, await ensureClusterBinaries(say), say);
      await fs.rm(STATE_FILE, { force: true });
      return 0;
    }
    default:
      process.stderr.write(`${USAGE}\n`);
      return 2;
  }
}

main(process.argv[2]).then(
  (code) => process.exit(code),
  (err: unknown) => {
    say(err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);
