#!/usr/bin/env bash
# What durability costs (issue 16): QoS 1 to a persistent subscriber and
# QoS 1 retained messages, Herald with [persistence] durability = "ack",
# "periodic" and "off" against mosquitto with `persistence true`, in the
# same run, brokers interleaved (A B C D A B C D ...).
#
#   bash bench/persistence.sh                     # 2 rounds, ~5 minutes
#   BENCH_ROUNDS=1 BENCH_DURATION=3 bash bench/persistence.sh   # a quick trial
#   bash bench/persistence.sh restart             # restart time and RSS
#
# `restart`: each broker is filled (herald-bench state: BENCH_SESSIONS
# persistent sessions with 2 subscriptions and BENCH_QUEUED QoS 1 messages
# queued each, BENCH_RETAINED retained messages; all acknowledged), stopped
# (SIGTERM: Herald compacts / snapshots, mosquitto saves mosquitto.db; and,
# for "ack", also SIGKILL: the uncompacted log is replayed) and started
# again on the same data: time until it accepts connections, its RSS then,
# and the size of what it read.
#
# Every run starts a fresh broker with an empty data dir on the same disk
# (target/bench/), runs one herald-bench scenario, records the broker's
# peak RSS and stops it. Prints a Markdown table (medians, min–max, ratios
# against mosquitto) and the load average; raw JSON stays in
# target/bench/persistence-<date>/. Not part of CI.
#
# Knobs: BENCH_ROUNDS (2), BENCH_DURATION (5 s per run), BENCH_WARMUP (1),
# BENCH_BROKERS (herald-ack herald-periodic herald-off mosquitto),
# BENCH_SCENARIOS (persistent-2 persistent-16 retained-2; also
# persistent-2-qos2), BENCH_NO_BUILD=1. A broker named `herald-<mode>-before`
# runs the binary BENCH_BEFORE (e.g. a copy of target/release/herald built
# before a change), to compare a change with what it changes in one run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source bench/lib.sh

ROUNDS=${BENCH_ROUNDS:-2}
DUR=${BENCH_DURATION:-5}
WARM=${BENCH_WARMUP:-1}
BROKERS=${BENCH_BROKERS:-herald-ack herald-periodic herald-off mosquitto}
SCENARIOS=${BENCH_SCENARIOS:-persistent-2 persistent-16 retained-2}
OUT=${BENCH_OUT:-$ROOT/target/bench/persistence-$(date -u +%Y%m%d-%H%M%S)}
BENCH="$ROOT/target/release/herald-bench"
HERALD="$ROOT/target/release/herald"
PORT=18851
BROKER_PID=""

log() { printf '[persistence %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
stop_broker() { stop_pid "$BROKER_PID" TERM 10; BROKER_PID=""; }
trap stop_broker EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT"
build_release
command -v mosquitto >/dev/null || { log "mosquitto is not installed (apt-get install mosquitto)"; exit 1; }

# The data dirs live on the disk the repository is on (not a tmpfs): what
# is measured is the fsync.
DATA="$OUT/data"

# mosquitto with persistence: its in-memory state written to
# mosquitto.db every autosave_interval seconds (here 60, as Herald's
# "periodic" default) and at exit; a crash loses what came since.
# `user`: run as root (as CI does), mosquitto would switch to the user
# "mosquitto", which cannot write the data dir; it stays who runs this.
cat >"$OUT/mosquitto.conf" <<EOF
user $(id -un)
listener $PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $DATA/
autosave_interval 60
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 0
max_inflight_bytes 0
set_tcp_nodelay true
sys_interval 0
log_dest stderr
log_type error
log_type warning
EOF

start_broker() { # name [keep: start on the data that is there]
  local b=$1 logf="$OUT/broker-$1.log"
  if [[ -z "${2:-}" ]]; then
    rm -rf "$DATA"
    mkdir -p "$DATA"
  fi
  local bin=$HERALD mode=${b#herald-}
  if [[ $mode == *-before ]]; then
    bin=${BENCH_BEFORE:?set BENCH_BEFORE to the herald binary to compare with}
    mode=${mode%-before}
  fi
  case $b in
    herald-*)
      HERALD_PERSISTENCE__DURABILITY=$mode \
      HERALD_PERSISTENCE__INTERVAL=60 \
      HERALD_MQTT__MAX_QUEUED_MESSAGES=1000000 \
      HERALD_MQTT__RECEIVE_MAXIMUM=65535 \
      HERALD_SYS__INTERVAL=0 \
      HERALD_METRICS__BIND="" \
      RUST_LOG=${BROKER_LOG:-warn} \
        "$bin" --listen "127.0.0.1:$PORT" --data-dir "$DATA" >>"$logf" 2>&1 &
      ;;
    mosquitto) mosquitto -c "$OUT/mosquitto.conf" >>"$logf" 2>&1 & ;;
    *) echo "unknown broker $b" >&2; exit 2 ;;
  esac
  BROKER_PID=$!
  # Up to 10 minutes (a restart reads the whole state), polling every 10 ms.
  wait_port "$PORT" "$BROKER_PID" 60000 0.01 || { log "$b did not start; see $logf"; return 1; }
}

if [[ "${1:-}" == restart ]]; then
  SESSIONS=${BENCH_SESSIONS:-100000}
  QUEUED=${BENCH_QUEUED:-10}
  RETAINED=${BENCH_RETAINED:-1000000}
  RESULTS="$OUT/restart.txt"
  : >"$RESULTS"
  for b in ${BENCH_BROKERS:-herald-ack herald-periodic mosquitto}; do
    stops=(TERM)
    [[ $b == herald-ack ]] && stops=(TERM KILL)
    for stop in "${stops[@]}"; do
      BROKER_LOG=info start_broker "$b" || continue
      load=$(cut -d' ' -f1 /proc/loadavg)
      fill=$("$BENCH" state --sessions "$SESSIONS" --queued "$QUEUED" --retained "$RETAINED" \
        --port "$PORT" --concurrency 32 -q 2>&1 | tail -1)
      log "$b filled: $fill"
      if [[ $stop == KILL ]]; then stop_pid "$BROKER_PID" KILL 1; else stop_pid "$BROKER_PID" TERM 600; fi
      BROKER_PID=""
      bytes=$(du -sb "$DATA" | cut -f1)
      t0=$(date +%s.%N)
      BROKER_LOG=info start_broker "$b" keep || continue
      t1=$(date +%s.%N)
      rss=$(awk '/^VmRSS:/{print $2}' "/proc/$BROKER_PID/status")
      hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$BROKER_PID/status")
      recovered=$(grep -a "broker state recovered" "$OUT/broker-$b.log" | tail -1 | grep -o 'took_ms=[0-9]*' || true)
      stop_broker
      line=$(printf '%s after SIG%s: restart %.2f s (%s), RSS %d MiB (peak %d MiB), data %d MiB; load %s; fill: %s' \
        "$b" "$stop" "$(echo "$t1 - $t0" | bc)" "${recovered:-until listening}" $((rss / 1024)) $((hwm / 1024)) \
        $((bytes / 1048576)) "$load" "$fill")
      log "$line"
      echo "$line" >>"$RESULTS"
    done
  done
  rm -rf "$DATA"
  echo "herald-bench state --sessions $SESSIONS --queued $QUEUED --retained $RETAINED --concurrency 32"
  cat "$RESULTS"
  exit 0
fi

scenario_args() {
  local common=(--qos 1 -d "$DUR" --warmup "$WARM" -q)
  case $1 in
    # Publishers → one persistent subscriber (3.1.1 Clean Session 0,
    # online): every message is queued to a stored session.
    persistent-2) echo fan-in -c 2 --persistent "${common[@]}" ;;
    persistent-16) echo fan-in -c 16 --persistent "${common[@]}" ;;
    # The same at QoS 2: each delivery's PUBLISH waits until its packet id
    # is written, and its PUBREL until its PUBREC is (exactly once across
    # a crash).
    persistent-2-qos2) echo fan-in -c 2 --persistent --qos 2 -d "$DUR" --warmup "$WARM" -q ;;
    # Retained QoS 1 messages (each replaces its publisher's topic's
    # retained message), to an ordinary subscriber.
    retained-2) echo fan-in -c 2 --retain "${common[@]}" ;;
    *) echo "unknown scenario $1" >&2; return 2 ;;
  esac
}

for r in $(seq "$ROUNDS"); do
  for s in $SCENARIOS; do
    for b in $BROKERS; do
      dir="$OUT/round-$r"
      mkdir -p "$dir"
      read -r -a args <<<"$(scenario_args "$s")"
      start_broker "$b" || continue
      load=$(cut -d' ' -f1 /proc/loadavg)
      echo "herald-bench ${args[*]} --port $PORT" >"$dir/$s.$b.cmd"
      timeout 120 "$BENCH" "${args[@]}" --port "$PORT" --json "$dir/$s.$b.json" \
        >"$dir/$s.$b.out" 2>&1 || true
      hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$BROKER_PID/status" 2>/dev/null || echo 0)
      printf 'hwm_kib=%s\nload1=%s\n' "$hwm" "$load" >"$dir/$s.$b.meta"
      stop_broker
      summary=$(python3 - "$dir/$s.$b.json" <<'PY' 2>/dev/null || echo 'no report'
import json, sys
j = json.load(open(sys.argv[1]))
print(f"recv {j['recv_rate']:.0f} msg/s, lost {j['lost']}, unacked {j['unacked']}")
PY
)
      log "round $r $s $b: $summary"
    done
  done
done
rm -rf "$DATA"

python3 - "$OUT" "$SCENARIOS" "$BROKERS" <<'EOF'
import json, statistics, sys, pathlib
out, scenarios, brokers = pathlib.Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split()
def runs(s, b):
    for d in sorted(out.glob("round-*")):
        j, m = d / f"{s}.{b}.json", d / f"{s}.{b}.meta"
        if j.exists():
            meta = dict(l.split("=", 1) for l in m.read_text().split())
            yield json.loads(j.read_text()), meta
def fmt(v): return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"
def cell(vals):
    if not vals: return "—", None
    med = statistics.median(vals)
    return f"{fmt(med)} ({fmt(min(vals))}–{fmt(max(vals))})", med
names = {"persistent-2": "QoS 1, 2 publishers → 1 persistent subscriber",
         "persistent-16": "QoS 1, 16 publishers → 1 persistent subscriber",
         "persistent-2-qos2": "QoS 2, 2 publishers → 1 persistent subscriber",
         "retained-2": "QoS 1 retained, 2 publishers → 1 subscriber"}
metrics = [("delivered, msg/s ↑", lambda j, m: j["recv_rate"]),
           ("p99 latency (queueing), ms ↓", lambda j, m: (j.get("latency_us") or {}).get("p99", 0) / 1000),
           ("lost + unacked", lambda j, m: j["lost"] + j["unacked"]),
           ("broker peak RSS, MiB ↓", lambda j, m: int(m.get("hwm_kib", 0)) / 1024)]
print("| Scenario | Metric | " + " | ".join(brokers) + " | " +
      " | ".join(f"{b} / mosquitto" for b in brokers if b != "mosquitto") + " |")
print("|---|---|" + "---|" * (2 * len(brokers) - 1))
loads = []
for s in scenarios:
    for name, f in metrics:
        cells, meds = [], {}
        for b in brokers:
            vals = [f(j, m) for j, m in runs(s, b)]
            loads += [float(m["load1"]) for _, m in runs(s, b)]
            c, meds[b] = cell(vals)
            cells.append(c)
        ratios = []
        for b in brokers:
            if b == "mosquitto": continue
            a, z = meds.get(b), meds.get("mosquitto")
            ratios.append(f"{a / z:.2f}×" if a is not None and z else "—")
        print(f"| {names.get(s, s)} | {name} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
if loads:
    print(f"\n1-minute load average before the runs: {min(loads):.1f}–{max(loads):.1f}")
EOF
