module.exports = {
  displayName: 'k8s-auth',
  preset: '../../jest.preset.js',
  testEnvironment: 'node',
  globalSetup: '<rootDir>/jest.global-setup.ts',
  // Integration specs talk to a real kube-apiserver; some wait for its ~10 s TokenReview cache.
  testTimeout: 60_000,
  coverageDirectory: '../../coverage/libs/k8s-auth',
};
