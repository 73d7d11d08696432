import axios, { type AxiosInstance } from 'axios';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { attachServiceAccountToken, type AttachTokenOptions } from './outgoing-token.axios';
import type { TokenSource } from './token-source';
import { type RecordingServer, startRecordingServer } from '../../testing/recording-server';

const TOKEN = 'header.payload-of-the-outgoing-token.signature';

function source(): TokenSource & { refresh: jest.Mock } {
  return { name: 'test', expiresAt: undefined, token: () => TOKEN, refresh: jest.fn(async () => undefined) };
}

function redirect(status: number, location: string) {
  return (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(status, { location }).end('moved');
  };
}

/** Whether any header of a recorded request holds the token, in whatever form. */
const carriesToken = (headers: IncomingHttpHeaders) => JSON.stringify(headers).includes(TOKEN);

describe('attachServiceAccountToken', () => {
  let store: RecordingServer;
  let otherHost: RecordingServer;
  let otherPort: RecordingServer;
  const targets = () => ({ 'another host name': otherHost, 'another port': otherPort });

  beforeAll(async () => {
    store = await startRecordingServer('127.0.0.1');
    otherHost = await startRecordingServer('127.0.0.2');
    otherPort = await startRecordingServer('127.0.0.1');
  });
  afterAll(() => Promise.all([store, otherHost, otherPort].map((o) => o.close())));
  beforeEach(() => {
    for (const o of [store, otherHost, otherPort]) {
      o.seen.length = 0;
      o.respond = (_req, res) => res.end('ok');
    }
  });

  function client(options: AttachTokenOptions = {}, tokens = source()): AxiosInstance {
    const instance = axios.create({ baseURL: store.url });
    attachServiceAccountToken(instance, tokens, options);
    return instance;
  }

  it.each(['authorization', 'x-client-id'] as const)('sends the token to the baseURL origin in %s', async (header) => {
    await client({ header }).get('/x');
    expect(store.seen[0].headers[header]).toBe(header === 'authorization' ? `Bearer ${TOKEN}` : TOKEN);
  });

  it('sends no token to another origin through the same instance', async () => {
    const instance = client({ header: 'x-client-id' });
    await instance.get(`${otherHost.url}/absolute`);
    await instance.get(`${otherPort.url}/absolute`);
    await instance.get('/relative', { baseURL: otherHost.url });
    expect(otherHost.seen.map((s) => s.path)).toEqual(['/absolute', '/relative']);
    expect(otherPort.seen.map((s) => s.path)).toEqual(['/absolute']);
    expect([...otherHost.seen, ...otherPort.seen].filter((s) => carriesToken(s.headers))).toEqual([]);
  });

  it('does not add the token when retrying after a 401 from another origin, nor retry at all', async () => {
    // Bounded here so that a retry loop ends: past 3 requests the other origin gives in.
    otherHost.respond = (_req, res) => res.writeHead(otherHost.seen.length <= 3 ? 401 : 200).end();
    const tokens = source();
    const instance = client({}, tokens);
    await expect(instance.get(`${otherHost.url}/`)).rejects.toMatchObject({ response: { status: 401 } });
    expect(otherHost.seen).toHaveLength(1);
    expect(carriesToken(otherHost.seen[0].headers)).toBe(false);
    expect(tokens.refresh).not.toHaveBeenCalled();
  });

  it('takes no token along when a config that carried one is sent to another origin', async () => {
    store.respond = (_req, res) => res.writeHead(500).end();
    const instance = client({ header: 'x-client-id' });
    const error = await instance.post('/', {}).catch((err: unknown) => err as { config: object });
    await instance.request({ ...error.config, url: `${otherHost.url}/resent` });
    expect(otherHost.seen.map((s) => s.path)).toEqual(['/resent']);
    expect(carriesToken(otherHost.seen[0].headers)).toBe(false);
  });

  it('sends the token to the listed origins only, when `origins` is given', async () => {
    const instance = axios.create();
    attachServiceAccountToken(instance, source(), { origins: [`${otherPort.url}/`] });
    await instance.get(`${otherPort.url}/listed`);
    await instance.get(`${store.url}/not-listed`);
    expect(carriesToken(otherPort.seen[0].headers)).toBe(true);
    expect(carriesToken(store.seen[0].headers)).toBe(false);
  });

  it('refuses to attach without a baseURL or origins, or with something that is not an origin', () => {
    expect(() => attachServiceAccountToken(axios.create(), source())).toThrow(
      /needs the instance's baseURL or the origins option/,
    );
    expect(() => attachServiceAccountToken(axios.create({ baseURL: '/relative' }), source())).toThrow(
      /baseURL '\/relative' is not an absolute http\(s\) URL/,
    );
    for (const bad of [
      'not a url',
      'ftp://127.0.0.1',
      'http://127.0.0.1/path',
      'http://user:pw@127.0.0.1',
      'http://a/#b',
    ]) {
      expect(() => attachServiceAccountToken(axios.create(), source(), { origins: [bad] })).toThrow(/is not an origin/);
    }
    expect(() => attachServiceAccountToken(axios.create({ baseURL: store.url }), source(), { origins: [] })).toThrow(
      /the origins option lists no origin/,
    );
  });

  describe.each([302, 307])('a %i to another origin', (status) => {
    describe.each(['authorization', 'x-client-id'] as const)('with the token in %s', (header) => {
      it.each(['another host name', 'another port'] as const)(
        'is not followed by default (%s): the caller gets the 3xx, the other origin nothing',
        async (target) => {
          const other = targets()[target];
          store.respond = redirect(status, `${other.url}/stolen`);
          await expect(client({ header }).get('/')).rejects.toMatchObject({ response: { status } });
          const answer = await client({ header }).get('/', { validateStatus: () => true });
          expect(answer.status).toBe(status);
          expect(other.seen).toEqual([]);
        },
      );

      it.each(['another host name', 'another port'] as const)(
        'is followed with followRedirects (%s), without the token',
        async (target) => {
          const other = targets()[target];
          store.respond = redirect(status, `${other.url}/stolen`);
          const answer = await client({ header, followRedirects: true }).get('/');
          expect(answer.status).toBe(200);
          expect(other.seen.map((s) => s.path)).toEqual(['/stolen']);
          expect(carriesToken(other.seen[0].headers)).toBe(false);
        },
      );
    });
  });

  it('keeps the token on a followed redirect within the origin, and drops it for good once it leaves', async () => {
    store.respond = (req, res) => {
      if (req.url === '/') redirect(307, '/moved')(req, res);
      else if (req.url === '/moved') redirect(302, `${otherHost.url}/away`)(req, res);
      else res.end('back');
    };
    otherHost.respond = redirect(302, `${store.url}/back`);
    const answer = await client({ header: 'x-client-id', followRedirects: true }).get('/');
    expect(answer.data).toBe('back');
    expect(store.seen.map((s) => [s.path, carriesToken(s.headers)])).toEqual([
      ['/', true],
      ['/moved', true],
      ['/back', false],
    ]);
    expect(carriesToken(otherHost.seen[0].headers)).toBe(false);
  });

  it("still runs the caller's own beforeRedirect when following", async () => {
    store.respond = redirect(302, `${otherPort.url}/next`);
    const hops: string[] = [];
    await client({ header: 'x-client-id', followRedirects: true }).get('/', {
      beforeRedirect: (options) => hops.push(String(options['href'])),
    });
    expect(hops).toEqual([`${otherPort.url}/next`]);
    expect(carriesToken(otherPort.seen[0].headers)).toBe(false);
  });

  it('does not follow a redirect with the fetch adapter either', async () => {
    store.respond = redirect(302, `${otherHost.url}/stolen`);
    const instance = axios.create({ baseURL: store.url, adapter: 'fetch' });
    attachServiceAccountToken(instance, source(), { header: 'x-client-id' });
    const answer = await instance.get('/', { validateStatus: () => true });
    expect(answer.status).toBe(302);
    expect(otherHost.seen).toEqual([]);
  });

  it('re-reads the token once after a 401 and retries an idempotent request', async () => {
    let generation = 1;
    const tokens = {
      ...source(),
      token: () => `token-${generation}`,
      refresh: jest.fn(async () => {
        generation++;
      }),
    };
    store.respond = (_req, res) => res.writeHead(store.seen.length === 1 ? 401 : 200).end();
    const answer = await client({ header: 'x-client-id' }, tokens).get('/');
    expect(answer.status).toBe(200);
    expect(store.seen.map((s) => s.headers['x-client-id'])).toEqual(['token-1', 'token-2']);
    expect(tokens.refresh).toHaveBeenCalledTimes(1);
  });

  it('retries at most once when the callee keeps answering 401', async () => {
    // Bounded here so that a retry loop ends: past 5 requests the callee gives in.
    store.respond = (_req, res) => res.writeHead(store.seen.length <= 5 ? 401 : 200).end();
    const tokens = source();
    await expect(client({}, tokens).get('/')).rejects.toMatchObject({ response: { status: 401 } });
    expect(store.seen).toHaveLength(2);
    expect(tokens.refresh).toHaveBeenCalledTimes(1);
  });

  it('does not retry a POST', async () => {
    store.respond = (_req, res) => res.writeHead(401).end();
    const tokens = source();
    await expect(client({}, tokens).post('/', {})).rejects.toMatchObject({ response: { status: 401 } });
    expect(store.seen).toHaveLength(1);
    expect(tokens.refresh).not.toHaveBeenCalled();
  });
});
