const nxPreset = require('@nx/jest/preset').default;

// SWC instead of ts-jest: faster, and it keeps Nest's decorator metadata. Type errors are caught by
// each project's `typecheck` target, not by the test run.
const swc = {
  jsc: {
    parser: { syntax: 'typescript', decorators: true },
    transform: { legacyDecorator: true, decoratorMetadata: true },
    target: 'es2022',
  },
  module: { type: 'commonjs' },
  sourceMaps: 'inline',
};

// @kubernetes/client-node 1.x and a few of its dependencies, @nestjs/axios and @nestjs/terminus ship ES
// modules only; Jest's module system needs them turned into CommonJS.
const esmOnly = [
  '@kubernetes/client-node',
  'openid-client',
  'oauth4webapi',
  'jose',
  '@nestjs/axios',
  '@nestjs/terminus',
];

module.exports = {
  ...nxPreset,
  testEnvironment: 'node',
  transform: { '^.+\\.(ts|js|mjs)$': ['@swc/jest', swc] },
  transformIgnorePatterns: [`/node_modules/(?!(${esmOnly.join('|')})/)`],
  moduleFileExtensions: ['ts', 'js', 'mjs', 'json'],
};
