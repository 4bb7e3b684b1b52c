#!/usr/bin/env bash
# Runs every test: the Rust workspace's unit, property and integration tests,
# the interop checks of the release binary against paho-mqtt and
# mosquitto-clients (tests/interop/interop.py) and of its TLS, WebSocket and
# PROXY protocol listeners against those, openssl and MQTT.js
# (tests/interop/listeners.py), of access control (password file made by
# mosquitto_passwd, ACL file, SIGHUP, secure default: tests/interop/auth.py),
# and the checks of the Dockerfile and systemd unit. The WebHook's crash and
# full-disk tests (kill -9 mid-flood, a filled tmpfs) run twice: with the
# debug build in the workspace run, then against the release binary.
# Installs what they need first if it is missing (scripts/install-test-deps.sh).
# Every broker it starts uses free ports, so a broker already running on the
# defaults (1883, 9464) is no obstacle.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
cargo test --workspace --locked
cargo build --release --locked -p herald
# The crash and full-disk tests again, against the release binary (issue 12).
HERALD_TEST_BINARY="$PWD/target/release/herald" \
  cargo test --locked -p herald --test durability --test disk_full
python3 tests/interop/interop.py
python3 tests/interop/listeners.py
python3 tests/interop/auth.py
bash scripts/check-packaging.sh target/release/herald
