'use strict';

const { farewell, signOff, listLanguages } = require('./farewell.js');

/**
 * A greeting for everyone.
 * @returns {string}
 */
function greet() {
  return 'Hello, world!';
}

module.exports = { greet, farewell, signOff, listLanguages };
