'use strict';

/**
 * Throw a TypeError unless every value is a finite number.
 * @param {...unknown} values
 */
function assertNumbers(...values) {
  for (const value of values) {
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw new TypeError(`expected a finite number, got ${String(value)}`);
    }
  }
}

/**
 * The sum of two finite numbers.
 * @param {number} a
 * @param {number} b
 * @returns {number}
 */
function add(a, b) {
  assertNumbers(a, b);
  return a + b;
}

/**
 * The product of two finite numbers.
 * @param {number} a
 * @param {number} b
 * @returns {number}
 */
function multiply(a, b) {
  assertNumbers(a, b);
  return a * b;
}

module.exports = { add, multiply, assertNumbers };
