#!/usr/bin/env bash
# Herald's WebHook under MQTT load (issue 6, "Performance", items 1 and 8).
#
#   bash bench/webhook.sh            # full run, ~25 minutes
#   BENCH_PARTS=peers BENCH_LOCK=/work/bench.lock bash bench/webhook.sh   # part 4 only
#   BENCH_ROUNDS=1 BENCH_DURATION=3 BENCH_OUTAGE=20 bash bench/webhook.sh   # a quick trial
#
# Herald with the WebHook on message.publish, posting to `herald-bench sink`
# on 127.0.0.1, disk spool in a temp dir (fsync = interval, the default;
# max_bytes = 8GB so that a flat-out run, which spools over 1 GB, is not cut
# by the default 1 GB limit), retry.initial_backoff = 100ms,
# retry.max_backoff = 5s. Three parts:
#
#  1. throughput: MQTT fan-in (100 → 1, QoS 1, flat out) with the WebHook off,
#     on (one event per request) and on batched (100 events / 10 ms); events/s
#     the sink received during the MQTT load, and MQTT throughput on ÷ off;
#     then MQTT at the issue's aims as fixed rates (50,000 msg/s one event per
#     request, 200,000 msg/s batched): does the WebHook keep up?
#  2. never blocks: the same fan-in at a fixed 5,000 msg/s (p99 latency) and flat
#     out (throughput) with the web server (a) fast, (b) answering after 2 s,
#     (c) refusing connections (no sink), (d) accepting but never answering;
#     (b), (c), (d) as ratios to (a);
#  3. outage: fixed 5,000 msg/s for BENCH_OUTAGE_LOAD s (60), the sink killed
#     for BENCH_OUTAGE s (30) in the middle and started again: loss (event ids
#     of both sink runs stitched per lane), per-client order, catch-up rate,
#     broker peak RSS, MQTT clients still connected.
#  4. peers (issue 17, bench/webhook_peers.sh): Herald beside RMQTT's
#     web-hook, both posting to one nginx; fan-in 2 → 1 and 20 → 1 flat out,
#     Herald's batching beside; a 20 s nginx outage at 2,000 msg/s for both.
#  5. ackcost (issue 12, "acknowledged means spooled"): a hooked QoS 1
#     publish gets its PUBACK only once its event is written to the spool.
#     PUBACK latency (PUBLISH written → PUBACK read, herald-bench
#     --ack-latency) at a fixed 5,000 msg/s and flat-out throughput, WebHook
#     off / on (disk spool, fsync = interval, the default) / on with
#     fsync = always, interleaved per round. Its own section of
#     BENCHMARKS.md (bench/webhook_ack_report.py): `BENCH_PARTS=ackcost`
#     re-runs it alone.
#
# Rounds interleave the variants (A B C A B C …). Raw results go to
# target/bench/webhook-<date>/; the summary replaces the "webhook" section of
# BENCHMARKS.md (bench/report.py, bench/webhook_report.py), part 4 the
# "webhook-peers" section (bench/webhook_peers_report.py), part 5 the
# "webhook-ack" section (bench/webhook_ack_report.py). Not part of CI.
#
# Knobs: BENCH_ROUNDS (3), BENCH_DURATION (6), BENCH_WARMUP (1),
# BENCH_OUTAGE_LOAD (60), BENCH_OUTAGE (30), BENCH_PARTS (throughput
# neverblocks outage peers ackcost), BENCH_NO_BUILD=1, BENCH_NO_WRITE=1; part 4's
# own knobs are listed in bench/webhook_peers.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source bench/lib.sh

ROUNDS=${BENCH_ROUNDS:-3}
DUR=${BENCH_DURATION:-6}
WARM=${BENCH_WARMUP:-1}
OUTAGE_LOAD=${BENCH_OUTAGE_LOAD:-60}
OUTAGE=${BENCH_OUTAGE:-30}
PARTS=${BENCH_PARTS:-throughput neverblocks outage peers ackcost}
RATE=5000
# Publishers: the WebHook keeps each client's events in one lane (one
# connection, in order), so the load needs many clients to use the 32 lanes.
PUBS=${BENCH_PUBLISHERS:-100}
# Herald's session inflight window (the subscriber's). 65535 trips a
# packet-id scan that is linear in the window (see BENCHMARKS.md, compare
# section); 1024 does not throttle one subscriber at these rates.
INFLIGHT=${BENCH_HERALD_INFLIGHT:-1024}
OUT=${BENCH_OUT:-$ROOT/target/bench/webhook-$(date -u +%Y%m%d-%H%M%S)}
WORK=$(mktemp -d /tmp/herald-webhook-bench.XXXXXX)
BENCH="$ROOT/target/release/herald-bench"
HERALD="$ROOT/target/release/herald"
MQTT_PORT=18841
SINK_PORT=18842
METRICS_PORT=18843

HERALD_PID=""
SINK_PID=""
SAMPLER_PID=""
LOAD_PID=""

log() { printf '[webhook %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }

stop_herald() { stop_pid "$HERALD_PID" TERM 3; HERALD_PID=""; }
stop_sink() { stop_pid "$SINK_PID" INT 5; SINK_PID=""; }
stop_sampler() { stop_pid "$SAMPLER_PID" TERM 1; SAMPLER_PID=""; }
cleanup() {
  stop_pid "$LOAD_PID" INT 2
  stop_sampler
  stop_herald
  stop_sink
  stop_pid "${PEER_BROKER_PID:-}" TERM 3
  stop_pid "${NGINX_PID:-}" QUIT 5
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT"
log "results in $OUT"
build_release

write_conf() { # file batch(1|100)
  cat >"$1" <<EOF
web.hook.url = http://127.0.0.1:$SINK_PORT/webhook
web.hook.rule.message.publish.1 = {"action": "on_message_publish"}
web.hook.pool_size = 32
web.hook.enable_pipelining = true
web.hook.spool.dir = $WORK/spool
web.hook.spool.mode = disk
web.hook.spool.fsync = interval
web.hook.spool.max_bytes = 8GB
web.hook.retry.initial_backoff = 100ms
web.hook.retry.max_backoff = 5s
web.hook.batch.size = $2
web.hook.batch.interval = 10ms
EOF
}
write_conf "$WORK/webhook-single.conf" 1
write_conf "$WORK/webhook-batch.conf" 100
# Part 4: the same with every group commit fsynced before acknowledging.
sed 's/^web.hook.spool.fsync = interval$/web.hook.spool.fsync = always/' \
  "$WORK/webhook-single.conf" >"$WORK/webhook-always.conf"

start_herald() { # conf-file|"" logfile
  rm -rf "$WORK/spool" "$WORK/data"
  local conf=()
  [[ -n "$1" ]] && conf=(--webhook-conf "$1")
  HERALD_MQTT__MAX_QUEUED_MESSAGES=1000000 \
  HERALD_MQTT__MAX_INFLIGHT=$INFLIGHT \
  HERALD_SYS__INTERVAL=0 \
  HERALD_METRICS__BIND="127.0.0.1:$METRICS_PORT" \
  RUST_LOG=warn \
    "$HERALD" --listen "127.0.0.1:$MQTT_PORT" --data-dir "$WORK/data" "${conf[@]}" >>"$2" 2>&1 &
  HERALD_PID=$!
  wait_port "$MQTT_PORT" "$HERALD_PID" || { log "herald did not start; see $2"; return 1; }
  sleep 0.3
}

start_sink() { # json-file logfile [extra sink args...]
  local json=$1 logf=$2
  shift 2
  "$BENCH" sink --bind "127.0.0.1:$SINK_PORT" --json "$json" "$@" >>"$logf" 2>&1 &
  SINK_PID=$!
  wait_port "$SINK_PORT" "$SINK_PID" || { log "sink did not start; see $logf"; return 1; }
}

scrape() { # file
  curl -s --max-time 2 "http://127.0.0.1:$METRICS_PORT/metrics" >"$1" 2>/dev/null || true
}

meta() { # file key=value...
  local f=$1
  shift
  printf '%s\n' "$@" >>"$f"
}

# ------------------------------------------------------------------ describe
{
  machine_env
  echo "disk=$(df -h "$WORK" | awk 'NR==2{print $1" "$2}')"
  echo "herald_version=$("$HERALD" --version 2>/dev/null | head -1)"
  echo "rounds=$ROUNDS"
  echo "duration=$DUR"
  echo "warmup=$WARM"
  echo "rate=$RATE"
  echo "outage_load=$OUTAGE_LOAD"
  echo "outage=$OUTAGE"
  echo "parts=$PARTS"
  echo "herald_inflight=$INFLIGHT"
  echo "publishers=$PUBS"
} >"$OUT/env.txt"
sed "s#$WORK#<tmp>#g" "$WORK/webhook-single.conf" >"$OUT/webhook-single.conf"
sed "s#$WORK#<tmp>#g" "$WORK/webhook-batch.conf" >"$OUT/webhook-batch.conf"
sed "s#$WORK#<tmp>#g" "$WORK/webhook-always.conf" >"$OUT/webhook-always.conf"

load_args() { # fixed|flat|rate<N> duration
  local a=(fan-in -c "$PUBS" --qos 1 -d "$2" -q)
  [[ $1 == fixed ]] && a+=(--total-rate "$RATE")
  [[ $1 == rate* ]] && a+=(--total-rate "${1#rate}")
  echo "${a[@]}"
}

# One MQTT load run with the WebHook configured as given; the sink as given.
#   run_case dir name conf sinkmode loadkind
# sinkmode: off (no sink, WebHook off), fast, delay (2 s), refuse (no sink), hang
# LOAD_EXTRA: more herald-bench arguments (part 5: --ack-latency).
run_case() {
  local dir=$1 name=$2 conf=$3 sinkmode=$4 kind=$5
  local m="$dir/$name.meta" rc=0 args
  mkdir -p "$dir"
  : >"$m"
  case $sinkmode in
    fast) start_sink "$dir/$name.sink.json" "$dir/$name.sink.log" -q ;;
    delay) start_sink "$dir/$name.sink.json" "$dir/$name.sink.log" -q --delay 2000 ;;
    hang) start_sink "$dir/$name.sink.json" "$dir/$name.sink.log" -q --hang ;;
  esac
  start_herald "$conf" "$dir/$name.herald.log"
  read -r -a args <<<"$(load_args "$kind" "$DUR")"
  args+=(--warmup "$WARM" ${LOAD_EXTRA:-})
  echo "herald-bench ${args[*]} --port $MQTT_PORT" >"$dir/$name.cmd"
  local t0; t0=$(now)
  timeout 120 "$BENCH" "${args[@]}" --port "$MQTT_PORT" --json "$dir/$name.json" \
    >"$dir/$name.out" 2>&1 || rc=$?
  local t1; t1=$(now)
  scrape "$dir/$name.metrics"
  meta "$m" "rc=$rc" "t0=$t0" "t1=$t1" "load1=$(cut -d' ' -f1 /proc/loadavg)" \
    "hwm_kib=$(awk '/^VmHWM:/{print $2}' "/proc/$HERALD_PID/status" 2>/dev/null)"
  stop_herald
  stop_sink
  log "$name: rc=$rc $(grep -E '^  received' "$dir/$name.out" | tr -s ' ' || true)"
}

START=$(date +%s)

# ------------------------------------------------------- part 1: throughput
if [[ " $PARTS " == *" throughput "* ]]; then
  for r in $(seq "$ROUNDS"); do
    d="$OUT/throughput/round-$r"
    run_case "$d" off "" off flat
    run_case "$d" single "$WORK/webhook-single.conf" fast flat
    run_case "$d" batch "$WORK/webhook-batch.conf" fast flat
    run_case "$d" single-at-aim "$WORK/webhook-single.conf" fast rate50000
    run_case "$d" batch-at-aim "$WORK/webhook-batch.conf" fast rate200000
  done
fi

# ----------------------------------------------------- part 2: never blocks
if [[ " $PARTS " == *" neverblocks "* ]]; then
  for r in $(seq "$ROUNDS"); do
    d="$OUT/neverblocks/round-$r"
    for kind in fixed flat; do
      for mode in fast delay refuse hang; do
        run_case "$d" "$kind-$mode" "$WORK/webhook-single.conf" "$mode" "$kind"
      done
    done
  done
fi

# ----------------------------------------------------------- part 3: outage
if [[ " $PARTS " == *" outage "* ]]; then
  d="$OUT/outage"
  mkdir -p "$d"
  m="$d/meta"
  : >"$m"
  down_at=$(( (OUTAGE_LOAD - OUTAGE) / 2 ))
  start_sink "$d/sink1.json" "$d/sink1.log"
  start_herald "$WORK/webhook-single.conf" "$d/herald.log"
  # Broker RSS every 0.2 s: "<epoch> <kib>".
  ( while kill -0 "$HERALD_PID" 2>/dev/null; do
      printf '%s %s\n' "$(date +%s.%N)" "$(awk '/^VmRSS:/{print $2}' "/proc/$HERALD_PID/status" 2>/dev/null)"
      sleep 0.2
    done ) >"$d/rss.txt" 2>/dev/null &
  SAMPLER_PID=$!
  read -r -a args <<<"$(load_args fixed "$OUTAGE_LOAD")"
  echo "herald-bench ${args[*]} --port $MQTT_PORT" >"$d/cmd"
  t0=$(now)
  "$BENCH" "${args[@]}" --port "$MQTT_PORT" --json "$d/load.json" >"$d/load.out" 2>&1 &
  LOAD_PID=$!
  meta "$m" "load_start=$t0"
  sleep "$down_at"
  log "outage: stopping the sink for $OUTAGE s"
  meta "$m" "down=$(now)"
  stop_sink
  scrape "$d/metrics-down-start"
  sleep "$(( OUTAGE / 2 ))"
  scrape "$d/metrics-down-mid"
  sleep "$(( OUTAGE - OUTAGE / 2 ))"
  scrape "$d/metrics-down-end"
  meta "$m" "up=$(now)"
  log "outage: sink back"
  start_sink "$d/sink2.json" "$d/sink2.log"
  rc=0
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=""
  meta "$m" "load_end=$(now)" "load_rc=$rc"
  # Let the WebHook finish: until every lane's queue is empty (120 s at most).
  for _ in $(seq 600); do
    scrape "$d/metrics-end"
    depth=$(awk '/^herald_webhook_queue_depth/{s+=$2} END{print s+0}' "$d/metrics-end")
    [[ "$depth" == 0 ]] && break
    sleep 0.2
  done
  sleep 1
  scrape "$d/metrics-end"
  meta "$m" "drained=$(now)" "depth_end=$depth" \
    "hwm_kib=$(awk '/^VmHWM:/{print $2}' "/proc/$HERALD_PID/status" 2>/dev/null)" \
    "load1=$(cut -d' ' -f1 /proc/loadavg)"
  stop_sink
  stop_sampler
  stop_herald
  log "outage: done ($(grep -E '^  received' "$d/load.out" | tr -s ' ' || true))"
fi

# ------------------------------------------- part 4: Herald beside RMQTT
# (issue 17) Both brokers post message.publish events to the same nginx;
# see the functions in bench/webhook_peers.sh.
if [[ " $PARTS " == *" peers "* ]]; then
  source bench/webhook_peers.sh
  peers_part
fi

# ------------------------------------------- part 5: acknowledged = spooled
# Part 5's cases are part 1's with the PUBACK latency measured too.
ack_cost() {
  local r d kind
  for r in $(seq "$ROUNDS"); do
    d="$OUT/ackcost/round-$r"
    for kind in fixed flat; do
      LOAD_EXTRA=--ack-latency run_case "$d" "$kind-off" "" off "$kind"
      LOAD_EXTRA=--ack-latency run_case "$d" "$kind-on" "$WORK/webhook-single.conf" fast "$kind"
      LOAD_EXTRA=--ack-latency run_case "$d" "$kind-always" "$WORK/webhook-always.conf" fast "$kind"
    done
  done
}

if [[ " $PARTS " == *" ackcost "* ]]; then
  ack_cost
fi

echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"
echo "elapsed_s=$(( $(date +%s) - START ))" >>"$OUT/env.txt"
log "done in $(( $(date +%s) - START )) s"

SECTIONS=()
[[ " $PARTS " =~ \ (throughput|neverblocks|outage)\  ]] && SECTIONS+=(webhook)
[[ " $PARTS " == *" peers "* ]] && SECTIONS+=(webhook-peers)
[[ " $PARTS " == *" ackcost "* ]] && SECTIONS+=(webhook-ack)
for section in "${SECTIONS[@]}"; do
  if [[ -z "${BENCH_NO_WRITE:-}" ]]; then
    python3 "$ROOT/bench/report.py" "$section" "$OUT" "$ROOT/BENCHMARKS.md"
    log "BENCHMARKS.md updated ($section section)"
  else
    python3 "$ROOT/bench/report.py" "$section" "$OUT" -
  fi
done
