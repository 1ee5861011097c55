'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { add, assertNumbers } = require('../src/calc.js');

test('add sums two numbers', () => {
  assert.equal(add(2, 3), 5);
  assert.equal(add(-2, 0.5), -1.5);
});

test('add rejects values that are not finite numbers', () => {
  assert.throws(() => add('2', 3), TypeError);
  assert.throws(() => add(1, Number.NaN), TypeError);
});

test('assertNumbers accepts finite numbers', () => {
  assert.doesNotThrow(() => assertNumbers(1, 2, 3));
});
