'use strict';

/**
 * A greeting for `name`, or for everyone when the name is missing or blank.
 * @param {string} [name]
 * @returns {string}
 */
function greet(name) {
  if (name === undefined) {
    return 'Hello, world!';
  }
  if (typeof name !== 'string') {
    throw new TypeError(`expected a string name, got ${typeof name}`);
  }
  const trimmed = name.trim();
  return `Hello, ${trimmed === '' ? 'world' : trimmed}!`;
}

module.exports = { greet };
