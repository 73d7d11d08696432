// `npm run test:images`, not part of `npm test`: Docker is needed. Named so that the Jest plugin of Nx gives
// this folder no `test` target.
module.exports = {
  displayName: 'images',
  preset: '../jest.preset.js',
  testEnvironment: 'node',
  testMatch: ['<rootDir>/src/**/*.images-spec.ts'],
  globalSetup: '<rootDir>/../libs/k8s-auth/jest.global-setup.ts',
  // Prints the run's figures as its last line, after Jest's own summary.
  globalTeardown: '<rootDir>/jest.global-teardown.ts',
  maxWorkers: 1,
  // The first build of both images (an empty Docker cache) takes minutes; each step's own timeout is set in the spec.
  testTimeout: 120_000,
};
