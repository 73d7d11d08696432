// The gRPC listener's proto, read at start-up beside main.js.
module.exports = require('../../tools/service-webpack')(__dirname, 'secret-store', {
  assets: [{ input: './src/proto', glob: '*.proto', output: 'proto' }],
});
