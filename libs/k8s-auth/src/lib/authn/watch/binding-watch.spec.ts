import { Logger } from '@nestjs/common';
import { PassThrough } from 'node:stream';
import { AuthenticationUnavailableError } from '../authentication.types';
import { type KubernetesApiClient, KubernetesApiError } from '../../kube/kubernetes-api.client';
import { BindingWatch } from './binding-watch';
import type { OpenedStream, PingedSession, WatchConnection } from '../../kube/watch-connection';

// The watch's own logic (when what it holds may be trusted, when it lists again, how it backs off) over a scripted
// API server; the real one is in binding-watch.integration.spec.ts.

const BOUND_MS = 2_000;

interface Pod {
  name: string;
  uid: string;
}

/** A watch stream the test writes events to and ends. */
class ScriptedStream extends PassThrough {
  rstCode = 0;
  event(type: string, object: Record<string, unknown>): void {
    this.write(`${JSON.stringify({ type, object })}\n`);
  }
  /** The API server ends the watch (its timeoutSeconds). */
  finish(): void {
    this.end();
  }
  /** The connection breaks under it. */
  cut(): void {
    this.rstCode = 8;
    this.destroy();
  }
  close(): void {
    this.destroy();
  }
}

/** What the watch needs of a connection: the test says when its last PING was answered. */
class ScriptedConnection {
  provenAtMs = Date.now();
  readonly session = { provenAt: () => this.provenAtMs } as unknown as PingedSession;
  readonly opened: { path: string; stream: ScriptedStream }[] = [];
  /** Status of the next watches; 200 opens them. */
  status = 200;
  /** While set, the next watches wait for the API server's answer until it is called. */
  release: (() => void) | undefined;
  private held: Promise<void> | undefined;

  hold(): void {
    this.held = new Promise<void>((resolve) => (this.release = resolve));
  }

  async get(path: string): Promise<OpenedStream> {
    const stream = new ScriptedStream();
    this.opened.push({ path, stream });
    await this.held;
    if (this.status !== 200) {
      stream.end(JSON.stringify({ message: 'refused' }));
    }
    return { stream, headers: { ':status': this.status }, connection: this.session } as unknown as OpenedStream;
  }

  get last(): ScriptedStream {
    return this.opened[this.opened.length - 1].stream;
  }
}

/** Lists from `pods` (one page), or fails while `down`; counts the lists and GETs. */
class ScriptedApi {
  pods: Pod[] = [];
  down = false;
  lists = 0;
  /** Lists asked for, answered or not. */
  listAttempts = 0;
  reads: string[] = [];
  resourceVersion = 10;

  async get<T>(path: string): Promise<T> {
    if (!path.includes('/pods/')) this.listAttempts++;
    if (this.down) throw new KubernetesApiError('unavailable', `${path}: connect ECONNREFUSED`);
    const [collection] = path.split('?');
    const name = collection.split('/pods/')[1];
    if (name !== undefined) {
      this.reads.push(name);
      const pod = this.pods.find((p) => p.name === decodeURIComponent(name));
      if (!pod) throw new KubernetesApiError('rejected', `${path}: HTTP 404: not found`, 404);
      return { metadata: pod } as T;
    }
    this.lists++;
    return {
      metadata: { resourceVersion: String(this.resourceVersion) },
      items: this.pods.map((metadata) => ({ metadata })),
    } as T;
  }
}

/** Waits for `check`, polling; the limit only keeps a broken build from hanging. */
const until = async (what: string, check: () => boolean) => {
  for (const deadline = Date.now() + 10_000; !check(); await new Promise((resolve) => setTimeout(resolve, 5))) {
    if (Date.now() > deadline) throw new Error(`${what}: never`);
  }
};

describe('BindingWatch', () => {
  let api: ScriptedApi;
  let connection: ScriptedConnection;
  let watch: BindingWatch;
  let quiet: jest.SpyInstance[];

  const start = async () => {
    watch = new BindingWatch(api as unknown as KubernetesApiClient, connection as unknown as WatchConnection, {
      resource: 'pods',
      namespace: 'api',
      stalenessMs: BOUND_MS,
      maxTombstones: 100,
    });
    watch.start();
    await watch.synced;
  };

  beforeEach(() => {
    quiet = (['log', 'warn', 'error'] as const).map((level) =>
      jest.spyOn(Logger.prototype, level).mockImplementation(() => undefined),
    );
    api = new ScriptedApi();
    api.pods = [{ name: 'api-0', uid: 'uid-0' }];
    connection = new ScriptedConnection();
  });

  afterEach(() => {
    watch?.stop();
    for (const spy of quiet) spy.mockRestore();
    jest.useRealTimers();
  });

  it('lists, then watches from the list resource version, and follows the events', async () => {
    await start();
    expect(api.lists).toBe(1);
    expect(connection.opened[0].path).toMatch(/watch=1.*resourceVersion=10/);
    const now = Date.now();
    expect(watch.holds('api-0', 'uid-0', now)).toBe(true);
    connection.last.event('ADDED', { metadata: { name: 'api-1', uid: 'uid-1', resourceVersion: '11' } });
    connection.last.event('DELETED', { metadata: { name: 'api-0', uid: 'uid-0', resourceVersion: '12' } });
    await until('the events applied', () => watch.holds('api-1', 'uid-1', now));
    expect(watch.holds('api-0', 'uid-0', now)).toBe(false);
  });

  it('is fresh only while a PING sent within the bound has been answered', async () => {
    await start();
    const now = Date.now();
    connection.provenAtMs = now - BOUND_MS;
    expect(watch.isFresh(now)).toBe(true);
    connection.provenAtMs = now - BOUND_MS - 1;
    expect(watch.isFresh(now)).toBe(false);
    // An answer to a later PING makes it fresh again: the events before it have arrived.
    connection.provenAtMs = now;
    expect(watch.isFresh(now)).toBe(true);
  });

  it('bridges the gap after the API server ends a watch, for the bound, and resumes from the last version', async () => {
    await start();
    connection.last.event('BOOKMARK', { metadata: { resourceVersion: '15' } });
    connection.hold();
    connection.last.finish();
    await until('the next watch asked for', () => connection.opened.length === 2);
    const endedAt = Date.now();
    connection.provenAtMs = endedAt + BOUND_MS;
    expect(connection.opened[1].path).toMatch(/resourceVersion=15/);
    expect(watch.isFresh(endedAt)).toBe(true);
    expect(watch.isFresh(endedAt + BOUND_MS + 50)).toBe(false);
    connection.release?.();
    await until('open again', () => watch.isFresh(endedAt + BOUND_MS + 50));
    expect(api.lists).toBe(1);
  });

  it('counts a watch refused on reopening as a failure: stale at once, listed again', async () => {
    await start();
    connection.status = 500;
    connection.last.finish();
    await until('stale after the refused reopen', () => !watch.isFresh(Date.now()));
    connection.status = 200;
    await until('listed again', () => api.lists === 2);
    await until('fresh again', () => watch.isFresh(Date.now()));
  });

  it('after a broken watch, lists again before it counts as fresh: what was missed is not taken on trust', async () => {
    await start();
    api.down = true;
    connection.last.cut();
    await until('stale once the watch broke', () => !watch.isFresh(Date.now()));
    // Meanwhile a pod was deleted; no event of it ever arrives.
    api.pods = [];
    api.down = false;
    await until('listed again', () => api.lists === 2);
    await until('watching again', () => watch.isFresh(Date.now()));
    expect(watch.holds('api-0', 'uid-0', Date.now())).toBe(false);
  });

  it('lists again when the resource version has expired (410)', async () => {
    await start();
    api.pods = [{ name: 'api-2', uid: 'uid-2' }];
    api.resourceVersion = 40;
    connection.last.event('ERROR', { code: 410, message: 'too old resource version' });
    await until('listed again', () => api.lists === 2);
    await until('watching from the new list', () => connection.opened.length === 2);
    expect(connection.opened[1].path).toMatch(/resourceVersion=40/);
    expect(watch.holds('api-2', 'uid-2', Date.now())).toBe(true);
    expect(watch.holds('api-0', 'uid-0', Date.now())).toBe(false);
  });

  it('backs off between failed attempts, doubling up to 3 s, and logs a failure once, not at every retry', async () => {
    await start();
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    api.down = true;
    connection.last.cut();
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      const before = api.listAttempts;
      let waited = 0;
      while (api.listAttempts === before && waited < 10_000) {
        jest.advanceTimersByTime(50);
        waited += 50;
        for (let j = 0; j < 5; j++) await new Promise((resolve) => setImmediate(resolve));
      }
      waits.push(waited);
    }
    // Each wait is the backoff times a jitter of 0.5 to 1: 0.2, 0.4, 0.8, 1.6, then 3.2 capped at 3 s.
    const bounds = [200, 400, 800, 1600, 3000, 3000];
    waits.forEach((ms, i) => {
      expect(ms).toBeGreaterThanOrEqual(bounds[i] / 2);
      expect(ms).toBeLessThanOrEqual(bounds[i] + 50);
    });
    // Six failed lists, one line: a failure is logged when it changes, not at every retry.
    expect(quiet[1].mock.calls.filter(([m]) => /Cannot watch pods in api .*ECONNREFUSED/.test(String(m)))).toHaveLength(
      1,
    );
  });

  it('reads an object it does not hold, and remembers one found gone until the token naming it expires', async () => {
    await start();
    const now = Date.now();
    api.pods.push({ name: 'api-new', uid: 'uid-new' });
    expect(await watch.exists('api-new', 'uid-new', now, now + 60_000)).toBe(true);
    expect(await watch.exists('api-gone', 'uid-gone', now, now + 60_000)).toBe(false);
    expect(await watch.exists('api-gone', 'uid-gone', now, now + 60_000)).toBe(false);
    expect(api.reads).toEqual(['api-new', 'api-gone']);
    api.down = true;
    await expect(watch.exists('api-other', 'uid-other', now, now + 60_000)).rejects.toBeInstanceOf(
      AuthenticationUnavailableError,
    );
  });
});
