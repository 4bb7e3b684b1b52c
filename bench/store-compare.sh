#!/usr/bin/env bash
# The broker's state store chosen with measurements (issue 16): the
# broker's own log format against redb and fjall, same workload, same
# disk. The program is bench/store-compare/ (its own Cargo project, outside
# the workspace: redb and fjall never enter the broker's dependency tree or
# Cargo.lock); it is built into target/store-compare/. What it measures is
# in its src/main.rs docs. Not part of CI.
#
#   bash bench/store-compare.sh                     # 2 rounds × 3 s per figure
#   STORE_COMPARE_ARGS="--seconds 1 --rounds 1 --records 100000" bash bench/store-compare.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR="$ROOT/target/store-compare"
if [[ -z "${BENCH_NO_BUILD:-}" ]]; then
  (cd bench/store-compare && cargo build --release --locked >&2)
fi
BIN="$CARGO_TARGET_DIR/release/store-compare"
# The data on the disk the broker's data dir is on (not a tmpfs): what is
# measured is the fsync.
DIR="$ROOT/target/store-compare-data"
read -r -a extra <<<"${STORE_COMPARE_ARGS:-}"
"$BIN" --dir "$DIR" "${extra[@]}"
rm -rf "$DIR"
