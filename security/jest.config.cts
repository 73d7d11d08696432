module.exports = {
  displayName: 'security',
  preset: '../jest.preset.js',
  testEnvironment: 'node',
  testMatch: ['<rootDir>/src/**/*.security-spec.ts'],
  globalSetup: '<rootDir>/../libs/k8s-auth/jest.global-setup.ts',
  // Prints the figures the suite wrote as the run's last lines, after Jest's own summary.
  globalTeardown: '<rootDir>/jest.global-teardown.ts',
  // In this process: one control plane at a time, and the teardown finds the figures by its pid.
  maxWorkers: 1,
  // Fault scenarios wait for timeouts and the API server's ~10 s token cache.
  testTimeout: 120_000,
};
