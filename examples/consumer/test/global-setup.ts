import { ensureControlPlaneBinaries } from '@k8s-auth/nestjs/testing';

// Builds kube-apiserver and etcd on the first run (minutes, once per machine), outside any test's timeout.
export default async function globalSetup(): Promise<void> {
  await ensureControlPlaneBinaries();
}
