/**
 * Testing entry point (`@k8s-auth/nestjs/testing`): a real kube-apiserver and etcd on loopback, and
 * helpers to create service accounts, pods and tokens in it, so that tests prove auth decisions
 * against the real API server; and test doubles, so that tests of an app's own logic boot it with
 * no API server and no credentials.
 */
export { fakeToken, fakeTokenAuthenticator } from './fake-token-authenticator';
export type { FakeIdentity, FakeTokenAuthenticatorOptions } from './fake-token-authenticator';
export { fakeTokenSources } from './fake-token-sources';
export { fakeAccessReviewer } from './fake-access-reviewer';
export { startControlPlane, stopControlPlaneByState } from './control-plane';
export type { ControlPlane, ControlPlaneOptions, ControlPlaneState } from './control-plane';
export { ensureControlPlaneBinaries, controlPlaneVersions, defaultCacheDirectory } from './control-plane-binaries';
export type { BinaryOptions, ControlPlaneBinaries } from './control-plane-binaries';
export { ControlPlaneError } from './control-plane-error';
export { RecordingLogger } from './recording-logger';
export { startRecordingServer } from './recording-server';
export type { RecordedRequest, RecordingServer } from './recording-server';
export {
  bindClusterRole,
  countApiServerRequests,
  createClusterObjects,
  createPod,
  createServiceAccount,
  deletePod,
  kubeConfigFor,
  mintServiceAccountToken,
} from './cluster-objects';
export type { MintedToken, MintTokenOptions, ServiceAccountRef } from './cluster-objects';
export { TokenProjector } from './token-projector';
export type { ProjectedTokenSpec, TokenProjectorOptions } from './token-projector';
export { kubernetesKeyId, serviceAccountClaims, signJwt } from './jwt';
export type { JwtHeader, ServiceAccountClaimsOptions } from './jwt';
