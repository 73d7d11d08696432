import { execFile } from 'node:child_process';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { existsSync, promises as fs, readdirSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import {
  bindClusterRole,
  type ControlPlane,
  countApiServerRequests,
  createClusterObjects,
  createPod,
  createServiceAccount,
  kubeConfigFor,
  type ServiceAccountRef,
  serviceAccountClaims,
  startControlPlane,
} from '@k8s-auth/nestjs/testing';
import { KubeClient, mintTokens, signTokens } from './lib/kube';
import { grpcLoad } from './lib/grpc-load';
import {
  ensureKubeRbacProxy,
  kubeRbacProxyVersion,
  type RunningProxy,
  startKubeRbacProxy,
} from './lib/kube-rbac-proxy';
import { combine, load, type LoadResult } from './lib/load';
import { breakdown, summarizeProfile } from './lib/profile';
import { measureRevocation, podBoundToken, quantiles, untilServedFromWatches } from './lib/revocation';
import { runScript } from './lib/script';
import { type RunningStore, startStore } from './lib/store';
import type { BareReviewsInput, BareReviewsOutput } from './lib/bare-reviews';
import type { VerifyCostInput, VerifyCostOutput } from './lib/verify-cost';
import type { MemoryInput, MemoryOutput } from './memory';

// `npm run bench`: what the guard costs, against an unguarded twin route and against kube-rbac-proxy, on a real
// control plane and the built secret store, driven over loopback by autocannon from this process. Figures are CPU per
// request of the measured process and ratios within one run. `--quick` shrinks every phase (a smoke test);
// `--profile` writes CPU profiles of the stores and prints where the time went; `--phases=warm,cold` runs some.
// The grpc phase drives the store's gRPC listener with grpc-js instead, the same A/B as warm.

const execFileAsync = promisify(execFile);
const ROOT = resolve(__dirname, '..');
const args = new Set(process.argv.slice(2));
const QUICK = args.has('--quick');
const PROFILE = args.has('--profile');
const PHASES = new Set(
  (
    process.argv.find((a) => a.startsWith('--phases='))?.slice('--phases='.length) ??
    'warm,grpc,krp,cold,stampede,local,watch,memory'
  )
    .split(',')
    .map((p) => p.trim()),
);
const want = (phase: string) => PHASES.has(phase);

const API: ServiceAccountRef = { namespace: 'api', name: 'api' };
const STORE: ServiceAccountRef = { namespace: 'secret-store', name: 'secret-store' };
const AUDIENCES = ['secret-store'];

// The guarded route and its unguarded twin answer the same 'pong' (apps/secret-store): only the guard differs.
const GUARDED = '/ping';
const UNGUARDED = '/public/ping';

const S = {
  // Many short rounds in alternating order: a burst of other work on the machine then spoils one pair, not a phase.
  warmRounds: QUICK ? 2 : 12,
  warmSeconds: QUICK ? 1.5 : 2,
  krpRounds: QUICK ? 2 : 8,
  connections: 16,
  coldTokens: QUICK ? 500 : 3000,
  // Reviewed before the cold phase measures, by the store and by the floor's client alike: JIT, connections.
  coldWarmUpTokens: QUICK ? 200 : 1000,
  krpColdTokens: QUICK ? 300 : 1500,
  bareReviews: QUICK ? 500 : 2000,
  stampede: 200,
  // Requests per run of each side. Tokens come from a pool three times the default cache bound (10 000), drawn in
  // turn: between two uses of one token, more than the bound of other tokens went through the cache, so every token
  // the guarded route sees is new to it.
  localRunRequests: QUICK ? 2000 : 10_000,
  localTokenPool: 30_000,
  localRounds: QUICK ? 2 : 8,
  // The library alone, in a process of its own: more tokens than the default cache bound, so that each is a miss.
  verifyCostTokens: QUICK ? 12_000 : 20_000,
  verifyCostRounds: QUICK ? 2 : 3,
  revocationRounds: QUICK ? 20 : 50,
  revocationPollMs: 20,
  memoryTokens: QUICK ? 20_000 : 100_000,
  // 1.5 times the default cache bound (10 000): the cache is full and has turned over by then.
  memoryCheckpoint: 15_000,
  memoryConcurrency: 128,
  memoryMaxSeconds: QUICK ? 60 : 280,
};

/**
 * The heap growth at `count` tokens: the growth measured at the end, plus, for the tokens the time budget left out,
 * the growth per token between the checkpoint (the cache full) and the end. NaN when tokens are missing and none went
 * through after the checkpoint: then nothing says how the heap goes on past the cache bound.
 */
function projectHeap(memory: MemoryOutput, count: number): { perThousandKb: number; projectedMb: number } {
  const after = memory.tokens - memory.checkpointTokens;
  const perToken = after > 0 ? Math.max(0, (memory.afterMb - memory.checkpointMb) / after) : NaN;
  const missing = count - memory.tokens;
  return {
    perThousandKb: perToken * 1000 * 1024,
    projectedMb: missing > 0 ? memory.growthMb + perToken * missing : memory.growthMb,
  };
}

interface Row {
  phase: string;
  metric: string;
  value: string;
  target?: string;
  pass?: boolean;
}

const rows: Row[] = [];
const notes: string[] = [];
const say = (line: string) => process.stdout.write(`${line}\n`);
const fixed = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
/** Microseconds of the measured server's CPU (all threads) per request. */
const cpuUs = (r: LoadResult) => (r.serverCpu / r.rps) * 1e6;

/** Where each process runs: the load generator and the control plane on one CPU, the measured servers on another. */
interface Pinning {
  driver: string;
  servers: string;
}

async function pin(pid: number, list: string): Promise<void> {
  // -a: every thread (Go's and libuv's included).
  await execFileAsync('taskset', ['-a', '-p', '-c', list, String(pid)]);
}

async function main(): Promise<void> {
  const started = Date.now();
  const cores = cpus().length;
  say(
    `bench: ${cores} cores (${cpus()[0]?.model ?? '?'}), ${Math.round(totalmem() / 2 ** 30)} GiB, ` +
      `node ${process.version}${QUICK ? ', --quick' : ''}${PROFILE ? ', --profile' : ''}`,
  );
  const pinning: Pinning | undefined = cores >= 2 ? { driver: '0', servers: '1' } : undefined;
  if (pinning) {
    await pin(process.pid, pinning.driver);
    say(
      `pinned with taskset: load generator and control plane on CPU ${pinning.driver}, ` +
        `secret stores and kube-rbac-proxy on CPU ${pinning.servers}`,
    );
  } else {
    say('one CPU: nothing pinned; the load generator and the servers share it');
  }
  const dir = await fs.mkdtemp(join(tmpdir(), 'k8s-auth-bench-'));
  // A second key the API server trusts, ECDSA P-256, to sign the memory phase's 100 000 tokens quickly.
  const ecKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ecPublic = join(dir, 'bench-key.pub');
  await fs.writeFile(ecPublic, ecKey.publicKey.export({ type: 'spki', format: 'pem' }));

  let cp: ControlPlane | undefined;
  const stores: RunningStore[] = [];
  const clients: KubeClient[] = [];
  let proxy: RunningProxy | undefined;
  const figures = {
    warmAddedCpuUs: Number.NaN,
    grpcWarmAddedCpuUs: Number.NaN,
    krpRpsRatio: Number.NaN,
    krpP99Ratio: Number.NaN,
    coldCpuRatio: Number.NaN,
    localVerifyRatio: Number.NaN,
    /** Store CPU local verification adds per new token (the local phase), against which local+watch is set. */
    localAddedCpuUs: Number.NaN,
    watchAddedCpuUs: Number.NaN,
    revocationP99Ms: Number.NaN,
    stampedeReviews: Number.NaN,
    heapGrowthMb: Number.NaN,
  };
  try {
    const krpBinary = want('krp') || want('cold') ? await ensureKubeRbacProxy(say) : undefined;
    say('starting kube-apiserver and etcd on loopback...');
    cp = await startControlPlane({ apiServerArgs: [`--service-account-key-file=${ecPublic}`] });
    const signingKey = cp.serviceAccountSigningKey;
    if (!signingKey || !cp.state) throw new Error('the benchmark needs a control plane it starts itself');
    if (pinning) for (const pid of Object.values(cp.state.pids)) await pin(pid, pinning.driver);
    const apiUid = (await createServiceAccount(cp.kubeConfig, API)).uid;
    await createServiceAccount(cp.kubeConfig, STORE);
    await bindClusterRole(cp.kubeConfig, STORE, 'system:auth-delegator');
    const pod = await createPod(cp.kubeConfig, API, 'api-0');
    const storeKubeConfig = await kubeConfigFor(cp.kubeConfig, STORE, 24 * 3600);
    const kubeconfig = join(dir, 'secret-store.kubeconfig');
    await fs.writeFile(kubeconfig, storeKubeConfig.exportConfig());

    // Profiles outlive the run, in the git-ignored tmp/ of the repository.
    const profileDir = PROFILE
      ? join(ROOT, 'tmp', 'bench-profiles', new Date().toISOString().replace(/[:.]/g, '-'))
      : undefined;
    const profileOf = async (name: string) => {
      if (!profileDir) return undefined;
      await fs.mkdir(join(profileDir, name), { recursive: true });
      return join(profileDir, name);
    };
    const storeOptions = { dir, kubeconfig, cpus: pinning?.servers };
    const reviewStore = await startStore({
      name: 'store-review',
      cpuProfileDir: await profileOf('review'),
      ...storeOptions,
    });
    stores.push(reviewStore);
    const localStore = await startStore({
      name: 'store-local',
      env: { VERIFICATION: 'local' },
      cpuProfileDir: await profileOf('local'),
      ...storeOptions,
    });
    stores.push(localStore);
    let watchStore: RunningStore | undefined;
    if (want('watch')) {
      // The store watches api/api and its pods with its own credentials: k8s/base's Role and RoleBinding for it.
      const rbacDir = join(dir, 'watch-rbac');
      await fs.mkdir(rbacDir);
      await fs.copyFile(
        join(ROOT, 'k8s', 'base', 'secret-store-watch-rbac.yaml'),
        join(rbacDir, 'secret-store-watch-rbac.yaml'),
      );
      await createClusterObjects(cp.kubeConfig, rbacDir);
      watchStore = await startStore({
        name: 'store-watch',
        env: { VERIFICATION: 'local+watch' },
        cpuProfileDir: await profileOf('watch'),
        ...storeOptions,
      });
      stores.push(watchStore);
    }
    if (krpBinary) {
      proxy = await startKubeRbacProxy({
        binary: krpBinary,
        dir,
        kubeconfig,
        upstream: reviewStore.url,
        audience: AUDIENCES[0],
        user: `system:serviceaccount:${API.namespace}:${API.name}`,
        path: UNGUARDED,
        cpus: pinning?.servers,
      });
      say(`kube-rbac-proxy ${kubeRbacProxyVersion()}: ${proxy.settings}`);
    }

    // --- tokens ---------------------------------------------------------------------------------------------------
    const mintedCount = S.coldTokens + S.krpColdTokens + S.bareReviews + 2 * S.coldWarmUpTokens + 2;
    const admin = await KubeClient.create(cp.kubeConfig, 32);
    clients.push(admin);
    let t = Date.now();
    const minted = await mintTokens(admin, API, {
      count: mintedCount,
      audiences: AUDIENCES,
      pod,
      concurrency: 16,
    });
    const warmToken = minted.pop() as string;
    const stampedeToken = minted.pop() as string;
    const coldTokens = minted.splice(0, S.coldTokens);
    const krpColdTokens = minted.splice(0, S.krpColdTokens);
    const bareTokens = minted.splice(0, S.bareReviews + S.coldWarmUpTokens);
    const coldWarmUpTokens = minted.splice(0, S.coldWarmUpTokens);
    say(`minted ${mintedCount} tokens in ${fixed((Date.now() - t) / 1000, 1)} s`);
    t = Date.now();
    const claims = serviceAccountClaims({
      issuer: cp.issuer,
      namespace: API.namespace,
      serviceAccount: API.name,
      serviceAccountUid: apiUid,
      audiences: AUDIENCES,
      pod,
      expirationSeconds: 3600,
    });
    const localTokens = await signTokens(signingKey, 'RS256', claims, S.localTokenPool);
    say(
      `signed ${localTokens.length} RS256 tokens with the API server's key in ${fixed((Date.now() - t) / 1000, 1)} s`,
    );

    // The review store's `path`, for `S.warmSeconds`, with one cached token in every request: the warm phase's A/B,
    // and the unguarded route of the cold phase's floor.
    const withWarmToken = (path: string, rate?: number) =>
      load({
        url: reviewStore.url,
        path,
        connections: S.connections,
        duration: S.warmSeconds,
        maxSeconds: S.warmSeconds + 10,
        rate,
        token: warmToken,
        serverPid: reviewStore.pid,
        serverCpuSeconds: metricsCpuOf(reviewStore),
      });

    // --- warm: one cached token, guarded route against its unguarded twin ------------------------------------------
    if (want('warm')) {
      say(`warm: GET ${GUARDED} with one cached token vs GET ${UNGUARDED}, ${S.warmRounds} rounds...`);
      // Both routes get the same request, token header included, at the same rate: only the guard's work differs.
      const { pairs, rate, unpacedRpsRatio } = await pairedRounds(
        S.warmRounds,
        withWarmToken,
        { A: UNGUARDED, B: GUARDED },
        {
          sameRate: true,
        },
      );
      const unguarded = combine(pairs.map((p) => p.a));
      const guarded = combine(pairs.map((p) => p.b));
      const added = pairs.map((p) => cpuUs(p.b) - cpuUs(p.a));
      figures.warmAddedCpuUs = median(added);
      rows.push(
        { phase: 'warm', metric: `unguarded GET ${UNGUARDED}, ${rate} req/s`, value: describeLoad(unguarded) },
        { phase: 'warm', metric: `guarded GET ${GUARDED}, cached token, ${rate} req/s`, value: describeLoad(guarded) },
        {
          phase: 'warm',
          metric: 'store CPU the guard adds per cached request (median of rounds)',
          value: `${fixed(figures.warmAddedCpuUs, 1)} µs (rounds ${list(added, 1)})`,
          target: '<= 10 µs',
          pass: figures.warmAddedCpuUs <= 10,
        },
        {
          phase: 'warm',
          metric: 'requests/s, guarded over unguarded, each as fast as it is answered (warm-up runs)',
          value: fixed(unpacedRpsRatio, 3),
        },
      );
      failures('warm', [unguarded, guarded]);
    }

    // --- grpc: the warm A/B over gRPC, Ping against PublicPing of the same store ------------------------------------
    if (want('grpc')) {
      const target = reviewStore.grpcTarget;
      if (!target) throw new Error('the secret store logged no gRPC listener');
      say(`grpc: Ping with one cached token vs PublicPing at ${target}, ${S.warmRounds} rounds...`);
      const run = (method: string, callRate?: number) =>
        grpcLoad({
          target,
          method: method as 'Ping' | 'PublicPing',
          concurrency: S.connections,
          duration: S.warmSeconds,
          maxSeconds: S.warmSeconds + 10,
          rate: callRate,
          token: warmToken,
          serverPid: reviewStore.pid,
          serverCpuSeconds: metricsCpuOf(reviewStore),
        });
      // The store's gRPC path is cold (nothing called it yet): a run of each first, so that the warm-ups which set the
      // rate are not the first calls.
      for (const method of ['PublicPing', 'Ping']) await run(method);
      // Both methods get the same metadata, token included, at the same rate: only the guard's work differs.
      const { pairs, rate, unpacedRpsRatio } = await pairedRounds(
        S.warmRounds,
        run,
        { A: 'PublicPing', B: 'Ping' },
        { sameRate: true },
      );
      const unguarded = combine(pairs.map((p) => p.a));
      const guarded = combine(pairs.map((p) => p.b));
      const added = pairs.map((p) => cpuUs(p.b) - cpuUs(p.a));
      figures.grpcWarmAddedCpuUs = median(added);
      const http = figures.warmAddedCpuUs;
      rows.push(
        { phase: 'grpc', metric: `unguarded PublicPing, ${rate} calls/s`, value: describeLoad(unguarded) },
        { phase: 'grpc', metric: `guarded Ping, cached token, ${rate} calls/s`, value: describeLoad(guarded) },
        {
          phase: 'grpc',
          metric: 'store CPU the guard adds per cached gRPC call (median of rounds)',
          value:
            `${fixed(figures.grpcWarmAddedCpuUs, 1)} µs (rounds ${list(added, 1)}); ` +
            `HTTP ${fixed(http, 1)} µs, ratio ${fixed(figures.grpcWarmAddedCpuUs / http, 2)}`,
          target: '<= 1.5 x HTTP',
          pass: Number.isFinite(http) ? figures.grpcWarmAddedCpuUs <= 1.5 * http : undefined,
        },
        {
          phase: 'grpc',
          metric: 'calls/s, guarded over unguarded, each as fast as it is answered (warm-up runs)',
          value: fixed(unpacedRpsRatio, 3),
        },
      );
      failures('grpc', [unguarded, guarded]);
    }

    // --- kube-rbac-proxy: the peer a team would put in front of the same route -------------------------------------
    if (want('krp') && proxy) {
      const krp = proxy;
      say(
        `kube-rbac-proxy: guarded route vs kube-rbac-proxy -> unguarded route, one cached token, ${S.krpRounds} rounds...`,
      );
      const run = (path: string) =>
        load({
          url: path === 'krp' ? krp.url : reviewStore.url,
          path: path === 'krp' ? UNGUARDED : GUARDED,
          connections: S.connections,
          duration: S.warmSeconds,
          maxSeconds: S.warmSeconds + 10,
          token: warmToken,
          serverPid: path === 'krp' ? krp.pid : reviewStore.pid,
          serverCpuSeconds: path === 'krp' ? undefined : metricsCpuOf(reviewStore),
        });
      const { pairs } = await pairedRounds(S.krpRounds, run, { A: 'krp', B: 'guard' });
      const viaProxy = combine(pairs.map((p) => p.a));
      const guarded = combine(pairs.map((p) => p.b));
      const rpsRatios = pairs.map((p) => p.b.rps / p.a.rps);
      const p99Ratios = pairs.map((p) => p.b.p99 / p.a.p99);
      figures.krpRpsRatio = median(rpsRatios);
      figures.krpP99Ratio = median(p99Ratios);
      rows.push(
        { phase: 'krp', metric: `kube-rbac-proxy -> GET ${UNGUARDED}`, value: describeLoad(viaProxy, 'proxy') },
        { phase: 'krp', metric: `guarded GET ${GUARDED}`, value: describeLoad(guarded) },
        {
          phase: 'krp',
          metric: 'requests/s, guard over kube-rbac-proxy (median)',
          value: `${fixed(figures.krpRpsRatio, 2)} (rounds ${list(rpsRatios)})`,
          target: '>= 3',
          pass: figures.krpRpsRatio >= 3,
        },
        {
          phase: 'krp',
          metric: 'p99, guard over kube-rbac-proxy (median)',
          value: `${fixed(figures.krpP99Ratio, 2)} (rounds ${list(p99Ratios)})`,
          target: '<= 0.35',
          pass: figures.krpP99Ratio <= 0.35,
        },
      );
      failures('krp', [viaProxy, guarded]);
    }

    // --- cold: every token new ------------------------------------------------------------------------------------
    if (want('cold')) {
      say(
        `cold: ${S.coldTokens} distinct tokens, ${S.connections} connections; a bare TokenReview loop for the floor...`,
      );
      const coldLoad = (tokens: string[]) => {
        let next = 0;
        return load({
          url: reviewStore.url,
          path: GUARDED,
          connections: S.connections,
          amount: tokens.length,
          maxSeconds: 120,
          nextToken: () => tokens[next++ % tokens.length],
          serverPid: reviewStore.pid,
          serverCpuSeconds: metricsCpuOf(reviewStore),
        });
      };
      await coldLoad(coldWarmUpTokens);
      const reviewsBefore = await countApiServerRequests(cp.kubeConfig, 'tokenreviews');
      const cold = await coldLoad(coldTokens);
      const coldReviews = (await countApiServerRequests(cp.kubeConfig, 'tokenreviews')) - reviewsBefore;
      failures('cold', [cold]);
      // The floor, under the cold run's conditions (same CPU, same rate, a warmed-up process): the same TokenReviews
      // from a bare Node client (keep-alive HTTPS, as many in flight as the load's connections) in a process of its
      // own, plus the unguarded route.
      const tokensFile = join(dir, 'bare-tokens.json');
      await fs.writeFile(tokensFile, JSON.stringify(bareTokens));
      const bare = await runScript<BareReviewsInput, BareReviewsOutput>(
        'lib/bare-reviews.ts',
        'BENCH_BARE_INPUT',
        {
          kubeconfig,
          tokensFile,
          warmUp: S.coldWarmUpTokens,
          audiences: AUDIENCES,
          concurrency: S.connections,
          rate: Math.round(cold.rps),
        },
        { cpus: pinning?.servers },
      );
      const bareUs = bare.cpuUs;
      const pingAtRate = cpuUs(await withWarmToken(UNGUARDED, Math.round(cold.rps)));
      const pingAtFullSpeed = cpuUs(await withWarmToken(UNGUARDED));
      figures.coldCpuRatio = cpuUs(cold) / (bareUs + pingAtRate);
      rows.push(
        {
          phase: 'cold',
          metric: `${S.coldTokens} distinct tokens through the guard`,
          value: `${describeLoad(cold)}; ${coldReviews} TokenReviews`,
          target: '1 review per token',
          pass: coldReviews === S.coldTokens,
        },
        {
          phase: 'cold',
          metric: 'store CPU per new token',
          value:
            `${fixed(cpuUs(cold), 0)} µs (floor: bare TokenReview ${fixed(bareUs, 0)} µs at ${fixed(bare.rps, 0)}/s + ` +
            `unguarded route at ${fixed(cold.rps, 0)} req/s ${fixed(pingAtRate, 0)} µs; ` +
            `as fast as it is answered ${fixed(pingAtFullSpeed, 0)} µs, ratio ${fixed(cpuUs(cold) / (bareUs + pingAtFullSpeed), 2)})`,
        },
        {
          phase: 'cold',
          metric: 'store CPU per new token over the floor',
          value: fixed(figures.coldCpuRatio, 2),
          target: '<= 1.3',
          pass: figures.coldCpuRatio <= 1.3,
        },
      );
      if (proxy) {
        const krp = proxy;
        let nextKrp = 0;
        const storeCpu = metricsCpuOf(reviewStore);
        const storeBefore = await storeCpu();
        const viaProxy = await load({
          url: krp.url,
          path: UNGUARDED,
          connections: S.connections,
          amount: S.krpColdTokens,
          maxSeconds: 120,
          nextToken: () => krpColdTokens[nextKrp++ % krpColdTokens.length],
          serverPid: krp.pid,
        });
        const storeUs = (((await storeCpu()) - storeBefore) / viaProxy.ok) * 1e6;
        failures('cold, kube-rbac-proxy', [viaProxy]);
        rows.push({
          phase: 'cold',
          metric: `${S.krpColdTokens} distinct tokens through kube-rbac-proxy`,
          value: `${describeLoad(viaProxy, 'proxy')}; CPU per new token: proxy ${fixed(cpuUs(viaProxy), 0)} µs + store ${fixed(storeUs, 0)} µs`,
        });
      }
    }

    // --- stampede -------------------------------------------------------------------------------------------------
    if (want('stampede')) {
      say(`stampede: ${S.stampede} concurrent requests with one new token...`);
      const adminConfig = cp.kubeConfig;
      const stampede = await runStampede(reviewStore.url, stampedeToken, S.stampede, () =>
        countApiServerRequests(adminConfig, 'tokenreviews'),
      );
      figures.stampedeReviews = stampede.reviews;
      rows.push({
        phase: 'stampede',
        metric: `${S.stampede} concurrent requests, one new token`,
        value: `${stampede.ok} x 200, ${stampede.reviews} TokenReview(s)`,
        target: 'exactly 1',
        pass: stampede.reviews === 1 && stampede.ok === S.stampede,
      });
    }

    // --- local: every token new, verified in process ----------------------------------------------------------------
    if (want('local')) {
      say(
        `local: every token new to the cache, ${S.localRounds} rounds of ${S.localRunRequests} requests per route...`,
      );
      const reviewsBefore = await countApiServerRequests(cp.kubeConfig, 'tokenreviews');
      const { pairs, rate } = await newTokenRounds(localStore, localTokens);
      const localReviews = (await countApiServerRequests(cp.kubeConfig, 'tokenreviews')) - reviewsBefore;
      const added = pairs.map((p) => cpuUs(p.b) - cpuUs(p.a));
      const addedUs = median(added);
      figures.localAddedCpuUs = addedUs;
      // One raw RS256 verification, and the guard's authenticator alone, measured on the stores' CPU in a process of
      // their own: what the store adds beyond the authenticator is the request around it.
      const tokensFile = join(dir, 'local-tokens.json');
      await fs.writeFile(tokensFile, JSON.stringify(localTokens.slice(0, S.verifyCostTokens)));
      const alone = await runScript<VerifyCostInput, VerifyCostOutput>(
        'lib/verify-cost.ts',
        'BENCH_VERIFY_INPUT',
        {
          kubeconfig,
          tokensFile,
          publicKeyPem: createPublicKey(signingKey).export({ type: 'spki', format: 'pem' }).toString(),
          audiences: AUDIENCES,
          rounds: S.verifyCostRounds,
        },
        { cpus: pinning?.servers },
      );
      const rawUs = median(alone.raw);
      figures.localVerifyRatio = addedUs / rawUs;
      const unguarded = combine(pairs.map((p) => p.a));
      const guarded = combine(pairs.map((p) => p.b));
      failures('local', [unguarded, guarded]);
      rows.push(
        ...newTokenRows('local', unguarded, guarded, rate),
        {
          phase: 'local',
          metric: 'store CPU local verification adds per new token',
          value: `${fixed(addedUs, 1)} µs (rounds ${list(added, 0)})`,
        },
        {
          phase: 'local',
          metric: `in one process on the stores' CPU, ${alone.tokens} new tokens (rounds)`,
          value:
            `raw RS256 ${fixed(rawUs, 1)} µs (${list(alone.raw, 1)}); the guard's authenticator ` +
            `${fixed(median(alone.cached), 1)} µs (${list(alone.cached, 1)}), ${fixed(median(alone.cached) / rawUs, 2)} ` +
            `raw; without its caches ${fixed(median(alone.strategy), 1)} µs (${list(alone.strategy, 1)})`,
        },
        {
          phase: 'local',
          metric: 'store CPU added per new token over one raw RS256 verification',
          value: fixed(figures.localVerifyRatio, 2),
          target: '<= 2',
          pass: figures.localVerifyRatio <= 2,
        },
        {
          phase: 'local',
          metric: 'TokenReviews',
          value: String(localReviews),
          target: '0',
          pass: localReviews === 0,
        },
      );
    }

    // --- watch: local+watch, every token new, then pods deleted ------------------------------------------------------
    if (want('watch') && watchStore) {
      const store = watchStore;
      const adminConfig = cp.kubeConfig;
      const reviews = () => countApiServerRequests(adminConfig, 'tokenreviews');
      say(
        `watch: local+watch, every token new to the cache, ${S.localRounds} rounds of ${S.localRunRequests} requests per route...`,
      );
      // Until its watches hold their first lists, the store asks TokenReview: waited out, not counted.
      let warmUp = 0;
      await untilServedFromWatches({
        url: store.url,
        path: GUARDED,
        nextToken: () => podBoundToken(adminConfig, API, AUDIENCES[0], `api-warm-up-${warmUp++}`),
        reviews,
      });
      // The local phase's tokens, new to this store: the same A/B as the local phase, with the watches' lookups added.
      const reviewsBefore = await reviews();
      const { pairs, rate } = await newTokenRounds(store, localTokens);
      const abReviews = (await reviews()) - reviewsBefore;
      const added = pairs.map((p) => cpuUs(p.b) - cpuUs(p.a));
      const addedUs = median(added);
      figures.watchAddedCpuUs = addedUs;
      const unguarded = combine(pairs.map((p) => p.a));
      const guarded = combine(pairs.map((p) => p.b));
      failures('watch', [unguarded, guarded]);

      say(`watch: revocation, ${S.revocationRounds} pods deleted, the store polled every ${S.revocationPollMs} ms...`);
      const revocationReviewsBefore = await reviews();
      const times = await measureRevocation({
        kubeConfig: adminConfig,
        url: store.url,
        path: GUARDED,
        account: API,
        audience: AUDIENCES[0],
        rounds: S.revocationRounds,
        pollMs: S.revocationPollMs,
        podPrefix: 'api-revoked',
      });
      const revocationReviews = (await reviews()) - revocationReviewsBefore;
      const fromDelete = quantiles(times.fromDeleteCallMs);
      const afterAnswer = quantiles(times.afterDeleteAnsweredMs);
      figures.revocationP99Ms = fromDelete.p99;
      const local = figures.localAddedCpuUs;
      rows.push(
        ...newTokenRows('watch', unguarded, guarded, rate),
        {
          phase: 'watch',
          metric: 'store CPU local+watch adds per new token',
          value: `${fixed(addedUs, 1)} µs (rounds ${list(added, 0)}); ` + `local phase ${fixed(local, 1)} µs`,
          target: '<= local + 10 µs',
          pass: Number.isFinite(local) ? addedUs <= local + 10 : undefined,
        },
        {
          phase: 'watch',
          metric: `revocation: pod deleted -> 403, ${times.fromDeleteCallMs.length} pods, polled every ${S.revocationPollMs} ms`,
          value:
            `from the DELETE call p50 ${fixed(fromDelete.p50, 1)} ms, p99 ${fixed(fromDelete.p99, 1)} ms, ` +
            `max ${fixed(fromDelete.max, 1)} ms (from its answer p50 ${fixed(afterAnswer.p50, 1)}, ` +
            `p99 ${fixed(afterAnswer.p99, 1)} ms)`,
          target: 'p99 < 1000 ms',
          pass: fromDelete.p99 < 1000,
        },
        {
          phase: 'watch',
          metric: 'TokenReviews',
          value: `${abReviews} in the A/B, ${revocationReviews} in the revocation rounds`,
          target: '0',
          pass: abReviews === 0 && revocationReviews === 0,
        },
      );
    }

    // --- memory ---------------------------------------------------------------------------------------------------
    if (want('memory')) {
      proxy = await stopProxy(proxy);
      for (const store of stores.splice(0)) await store.stop(); // frees the CPU for the API server
      say(`memory: ${S.memoryTokens} distinct tokens through the guard, reviewed by the API server...`);
      const reviewsBefore = await countApiServerRequests(cp.kubeConfig, 'tokenreviews');
      const memory = await runScript<MemoryInput, MemoryOutput>(
        'memory.ts',
        'BENCH_MEMORY_INPUT',
        {
          kubeconfig,
          signingKey: ecKey.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
          claims,
          count: S.memoryTokens,
          checkpoint: S.memoryCheckpoint,
          concurrency: S.memoryConcurrency,
          maxSeconds: S.memoryMaxSeconds,
        },
        { nodeArgs: ['--expose-gc'] },
      );
      const heap = projectHeap(memory, S.memoryTokens);
      figures.heapGrowthMb = memory.growthMb;
      const memoryReviews = (await countApiServerRequests(cp.kubeConfig, 'tokenreviews')) - reviewsBefore;
      rows.push(
        {
          phase: 'memory',
          metric: `${memory.tokens} of ${S.memoryTokens} distinct tokens in the budget, default cache bound`,
          value: `${memory.allowed} allowed, ${memory.refused} refused, ${memoryReviews} TokenReviews, ${fixed(memory.seconds, 1)} s`,
        },
        {
          phase: 'memory',
          metric: 'heap growth after GC (cache entries kept)',
          value:
            `${fixed(memory.growthMb, 1)} MB at ${memory.tokens} tokens (${fixed(memory.baselineMb, 1)} -> ` +
            `${fixed(memory.afterMb, 1)} MB, peak ${fixed(memory.peakMb, 1)} MB; ${memory.cacheEntries} entries); ` +
            `${fixed(heap.perThousandKb, 1)} KB per 1000 tokens after ${memory.checkpointTokens}; ` +
            `${fixed(heap.projectedMb, 1)} MB at ${S.memoryTokens}`,
          target: `<= 32 MB at ${S.memoryTokens}`,
          // Judged at the count asked for, projected from the growth per token past the checkpoint: a machine that
          // gets fewer tokens through the time budget is judged on the same bound, not failed for its speed.
          pass: heap.projectedMb <= 32 && memory.refused === 0,
        },
      );
    }
    if (profileDir) {
      // A store writes its profile only as it exits.
      for (const store of stores.splice(0)) await store.stop();
      printProfiles(profileDir);
    }

    printTable();
    for (const note of notes) say(`note: ${note}`);
    say(`wall time: ${fixed((Date.now() - started) / 1000, 0)} s`);
    say(
      `bench: warm_added_cpu_us=${fixed(figures.warmAddedCpuUs, 1)} ` +
        `grpc_warm_added_cpu_us=${fixed(figures.grpcWarmAddedCpuUs, 1)} krp_rps_ratio=${fixed(figures.krpRpsRatio, 2)} ` +
        `krp_p99_ratio=${fixed(figures.krpP99Ratio, 2)} cold_cpu_ratio=${fixed(figures.coldCpuRatio, 2)} ` +
        `local_verify_ratio=${fixed(figures.localVerifyRatio, 2)} stampede_reviews=${fixed(figures.stampedeReviews, 0)} ` +
        `heap_growth_mb=${fixed(figures.heapGrowthMb, 1)} watch_added_cpu_us=${fixed(figures.watchAddedCpuUs, 1)} ` +
        `revocation_p99_ms=${fixed(figures.revocationP99Ms, 1)}`,
    );
  } finally {
    await stopProxy(proxy);
    for (const store of stores) await store.stop().catch(() => undefined);
    for (const client of clients) client.close();
    await cp?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

async function stopProxy(proxy: RunningProxy | undefined): Promise<undefined> {
  await proxy?.stop().catch(() => undefined);
  return undefined;
}

/**
 * A store's CPU seconds so far, from its process metrics (`process.cpuUsage()`, microseconds), at every call: /proc's
 * 10 ms ticks are too coarse for the short rounds of the local phases.
 */
function metricsCpuOf(store: RunningStore): () => Promise<number> {
  return async () => {
    const text = await (await fetch(`${store.url}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
    return value('process_cpu_user_seconds_total') + value('process_cpu_system_seconds_total');
  };
}

function describeLoad(r: LoadResult, server = 'store'): string {
  return (
    `${fixed(r.rps, 0)} req/s, p50 ${fixed(r.p50)} ms, p99 ${fixed(r.p99)} ms, ${server} CPU ${fixed(cpuUs(r), 0)} µs/req ` +
    `(${r.ok} in ${fixed(r.seconds, 1)} s)`
  );
}

interface Pair {
  a: LoadResult;
  b: LoadResult;
}

/**
 * A warm-up run of each side (not measured: JIT), then `rounds` pairs of runs in alternating order (AB BA AB …), so
 * that drift and bursts of other work weigh on both sides alike; ratios and differences are taken per pair. With
 * `sameRate`, every measured run goes at 90 % of the rate the slower side reached in its warm-up: a server's CPU per
 * request rises steeply as its request rate falls (fewer requests share each wake-up and each warm cache), so sides
 * run at different rates would add that rise to the difference being measured.
 */
async function pairedRounds(
  rounds: number,
  run: (side: string, rate?: number) => Promise<LoadResult>,
  sides: { A: string; B: string },
  options: { sameRate?: boolean } = {},
): Promise<{ pairs: Pair[]; rate?: number; unpacedRpsRatio: number }> {
  const warmA = await run(sides.A);
  const warmB = await run(sides.B);
  const rate = options.sameRate ? Math.round(0.9 * Math.min(warmA.rps, warmB.rps)) : undefined;
  const pairs: Pair[] = [];
  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      const a = await run(sides.A, rate);
      pairs.push({ a, b: await run(sides.B, rate) });
    } else {
      const b = await run(sides.B, rate);
      pairs.push({ b, a: await run(sides.A, rate) });
    }
  }
  return { pairs, rate, unpacedRpsRatio: warmB.rps / warmA.rps };
}

/**
 * The local and watch phases' A/B on `store`: both routes get a token from `tokens` in every request (the unguarded one
 * ignores it), at one rate. Each route draws in turn on its own, so the guarded route meets a token again only after
 * the whole pool, three times the default cache bound: every token is new to it.
 */
function newTokenRounds(store: RunningStore, tokens: string[]): ReturnType<typeof pairedRounds> {
  const next: Record<string, number> = { [GUARDED]: 0, [UNGUARDED]: 0 };
  const run = (path: string, rate?: number) =>
    load({
      url: store.url,
      path,
      connections: S.connections,
      amount: S.localRunRequests,
      maxSeconds: 60,
      rate,
      serverPid: store.pid,
      serverCpuSeconds: metricsCpuOf(store),
      nextToken: () => tokens[next[path]++ % tokens.length],
    });
  return pairedRounds(S.localRounds, run, { A: UNGUARDED, B: GUARDED }, { sameRate: true });
}

/** The two routes' rows of a new-token A/B. */
function newTokenRows(phase: string, unguarded: LoadResult, guarded: LoadResult, rate?: number): Row[] {
  return [
    { phase, metric: `unguarded GET ${UNGUARDED}, new token each, ${rate} req/s`, value: describeLoad(unguarded) },
    { phase, metric: `guarded GET ${GUARDED}, new token each, ${rate} req/s`, value: describeLoad(guarded) },
  ];
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Figures of the rounds, for a row: `1.2 3.4 …`. */
function list(values: number[], digits = 2): string {
  return values.map((v) => fixed(v, digits)).join(' ');
}

function failures(phase: string, runs: LoadResult[]): void {
  const failed = runs.reduce((n, r) => n + r.failed, 0);
  if (failed > 0) notes.push(`${phase}: ${failed} responses were not 2xx or failed`);
}

/** `count` requests with one token, sent together over connections opened beforehand. */
async function runStampede(
  url: string,
  token: string,
  count: number,
  reviews: () => Promise<number>,
): Promise<{ ok: number; reviews: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: count, maxFreeSockets: count });
  const get = (path: string, headers: Record<string, string> = {}) =>
    new Promise<number>((resolveStatus, reject) => {
      const req = httpRequest(new URL(path, url), { agent, headers }, (res) => {
        res.resume();
        res.on('end', () => resolveStatus(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });
  try {
    // Open every connection first, so the token's requests leave within the same few milliseconds.
    await Promise.all(Array.from({ length: count }, () => get(UNGUARDED)));
    const before = await reviews();
    const statuses = await Promise.all(
      Array.from({ length: count }, () => get(GUARDED, { authorization: `Bearer ${token}` })),
    );
    return { ok: statuses.filter((s) => s === 200).length, reviews: (await reviews()) - before };
  } finally {
    agent.destroy();
  }
}

function printProfiles(profileDir: string): void {
  for (const name of ['review', 'local', 'watch'].filter((n) => existsSync(join(profileDir, n)))) {
    const files = readdirSync(join(profileDir, name)).filter((f) => f.endsWith('.cpuprofile'));
    if (files.length === 0) {
      say(`profile of store-${name}: none written`);
      continue;
    }
    const file = join(profileDir, name, files[0]);
    const summary = summarizeProfile(file, [], 12);
    say(`\nprofile of store-${name} (${fixed(summary.totalMs / 1000, 1)} s busy): share of busy time, self`);
    for (const entry of summary.self) say(`  ${fixed(entry.share * 100, 1).padStart(5)} %  ${entry.name}`);
    for (const root of ['canActivate', 'authenticate', 'send']) {
      say(`  inside ${root}:`);
      for (const row of breakdown(file, root, 1)) {
        say(`  ${fixed(row.share * 100, 2).padStart(6)} %  ${'  '.repeat(row.level)}${row.name}`);
      }
    }
    say(`  profile: ${file}`);
  }
}

function printTable(): void {
  const header: Row = { phase: 'phase', metric: 'metric', value: 'value', target: 'target' };
  const cells = (r: Row) => [
    r.phase,
    r.metric,
    r.value,
    r.target ?? '',
    r.pass === undefined ? '' : r.pass ? 'ok' : 'MISSED',
  ];
  const all = [cells(header).slice(0, 4).concat(''), ...rows.map(cells)];
  const widths = all[0].map((_, i) => Math.max(...all.map((c) => c[i].length)));
  say('');
  for (const [i, c] of all.entries()) {
    say(`| ${c.map((v, j) => v.padEnd(widths[j])).join(' | ')} |`);
    if (i === 0) say(`| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`);
  }
  say('');
}

main().catch((err: Error) => {
  process.stderr.write(`${err.name === 'ControlPlaneError' ? err.message : err.stack}\n`);
  process.exit(1);
});
