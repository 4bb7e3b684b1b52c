#!/usr/bin/env bash
# Broker memory against input that grows it (issue 13), Herald against its
# peers in one run, rounds interleaved (A B C A B C …), a fresh broker for
# every measurement. Prints figures; not a test.
#
#   bash bench/memory.sh                     # 3 rounds, idle at 10,000 and 100,000
#   BENCH_ROUNDS=1 BENCH_IDLE_COUNTS=2000 bash bench/memory.sh   # a quick trial
#
# 1. retained: one client publishes 2,000 retained 10-byte messages, each
#    followed by a 1,000,000-byte message to a topic nobody subscribes to
#    (QoS 0; a PINGREQ/PINGRESP at the end proves all were read). Reported:
#    the broker's RSS after (VmRSS) and its peak (VmHWM). Herald and
#    mosquitto (rumqttd refuses payloads over its max_payload_size).
# 2. idle: `herald-bench conn` opens N MQTT 3.1.1 connections (keep alive
#    60 s) and holds them; reported: (RSS while held − RSS before) ÷ N.
#    Herald, mosquitto, rumqttd; N from BENCH_IDLE_COUNTS (10000 100000).
#    Needs N × 2 open files: run as root (the limit is raised here) or raise
#    it yourself. Source addresses 127.0.0.1–127.0.0.8 give enough ports.
#
# Raw results go to target/bench/memory-<date>/; the summary replaces the
# "memory" section of BENCHMARKS.md (bench/report.py), unless
# BENCH_NO_WRITE=1. Knobs: BENCH_ROUNDS (3), BENCH_IDLE_COUNTS,
# BENCH_BROKERS (herald mosquitto rumqttd), BENCH_PARTS (retained idle),
# BENCH_NO_BUILD=1, BENCH_HERALD / BENCH_LOADGEN (the herald and herald-bench
# binaries; default: this tree's target/release), BENCH_HERALD_BASE (with
# herald-base in BENCH_BROKERS).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source bench/lib.sh

ROUNDS=${BENCH_ROUNDS:-3}
COUNTS=${BENCH_IDLE_COUNTS:-10000 100000}
BROKERS=${BENCH_BROKERS:-herald mosquitto rumqttd}
PARTS=${BENCH_PARTS:-retained idle}
OUT=${BENCH_OUT:-$ROOT/target/bench/memory-$(date -u +%Y%m%d-%H%M%S)}
WORK=$(mktemp -d /tmp/herald-memory.XXXXXX)
BENCH=${BENCH_LOADGEN:-$ROOT/target/release/herald-bench}
HERALD=${BENCH_HERALD:-$ROOT/target/release/herald}
# herald-base: another Herald binary (BENCH_HERALD_BASE, e.g. a build of an
# earlier commit) with the same settings, for before/after in one run.
HERALD_BASE=${BENCH_HERALD_BASE:-}
declare -A PORT=([herald]=18841 [mosquitto]=18842 [rumqttd]=18843 [herald-base]=18844)
BROKER_PID=""

log() { printf '[memory %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
stop_broker() { stop_pid "$BROKER_PID" TERM 10; BROKER_PID=""; }
cleanup() { stop_broker; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT"
log "results in $OUT"
# The most connections held is the largest count, on both sides.
MAXN=0
for n in $COUNTS; do (( n > MAXN )) && MAXN=$n; done
WANT=$(( MAXN * 2 + 10000 ))
if (( $(ulimit -Hn) < WANT )); then ulimit -Hn "$WANT" 2>/dev/null || true; fi
ulimit -n "$(ulimit -Hn)"
FDS=$(ulimit -n)
log "open-file limit $FDS"

build_release
RUMQTTD=$(command -v rumqttd || true)
[[ -z "$RUMQTTD" && -x "$HOME/.cargo/bin/rumqttd" ]] && RUMQTTD="$HOME/.cargo/bin/rumqttd"
ACTIVE=()
: >"$OUT/notes.txt"
for b in $BROKERS; do
  case $b in
    herald) ACTIVE+=(herald) ;;
    herald-base) if [[ -x "$HERALD_BASE" ]]; then ACTIVE+=(herald-base)
                 else echo "herald-base: BENCH_HERALD_BASE is not an executable; skipped" >>"$OUT/notes.txt"; fi ;;
    mosquitto) if command -v mosquitto >/dev/null; then ACTIVE+=(mosquitto)
               else echo "mosquitto: not installed; skipped" >>"$OUT/notes.txt"; fi ;;
    rumqttd) if [[ -n "$RUMQTTD" ]]; then ACTIVE+=(rumqttd)
             else echo "rumqttd: not installed (cargo install rumqttd); skipped" >>"$OUT/notes.txt"; fi ;;
    *) echo "unknown broker $b" >&2; exit 2 ;;
  esac
done

cat >"$WORK/mosquitto.conf" <<EOF
listener ${PORT[mosquitto]} 127.0.0.1
allow_anonymous true
persistence false
max_connections -1
set_tcp_nodelay true
sys_interval 0
log_dest stderr
log_type error
log_type warning
EOF
cat >"$WORK/rumqttd.toml" <<EOF
# rumqttd's shipped rumqttd.toml trimmed to one MQTT 3.1.1 listener, with
# room for every connection and no delay between accepted connections.
id = 0

[router]
id = 0
max_connections = $(( MAXN + 10 ))
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:${PORT[rumqttd]}"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
EOF

start_broker() { # name → BROKER_PID
  local b=$1 port=${PORT[$1]} logf="$OUT/broker-$1.log"
  case $b in
    herald | herald-base)
      local bin=$HERALD
      [[ $b == herald-base ]] && bin=$HERALD_BASE
      rm -rf "$WORK/herald-data"
      HERALD_LISTENER__MAX_CONNECTIONS=$(( MAXN + 10 )) HERALD_SYS__INTERVAL=0 \
      HERALD_METRICS__BIND="" RUST_LOG=warn \
        "$bin" --listen "127.0.0.1:$port" --data-dir "$WORK/herald-data" >>"$logf" 2>&1 & ;;
    mosquitto) mosquitto -c "$WORK/mosquitto.conf" >>"$logf" 2>&1 & ;;
    rumqttd) "$RUMQTTD" -q -c "$WORK/rumqttd.toml" >>"$logf" 2>&1 & ;;
  esac
  BROKER_PID=$!
  if wait_port "$port" "$BROKER_PID"; then sleep 0.3; return 0; fi
  log "$b did not start on $port; see $logf"
  return 1
}

status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || true; }

# The retained + large load: a raw MQTT 3.1.1 client, nothing but sockets.
cat >"$WORK/retained.py" <<'EOF'
import socket, sys

def varint(n):
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

def publish(topic, payload, retain):
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + payload
    return bytes([0x30 | (1 if retain else 0)]) + varint(len(body)) + body

port, count, big = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
cid = b"memory-bench"
body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
s.sendall(b"\x10" + varint(len(body)) + body)
assert s.recv(4) == b"\x20\x02\x00\x00", "CONNACK"
large = publish("memory/large", b"L" * big, False)
for i in range(count):
    s.sendall(publish(f"memory/retained/{i}", b"0123456789", True))
    s.sendall(large)
s.sendall(b"\xc0\x00")
got = b""
while len(got) < 2:
    chunk = s.recv(2 - len(got))
    assert chunk, "closed before PINGRESP"
    got += chunk
assert got == b"\xd0\x00", got
s.close()
EOF

run_retained() { # round broker
  local r=$1 b=$2 f="$OUT/round-$1/retained.$2"
  mkdir -p "$OUT/round-$r"
  [[ $b == rumqttd ]] && return 0
  start_broker "$b" || { echo "rc=start-failed" >"$f"; return 0; }
  local before load rc=0; before=$(status_kib "$BROKER_PID" VmRSS); load=$(cut -d' ' -f1 /proc/loadavg)
  timeout 300 python3 "$WORK/retained.py" "${PORT[$b]}" 2000 1000000 >"$f.out" 2>&1 || rc=$?
  sleep 1
  printf 'rc=%s\nrss_before_kib=%s\nrss_kib=%s\nhwm_kib=%s\nload1=%s\n' "$rc" "$before" \
    "$(status_kib "$BROKER_PID" VmRSS)" "$(status_kib "$BROKER_PID" VmHWM)" "$load" >"$f"
  stop_broker
  log "round $r retained $b: $(tr '\n' ' ' <"$f")"
}

run_idle() { # round broker count
  local r=$1 b=$2 n=$3 json="$OUT/round-$1/idle-$3.$2.json" rc=0
  mkdir -p "$OUT/round-$r"
  start_broker "$b" || { echo "rc=start-failed" >"${json%.json}.meta"; return 0; }
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  # rumqttd takes about 1,000 connections a second: give it the time.
  timeout $(( 120 + n / 500 )) "$BENCH" conn -c "$n" --hold 5 --concurrency 200 \
    --source-ips 127.0.0.1-127.0.0.8 --connect-timeout 60 -q \
    --broker-pid "$BROKER_PID" --port "${PORT[$b]}" --json "$json" >"${json%.json}.out" 2>&1 || rc=$?
  printf 'rc=%s\nload1=%s\n' "$rc" "$load" >"${json%.json}.meta"
  stop_broker
  log "round $r idle $n $b: rc=$rc $(grep -o 'RSS.*' "${json%.json}.out" | head -1)"
}

{
  machine_env
  echo "herald_version=$("$HERALD" --version 2>/dev/null | head -1)"
  echo "mosquitto_version=$(mosquitto -h 2>/dev/null | head -1 || true)"
  if [[ -n "$RUMQTTD" ]]; then echo "rumqttd_version=$("$RUMQTTD" --version 2>/dev/null | head -1)"; fi
  [[ -n "$HERALD_BASE" ]] && echo "herald-base_version=herald-base: $HERALD_BASE ($("$HERALD_BASE" --version 2>/dev/null | head -1))"
  echo "rounds=$ROUNDS"
  echo "counts=$COUNTS"
  echo "brokers=${ACTIVE[*]}"
  echo "parts=$PARTS"
  echo "open_files=$FDS"
} >"$OUT/env.txt"
cp "$WORK/mosquitto.conf" "$WORK/rumqttd.toml" "$OUT/"

START=$(date +%s)
for r in $(seq "$ROUNDS"); do
  for part in $PARTS; do
    case $part in
      retained) for b in "${ACTIVE[@]}"; do run_retained "$r" "$b"; done ;;
      idle) for n in $COUNTS; do for b in "${ACTIVE[@]}"; do run_idle "$r" "$b" "$n"; done; done ;;
    esac
  done
done
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"
echo "elapsed_s=$(( $(date +%s) - START ))" >>"$OUT/env.txt"

if [[ -z "${BENCH_NO_WRITE:-}" ]]; then
  python3 "$ROOT/bench/report.py" memory "$OUT" "$ROOT/BENCHMARKS.md"
  log "BENCHMARKS.md updated (memory section)"
else
  python3 "$ROOT/bench/report.py" memory "$OUT" -
fi
