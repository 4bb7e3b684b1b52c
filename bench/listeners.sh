#!/usr/bin/env bash
# TLS and WebSocket listeners against plain TCP and against mosquitto
# (issue 15), in one run, rounds interleaved, a fresh broker per figure.
# Prints figures; not a test.
#
#   bash bench/listeners.sh                   # 3 rounds, 5,000 idle connections
#   BENCH_ROUNDS=1 BENCH_IDLE=500 bash bench/listeners.sh   # a quick trial
#
# 1. TLS handshakes per second: `openssl s_time -new` (a new full handshake
#    per connection, TLS 1.3, one client) for BENCH_SECONDS against Herald's
#    and mosquitto's TLS listeners, with the same certificate (an ECDSA
#    P-256 test CA and server certificate made here with openssl).
# 2. Memory per idle connection for each listener kind: bench/idle_conns.py
#    holds BENCH_IDLE MQTT 3.1.1 connections over tcp, tls, ws, wss
#    (mosquitto: tcp and tls; Debian's mosquitto 2.0.11 is built without
#    WebSocket support, so it has no ws figure).
# 3. Fan-in throughput over each listener kind: herald-bench fan-in (2
#    publishers → 1 subscriber, QoS 0 and 1, flat out, BENCH_DURATION s after
#    a warm-up) over tcp, tls, ws, wss (mosquitto: tcp and tls), the same
#    certificate, the client verifying it; with the broker's CPU per
#    delivery while messages flowed (--broker-pid).
#
# Knobs: BENCH_PARTS (default "handshakes idle fanin": the parts to run),
# BENCH_HERALD_BASE (another Herald binary, e.g. main before a change:
# measured as "herald-base" on its ws and wss listeners, idle and fan-in,
# interleaved with the others, for a before/after in one run).
#
# Raw results in target/bench/listeners-<date>/; the summary replaces the
# "listeners" section of BENCHMARKS.md unless BENCH_NO_WRITE=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source bench/lib.sh

ROUNDS=${BENCH_ROUNDS:-3}
IDLE=${BENCH_IDLE:-5000}
SECONDS_TLS=${BENCH_SECONDS:-5}
FANIN_SECONDS=${BENCH_DURATION:-5}
PARTS=" ${BENCH_PARTS:-handshakes idle fanin} "
HERALD_BASE=${BENCH_HERALD_BASE:-}
if [[ -n "$HERALD_BASE" && ! -x "$HERALD_BASE" ]]; then
  echo "BENCH_HERALD_BASE=$HERALD_BASE is not an executable" >&2; exit 2
fi
OUT=${BENCH_OUT:-$ROOT/target/bench/listeners-$(date -u +%Y%m%d-%H%M%S)}
WORK=$(mktemp -d /tmp/herald-listeners.XXXXXX)
HERALD="$ROOT/target/release/herald"
BENCH="$ROOT/target/release/herald-bench"
BROKER_PID=""
# herald (and herald-base, never running at the same time): tcp tls ws wss;
# mosquitto: tcp tls.
declare -A PORT=([herald.tcp]=18851 [herald.tls]=18852 [herald.ws]=18853 [herald.wss]=18854
                 [mosquitto.tcp]=18855 [mosquitto.tls]=18856
                 [herald-base.tcp]=18851 [herald-base.tls]=18852 [herald-base.ws]=18853
                 [herald-base.wss]=18854)

log() { printf '[listeners %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
stop_broker() { stop_pid "$BROKER_PID" TERM 10; BROKER_PID=""; }
cleanup() { stop_broker; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
log "results in $OUT"
build_release

# The test certificate: a CA and a server certificate for localhost and
# 127.0.0.1, world-readable (mosquitto drops root for its own user).
TLS="$WORK/tls"
mkdir -p "$TLS"
(
  cd "$TLS"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
    -out ca.pem -days 7 -subj "/CN=herald-bench-ca" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key \
    -out server.csr -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
    -days 7 -extfile ext.cnf 2>/dev/null
  chmod 755 . && chmod 644 ./*
)
chmod 755 "$WORK"

cat >"$WORK/mosquitto.conf" <<EOF
listener ${PORT[mosquitto.tcp]} 127.0.0.1
listener ${PORT[mosquitto.tls]} 127.0.0.1
certfile $TLS/server.pem
keyfile $TLS/server.key
allow_anonymous true
persistence false
max_connections -1
sys_interval 0
log_dest stderr
log_type error
log_type warning
EOF

start_broker() { # herald|herald-base|mosquitto → BROKER_PID; waits for every port
  local b=$1 logf="$OUT/broker-$1.log" bin=$HERALD
  [[ $b == herald-base ]] && bin=$HERALD_BASE
  case $b in
    herald|herald-base)
      rm -rf "$WORK/herald-data"
      HERALD_LISTENER__TLS__CERTFILE="$TLS/server.pem" HERALD_LISTENER__TLS__KEYFILE="$TLS/server.key" \
      HERALD_SYS__INTERVAL=0 HERALD_METRICS__BIND="" RUST_LOG=warn \
        "$bin" --listen "127.0.0.1:${PORT[herald.tcp]}" --listen-tls "127.0.0.1:${PORT[herald.tls]}" \
        --listen-ws "127.0.0.1:${PORT[herald.ws]}" --listen-wss "127.0.0.1:${PORT[herald.wss]}" \
        --data-dir "$WORK/herald-data" >>"$logf" 2>&1 & ;;
    mosquitto) mosquitto -c "$WORK/mosquitto.conf" >>"$logf" 2>&1 & ;;
  esac
  BROKER_PID=$!
  local port
  for port in $(for k in "${!PORT[@]}"; do [[ $k == "$b".* ]] && echo "${PORT[$k]}"; done); do
    wait_port "$port" "$BROKER_PID" || { log "$b: port $port not listening; see $logf"; return 1; }
  done
  sleep 0.3
}

run_handshakes() { # round broker
  local r=$1 b=$2 f="$OUT/round-$1/handshakes.$2" rc=0
  mkdir -p "$OUT/round-$r"
  start_broker "$b" || { echo "rc=start-failed" >"$f"; return 0; }
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  timeout $(( SECONDS_TLS + 30 )) openssl s_time -connect "127.0.0.1:${PORT[$b.tls]}" -new \
    -time "$SECONDS_TLS" -CAfile "$TLS/ca.pem" >"$f.out" 2>&1 || rc=$?
  # "1234 connections in 5.01s; 246.31 connections/user sec, ..." and
  # "1234 connections in 6 real seconds, ..."
  local n real
  n=$(awk '/connections in [0-9]+ real seconds/{print $1; exit}' "$f.out")
  real=$(awk '/connections in [0-9]+ real seconds/{print $4; exit}' "$f.out")
  printf 'rc=%s\nconnections=%s\nreal_s=%s\nload1=%s\n' "$rc" "$n" "$real" "$load" >"$f"
  stop_broker
  log "round $r handshakes $b: $n in ${real} s (rc=$rc)"
}

run_idle() { # round broker kind
  local r=$1 b=$2 k=$3 f="$OUT/round-$1/idle.$2.$3" rc=0
  mkdir -p "$OUT/round-$r"
  start_broker "$b" || { echo '{}' >"$f.json"; echo "rc=start-failed" >"$f.meta"; return 0; }
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  timeout $(( 120 + IDLE / 50 )) python3 "$ROOT/bench/idle_conns.py" --kind "$k" \
    --port "${PORT[$b.$k]}" --count "$IDLE" --pid "$BROKER_PID" --cafile "$TLS/ca.pem" \
    >"$f.json" 2>"$f.err" || rc=$?
  printf 'rc=%s\nload1=%s\n' "$rc" "$load" >"$f.meta"
  stop_broker
  log "round $r idle $b $k: $(cat "$f.json")"
}

run_fanin() { # round broker kind qos
  local r=$1 b=$2 k=$3 q=$4 f="$OUT/round-$1/fanin-q$4.$2.$3" rc=0
  mkdir -p "$OUT/round-$r"
  start_broker "$b" || { echo '{}' >"$f.json"; echo "rc=start-failed" >"$f.meta"; return 0; }
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  timeout $(( FANIN_SECONDS + 60 )) "$BENCH" fan-in -c 2 --qos "$q" -d "$FANIN_SECONDS" --warmup 1 -q \
    --port "${PORT[$b.$k]}" --transport "$k" --cafile "$TLS/ca.pem" --server-name localhost \
    --broker-pid "$BROKER_PID" --json "$f.json" >"$f.out" 2>&1 || rc=$?
  printf 'rc=%s\nload1=%s\n' "$rc" "$load" >"$f.meta"
  stop_broker
  log "round $r fan-in q$q $b $k: rc=$rc $(grep -o '"recv_rate":[0-9.]*' "$f.json" 2>/dev/null)"
}

{
  machine_env
  echo "herald_version=$("$HERALD" --version 2>/dev/null | head -1)"
  if [[ -n "$HERALD_BASE" ]]; then
    echo "herald_base=$HERALD_BASE ($("$HERALD_BASE" --version 2>/dev/null | head -1))"
  fi
  echo "parts=$PARTS"
  echo "mosquitto_version=$(mosquitto -h 2>/dev/null | head -1 || true)"
  echo "openssl_version=$(openssl version)"
  echo "rounds=$ROUNDS"
  echo "idle=$IDLE"
  echo "tls_seconds=$SECONDS_TLS"
  echo "fanin_seconds=$FANIN_SECONDS"
} >"$OUT/env.txt"
cp "$WORK/mosquitto.conf" "$OUT/"

START=$(date +%s)
# Every broker a kind is measured on: mosquitto has no WebSocket listener,
# herald-base is measured where the comparison is wanted (ws, wss).
peers() { # kind
  case $1 in
    tcp|tls) echo herald mosquitto ;;
    *) echo herald; if [[ -n "$HERALD_BASE" ]]; then echo herald-base; fi ;;
  esac
}
for r in $(seq "$ROUNDS"); do
  if [[ $PARTS == *" handshakes "* ]]; then
    for b in herald mosquitto; do run_handshakes "$r" "$b"; done
  fi
  if [[ $PARTS == *" idle "* ]]; then
    for k in tcp tls ws wss; do
      for b in $(peers "$k"); do run_idle "$r" "$b" "$k"; done
    done
  fi
  if [[ $PARTS == *" fanin "* ]]; then
    for q in 0 1; do
      for k in tcp tls ws wss; do
        for b in $(peers "$k"); do run_fanin "$r" "$b" "$k" "$q"; done
      done
    done
  fi
done
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"
echo "elapsed_s=$(( $(date +%s) - START ))" >>"$OUT/env.txt"

if [[ -z "${BENCH_NO_WRITE:-}" ]]; then
  python3 "$ROOT/bench/report.py" listeners "$OUT" "$ROOT/BENCHMARKS.md"
  log "BENCHMARKS.md updated (listeners section)"
else
  python3 "$ROOT/bench/report.py" listeners "$OUT" -
fi
