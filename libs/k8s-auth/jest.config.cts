// Unit specs: pure logic and loopback servers, no Go and no control plane (`nx test k8s-auth`). The integration
// specs, against real control planes, run with jest.integration.config.cts (`nx run k8s-auth:integration`).
module.exports = {
  displayName: 'k8s-auth',
  preset: '../../jest.preset.js',
  testEnvironment: 'node',
  testPathIgnorePatterns: ['/node_modules/', '\\.integration\\.spec\\.ts$'],
  coverageDirectory: '../../coverage/libs/k8s-auth',
};
