#!/usr/bin/env bash
# Turns each example repository under examples/quickstart/repos/ into a local bare
# "remote" at <state>/forge/acme/<name>.git, with `main` and one feature branch per spec
# (`feature/<spec>`), as a team would have opened them before the agent runs.
#
# Usage: setup-forge.sh STATE_DIR
set -euo pipefail
state=${1:?usage: setup-forge.sh STATE_DIR}
example=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$state/forge/acme"

# Identity for the setup commits only (the worker signs its own commits).
export GIT_AUTHOR_NAME="quick start" GIT_AUTHOR_EMAIL="quickstart@example.invalid"
export GIT_COMMITTER_NAME="quick start" GIT_COMMITTER_EMAIL="quickstart@example.invalid"

for template in "$example"/repos/*/; do
  name=$(basename "$template")
  bare="$state/forge/acme/$name.git"
  work=$(mktemp -d)
  cp -R "$template." "$work/"
  git init --quiet --bare --initial-branch=main "$bare"
  git -C "$work" init --quiet --initial-branch=main
  git -C "$work" add -A
  git -C "$work" commit --quiet -m "initial import of the $name example"
  git -C "$work" remote add origin "$bare"
  git -C "$work" push --quiet origin main
  # One feature branch per spec, as a team would have opened before the agent runs.
  for spec in "$work"/.kiro/specs/*/; do
    feature=$(basename "$spec")
    git -C "$work" push --quiet origin "main:refs/heads/feature/$feature"
  done
  rm -rf "$work"
  echo "    forge: acme/$name ($(git -C "$bare" branch --list | wc -l | tr -d ' ') branches)"
done

