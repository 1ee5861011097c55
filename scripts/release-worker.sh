#!/usr/bin/env bash
# scripts/release-worker.sh — the kiro-worker release artefact that CodeBuild downloads.
#
#   scripts/release-worker.sh                   build the static musl kiro-worker (release
#                                               profile, vendored OpenSSL) and package it
#   scripts/release-worker.sh package BIN [DIR] package an already built binary, no build
#                                               (infra-pulumi/tests/release.test.ts uses it)
#
# Writes, into DIR (default: dist/ at the repository root):
#   kiro-worker-x86_64-unknown-linux-musl.tar.gz         exactly one entry, `kiro-worker`, at the
#                                                        archive root, mode 0755, owner 0:0
#   kiro-worker-x86_64-unknown-linux-musl.tar.gz.sha256  the archive's SHA-256: 64 lower-case hex
#                                                        digits and a newline (the stack key
#                                                        kiro-infra:workerSha256)
# and prints the stack configuration that pins it. buildspec.yml's install phase downloads
# the archive, checks KIRO_WORKER_SHA256, runs `tar -xzf` and installs `kiro-worker`.
#
# The archive is byte-for-byte reproducible from the binary: one sorted entry, fixed
# owner and mode, mtime SOURCE_DATE_EPOCH (default: the last commit's time), `gzip -n`.
#
# Build prerequisites (checked below): rustup with the x86_64-unknown-linux-musl target,
# musl-gcc (Debian/Ubuntu package musl-tools) for the C code compiled into the binary
# (OpenSSL, libgit2, zlib, aws-lc), perl and make (OpenSSL's build), GNU tar, gzip,
# sha256sum.
set -euo pipefail

readonly TARGET=x86_64-unknown-linux-musl
readonly ARCHIVE="kiro-worker-$TARGET.tar.gz"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() {
  echo "release-worker: $*" >&2
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not on PATH${2:+ ($2)}"
}

# package BIN DIR: the archive and its checksum, reproducibly.
package() {
  local bin=$1 out=$2
  [ -f "$bin" ] || die "no binary at $bin"
  [ -x "$bin" ] || die "$bin is not executable"
  need tar
  need gzip
  need sha256sum "GNU coreutils"
  tar --version 2>/dev/null | grep -q 'GNU tar' || die "GNU tar is required (--sort, --mtime, --owner); found: $(tar --version 2>&1 | head -n 1)"
  local epoch=${SOURCE_DATE_EPOCH:-}
  if [ -z "$epoch" ]; then
    epoch=$(git -C "$root" log -1 --format=%ct 2>/dev/null) || epoch=0
  fi
  case $epoch in '' | *[!0-9]*) die "SOURCE_DATE_EPOCH must be seconds since 1970, got '$epoch'" ;; esac

  mkdir -p "$out"
  local stage
  stage=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: package runs in its own subshell ($(package …))
  trap "rm -rf '$stage'" EXIT
  cp "$bin" "$stage/kiro-worker"
  tar --create --format=ustar --sort=name --mtime="@$epoch" \
    --owner=0 --group=0 --numeric-owner --mode=0755 \
    --directory="$stage" kiro-worker |
    gzip -9 -n >"$out/$ARCHIVE.tmp"
  mv "$out/$ARCHIVE.tmp" "$out/$ARCHIVE"
  local sum
  sum=$(sha256sum "$out/$ARCHIVE" | cut -d ' ' -f 1)
  printf '%s\n' "$sum" >"$out/$ARCHIVE.sha256"
  echo "$sum"
}

# Prints the stack configuration for the packaged binary.
report() {
  local bin=$1 out=$2 sum=$3 version
  version=$("$bin" --version 2>/dev/null | awk 'NR == 1 { print $2 }') || true
  cat <<EOF
release-worker: wrote
  $out/$ARCHIVE
  $out/$ARCHIVE.sha256
Upload the archive (a release asset of tag v${version:-VERSION}, or any https URL), then pin it:
  pulumi config set kiro-infra:workerVersion ${version:-VERSION}
  pulumi config set kiro-infra:workerSha256 $sum
  # only if not the default https://github.com/kiro-codebuild-worker/kiro-codebuild-worker/releases/download/v${version:-VERSION}/$ARCHIVE
  pulumi config set kiro-infra:workerUrl https://…/$ARCHIVE
EOF
}

build() {
  need cargo "install Rust with rustup"
  need rustup "the musl target is added with rustup"
  rustup target list --installed 2>/dev/null | grep -qx "$TARGET" ||
    die "the Rust target $TARGET is not installed: rustup target add $TARGET"
  need musl-gcc "Debian/Ubuntu: apt-get install musl-tools; it compiles OpenSSL, libgit2, zlib and aws-lc for musl"
  need perl "OpenSSL's Configure is a perl script"
  need make "OpenSSL is built with make"
  cd "$root"
  cargo build --release --locked --target "$TARGET" -p kiro-worker --bin kiro-worker --features vendored-openssl
  local bin="${CARGO_TARGET_DIR:-$root/target}/$TARGET/release/kiro-worker"
  [ -x "$bin" ] || die "cargo did not produce $bin"
  if command -v readelf >/dev/null 2>&1; then
    if readelf --program-headers --wide "$bin" | grep -q INTERP || readelf --dynamic --wide "$bin" | grep -q NEEDED; then
      die "$bin is dynamically linked; the CodeBuild image needs a static binary"
    fi
  fi
  "$bin" --version >/dev/null || die "$bin --version failed"
  echo "$bin"
}

main() {
  local out bin sum
  case ${1:-} in
    package)
      [ $# -ge 2 ] && [ $# -le 3 ] || die "usage: $0 package BIN [DIR]"
      bin=$2
      out=${3:-$root/dist}
      ;;
    "")
      out=$root/dist
      bin=$(build | tail -n 1)
      ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      return 0
      ;;
    *) die "unknown argument '$1' (usage: $0 [package BIN [DIR]])" ;;
  esac
  sum=$(package "$bin" "$out")
  report "$bin" "$out" "$sum"
}

main "$@"
