'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { subtract } = require('../src/calc.js');

test('subtract returns the difference', () => {
  assert.equal(subtract(5, 3), 2);
  assert.equal(subtract(-1, -1.5), 0.5);
});

test('subtract rejects values that are not finite numbers', () => {
  assert.throws(() => subtract(1, '1'), TypeError);
  assert.throws(() => subtract(Number.POSITIVE_INFINITY, 1), TypeError);
});
