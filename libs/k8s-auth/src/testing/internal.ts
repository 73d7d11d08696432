/**
 * What the testing kit needs itself, and the workspace's suites and benchmark use too (`@k8s-auth/internal/testing`,
 * a workspace path): not part of the published entry, and free to change.
 */
export { freePort } from './control-plane';
export { kubernetesVersionStamp } from './control-plane-binaries';
export { ensureGoBinaries, goBuildKey, readGoMod } from './go-binaries';
export type { GoBinary, GoBuildOptions } from './go-binaries';
export { ManagedProcess } from './managed-process';
export type { ManagedProcessOptions } from './managed-process';
export { ApiServerProxy } from './api-server-proxy';
export type { ApiServerProxyOptions } from './api-server-proxy';
