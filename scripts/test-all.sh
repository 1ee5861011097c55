#!/usr/bin/env bash
# Runs every test of the project, as CI does (.ci/run calls this script).
#
# Formatting and lints first (cheap, and they fail fast), then the binaries the
# end-to-end tests launch, then the whole workspace's tests.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

for tool in cargo git node npm python3 openssl; do
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

# ── Deployment (issue 6): infra-pulumi, Dockerfile.consumer, buildspec.yml ──────────────
# No AWS account, Pulumi CLI or Docker daemon: tsc, the program under Pulumi mocks with the
# policy checks, the buildspec schema and install-guard tests, the Dockerfile structure test
# (all in infra-pulumi's node:test suite), and hadolint from the venv.
infra="$root/infra-pulumi"
infra_stamp="$infra/node_modules/.package-lock.json.stamp"
if [ ! -d "$infra/node_modules" ] || ! cmp -s "$infra/package-lock.json" "$infra_stamp" 2>/dev/null; then
  echo "==> npm ci (infra-pulumi)"
  (cd "$infra" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$infra/package-lock.json" "$infra_stamp"
fi
echo "==> infra-pulumi: tsc --noEmit"
(cd "$infra" && npx --no-install tsc --noEmit)
echo "==> infra-pulumi: mocks, policy checks, buildspec schema, Dockerfile structure"
(cd "$infra" && node --import tsx --test --test-reporter=dot tests/*.test.ts)
echo "==> hadolint Dockerfile.consumer"
"$venv/bin/hadolint" Dockerfile.consumer
# ── end of the deployment section ───────────────────────────────────────────────────────

echo "==> cargo fmt --check"
cargo fmt --all -- --check

# Test support (kiro_backends::testing, MemoryMetrics) sits behind `testing` features
# that only [dev-dependencies] turn on; the release binaries must build without them.
echo "==> release binaries carry no test support (no \`testing\` feature in their dependencies)"
release_tree=$(cargo tree -e normal,features -p kiro-consumer -p kiro-producer -p kiro-worker -p kiro-local-build)
if grep -F 'feature "testing"' <<<"$release_tree"; then
  echo "test-all: a release binary's [dependencies] turn on a \`testing\` feature (listed above); test support belongs in [dev-dependencies] only" >&2
  exit 1
fi

echo "==> cargo build (binaries used by the end-to-end tests)"
cargo build --workspace --bins

echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "==> cargo test"
cargo test --workspace --no-fail-fast
