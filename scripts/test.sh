#!/usr/bin/env bash
# Runs every test: the Rust workspace's unit, property and integration tests,
# then the interop checks of the release binary against paho-mqtt and
# mosquitto-clients. Installs those two first if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
cargo test --workspace --locked
cargo build --release --locked -p herald
python3 tests/interop/interop.py
