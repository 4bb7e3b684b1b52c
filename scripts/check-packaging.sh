#!/usr/bin/env bash
# Checks the packaging files that cannot be exercised on this machine:
#   Dockerfile           hadolint (there is no Docker engine here to build it),
#                        and its RUST_VERSION is Cargo.toml's rust-version;
#   etc/herald.service   systemd-analyze verify, with ExecStart pointed at the
#                        built binary (verify insists that it exists).
# Any finding fails, warnings included. Usage: check-packaging.sh [BINARY]
# (default target/release/herald, which must exist).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/herald}")

hadolint Dockerfile

want=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
if ! grep -qx "ARG RUST_VERSION=$want" Dockerfile; then
  echo "Dockerfile: ARG RUST_VERSION must be Cargo.toml's rust-version ($want)" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|/usr/local/bin/herald|$bin|" etc/herald.service >"$tmp/herald.service"
findings=$(systemd-analyze verify "$tmp/herald.service" 2>&1) || true
if [ -n "$findings" ]; then
  echo "etc/herald.service: systemd-analyze verify says:" >&2
  echo "$findings" >&2
  exit 1
fi
echo "packaging checks passed: Dockerfile (hadolint), etc/herald.service (systemd-analyze verify)"
