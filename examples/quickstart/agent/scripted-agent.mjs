#!/usr/bin/env node
// scripted-agent.mjs — the quick start's SCRIPTED STAND-IN for kiro-cli. It is NOT Kiro
// and has no model behind it: it lets the quick start run the whole pipeline on a machine
// with no Kiro account. Real builds run `kiro-cli chat --no-interactive --trust-all-tools`.
//
// Invoked by kiro-worker exactly like the real agent: `node scripted-agent.mjs "<prompt>"`
// with cwd = the checkout and KIRO_SPEC_PATH set (e.g. `.kiro/specs/subtract`). It
//   1. copies the prepared files of solutions/<feature>/ (next to this script) into the
//      checkout, and
//   2. marks every open task of <spec>/tasks.md as done (`- [x]`), leaving code fences
//      alone.
// The `farewell` solution adds a large module with no tests on purpose, so the worker's
// coverage gate rejects it in every round.
//
// Fix rounds: when the prompt carries the worker's failure brief (between
// `----- failure brief -----` and `----- end of failure brief -----`) and the brief names
// the failing test a prepared fix is for (FIXES below), it copies fixes/<feature>/ over
// the checkout instead — and only then: without the brief it never fixes anything. The
// `multiply` solution leaves a failing test on purpose (the sign of the second factor is
// lost), so its item succeeds in round 2, from the brief. A brief with no prepared fix
// changes nothing. Exit codes: 0 done, 1 failure (as kiro-cli).

import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const prompt = process.argv[2] ?? '';

function fail(message) {
  console.error(`scripted stand-in agent, not Kiro: ${message}`);
  process.exit(1);
}

console.log('scripted stand-in agent, not Kiro (examples/quickstart/agent/scripted-agent.mjs)');
console.log(`prompt received: ${prompt.length} characters; first line: ${prompt.split('\n')[0]}`);

const spec = (process.env.KIRO_SPEC_PATH ?? '').replace(/\/+$/, '');
if (spec === '') {
  fail('KIRO_SPEC_PATH is not set');
}
const feature = path.basename(spec);
if (!/^[a-z0-9][a-z0-9._-]*$/.test(feature)) {
  fail(`unexpected spec path ${JSON.stringify(spec)}`);
}
const specDir = path.join('.kiro', 'specs', feature);
const tasksFile = path.join(specDir, 'tasks.md');
if (!existsSync(tasksFile)) {
  fail(`${tasksFile} not found in ${process.cwd()}`);
}

// The failing test each prepared fix is for: the brief must name it.
const FIXES = { multiply: 'multiply returns the product' };
const BRIEF_BEGIN = '----- failure brief -----';
const BRIEF_END = '----- end of failure brief -----';
const begin = prompt.indexOf(BRIEF_BEGIN);
if (begin >= 0) {
  const end = prompt.indexOf(BRIEF_END, begin);
  const brief = prompt.slice(begin, end < 0 ? undefined : end);
  console.log(`failure brief received: ${brief.split('\n')[1] ?? ''}`);
  const fix = path.join(here, 'fixes', feature);
  if (FIXES[feature] && brief.includes(FIXES[feature]) && existsSync(fix)) {
    cpSync(fix, process.cwd(), { recursive: true });
    console.log(`fixed the failing test "${FIXES[feature]}" named in the brief`);
  } else {
    console.log(`no prepared fix for ${feature} matches the brief: nothing changed`);
  }
  process.exit(0);
}

const solution = path.join(here, 'solutions', feature);
if (!existsSync(solution)) {
  fail(`no prepared solution for ${feature} in ${path.join(here, 'solutions')}`);
}
cpSync(solution, process.cwd(), { recursive: true });
console.log(`copied the prepared solution for ${feature}`);

const eol = readFileSync(tasksFile, 'utf8').includes('\r\n') ? '\r\n' : '\n';
let inFence = false;
const ticked = [];
const lines = readFileSync(tasksFile, 'utf8')
  .split(/\r?\n/)
  .map((line) => {
    if (/^\s*(```|~~~)/.test(line)) {
      inFence = !inFence;
      return line;
    }
    if (inFence) {
      return line;
    }
    const m = /^(\s*[-*][ \t]+\[)([^\]])(\]\*?)([ \t]+(\S+).*)?$/.exec(line);
    if (!m || m[2] === 'x' || m[2] === 'X') {
      return line;
    }
    ticked.push((m[5] ?? '?').replace(/\.$/, ''));
    return `${m[1]}x${m[3]}${m[4] ?? ''}`;
  });
writeFileSync(tasksFile, lines.join(eol));
console.log(`marked ${ticked.length} task(s) done in ${tasksFile}: ${ticked.join(' ')}`);
