// Integration specs: every auth decision against a real kube-apiserver and etcd, built from their Go modules once
// (the global setup) and started on loopback by the testing kit.
module.exports = {
  displayName: 'k8s-auth:integration',
  preset: '../../jest.preset.js',
  testEnvironment: 'node',
  testMatch: ['<rootDir>/src/**/*.integration.spec.ts'],
  globalSetup: '<rootDir>/jest.global-setup.ts',
  // Some specs wait for the API server's ~10 s TokenReview cache.
  testTimeout: 60_000,
};
