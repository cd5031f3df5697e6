#!/usr/bin/env bash
# Runs jest and ends with one plain summary line ("jest: N passed, N failed") for CI readers.
set -uo pipefail
out=$(mktemp)
node_modules/.bin/jest --json --outputFile="$out" "$@"
rc=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`jest: ${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
  if (r.numTotalTests === 0) { console.error("no test ran"); process.exit(1); }
' "$out" || rc=1
rm -f "$out"
exit $rc
