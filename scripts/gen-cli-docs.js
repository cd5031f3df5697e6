#!/usr/bin/env node
// Writes the `serve` flag table of docs/cli.md from the option table (src/cli/serve-options.ts),
// between its markers. Run after `make build` (`make docs` does both); a unit test
// (test/unit/serve-options.test.ts) fails while the file is out of step.
const fs = require('node:fs');
const path = require('node:path');
const { serveFlagTable, SERVE_FLAGS_BEGIN, SERVE_FLAGS_END } = require('../dist/cli/serve-docs');

const file = path.join(__dirname, '..', 'docs', 'cli.md');
const text = fs.readFileSync(file, 'utf8');
const begin = text.indexOf(SERVE_FLAGS_BEGIN);
const end = text.indexOf(SERVE_FLAGS_END);
if (begin < 0 || end < begin) {
  console.error(`${file}: no ${SERVE_FLAGS_BEGIN} … ${SERVE_FLAGS_END} markers`);
  process.exit(1);
}
const next = `${text.slice(0, begin + SERVE_FLAGS_BEGIN.length)}\n${serveFlagTable()}${text.slice(end)}`;
if (next !== text) fs.writeFileSync(file, next);
console.log(next === text ? `${file}: up to date` : `${file}: serve flag table written`);
