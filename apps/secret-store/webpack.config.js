module.exports = require('../../tools/service-webpack')(__dirname, 'secret-store');
