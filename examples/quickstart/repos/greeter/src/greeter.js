'use strict';

/**
 * A greeting for everyone.
 * @returns {string}
 */
function greet() {
  return 'Hello, world!';
}

module.exports = { greet };
