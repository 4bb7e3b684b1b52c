#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: Debian's
# mosquitto-clients and PyPI's paho-mqtt (the independent clients of the
# interop checks). Does nothing for what is already there.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; exit 1
  fi
}

if ! command -v mosquitto_pub >/dev/null || ! command -v mosquitto_sub >/dev/null; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto-clients >/dev/null
fi

if ! python3 -c 'import paho.mqtt, sys; sys.exit(0 if paho.mqtt.__version__.startswith("2.") else 1)' 2>/dev/null; then
  python3 -m pip install -q 'paho-mqtt==2.2.0' 2>/dev/null \
    || python3 -m pip install -q --break-system-packages 'paho-mqtt==2.2.0'
fi
