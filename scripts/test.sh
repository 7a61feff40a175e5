#!/usr/bin/env bash
# The whole test suite, from a fresh clone: every install step, then lint, types, all tests
# (unit, real etcd, the Consul test server, end to end), the build and the quick benchmarks.
# This is the README's second command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "install: etcd server (Debian etcd-server) for the integration tests"
sh scripts/ensure-etcd.sh
step "install: npm packages"
npm ci --no-audit --no-fund
step "lint"
npm run --silent lint
step "typecheck"
npm run --silent typecheck
step "build (the CLI tests run the built binary)"
npm run --silent build
step "tests (unit + integration + e2e)"
npx vitest run
step "package check: the built entry point imports cleanly and exports the public API"
node --input-type=module -e "import('wayfind').then((m) => { for (const k of ['createWayfind','consul','etcd','memoryRegistry','roundRobin','leastLoaded']) if (typeof m[k] !== 'function') throw new Error('missing export ' + k); console.log('exports ok:', Object.keys(m).length) })"
if [ -f bench/run.ts ]; then
  step "benchmarks, quick smoke run (numbers only, no thresholds)"
  npm run --silent bench -- --quick
fi
