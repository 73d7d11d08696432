const { NxAppWebpackPlugin } = require('@nx/webpack/app-plugin');
const TerserPlugin = require('terser-webpack-plugin');
const { join } = require('path');

/**
 * Optional packages that the bundled libraries load only when a feature asks for them (Nest's
 * validation pipes, transports and adapters the services do not use, ws's native helpers). None is
 * installed: each such `require` fails at run time, inside the library's own try/catch, as it would
 * from node_modules.
 */
const OPTIONAL = [
  '@fastify/static',
  '@fastify/view',
  '@nestjs/swagger',
  '@nestjs/websockets',
  'amqp-connection-manager',
  'amqplib',
  'bufferutil',
  'class-transformer',
  'class-validator',
  'ioredis',
  'kafkajs',
  'mqtt',
  'nats',
  'utf-8-validate',
];

function packageName(request) {
  const parts = request.split('/');
  return request.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/**
 * The settings both services share. `main.js` carries its dependencies (an image then needs no
 * node_modules), minified without renaming anything, so class names in logs and stack traces stay.
 * Source maps in development builds, and in production builds with SOURCE_MAPS=true. `assets` are
 * files the service reads beside main.js at run time (its .proto files).
 */
module.exports = function serviceWebpackConfig(appDir, name, { assets = [] } = {}) {
  return {
    output: {
      path: join(appDir, '../../dist/apps', name),
      clean: true,
      ...(process.env.NODE_ENV !== 'production' && {
        devtoolModuleFilenameTemplate: '[absolute-resource-path]',
      }),
    },
    // Nest and terminus require optional packages by a computed name when a feature asks for one.
    ignoreWarnings: [{ module: /node_modules/, message: /the request of a dependency is an expression/ }],
    plugins: [
      new NxAppWebpackPlugin({
        target: 'node',
        compiler: 'tsc',
        main: './src/main.ts',
        tsConfig: './tsconfig.app.json',
        optimization: true,
        outputHashing: 'none',
        generatePackageJson: true,
        sourceMap: process.env.NODE_ENV !== 'production' || process.env.SOURCE_MAPS === 'true',
        externalDependencies: 'none',
        assets,
      }),
      {
        // After NxAppWebpackPlugin, which sets these while it is applied.
        apply(compiler) {
          new compiler.webpack.IgnorePlugin({
            checkResource: (resource) => OPTIONAL.includes(packageName(resource)),
          }).apply(compiler);
          // ESM packages (@nestjs/terminus) read import.meta.dirname: __dirname in a CommonJS bundle.
          compiler.options.node = { global: false, __dirname: 'eval-only', __filename: 'eval-only' };
          compiler.options.optimization.minimizer = [
            new TerserPlugin({
              minify: TerserPlugin.swcMinify,
              terserOptions: {
                // Whitespace and comments only: fast, and the code stays as written.
                compress: false,
                mangle: false,
                format: { comments: false },
              },
            }),
          ];
        },
      },
    ],
  };
};
