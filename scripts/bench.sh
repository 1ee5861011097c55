#!/usr/bin/env bash
# The engine benchmark (not part of the tests): 10,000 items over 1,000 projects on the
# embedded backend with a no-op build runner. Arguments: [ITEMS] [PROJECTS] [MAX_JOBS].
# Results and the machine they ran on go in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr)"
cargo bench -p kiro-consumer --bench dispatch -- "$@"
