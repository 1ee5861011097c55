'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { greet } = require('../src/greeter.js');

test('greet greets the world', () => {
  assert.equal(greet(), 'Hello, world!');
});
