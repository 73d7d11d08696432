import { Logger } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import axios from 'axios';
import { mkdtempSync, promises as fs, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type ControlPlane,
  createServiceAccount,
  kubeConfigFor,
  type ServiceAccountRef,
  startControlPlane,
  TokenProjector,
} from '../../testing';
import { attachServiceAccountToken, K8sAuthModule, TokenSources, TokenUnavailableError } from '../../index';

const API: ServiceAccountRef = { namespace: 'api', name: 'api' };
const ADMIN_OF_TOKENS: ServiceAccountRef = { namespace: 'api', name: 'token-minter' };

function subject(token: string): string {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).sub;
}

describe('TokenSources against a real API server', () => {
  let cp: ControlPlane;
  let dir: string;
  const closeAfter: { close(): Promise<void> | void }[] = [];

  beforeAll(async () => {
    cp = await startControlPlane();
    dir = mkdtempSync(join(tmpdir(), 'token-source-spec-'));
    await createServiceAccount(cp.kubeConfig, API);
    Logger.overrideLogger(false);
  });
  afterAll(async () => {
    for (const c of closeAfter) await c.close();
    await cp?.stop();
  });

  async function sourcesFor(options: Parameters<typeof K8sAuthModule.forRoot>[0]): Promise<TokenSources> {
    const moduleRef = await Test.createTestingModule({
      imports: [K8sAuthModule.forRoot({ metrics: false, ...options })],
    }).compile();
    await moduleRef.init();
    closeAfter.push(moduleRef);
    return moduleRef.get(TokenSources);
  }

  it('follows the kubelet-style ..data swap of a projected token file', async () => {
    const volume = join(dir, 'volume');
    const projector = new TokenProjector(cp.kubeConfig, {
      directory: volume,
      tokens: [{ path: 'secret-store-token', serviceAccount: API, audience: 'secret-store' }],
    });
    await projector.start();
    closeAfter.push({ close: () => projector.stop() });
    const sources = await sourcesFor({
      tokenSources: { 'secret-store': { file: join(volume, 'secret-store-token'), refreshIntervalMs: 1000 } },
    });
    const source = sources.get('secret-store');
    const first = source.token();
    expect(subject(first)).toBe('system:serviceaccount:api:api');
    expect(first).toBe((await fs.readFile(join(volume, 'secret-store-token'), 'utf8')).trim());

    await projector.rotateNow();
    const rotated = (await fs.readFile(join(volume, 'secret-store-token'), 'utf8')).trim();
    expect(rotated).not.toBe(first);
    await source.refresh();
    expect(source.token()).toBe(rotated);
  });

  it('keeps its last valid token when the file is deleted or truncated, and picks up a new one', async () => {
    const volume = join(dir, 'fragile');
    const projector = new TokenProjector(cp.kubeConfig, {
      directory: volume,
      tokens: [{ path: 'token', serviceAccount: API, audience: 'secret-store' }],
    });
    await projector.start();
    closeAfter.push({ close: () => projector.stop() });
    const sources = await sourcesFor({ tokenSources: { store: { file: join(volume, 'token') } } });
    const source = sources.get('store');
    const good = source.token();

    // The symlink target replaced by an empty file, then by garbage, then removed altogether.
    const real = await fs.realpath(join(volume, 'token'));
    await fs.writeFile(real, '');
    await source.refresh();
    expect(source.token()).toBe(good);
    await fs.writeFile(real, 'not a token at all');
    await source.refresh();
    expect(source.token()).toBe(good);
    // Caught half-written: three segments and readable claims, but the signature cut short.
    for (const cut of [1, 100, 300]) {
      await fs.writeFile(real, good.slice(0, -cut));
      await source.refresh();
      expect(source.token()).toBe(good);
    }
    await fs.rm(real);
    await source.refresh();
    expect(source.token()).toBe(good);

    await projector.rotateNow();
    await source.refresh();
    expect(source.token()).not.toBe(good);
  });

  it('fails start-up with a clear message when the token file is missing', async () => {
    const missing = join(dir, 'nowhere', 'token');
    await expect(sourcesFor({ tokenSources: { store: { file: missing } } })).rejects.toThrow(
      new RegExp(`Cannot load a token from ${missing}.*projected serviceAccountToken volume`),
    );
  });

  it('waits for the kubelet to write the file when told to', async () => {
    const late = join(dir, 'late');
    const projector = new TokenProjector(cp.kubeConfig, {
      directory: late,
      tokens: [{ path: 'token', serviceAccount: API, audience: 'secret-store' }],
    });
    setTimeout(() => void projector.start(), 1500);
    closeAfter.push({ close: () => projector.stop() });
    const sources = await sourcesFor({ tokenSources: { store: { file: join(late, 'token'), waitForFileMs: 10_000 } } });
    expect(subject(sources.get('store').token())).toBe('system:serviceaccount:api:api');
  });

  it('mints tokens through TokenRequest with a kubeconfig, for runs outside the cluster', async () => {
    await createServiceAccount(cp.kubeConfig, ADMIN_OF_TOKENS);
    const kubeconfig = join(dir, 'admin.kubeconfig');
    writeFileSync(kubeconfig, cp.kubeConfig.exportConfig());
    const sources = await sourcesFor({
      kubeconfig,
      tokenSources: { 'secret-store': { serviceAccount: 'api:api', audience: 'secret-store', expirationSeconds: 600 } },
    });
    const source = sources.get('secret-store');
    const token = source.token();
    const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
    expect(claims.sub).toBe('system:serviceaccount:api:api');
    expect(claims.aud).toEqual(['secret-store']);
    expect(claims.exp - claims.iat).toBe(600);
    expect(source.expiresAt?.getTime()).toBe(claims.exp * 1000);
  });

  it('reports a TokenRequest the API server refuses as a typed error at start-up', async () => {
    const kubeconfig = join(dir, 'nobody.kubeconfig');
    writeFileSync(kubeconfig, (await kubeConfigFor(cp.kubeConfig, ADMIN_OF_TOKENS)).exportConfig());
    const start = sourcesFor({
      kubeconfig,
      tokenSources: { store: { serviceAccount: 'api:api', audience: 'secret-store' } },
    });
    await expect(start).rejects.toBeInstanceOf(TokenUnavailableError);
    await expect(start).rejects.toThrow(/HTTP 403/);
  });

  it('names the configured sources when an unknown one is asked for', async () => {
    const sources = await sourcesFor({});
    expect(() => sources.get('nope')).toThrow("No token source named 'nope' (configured: none)");
  });
});

describe('attachServiceAccountToken', () => {
  let server: Server;
  let url: string;
  const seen: { header: string | undefined; method: string }[] = [];
  let rejectFirst = true;

  beforeAll(async () => {
    // A callee that refuses the first token it sees: what a rotation looks like from the caller.
    server = createServer((req, res) => {
      seen.push({ header: req.headers['x-client-id'] as string | undefined, method: req.method ?? '' });
      res.statusCode = rejectFirst && seen.length === 1 ? 401 : 200;
      res.end('done');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const address = server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  afterAll(() => new Promise((r) => server.close(r)));
  beforeEach(() => {
    seen.length = 0;
    rejectFirst = true;
  });

  function rotatingSource() {
    let generation = 1;
    return {
      name: 'test',
      expiresAt: undefined,
      token: () => `token-${generation}`,
      refresh: jest.fn(async () => {
        generation++;
      }),
    };
  }

  it('re-reads the token once after a 401 and retries an idempotent request', async () => {
    const client = axios.create({ baseURL: url });
    const source = rotatingSource();
    attachServiceAccountToken(client, source, { header: 'x-client-id' });
    const res = await client.get('/');
    expect(res.status).toBe(200);
    expect(seen.map((s) => s.header)).toEqual(['token-1', 'token-2']);
    expect(source.refresh).toHaveBeenCalledTimes(1);
  });

  it('does not retry a POST', async () => {
    const client = axios.create({ baseURL: url });
    const source = rotatingSource();
    attachServiceAccountToken(client, source);
    await expect(client.post('/', {})).rejects.toMatchObject({ response: { status: 401 } });
    expect(seen).toHaveLength(1);
    expect(source.refresh).not.toHaveBeenCalled();
  });
});
