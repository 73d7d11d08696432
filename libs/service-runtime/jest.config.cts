module.exports = {
  displayName: 'service-runtime',
  preset: '../../jest.preset.js',
  testEnvironment: 'node',
  coverageDirectory: '../../coverage/libs/service-runtime',
};
