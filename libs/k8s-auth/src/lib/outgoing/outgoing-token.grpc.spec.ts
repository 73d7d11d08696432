import { credentials, status } from '@grpc/grpc-js';
import { ClientGrpcProxy } from '@nestjs/microservices';
import { firstValueFrom, type Observable } from 'rxjs';
import {
  callSay,
  EchoClient,
  echoPackageDefinition,
  type GrpcRecordingServer,
  startGrpcRecordingServer,
} from './grpc-recording-server.spec-support';
import {
  serviceAccountCallCredentials,
  serviceAccountClientOptions,
  serviceAccountTokenInterceptor,
} from './outgoing-token.grpc';
import { TokenUnavailableError, type TokenSource } from './token-source';

const TOKEN = 'header.payload-of-the-outgoing-token.signature';

function source(): TokenSource & { refresh: jest.Mock } {
  return { name: 'test', expiresAt: undefined, token: () => TOKEN, refresh: jest.fn(async () => undefined) };
}

describe('serviceAccountClientOptions', () => {
  let store: GrpcRecordingServer;
  let otherHost: GrpcRecordingServer;
  let otherPort: GrpcRecordingServer;
  const clients: EchoClient[] = [];

  beforeAll(async () => {
    store = await startGrpcRecordingServer('127.0.0.1');
    otherHost = await startGrpcRecordingServer('127.0.0.2');
    otherPort = await startGrpcRecordingServer('127.0.0.1');
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await Promise.all([store, otherHost, otherPort].map((s) => s.close()));
  });
  beforeEach(() => {
    for (const s of [store, otherHost, otherPort]) {
      s.seen.length = 0;
      s.respond = () => undefined;
    }
  });

  function client(target: string, options: object): EchoClient {
    const made = new EchoClient(target, credentials.createInsecure(), options);
    clients.push(made);
    return made;
  }

  it.each(['authorization', 'x-client-id'] as const)('sends the token to its target in %s', async (header) => {
    await callSay(client(store.target, serviceAccountClientOptions(source(), { target: store.target, header })));
    expect(store.seen[0].metadata[header]).toEqual([header === 'authorization' ? `Bearer ${TOKEN}` : TOKEN]);
  });

  it('knows the target however the client names it', async () => {
    const options = serviceAccountClientOptions(source(), { target: `dns:///${store.target}` });
    await callSay(client(store.target, options));
    await callSay(client(`dns:${store.target}`, options));
    expect(store.seen.map((s) => s.metadata['authorization'])).toEqual([[`Bearer ${TOKEN}`], [`Bearer ${TOKEN}`]]);
  });

  it('sends no token when the same options make a client of another target', async () => {
    const options = serviceAccountClientOptions(source(), { target: store.target });
    await callSay(client(otherHost.target, options));
    await callSay(client(otherPort.target, options));
    expect([...otherHost.seen, ...otherPort.seen].map((s) => JSON.stringify(s.metadata).includes(TOKEN))).toEqual([
      false,
      false,
    ]);
  });

  it('refuses a call when the interceptor is given without the transformer that shows it the channel', async () => {
    const bare = client(store.target, {
      interceptors: [serviceAccountTokenInterceptor(source(), { target: store.target })],
    });
    expect(() => bare.Say({}, () => undefined)).toThrow(/sees no channel target: give the client the callInvocation/);
    expect(store.seen).toEqual([]);
  });

  it('re-reads the token after UNAUTHENTICATED before the caller gets it, without sending the call again', async () => {
    let generation = 1;
    let refreshed = false;
    const tokens = {
      ...source(),
      token: () => `token-${generation}`,
      refresh: jest.fn(async () => {
        await new Promise((r) => setImmediate(r));
        generation++;
        refreshed = true;
      }),
    };
    store.respond = () => (store.seen.length === 1 ? status.UNAUTHENTICATED : undefined);
    const made = client(
      store.target,
      serviceAccountClientOptions(tokens, { target: store.target, header: 'x-client-id' }),
    );
    const refused = await callSay(made).catch((err: { code: number }) => ({ code: err.code, refreshed }));
    expect(refused).toEqual({ code: status.UNAUTHENTICATED, refreshed: true });
    expect(store.seen).toHaveLength(1);
    await callSay(made);
    expect(store.seen.map((s) => s.metadata['x-client-id'])).toEqual([['token-1'], ['token-2']]);
    expect(tokens.refresh).toHaveBeenCalledTimes(1);
  });

  it('does not re-read the token on other failures, nor for another target', async () => {
    const tokens = source();
    store.respond = () => status.PERMISSION_DENIED;
    otherPort.respond = () => status.UNAUTHENTICATED;
    const options = serviceAccountClientOptions(tokens, { target: store.target });
    await expect(callSay(client(store.target, options))).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
    await expect(callSay(client(otherPort.target, options))).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
    expect(tokens.refresh).not.toHaveBeenCalled();
  });

  it('fails the call with UNAVAILABLE, sending nothing, when the source has no valid token', async () => {
    const tokens = {
      ...source(),
      token: (): string => {
        throw new TokenUnavailableError('No token loaded yet from somewhere');
      },
    };
    const made = client(store.target, serviceAccountClientOptions(tokens, { target: store.target }));
    await expect(callSay(made)).rejects.toMatchObject({
      code: status.UNAVAILABLE,
      details: 'No token loaded yet from somewhere',
    });
    expect(store.seen).toEqual([]);
  });

  it("works as a Nest ClientGrpcProxy's channelOptions", async () => {
    const proxy = new ClientGrpcProxy({
      url: store.target,
      package: 'test',
      packageDefinition: echoPackageDefinition,
      channelOptions: serviceAccountClientOptions(source(), { target: store.target }),
    });
    const echo = proxy.getService<{ say(request: object): Observable<unknown> }>('Echo');
    expect(await firstValueFrom(echo.say({ text: 'hi' }))).toEqual({ echo: { text: 'hi' } });
    expect(store.seen[0].metadata['authorization']).toEqual([`Bearer ${TOKEN}`]);
    proxy.close();
  });

  it('refuses an empty target', () => {
    expect(() => serviceAccountClientOptions(source(), { target: ' ' })).toThrow(/the target option must name/);
  });
});

describe('serviceAccountCallCredentials', () => {
  it('cannot be combined with plaintext channel credentials', () => {
    expect(() => credentials.createInsecure().compose(serviceAccountCallCredentials(source()))).toThrow(
      'Cannot compose insecure credentials',
    );
  });
});
