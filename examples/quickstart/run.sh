#!/usr/bin/env bash
# The quick start: the whole pipeline on the embedded default, on one machine, with no
# AWS account and no GitHub token.
#
#   1. builds the binaries (debug build; the first run compiles the dependencies);
#   2. turns each example repository under examples/quickstart/repos/ into a local bare
#      "remote" in the state directory's forge, with one feature branch per spec;
#   3. kiro-producer reads examples/quickstart/board.yaml and enqueues the ready items
#      (the hostile item is rejected and never enqueued);
#   4. kiro-consumer takes them one project at a time under a lease and runs buildspec.yml
#      in local build processes; kiro-worker, inside each build, checks the branch out,
#      runs the agent (the SCRIPTED STAND-IN agent examples/quickstart/agent/scripted-agent.mjs,
#      not Kiro), runs the tests with the coverage gate, commits, pushes, writes the
#      pull-request report and moves the board item on;
#   5. prints the summary: job records, dead letters, board, reports.
#
# Environment: KIRO_STATE_DIR (default .kiro-state/quickstart, wiped at start);
# KIRO_QUICKSTART_SKIP_BUILD=1 and KIRO_BIN_DIR let the end-to-end test reuse built binaries.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
state=${KIRO_STATE_DIR:-$root/.kiro-state/quickstart}
example=$root/examples/quickstart

for tool in cargo git node; do
  command -v "$tool" >/dev/null || { echo "quick start: '$tool' is required but not on PATH" >&2; exit 1; }
done

if [ -z "${KIRO_QUICKSTART_SKIP_BUILD:-}" ]; then
  echo "==> building (cargo build --workspace --bins)"
  cargo build --workspace --bins --quiet
fi
bin=${KIRO_BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/debug}

echo "==> preparing the state directory $state"
rm -rf "$state"
mkdir -p "$state"

"$example/setup-forge.sh" "$state"

export KIRO_STATE_DIR="$state"
export KIRO_BOARD_FILE="$example/board.yaml"
export KIRO_GIT_BASE="file://$state/forge"
# The scripted stand-in for kiro-cli (see its header): copies prepared solutions and
# ticks the spec's tasks.
export KIRO_AGENT_CMD="node $example/agent/scripted-agent.mjs"
export KIRO_TEST_CMD="npm test --silent"
export KIRO_BUILDSPEC="$root/buildspec.yml"
export KIRO_HEALTH_FILE="$state/consumer.health"

echo "==> kiro-producer --once"
"$bin/kiro-producer" --once

echo "==> kiro-consumer run --until-idle"
"$bin/kiro-consumer" run --until-idle --max-jobs 4 --poll-every 500ms --receive-wait 500ms \
  --retry-base 1s --retry-max 5s

echo
echo "==> job records (kiro-consumer jobs)"
"$bin/kiro-consumer" jobs
echo
echo "==> dead-letter queue (kiro-consumer dlq list)"
"$bin/kiro-consumer" dlq list
echo
echo "==> board (kiro-consumer board)"
"$bin/kiro-consumer" board
echo
echo "Pull-request reports: $bin/kiro-consumer reports --state-dir $state --board $KIRO_BOARD_FILE"
echo "Build logs:           $state/builds/*/build.log"
