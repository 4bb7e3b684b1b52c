#!/usr/bin/env bash
# Herald against its peers, side by side, on this machine (issue 7).
#
#   bash bench/compare.sh            # full run: 3 rounds, ~15 minutes
#   BENCH_ROUNDS=1 BENCH_DURATION=3 BENCH_IDLE_CONNS=2000 bash bench/compare.sh   # a quick trial
#
# Builds release, then for every round, scenario and broker (A B C A B C …)
# starts a fresh broker on its own loopback port with equivalent settings (no
# queue, inflight or rate limits), runs one herald-bench scenario against it,
# records the broker's peak RSS and stops it. Peers: mosquitto (Debian's
# package), rumqttd (`cargo install rumqttd`, installed here if missing) and
# rmqttd (RMQTT) where installed; a missing peer is skipped with a note.
#
# Raw JSON goes to target/bench/compare-<date>/; the summary replaces the
# "compare" section of BENCHMARKS.md (bench/report.py). Not part of CI.
#
# Knobs (environment): BENCH_ROUNDS (3), BENCH_DURATION (seconds per run, 7),
# BENCH_WARMUP (1), BENCH_IDLE_CONNS (10000), BENCH_FANOUT_WIDE
# (subscribers of the fanout10k scenarios, 10000), BENCH_FANOUT_MSGS (messages
# published in them, 100), BENCH_BROKERS (herald mosquitto
# rumqttd rmqttd), BENCH_SCENARIOS (all), BENCH_NO_BUILD=1, BENCH_NO_WRITE=1
# (keep BENCHMARKS.md as it is), BENCH_HERALD / BENCH_LOADGEN (the herald and
# herald-bench binaries; default: this tree's target/release),
# BENCH_LOADGEN_THREADS (herald-bench's runtime threads; default one per CPU).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source bench/lib.sh

ROUNDS=${BENCH_ROUNDS:-3}
DUR=${BENCH_DURATION:-7}
WARM=${BENCH_WARMUP:-1}
IDLE=${BENCH_IDLE_CONNS:-10000}
BROKERS=${BENCH_BROKERS:-herald mosquitto rumqttd rmqttd}
# Herald's session inflight window; 65535 (the whole packet-id space) is "no
# limit". A broker named herald-inflight<N> is Herald with a window of N.
HERALD_INFLIGHT=${BENCH_HERALD_INFLIGHT:-65535}
SCENARIOS=${BENCH_SCENARIOS:-fanin-q0 fanin-q1 fanout-q1 fanout10k-q0 fanout10k-q1 pairs-q1 latency-q1 conn}
# Subscribers of the wide fan-out scenarios (issue 13: 10,000 on one topic).
FANOUT_WIDE=${BENCH_FANOUT_WIDE:-10000}
# Messages the publisher sends in them (× subscribers = deliveries).
FANOUT_MSGS=${BENCH_FANOUT_MSGS:-100}
RATE=5000
OUT=${BENCH_OUT:-$ROOT/target/bench/compare-$(date -u +%Y%m%d-%H%M%S)}
WORK=$(mktemp -d /tmp/herald-compare.XXXXXX)
BENCH=${BENCH_LOADGEN:-$ROOT/target/release/herald-bench}
HERALD=${BENCH_HERALD:-$ROOT/target/release/herald}

declare -A PORT=([herald]=18831 [mosquitto]=18832 [rumqttd]=18833 [rmqttd]=18834 [herald-base]=18836)
# A broker named herald-base is another Herald binary (BENCH_HERALD_BASE,
# e.g. a build of an earlier commit) with the same settings: a before/after
# comparison within one run.
HERALD_BASE=${BENCH_HERALD_BASE:-}
port_of() { if [[ -n "${PORT[$1]:-}" ]]; then echo "${PORT[$1]}"; else echo 18835; fi; }
BROKER_PID=""

log() { printf '[compare %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

stop_broker() { stop_pid "$BROKER_PID" TERM 5; BROKER_PID=""; }
cleanup() {
  stop_broker
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT"
log "results in $OUT"
# Thousands of sockets on both sides (conn, wide fan-out): as many open
# files as the hard limit allows.
ulimit -n "$(ulimit -Hn)" || true

# ---------------------------------------------------------------- build, peers
build_release

RUMQTTD=$(command -v rumqttd || true)
[[ -z "$RUMQTTD" && -x "$HOME/.cargo/bin/rumqttd" ]] && RUMQTTD="$HOME/.cargo/bin/rumqttd"
NOTES="$OUT/notes.txt"
: >"$NOTES"
ACTIVE=()
for b in $BROKERS; do
  case $b in
    herald | herald-inflight[0-9]*) ACTIVE+=("$b") ;;
    herald-base)
      if [[ -x "$HERALD_BASE" ]]; then ACTIVE+=(herald-base)
      else echo "herald-base: BENCH_HERALD_BASE is not an executable; skipped" >>"$NOTES"; fi ;;
    mosquitto)
      if command -v mosquitto >/dev/null; then ACTIVE+=(mosquitto)
      else echo "mosquitto: not installed (apt-get install mosquitto); skipped" >>"$NOTES"; fi ;;
    rumqttd)
      if [[ -z "$RUMQTTD" ]]; then
        log "rumqttd missing: cargo install rumqttd (without --locked)"
        if cargo install rumqttd >&2; then RUMQTTD="$HOME/.cargo/bin/rumqttd"
        else echo "rumqttd: \`cargo install rumqttd\` failed; skipped" >>"$NOTES"; fi
      fi
      [[ -n "$RUMQTTD" ]] && ACTIVE+=(rumqttd) ;;
    rmqttd)
      if command -v rmqttd >/dev/null; then ACTIVE+=(rmqttd)
      else echo "RMQTT (rmqttd): not installed on this machine; skipped (it needs protobuf-compiler and cmake and about 20 minutes to build: cargo install rmqttd)" >>"$NOTES"; fi ;;
    *) echo "unknown broker $b" >&2; exit 2 ;;
  esac
done
log "brokers: ${ACTIVE[*]}"

# ---------------------------------------------------------- broker configs
# Equivalent settings: loopback listener on its own port, no queue / inflight
# / rate limits, no persistence, TCP_NODELAY where the broker has a switch,
# no $SYS or metrics publishing.
cat >"$WORK/mosquitto.conf" <<EOF
listener ${PORT[mosquitto]} 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 0
max_inflight_bytes 0
max_connections -1
set_tcp_nodelay true
sys_interval 0
log_dest stderr
log_type error
log_type warning
EOF

cat >"$WORK/rumqttd.toml" <<EOF
# rumqttd's shipped rumqttd.toml, trimmed to one MQTT 3.1.1 listener, with
# the connection limit raised, inflight at its maximum and no delay between
# accepted connections (next_connection_delay_ms 1 would cap it at 1,000/s).
id = 0

[router]
id = 0
max_connections = 20010
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
    max_inflight_count = 65535
    dynamic_filters = true
EOF

cat >"$WORK/rmqtt.toml" <<EOF
# RMQTT: one plain TCP listener; limits raised.
[listener.tcp.external]
addr = "127.0.0.1:${PORT[rmqttd]}"
max_connections = 1048576
max_inflight = 65535
max_mqueue_len = 1000000
EOF

start_broker() { # name → BROKER_PID, waits until the port accepts
  local b=$1 port logf="$OUT/broker-$1.log" inflight=$HERALD_INFLIGHT
  port=$(port_of "$b")
  case $b in
    herald*)
      [[ $b == herald-inflight* ]] && inflight=${b#herald-inflight}
      local bin=$HERALD
      [[ $b == herald-base ]] && bin=$HERALD_BASE
      rm -rf "$WORK/herald-data"
      HERALD_MQTT__MAX_QUEUED_MESSAGES=1000000 \
      HERALD_MQTT__MAX_INFLIGHT=$inflight \
      HERALD_MQTT__RECEIVE_MAXIMUM=65535 \
      HERALD_SYS__INTERVAL=0 \
      HERALD_METRICS__BIND="" \
      RUST_LOG=warn \
        "$bin" --listen "127.0.0.1:$port" --data-dir "$WORK/herald-data" >>"$logf" 2>&1 &
      ;;
    mosquitto) mosquitto -c "$WORK/mosquitto.conf" >>"$logf" 2>&1 & ;;
    rumqttd) "$RUMQTTD" -q -c "$WORK/rumqttd.toml" >>"$logf" 2>&1 & ;;
    rmqttd) rmqttd -f "$WORK/rmqtt.toml" >>"$logf" 2>&1 & ;;
  esac
  BROKER_PID=$!
  if wait_port "$port" "$BROKER_PID"; then
    sleep 0.3
    return 0
  fi
  log "$b did not start listening on $port; see $logf"
  return 1
}

scenario_args() { # scenario → herald-bench arguments
  local common=(-d "$DUR" --warmup "$WARM" -q)
  case $1 in
    fanin-q0)   echo fan-in -c 2 --qos 0 "${common[@]}" ;;
    fanin-q1)   echo fan-in -c 2 --qos 1 "${common[@]}" ;;
    fanout-q1)  echo fan-out -c 100 --qos 1 "${common[@]}" ;;
    # A fixed number of messages, not a duration: flat out for seconds,
    # 10,000 subscribers would be owed billions of QoS 0 deliveries. The
    # rate is deliveries ÷ time to the last delivery.
    fanout10k-q0) echo fan-out -c "$FANOUT_WIDE" --qos 0 -n "$FANOUT_MSGS" --drain 30 --source-ips 127.0.0.1-127.0.0.4 -q ;;
    fanout10k-q1) echo fan-out -c "$FANOUT_WIDE" --qos 1 -n "$FANOUT_MSGS" --drain 30 --source-ips 127.0.0.1-127.0.0.4 -q ;;
    pairs-q1)   echo pairs -c 100 --qos 1 "${common[@]}" ;;
    latency-q1) echo fan-in -c 2 --qos 1 --total-rate "$RATE" "${common[@]}" ;;
    conn)       echo conn -c "$IDLE" --hold 3 --source-ips 127.0.0.1-127.0.0.4 -q ;;
    *) echo "unknown scenario $1" >&2; return 2 ;;
  esac
}

run_one() { # round scenario broker
  local r=$1 s=$2 b=$3 dir="$OUT/round-$1"
  local json="$dir/$s.$b.json" meta="$dir/$s.$b.meta" args rc=0
  mkdir -p "$dir"
  read -r -a args <<<"$(scenario_args "$s")"
  if ! start_broker "$b"; then
    printf 'rc=start-failed\n' >"$meta"
    stop_broker
    return 0
  fi
  args+=(--broker-pid "$BROKER_PID")
  [[ -n "${BENCH_LOADGEN_THREADS:-}" ]] && args+=(--threads "$BENCH_LOADGEN_THREADS")
  local load_before; load_before=$(cut -d' ' -f1 /proc/loadavg)
  echo "herald-bench ${args[*]} --port $(port_of "$b") --json $json" >"$dir/$s.$b.cmd"
  # The load generator's own CPU (user + system seconds) and the run's wall
  # time: with both sides on two shared cores, whether the broker or the
  # load generator is the ceiling shows in where the CPU went.
  /usr/bin/time -f 'wall_s=%e bench_cpu_s=%U+%S' -o "$dir/$s.$b.time" \
    timeout 300 "$BENCH" "${args[@]}" --port "$(port_of "$b")" --json "$json" \
    >"$dir/$s.$b.out" 2>&1 || rc=$?
  local hwm rss
  hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$BROKER_PID/status" 2>/dev/null || echo "")
  rss=$(awk '/^VmRSS:/{print $2}' "/proc/$BROKER_PID/status" 2>/dev/null || echo "")
  # CPU the broker used over the whole run (user + system, clock ticks):
  # on a shared machine, what a broker costs per message is steadier than
  # what it delivers per second.
  local cpu_ticks
  cpu_ticks=$(awk '{print $14 + $15}' "/proc/$BROKER_PID/stat" 2>/dev/null || echo "")
  local threads; threads=$(ls "/proc/$BROKER_PID/task" 2>/dev/null | wc -l)
  local alive=yes; kill -0 "$BROKER_PID" 2>/dev/null || alive=no
  local wall="" bench_cpu=""
  if [[ -f "$dir/$s.$b.time" ]]; then
    wall=$(sed -n 's/.*wall_s=\([0-9.]*\).*/\1/p' "$dir/$s.$b.time" | tail -1)
    bench_cpu=$(sed -n 's/.*bench_cpu_s=\([0-9.+]*\).*/\1/p' "$dir/$s.$b.time" | tail -1)
    [[ -n "$bench_cpu" ]] && bench_cpu=$(python3 -c "print(round($bench_cpu, 2))")
  fi
  printf 'rc=%s\nhwm_kib=%s\nrss_kib=%s\nalive=%s\nload1=%s\ncpu_ticks=%s\nclk_tck=%s\nthreads=%s\nwall_s=%s\nbench_cpu_s=%s\n' \
    "$rc" "$hwm" "$rss" "$alive" "$load_before" "$cpu_ticks" "$(getconf CLK_TCK)" \
    "$threads" "$wall" "$bench_cpu" >"$meta"
  stop_broker
  local summary
  summary=$(python3 - "$json" <<'EOF' 2>/dev/null || true
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except Exception:
    print("no report"); sys.exit()
if j.get("scenario") == "conn":
    print(f"{j['connect_rate']:.0f} conn/s, {j.get('rss_per_connection_bytes') or 0:.0f} B/conn")
else:
    lat = j.get("latency_us") or {}
    print(f"recv {j['recv_rate']:.0f} msg/s lost {j['lost']} p99 {lat.get('p99', 0):.0f} us")
EOF
)
  log "round $r  $s  $b: rc=$rc  $summary"
}

# ------------------------------------------------------------------ describe
{
  machine_env
  echo "lscpu_cpus=$(lscpu | awk -F: '/^CPU\(s\)/{gsub(/ /,"",$2); print $2; exit}')"
  echo "herald_version=$("$HERALD" --version 2>/dev/null | head -1)"
  echo "mosquitto_version=$(mosquitto -h 2>/dev/null | head -1 || true)"
  if [[ -n "$RUMQTTD" ]]; then echo "rumqttd_version=$("$RUMQTTD" --version 2>/dev/null | head -1)"; fi
  if command -v rmqttd >/dev/null; then echo "rmqttd_version=$(rmqttd --version 2>/dev/null | head -1)"; fi
  echo "herald_inflight=$HERALD_INFLIGHT"
  [[ -n "$HERALD_BASE" ]] && echo "herald_base=$HERALD_BASE ($("$HERALD_BASE" --version 2>/dev/null | head -1))"
  echo "rounds=$ROUNDS"
  echo "duration=$DUR"
  echo "warmup=$WARM"
  echo "idle=$IDLE"
  echo "fanout_wide=$FANOUT_WIDE"
  echo "fanout_msgs=$FANOUT_MSGS"
  echo "loadgen_threads=${BENCH_LOADGEN_THREADS:-one per CPU}"
  echo "rate=$RATE"
  echo "brokers=${ACTIVE[*]}"
  echo "scenarios=$SCENARIOS"
} >"$OUT/env.txt"
cp "$WORK/mosquitto.conf" "$WORK/rumqttd.toml" "$OUT/"
{
  echo "HERALD_MQTT__MAX_QUEUED_MESSAGES=1000000 HERALD_MQTT__MAX_INFLIGHT=$HERALD_INFLIGHT HERALD_MQTT__RECEIVE_MAXIMUM=65535 HERALD_SYS__INTERVAL=0 HERALD_METRICS__BIND= RUST_LOG=warn herald --listen 127.0.0.1:${PORT[herald]} --data-dir <tmp>"
  for b in "${ACTIVE[@]}"; do
    [[ $b == herald-inflight* ]] && echo "# $b: the same with HERALD_MQTT__MAX_INFLIGHT=${b#herald-inflight} --listen 127.0.0.1:18835"
  done
  echo "mosquitto -c mosquitto.conf"
  echo "rumqttd -q -c rumqttd.toml"
  echo "rmqttd -f rmqtt.toml"
} >"$OUT/broker-commands.txt"

# ---------------------------------------------------------------------- runs
START=$(date +%s)
for r in $(seq "$ROUNDS"); do
  for s in $SCENARIOS; do
    for b in "${ACTIVE[@]}"; do
      run_one "$r" "$s" "$b"
    done
  done
done
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"
echo "elapsed_s=$(( $(date +%s) - START ))" >>"$OUT/env.txt"
log "runs done in $(( $(date +%s) - START )) s"

if [[ -z "${BENCH_NO_WRITE:-}" ]]; then
  python3 "$ROOT/bench/report.py" compare "$OUT" "$ROOT/BENCHMARKS.md"
  log "BENCHMARKS.md updated (compare section)"
else
  python3 "$ROOT/bench/report.py" compare "$OUT" -
fi
