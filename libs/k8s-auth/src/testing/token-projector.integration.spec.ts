import { AuthenticationV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { type ControlPlane, createPod, createServiceAccount, startControlPlane, TokenProjector } from './index';

const AUDIENCE = 'secret-store';
const FILE = 'secret-store-token';

async function review(kubeConfig: KubeConfig, token: string, audiences: string[]) {
  const api = kubeConfig.makeApiClient(AuthenticationV1Api);
  const result = await api.createTokenReview({ body: { spec: { token, audiences } } });
  return result.status ?? {};
}

/** Waits for `condition`; the deadline only ends a hung test, it is no bound on speed. */
async function waitFor(condition: () => Promise<boolean> | boolean, timeoutMs = 45_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The `..<time>.<random>` folders in a volume. */
async function dataFolders(dir: string): Promise<string[]> {
  return (await fs.readdir(dir)).filter((name) => /^\.\.\d{4}_/.test(name));
}

/**
 * Re-opens `file` by path in a tight loop on another thread (so it truly races the writer) until
 * told to stop; answers with every distinct content and how often it read nothing or failed (also
 * how often `..data` was missing).
 * `progress()` tells how many reads it has made and how many distinct contents it has seen so far.
 */
function startReader(file: string) {
  // [stop, reads, distinct contents]
  const stopFlag = new Int32Array(new SharedArrayBuffer(12));
  const worker = new Worker(
    `
    const { workerData, parentPort } = require('node:worker_threads');
    const { readFileSync, readlinkSync } = require('node:fs');
    const { dirname, join } = require('node:path');
    const dataLink = join(dirname(workerData.file), '..data');
    const seen = new Set();
    let reads = 0, empty = 0;
    const errors = {};
    while (Atomics.load(workerData.stopFlag, 0) === 0) {
      try {
        const text = readFileSync(workerData.file, 'utf8');
        reads++;
        if (text.length === 0) empty++;
        else seen.add(text);
        Atomics.store(workerData.stopFlag, 1, reads);
        Atomics.store(workerData.stopFlag, 2, seen.size);
      } catch (err) {
        errors[err.code] = (errors[err.code] || 0) + 1;
      }
      // \`..data\` is replaced by a rename: it never goes missing, not even for a moment.
      try {
        readlinkSync(dataLink);
      } catch (err) {
        errors['..data ' + err.code] = (errors['..data ' + err.code] || 0) + 1;
      }
    }
    parentPort.postMessage({ seen: [...seen], reads, empty, errors });
    `,
    { eval: true, workerData: { file, stopFlag } },
  );
  const result = new Promise<{ seen: string[]; reads: number; empty: number; errors: Record<string, number> }>(
    (resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    },
  );
  return {
    progress: () => ({ reads: Atomics.load(stopFlag, 1), distinct: Atomics.load(stopFlag, 2) }),
    stop: async () => {
      Atomics.store(stopFlag, 0, 1);
      const r = await result;
      await worker.terminate();
      return r;
    },
  };
}

describe('TokenProjector', () => {
  let cp: ControlPlane;
  let root: string;
  let counter = 0;
  const account = { namespace: 'shop', name: 'api' };
  const projectors: TokenProjector[] = [];
  const newDir = () => join(root, `volume-${++counter}`);
  const project = (options: ConstructorParameters<typeof TokenProjector>[1]) => {
    const projector = new TokenProjector(cp.kubeConfig, options);
    projectors.push(projector);
    return projector;
  };

  beforeAll(async () => {
    cp = await startControlPlane();
    await createServiceAccount(cp.kubeConfig, account);
    root = await fs.mkdtemp(join(tmpdir(), 'token-projector-'));
  });
  afterEach(async () => {
    await Promise.all(projectors.splice(0).map((p) => p.stop()));
  });
  afterAll(async () => {
    await cp?.stop();
    if (root) await fs.rm(root, { recursive: true, force: true });
  });

  it('start() writes an audience-bound token in the kubelet layout', async () => {
    const dir = newDir();
    const projector = project({
      directory: dir,
      tokens: [{ path: FILE, serviceAccount: account, audience: AUDIENCE }],
    });
    await projector.start();

    const token = await fs.readFile(join(dir, FILE), 'utf8');
    const ok = await review(cp.kubeConfig, token, [AUDIENCE]);
    expect(ok.authenticated).toBe(true);
    expect(ok.user?.username).toBe('system:serviceaccount:shop:api');
    expect(ok.audiences).toEqual([AUDIENCE]);
    expect((await review(cp.kubeConfig, token, ['other'])).authenticated).toBeFalsy();

    expect((await fs.lstat(join(dir, '..data'))).isSymbolicLink()).toBe(true);
    const folder = await fs.readlink(join(dir, '..data'));
    expect(folder).toMatch(/^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\w+$/);
    const folderStat = await fs.stat(join(dir, folder));
    expect(folderStat.isDirectory()).toBe(true);
    expect(folderStat.mode & 0o777).toBe(0o755);
    expect((await fs.lstat(join(dir, FILE))).isSymbolicLink()).toBe(true);
    expect(await fs.readlink(join(dir, FILE))).toBe(`..data/${FILE}`);
    expect((await fs.stat(join(dir, folder, FILE))).mode & 0o777).toBe(0o644);
    expect(await dataFolders(dir)).toEqual([folder]);
  });

  it('rotateNow() swaps in a new token atomically and removes the old folder', async () => {
    const dir = newDir();
    const projector = project({
      directory: dir,
      tokens: [{ path: FILE, serviceAccount: account, audience: AUDIENCE }],
    });
    await projector.start();
    const firstToken = await fs.readFile(join(dir, FILE), 'utf8');
    const firstFolder = await fs.readlink(join(dir, '..data'));

    await projector.rotateNow();
    const secondToken = await fs.readFile(join(dir, FILE), 'utf8');
    expect(secondToken).not.toBe(firstToken);
    expect((await review(cp.kubeConfig, secondToken, [AUDIENCE])).authenticated).toBe(true);
    expect(await dataFolders(dir)).toEqual([await fs.readlink(join(dir, '..data'))]);
    expect(await dataFolders(dir)).not.toContain(firstFolder);

    // Rotates until the reader has raced at least 20 rotations, read often and seen several tokens: however the
    // threads are scheduled on a busy machine, the checks below always have that much to look at.
    const reader = startReader(join(dir, FILE));
    let rotations = 0;
    const enough = () => rotations >= 20 && reader.progress().reads >= 100 && reader.progress().distinct >= 3;
    for (; !enough(); rotations++) await projector.rotateNow();
    const { seen, reads, empty, errors } = await reader.stop();
    console.log(
      `reader: ${reads} reads, ${seen.length} tokens, ${rotations} rotations, errors ${JSON.stringify(errors)}`,
    );

    expect(empty).toBe(0);
    // The kubelet's layout leaves one race: a reader that resolved `..data` just before the swap
    // may find the old folder already removed and get ENOENT (never a partial file). Nothing else.
    // How often that happens depends on the scheduling of the threads, so it is printed, not bounded.
    expect(Object.keys(errors).filter((code) => code !== 'ENOENT')).toEqual([]);
    // Every read was a whole token the API server signed.
    for (const token of seen) {
      expect(token.split('.')).toHaveLength(3);
      expect((await review(cp.kubeConfig, token, [AUDIENCE])).authenticated).toBe(true);
    }
    expect(await dataFolders(dir)).toHaveLength(1);
    expect(await fs.readdir(dir)).not.toContain('..data_tmp');
  });

  it('binds a token to a pod', async () => {
    const dir = newDir();
    const pod = await createPod(cp.kubeConfig, account, 'api-projected-0');
    const projector = project({
      directory: dir,
      tokens: [
        { path: FILE, serviceAccount: account, audience: AUDIENCE, pod },
        { path: 'nested/other-token', serviceAccount: account, audience: 'other', expirationSeconds: 3600 },
      ],
    });
    await projector.start();

    const token = await fs.readFile(join(dir, FILE), 'utf8');
    const ok = await review(cp.kubeConfig, token, [AUDIENCE]);
    expect(ok.authenticated).toBe(true);
    expect(ok.user?.extra?.['authentication.kubernetes.io/pod-name']).toEqual([pod.name]);
    expect(ok.user?.extra?.['authentication.kubernetes.io/pod-uid']).toEqual([pod.uid]);

    // A second file, in a sub-folder: `nested` is the symlink, as the kubelet makes it.
    expect(await fs.readlink(join(dir, 'nested'))).toBe('..data/nested');
    const other = await fs.readFile(join(dir, 'nested', 'other-token'), 'utf8');
    expect((await review(cp.kubeConfig, other, ['other'])).authenticated).toBe(true);
  });

  it('renews a token by itself at renewAtFraction of its life, and stops when stopped', async () => {
    const dir = newDir();
    const projector = project({
      directory: dir,
      tokens: [{ path: FILE, serviceAccount: account, audience: AUDIENCE, expirationSeconds: 600 }],
      renewAtFraction: 0.001, // 0.6 s
    });
    // A lower bound, measured from before the token was asked for: slowness can only lengthen it.
    const started = Date.now();
    await projector.start();
    const first = await fs.readFile(join(dir, FILE), 'utf8');
    await waitFor(async () => (await fs.readFile(join(dir, FILE), 'utf8')) !== first);
    expect(Date.now() - started).toBeGreaterThan(300);
    const renewed = await fs.readFile(join(dir, FILE), 'utf8');
    expect((await review(cp.kubeConfig, renewed, [AUDIENCE])).authenticated).toBe(true);

    await projector.stop();
    const atStop = await fs.readFile(join(dir, FILE), 'utf8');
    await new Promise((r) => setTimeout(r, 1500));
    expect(await fs.readFile(join(dir, FILE), 'utf8')).toBe(atStop);
  });

  it('start() rejects and writes nothing when a token cannot be minted, keeping earlier files', async () => {
    const dir = newDir();
    const first = project({ directory: dir, tokens: [{ path: FILE, serviceAccount: account, audience: AUDIENCE }] });
    await first.start();
    await first.stop();
    const before = await fs.readFile(join(dir, FILE), 'utf8');
    const folder = await fs.readlink(join(dir, '..data'));

    const errors: Error[] = [];
    const failing = project({
      directory: dir,
      tokens: [{ path: FILE, serviceAccount: { namespace: 'shop', name: 'ghost' }, audience: AUDIENCE }],
      renewAtFraction: 0.001,
      retryDelayMs: 100,
      onError: (err) => errors.push(err),
    });
    await expect(failing.start()).rejects.toThrow(
      /could not start on .*: TokenProjector: cannot mint "secret-store-token" for service account shop\/ghost \(audience secret-store\): HTTP 404: serviceaccounts "ghost" not found/,
    );
    expect(errors).toHaveLength(1);
    expect(errors[0].message).toMatch(/shop\/ghost/);

    // Not started: no retries, and the earlier volume is untouched.
    await new Promise((r) => setTimeout(r, 500));
    expect(errors).toHaveLength(1);
    expect(await fs.readFile(join(dir, FILE), 'utf8')).toBe(before);
    expect(await fs.readlink(join(dir, '..data'))).toBe(folder);
    expect(await dataFolders(dir)).toEqual([folder]);
  });

  it('keeps the last token when renewal fails, reports it, and recovers without an unhandled rejection', async () => {
    const doomed = { namespace: 'shop', name: 'doomed' };
    await createServiceAccount(cp.kubeConfig, doomed);
    // Jest fails the running test on an unhandled rejection (a process listener here would never
    // see one), so this test passing is the proof that the failed renewals reject nothing unhandled.
    const dir = newDir();
    const errors: Error[] = [];
    const projector = project({
      directory: dir,
      tokens: [{ path: FILE, serviceAccount: doomed, audience: AUDIENCE }],
      renewAtFraction: 0.001,
      retryDelayMs: 200,
      onError: (err) => errors.push(err),
    });
    await projector.start();
    const core = cp.kubeConfig.makeApiClient(CoreV1Api);
    await core.deleteNamespacedServiceAccount({ namespace: doomed.namespace, name: doomed.name });
    // Renewals run one at a time, so none can write after the first failure: the account is gone.
    await waitFor(() => errors.length >= 1);
    const last = await fs.readFile(join(dir, FILE), 'utf8');
    expect(errors[0].message).toMatch(/cannot mint "secret-store-token" for service account shop\/doomed.*404/);
    expect(errors.every((e) => !e.message.includes(last))).toBe(true);
    await expect(projector.rotateNow()).rejects.toThrow(/shop\/doomed/);
    expect(await fs.readFile(join(dir, FILE), 'utf8')).toBe(last);

    await createServiceAccount(cp.kubeConfig, doomed);
    await waitFor(async () => (await fs.readFile(join(dir, FILE), 'utf8')) !== last);
    const renewed = await fs.readFile(join(dir, FILE), 'utf8');
    expect((await review(cp.kubeConfig, renewed, [AUDIENCE])).authenticated).toBe(true);
    await projector.stop();
    // Give a stray rejection time to surface while this test is still running.
    await new Promise((r) => setTimeout(r, 300));
  });

  it('refuses bad options up front', () => {
    const token = { path: FILE, serviceAccount: account, audience: AUDIENCE };
    expect(() => new TokenProjector(cp.kubeConfig, { directory: root, tokens: [] })).toThrow(/no tokens/);
    expect(
      () => new TokenProjector(cp.kubeConfig, { directory: root, tokens: [{ ...token, path: '../escape' }] }),
    ).toThrow(/invalid path/);
    expect(
      () => new TokenProjector(cp.kubeConfig, { directory: root, tokens: [{ ...token, expirationSeconds: 60 }] }),
    ).toThrow(/>= 600/);
    expect(() => new TokenProjector(cp.kubeConfig, { directory: root, tokens: [token], renewAtFraction: 1 })).toThrow(
      /renewAtFraction/,
    );
    expect(() => new TokenProjector(cp.kubeConfig, { directory: root, tokens: [token, token] })).toThrow(/clashes/);
  });
});
