import { credentials, ServerCredentials, status } from '@grpc/grpc-js';
import { AuthenticationV1Api } from '@kubernetes/client-node';
import { Logger } from '@nestjs/common';
import { type ClientGrpc, ClientsModule, Transport } from '@nestjs/microservices';
import { Test, type TestingModule } from '@nestjs/testing';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { firstValueFrom, type Observable } from 'rxjs';
import {
  callSay,
  EchoClient,
  echoPackageDefinition,
  type GrpcRecordingServer,
  startGrpcRecordingServer,
} from './grpc-recording-server.spec-support';
import {
  type ControlPlane,
  createServiceAccount,
  type RecordingServer,
  startControlPlane,
  startRecordingServer,
} from '../../testing';
import { fetchWithServiceAccountToken, K8sAuthModule, type TokenSource, TokenSources } from '../../index';
import { serviceAccountCallCredentials, serviceAccountClientOptions } from '../../grpc';

const AUDIENCE = 'secret-store';
const CALLER = 'system:serviceaccount:api:api';

/**
 * Outgoing tokens minted by TokenRequest, checked by the callee with a TokenReview, both against a real API server.
 * The callees refuse the first token they see, as after a rotation, and accept a token only if the API server
 * authenticates it as api:api for their audience.
 */
describe('fetch and grpc-js outgoing tokens against a real API server', () => {
  let cp: ControlPlane;
  let moduleRef: TestingModule;
  let tokens: TokenSource;
  let reviewer: AuthenticationV1Api;
  let refused: Set<string>;
  let http: RecordingServer;
  let otherHttp: RecordingServer;
  let grpc: GrpcRecordingServer;
  let otherGrpc: GrpcRecordingServer;
  let tlsGrpc: GrpcRecordingServer;
  const reviews: { token: string; user: string | undefined }[] = [];

  /** The verdict of the callee: the first token refused, then what the API server says. */
  async function accepts(presented: string | undefined): Promise<boolean> {
    const token = /^Bearer (.+)$/.exec(presented ?? '')?.[1];
    if (!token) return false;
    if (refused.size === 0) refused.add(token);
    if (refused.has(token)) return false;
    const review = await reviewer.createTokenReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [AUDIENCE] } },
    });
    const user = review.status?.authenticated ? review.status.user?.username : undefined;
    reviews.push({ token, user });
    return user === CALLER;
  }

  beforeAll(async () => {
    cp = await startControlPlane();
    Logger.overrideLogger(false);
    await createServiceAccount(cp.kubeConfig, { namespace: 'api', name: 'api' });
    reviewer = cp.kubeConfig.makeApiClient(AuthenticationV1Api);
    const dir = mkdtempSync(join(tmpdir(), 'outgoing-spec-'));
    const kubeconfig = join(dir, 'admin.kubeconfig');
    writeFileSync(kubeconfig, cp.kubeConfig.exportConfig());

    http = await startRecordingServer('127.0.0.1');
    otherHttp = await startRecordingServer('127.0.0.2');
    grpc = await startGrpcRecordingServer('127.0.0.1');
    otherGrpc = await startGrpcRecordingServer('127.0.0.2');
    // The API server's own serving certificate (for 127.0.0.1) and key serve as the TLS callee's.
    const certs = join(cp.state?.dir ?? '', 'certs');
    tlsGrpc = await startGrpcRecordingServer(
      '127.0.0.1',
      ServerCredentials.createSsl(null, [
        {
          cert_chain: readFileSync(join(certs, 'apiserver.crt')),
          private_key: readFileSync(join(certs, 'apiserver.key')),
        },
      ]),
    );

    moduleRef = await Test.createTestingModule({
      imports: [
        K8sAuthModule.forRoot({
          metrics: false,
          kubeconfig,
          tokenSources: { store: { serviceAccount: 'api:api', audience: AUDIENCE } },
        }),
        // What an app does: the token source comes from K8sAuthModule, the client options from the helper.
        ClientsModule.registerAsync([
          {
            name: 'STORE',
            inject: [TokenSources],
            useFactory: (sources: TokenSources) => ({
              transport: Transport.GRPC,
              options: {
                url: grpc.target,
                package: 'test',
                packageDefinition: echoPackageDefinition,
                channelOptions: serviceAccountClientOptions(sources.get('store'), { target: grpc.target }),
              },
            }),
          },
        ]),
      ],
    }).compile();
    await moduleRef.init();
    tokens = moduleRef.get(TokenSources).get('store');
  });
  afterAll(async () => {
    await moduleRef?.close();
    await Promise.all([http, otherHttp, grpc, otherGrpc, tlsGrpc].map((s) => s?.close()));
    await cp?.stop();
  });
  beforeEach(() => {
    refused = new Set();
    reviews.length = 0;
    for (const s of [http, otherHttp]) {
      s.seen.length = 0;
      s.respond = (req, res) => {
        void accepts(req.headers.authorization).then((ok) => res.writeHead(ok ? 200 : 401).end());
      };
    }
    for (const s of [grpc, otherGrpc, tlsGrpc]) {
      s.seen.length = 0;
      s.respond = async (call) =>
        (await accepts(call.metadata['authorization']?.[0])) ? undefined : status.UNAUTHENTICATED;
    }
  });

  describe('fetchWithServiceAccountToken', () => {
    it('sends the token to its origin only, and retries a GET once with a new token after a 401', async () => {
      const send = fetchWithServiceAccountToken(tokens, { origin: http.url });
      const answer = await send(`${http.url}/secret`);
      expect(answer.status).toBe(200);
      const [first, second] = http.seen.map((s) => s.headers.authorization);
      expect(first).not.toBe(second);
      expect(reviews).toEqual([{ token: second?.slice('Bearer '.length), user: CALLER }]);

      expect((await send(`${otherHttp.url}/secret`)).status).toBe(401);
      expect(otherHttp.seen.map((s) => s.headers.authorization)).toEqual([undefined]);
    });

    it('does not retry a POST', async () => {
      const send = fetchWithServiceAccountToken(tokens, { origin: http.url });
      expect((await send(`${http.url}/secret`, { method: 'POST', body: '{}' })).status).toBe(401);
      expect(http.seen).toHaveLength(1);
    });

    it('does not follow a redirect to another origin while carrying the token', async () => {
      http.respond = (_req, res) => res.writeHead(307, { location: `${otherHttp.url}/stolen` }).end();
      const answer = await fetchWithServiceAccountToken(tokens, { origin: http.url })(`${http.url}/secret`);
      expect(answer.status).toBe(307);
      expect(otherHttp.seen).toEqual([]);
    });
  });

  describe('serviceAccountClientOptions, through Nest ClientsModule', () => {
    it('sends the token to its target; after UNAUTHENTICATED the next call carries a new one', async () => {
      const echo = moduleRef.get<ClientGrpc>('STORE').getService<{ say(r: object): Observable<unknown> }>('Echo');
      await expect(firstValueFrom(echo.say({ text: 'hi' }))).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
      expect(await firstValueFrom(echo.say({ text: 'hi' }))).toEqual({ echo: { text: 'hi' } });
      const [first, second] = grpc.seen.map((s) => s.metadata['authorization']?.[0]);
      expect(first).not.toBe(second);
      expect(reviews).toEqual([{ token: second?.slice('Bearer '.length), user: CALLER }]);
    });

    it('sends no token to another target, with the same options', async () => {
      const client = new EchoClient(
        otherGrpc.target,
        credentials.createInsecure(),
        serviceAccountClientOptions(tokens, { target: grpc.target }),
      );
      await expect(callSay(client)).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
      expect(otherGrpc.seen.map((s) => s.metadata['authorization'])).toEqual([undefined]);
      client.close();
    });
  });

  describe('serviceAccountCallCredentials', () => {
    it('sends the token over a TLS channel to its target', async () => {
      const client = new EchoClient(
        tlsGrpc.target,
        credentials.combineChannelCredentials(
          credentials.createSsl(Buffer.from(cp.caCert)),
          serviceAccountCallCredentials(tokens),
        ),
      );
      // A token in the set from the start: the first-token refusal is another test's matter.
      refused.add('none yet');
      expect(await callSay(client)).toEqual({ echo: { text: 'hi' } });
      expect(reviews.map((r) => r.user)).toEqual([CALLER]);
      client.close();
    });
  });
});
