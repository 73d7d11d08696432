module.exports = {
  displayName: 'secret-store',
  preset: '../../jest.preset.js',
  testEnvironment: 'node',
  coverageDirectory: '../../coverage/apps/secret-store',
};
