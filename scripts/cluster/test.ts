import { existsSync, promises as fs, writeFileSync } from 'node:fs';
import { ensureClusterBinaries } from './binaries';
import { type ClusterState, startCluster, stopCluster } from './node';
import {
  apiTokenReadableBy,
  deleteApiPodUntilStoreRefuses,
  deleteApiPodUntilTokenRefused,
  restartStoreUnderLoad,
  walkthrough,
} from './seed';
import { baseImages, ensureSkaffold, skaffoldRun } from './skaffold';
import { smokeTest } from './smoke';

const EXPECTED_ANSWERS = { 'api -> store': 200, 'data-store -> store': 403, 'no token -> store': 401 };
const DOCKER = process.env['DOCKER'] ?? '/usr/bin/docker';

const seconds = (since: number) => Math.round((Date.now() - since) / 100) / 10;

/**
 * `npm run test:cluster`: a node, `skaffold run` of the projected profile then of the legacy one, the checks through
 * the Services, and `down` whatever happens. Verdicts are answers and decisions only; times and the requests lost
 * during the store's restart are reported, never judged. The last line counts the checks (for .ci/run) and gives the figures.
 */
export async function testCluster(stateFile: string, say: (line: string) => void): Promise<number> {
  const binaries = await ensureClusterBinaries(say);
  const skaffold = await ensureSkaffold(say);
  say('base images for the Dockerfile (scripts/images/base-image.sh)');
  const env = await baseImages(DOCKER);
  const write = (state: ClusterState) => writeFileSync(stateFile, JSON.stringify(state, null, 2));
  const checks: Array<[string, boolean]> = [];
  const check = (name: string, ok: boolean) => {
    checks.push([name, ok]);
    say(`${ok ? 'passed' : 'FAILED'}: ${name}`);
  };
  const figures: string[] = [];
  // The summary comes after 'down', so that it is the last line of the output.
  let failed = 0;
  try {
    const state = await startCluster(binaries, say, write);
    figures.push(`node Ready in ${state.timings['node Ready']} s, DNS in ${state.timings['DNS Ready']} s`);
    await smokeTest(binaries, state, say);
    check('smoke', true);

    for (const profile of ['projected', 'legacy']) {
      const profiles = profile === 'legacy' ? ['legacy', 'base-images'] : ['base-images'];
      const started = Date.now();
      await skaffoldRun(skaffold, binaries, state, profiles, env);
      const rollout = seconds(started);
      const answers = await walkthrough(binaries, state);
      check(
        `${profile}: walkthrough ${JSON.stringify(answers)}`,
        JSON.stringify(answers) === JSON.stringify(EXPECTED_ANSWERS),
      );
      figures.push(`${profile}: skaffold run ${rollout} s, walkthrough ${JSON.stringify(answers)}`);
      if (profile !== 'projected') continue;

      const file = await apiTokenReadableBy(binaries, state);
      check(`projected: the api's token file readable by uid ${file.uid} (${file.owner}, ${file.mode})`, file.readable);
      const revoked = await deleteApiPodUntilTokenRefused(binaries, state);
      check("projected: the deleted api pod's token refused by TokenReview", true);
      figures.push(`token refused ${revoked} s after the pod's deletion`);
      const restart = await restartStoreUnderLoad(binaries, state);
      figures.push(`store restart ${restart.seconds} s, ${restart.failed} of ${restart.requests} requests failed`);
      const watched = await deleteApiPodUntilStoreRefuses(binaries, state);
      check("projected: the deleted api pod's token refused by the store under local+watch", true);
      figures.push(`local+watch: ${watched.status} ${watched.seconds} s after the pod's deletion`);
    }
  } catch (err) {
    say(`FAILED: ${err instanceof Error ? err.message : String(err)}`);
    failed++;
  } finally {
    if (existsSync(stateFile)) {
      await stopCluster(JSON.parse(await fs.readFile(stateFile, 'utf8')) as ClusterState, binaries, say);
    }
    await fs.rm(stateFile, { force: true });
  }
  const passed = checks.filter(([, ok]) => ok).length;
  failed += checks.length - passed;
  process.stdout.write(`cluster: ${passed} passed, ${failed} failed; ${figures.join('; ')}\n`);
  return failed === 0 ? 0 : 1;
}
