'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { greet } = require('../src/greeter.js');

test('greet greets a person by name', () => {
  assert.equal(greet('Ada'), 'Hello, Ada!');
  assert.equal(greet('  Grace  '), 'Hello, Grace!');
});

test('greet falls back to the world for blank names', () => {
  assert.equal(greet(''), 'Hello, world!');
  assert.equal(greet('   '), 'Hello, world!');
});

test('greet rejects names that are not strings', () => {
  assert.throws(() => greet(42), TypeError);
});
