#!/usr/bin/env bash
# Runs every test of the project, as CI does (.ci/run calls this script).
#
# Formatting and lints first (cheap, and they fail fast), then the binaries the
# end-to-end tests launch, then the whole workspace's tests.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

for tool in cargo git node npm python3; do
  command -v "$tool" >/dev/null || { echo "test-all: '$tool' is required but not on PATH" >&2; exit 1; }
done

# Python tools (the moto AWS emulator, …) in a local virtual environment, installed once
# and again whenever scripts/requirements-test.txt changes.
venv="$root/.venv"
stamp="$venv/.requirements-test.txt"
if ! cmp -s scripts/requirements-test.txt "$stamp" 2>/dev/null; then
  echo "==> installing Python test tools into .venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
  cp scripts/requirements-test.txt "$stamp"
fi
# The AWS adapters' tests start moto_server from here (on 127.0.0.1, a free port).
export KIRO_MOTO_SERVER="$venv/bin/moto_server"

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo build (binaries used by the end-to-end tests)"
cargo build --workspace --bins

echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "==> cargo test"
cargo test --workspace --no-fail-fast
