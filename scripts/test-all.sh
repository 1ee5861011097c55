#!/usr/bin/env bash
# Runs every test of the project, as CI does (.ci/run calls this script).
#
# Formatting and lints first (cheap, and they fail fast), then the binaries the
# end-to-end tests launch, then the whole workspace's tests.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

for tool in cargo git node npm; do
  command -v "$tool" >/dev/null || { echo "test-all: '$tool' is required but not on PATH" >&2; exit 1; }
done

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo build (binaries used by the end-to-end tests)"
cargo build --workspace --bins

echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "==> cargo test"
cargo test --workspace --no-fail-fast
