import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { fetchWithServiceAccountToken, type FetchTokenOptions } from './outgoing-token.fetch';
import type { TokenSource } from './token-source';
import { type RecordingServer, startRecordingServer } from '../../testing/recording-server';

const TOKEN = 'header.payload-of-the-outgoing-token.signature';

function source(): TokenSource & { refresh: jest.Mock } {
  return { name: 'test', expiresAt: undefined, token: () => TOKEN, refresh: jest.fn(async () => undefined) };
}

function rotatingSource() {
  let generation = 1;
  return {
    ...source(),
    token: () => `token-${generation}`,
    refresh: jest.fn(async () => {
      generation++;
    }),
  };
}

function redirect(status: number, location: string) {
  return (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(status, { location }).end('moved');
  };
}

/** Whether any header of a recorded request holds the token, in whatever form. */
const carriesToken = (headers: IncomingHttpHeaders) => JSON.stringify(headers).includes(TOKEN);

describe('fetchWithServiceAccountToken', () => {
  let store: RecordingServer;
  let otherHost: RecordingServer;
  let otherPort: RecordingServer;
  const bodies: string[] = [];

  beforeAll(async () => {
    store = await startRecordingServer('127.0.0.1');
    otherHost = await startRecordingServer('127.0.0.2');
    otherPort = await startRecordingServer('127.0.0.1');
  });
  afterAll(() => Promise.all([store, otherHost, otherPort].map((o) => o.close())));
  beforeEach(() => {
    bodies.length = 0;
    for (const o of [store, otherHost, otherPort]) {
      o.seen.length = 0;
      o.respond = (_req, res) => res.end('ok');
    }
  });

  function client(options: Partial<FetchTokenOptions> = {}, tokens: TokenSource = source()): typeof fetch {
    return fetchWithServiceAccountToken(tokens, { origin: store.url, ...options });
  }

  /** Answers 401 to the first request, then 200, recording each body. */
  function refuseFirst(server: RecordingServer): void {
    server.respond = (req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        bodies.push(body);
        res.writeHead(server.seen.length === 1 ? 401 : 200).end();
      });
    };
  }

  it.each(['authorization', 'x-client-id'] as const)('sends the token to its origin in %s', async (header) => {
    await client({ header })(`${store.url}/x`);
    expect(store.seen[0].headers[header]).toBe(header === 'authorization' ? `Bearer ${TOKEN}` : TOKEN);
  });

  it('takes a URL string, a URL or a Request, and keeps the headers the caller set', async () => {
    const send = client();
    await send(`${store.url}/string`, { headers: { 'x-trace': 'a' } });
    await send(new URL('/url', store.url), { headers: [['x-trace', 'b']] });
    await send(new Request(`${store.url}/request`, { headers: { 'x-trace': 'c' } }));
    expect(store.seen.map((s) => [s.path, s.headers['x-trace'], s.headers.authorization])).toEqual([
      ['/string', 'a', `Bearer ${TOKEN}`],
      ['/url', 'b', `Bearer ${TOKEN}`],
      ['/request', 'c', `Bearer ${TOKEN}`],
    ]);
  });

  it('sends no token to another host, port or scheme', async () => {
    const send = client({ header: 'x-client-id' });
    await send(`${otherHost.url}/host`);
    await send(new Request(`${otherPort.url}/port`));
    await expect(send(`${store.url.replace('http:', 'https:')}/scheme`)).rejects.toThrow();
    expect(otherHost.seen.map((s) => s.path)).toEqual(['/host']);
    expect(otherPort.seen.map((s) => s.path)).toEqual(['/port']);
    expect([...otherHost.seen, ...otherPort.seen].filter((s) => carriesToken(s.headers))).toEqual([]);
  });

  it('keeps an Authorization header the caller set, and then does not retry', async () => {
    store.respond = (_req, res) => res.writeHead(401).end();
    const tokens = source();
    const answer = await client({}, tokens)(`${store.url}/`, { headers: { authorization: 'Basic b3du' } });
    expect(answer.status).toBe(401);
    expect(store.seen.map((s) => s.headers.authorization)).toEqual(['Basic b3du']);
    expect(tokens.refresh).not.toHaveBeenCalled();
  });

  describe.each([301, 302, 303, 307, 308])('a %i to another origin', (status) => {
    it.each(['another host name', 'another port'] as const)(
      'is not followed while carrying the token (%s): the caller gets the 3xx, the other origin nothing',
      async (target) => {
        const other = target === 'another host name' ? otherHost : otherPort;
        store.respond = redirect(status, `${other.url}/stolen`);
        const send = client({ header: 'x-client-id' });
        const answer = await send(`${store.url}/`);
        expect(answer.status).toBe(status);
        expect(answer.headers.get('location')).toBe(`${other.url}/stolen`);
        const viaRequest = await send(new Request(`${store.url}/`, { redirect: 'follow' }));
        expect(viaRequest.status).toBe(status);
        await expect(send(`${store.url}/`, { redirect: 'error' })).rejects.toThrow();
        expect(other.seen).toEqual([]);
      },
    );
  });

  it('leaves the redirects of requests to other origins to fetch', async () => {
    otherHost.respond = (req, res) => (req.url === '/' ? redirect(302, '/next')(req, res) : res.end('next'));
    const answer = await client()(`${otherHost.url}/`);
    expect(await answer.text()).toBe('next');
    expect(otherHost.seen.filter((s) => carriesToken(s.headers))).toEqual([]);
  });

  it('re-reads the token once after a 401 and sends an idempotent request again, body included', async () => {
    refuseFirst(store);
    const tokens = rotatingSource();
    const answer = await client({ header: 'x-client-id' }, tokens)(`${store.url}/`, { method: 'PUT', body: 'data' });
    expect(answer.status).toBe(200);
    expect(store.seen.map((s) => s.headers['x-client-id'])).toEqual(['token-1', 'token-2']);
    expect(bodies).toEqual(['data', 'data']);
    expect(tokens.refresh).toHaveBeenCalledTimes(1);
  });

  it('retries a GET given as a Request', async () => {
    refuseFirst(store);
    const tokens = rotatingSource();
    const answer = await client({ header: 'x-client-id' }, tokens)(new Request(`${store.url}/`));
    expect(answer.status).toBe(200);
    expect(store.seen.map((s) => s.headers['x-client-id'])).toEqual(['token-1', 'token-2']);
  });

  it('retries at most once when the callee keeps answering 401', async () => {
    // Bounded here so that a retry loop ends: past 5 requests the callee gives in.
    store.respond = (_req, res) => res.writeHead(store.seen.length <= 5 ? 401 : 200).end();
    const tokens = source();
    expect((await client({}, tokens)(`${store.url}/`)).status).toBe(401);
    expect(store.seen).toHaveLength(2);
    expect(tokens.refresh).toHaveBeenCalledTimes(1);
  });

  it.each([
    ['a POST', () => ({ method: 'POST', body: 'data' })],
    ['a PATCH', () => ({ method: 'PATCH', body: 'data' })],
    [
      'a PUT whose body is a stream',
      () => ({ method: 'PUT', body: ReadableStream.from([Buffer.from('data')]), duplex: 'half' }),
    ],
  ])('does not retry %s', async (_name, init) => {
    refuseFirst(store);
    const tokens = source();
    expect((await client({}, tokens)(`${store.url}/`, init() as RequestInit)).status).toBe(401);
    expect(store.seen).toHaveLength(1);
    expect(tokens.refresh).not.toHaveBeenCalled();
  });

  it('does not retry a 401 from another origin', async () => {
    refuseFirst(otherHost);
    const tokens = source();
    expect((await client({}, tokens)(`${otherHost.url}/`)).status).toBe(401);
    expect(otherHost.seen).toHaveLength(1);
    expect(tokens.refresh).not.toHaveBeenCalled();
  });

  it('uses the fetch it is given', async () => {
    const calls: string[] = [];
    const own: typeof fetch = (input, init) => {
      calls.push(new Headers(init?.headers).get('authorization') ?? 'none');
      return fetch(input, init);
    };
    await client({ fetch: own })(`${store.url}/`);
    expect(calls).toEqual([`Bearer ${TOKEN}`]);
  });

  it('refuses an origin option that is not an origin', () => {
    for (const bad of ['not a url', 'ftp://127.0.0.1', 'http://127.0.0.1/path', 'http://user:pw@127.0.0.1', '']) {
      expect(() => fetchWithServiceAccountToken(source(), { origin: bad })).toThrow(
        /fetchWithServiceAccountToken: '.*' is not an origin/,
      );
    }
  });
});
