import { startControlPlane } from '../libs/k8s-auth/src/testing';

// `npm start`: a real control plane on loopback, up until Ctrl-C.
async function main(): Promise<void> {
  const started = Date.now();
  const cp = await startControlPlane();
  process.stdout.write(
    `\nControl plane ready at ${cp.server} in ${((Date.now() - started) / 1000).toFixed(1)} s.\n` +
      `In another shell:\n  export KUBECONFIG=${cp.kubeconfigPath}\n  kubectl get namespaces\n` +
      'Press Ctrl-C to stop it.\n',
  );
  const stop = () => {
    process.stdout.write('\nStopping the control plane...\n');
    cp.stop().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err: Error) => {
  process.stderr.write(`${err.name === 'ControlPlaneError' ? err.message : err.stack}\n`);
  process.exit(1);
});
