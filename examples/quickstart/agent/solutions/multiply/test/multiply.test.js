'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { multiply } = require('../src/calc.js');

test('multiply returns the product', () => {
  assert.equal(multiply(4, 3), 12);
  assert.equal(multiply(-2, 0.5), -1);
  assert.equal(multiply(4, -3), -12);
});

test('multiply rejects values that are not finite numbers', () => {
  assert.throws(() => multiply(null, 2), TypeError);
});
