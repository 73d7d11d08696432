import { readFileSync } from 'node:fs';
import { SecretStoreGrpcClient } from '@k8s-auth/service-runtime/testing';
import { startDemoEnvironment } from '../e2e/src/demo-environment';

// `npm start`: the seed's walkthrough on a real control plane, up until Ctrl-C.
async function main(): Promise<void> {
  const started = Date.now();
  process.stdout.write('Starting kube-apiserver and etcd on loopback...\n');
  const env = await startDemoEnvironment();
  const stop = async (code: number) => {
    process.stdout.write('\nStopping the services and the control plane...\n');
    await env.stop();
    process.exit(code);
  };
  process.once('SIGINT', () => void stop(0));
  process.once('SIGTERM', () => void stop(0));

  try {
    const store = await env.startSecretStore();
    const api = await env.startCaller('api', { secretStoreUrl: store.url });
    const dataStore = await env.startCaller('data-store', { secretStoreUrl: store.url });
    process.stdout.write(
      `Ready in ${((Date.now() - started) / 1000).toFixed(1)} s.\n\n` +
        `  secret-store  ${store.url}   (answers api:api only, audience secret-store)\n` +
        `                grpc ${store.grpcTarget}   (the same, proto at dist/apps/secret-store/proto)\n` +
        `  api           ${api.url}   (GET / asks the secret store with its own token)\n` +
        `  data-store    ${dataStore.url}   (same program as api, running as data-store:data-store)\n\n` +
        `Health and metrics (no token): ${store.url}/readyz, ${store.url}/metrics\n` +
        `Token files (rotated like the kubelet does): ${env.dir}/tokens\n` +
        `Kubernetes: export KUBECONFIG=${env.cp.kubeconfigPath}\n\n` +
        'The walkthrough:\n',
    );
    const show = async (what: string, url: string) => {
      const res = await fetch(url);
      process.stdout.write(`  ${what}\n    curl ${url}\n    -> ${res.status} ${await res.text()}\n`);
    };
    await show('api -> secret store (allowed):', `${api.url}/`);
    await show('data-store -> secret store (refused: wrong caller):', `${dataStore.url}/`);
    await show('no token at all:', `${store.url}/`);
    const grpc = new SecretStoreGrpcClient(store.grpcTarget ?? '');
    const showGrpc = async (what: string, headers: Record<string, string>) => {
      const answer = await grpc.call('Hello', {}, headers);
      const result = answer.code === 0 ? JSON.stringify(answer.reply) : `status ${answer.code} ${answer.details}`;
      process.stdout.write(
        `  ${what}\n    secretstore.v1.SecretStore/Hello at ${store.grpcTarget}\n    -> ${result}\n`,
      );
    };
    const apiToken = readFileSync(env.tokenFiles.api, 'utf8').trim();
    await showGrpc("over gRPC, with api's token:", { authorization: `Bearer ${apiToken}` });
    await showGrpc('over gRPC, no token:', {});
    grpc.close();
    process.stdout.write(`\nLogs: ${env.dir}/*.log\nPress Ctrl-C to stop.\n`);
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    await stop(1);
  }
}

main().catch((err: Error) => {
  process.stderr.write(`${err.name === 'ControlPlaneError' ? err.message : err.stack}\n`);
  process.exit(1);
});
