// The secret store's proto, for SECRET_STORE_TRANSPORT=grpc: read at start-up beside main.js.
module.exports = require('../../tools/service-webpack')(__dirname, 'api', {
  assets: [{ input: '../secret-store/src/proto', glob: '*.proto', output: 'proto' }],
});
