# Part "peers" of bench/webhook.sh (issue 17): Herald's WebHook beside
# RMQTT's web-hook plugin, both posting message.publish events to the same
# nginx, same load, rounds interleaved. Sourced by bench/webhook.sh, which
# provides log, now, meta, start_herald, stop_herald, $BENCH, $WORK, $OUT,
# $MQTT_PORT, $ROUNDS; the report is bench/webhook_peers_report.py.
#
# The web server is Debian's nginx-light: one worker, `return 200`, keep-alive
# without limit, and an access log line per request with its time ($msec),
# status and body ($request_body, which nginx only keeps when something reads
# the body: a mirror subrequest to an internal location does). The report
# reads each event's payload (base64 in both brokers' bodies) for the load
# generator's publisher id and sequence number: events lost, duplicated and
# out of order per publisher are counted at the web server, the same way for
# both brokers.
#
# Variants (BENCH_PEER_VARIANTS, all by default), each a fresh broker:
#   herald-off          Herald, WebHook off
#   herald-on           WebHook on, one event per request
#   herald-batch        WebHook on, 100 events / 10 ms per request
#   rmqtt-off           rmqttd without plugins but its defaults
#   rmqtt-on            rmqttd with rmqtt-web-hook on message_publish
# (The run in BENCHMARKS.md also had Herald's hand-written HTTP/1.1 client
# with pipelining on and off beside hyper's, as herald-own,
# herald-own-nopipe and herald-hyper; the hand-written one is gone since.)
# for each publisher count in BENCH_PEER_PUBLISHERS ("2 20"), fan-in → 1
# subscriber, QoS 1, BENCH_PEER_MESSAGES (100000) messages in all, flat out.
# Then the outage: BENCH_PEER_OUTAGE_PUBLISHERS (20) publishers at a fixed
# BENCH_PEER_OUTAGE_RATE (2000) msg/s for BENCH_PEER_OUTAGE_LOAD (40) s,
# nginx stopped for BENCH_PEER_OUTAGE (20) s in the middle, for herald-on
# and rmqtt-on.
#
# RMQTT is `cargo install rmqttd --locked` (needs Debian's protobuf-compiler
# and cmake, about 20 minutes to build): installed when missing unless
# BENCH_NO_RMQTT_INSTALL=1, else skipped with a line saying so.
#
# BENCH_LOCK=/work/bench.lock takes that lock for each round and each outage
# run (the builds and the report run outside it).

# Ports no other script in bench/ uses (memory.sh takes 18844).
PEER_NGINX_PORT=18861
PEER_RMQTT_PORT=18862
PEER_RMQTT_RPC_PORT=18863
PEER_VARIANTS=${BENCH_PEER_VARIANTS:-herald-off herald-on herald-batch rmqtt-off rmqtt-on}
PEER_PUBS=${BENCH_PEER_PUBLISHERS:-2 20}
PEER_MSGS=${BENCH_PEER_MESSAGES:-100000}
PEER_OUTAGE_PUBS=${BENCH_PEER_OUTAGE_PUBLISHERS:-20}
PEER_OUTAGE_RATE=${BENCH_PEER_OUTAGE_RATE:-2000}
PEER_OUTAGE_LOAD=${BENCH_PEER_OUTAGE_LOAD:-40}
PEER_OUTAGE=${BENCH_PEER_OUTAGE:-20}
PEER_OUTAGE_VARIANTS=${BENCH_PEER_OUTAGE_VARIANTS:-herald-on rmqtt-on}
RMQTTD=""
NGINX_PID=""
PEER_BROKER_PID=""

# Finds rmqttd, installing it if allowed; sets RMQTTD or says why not.
peers_find_rmqttd() {
  RMQTTD=$(command -v rmqttd || true)
  [[ -z "$RMQTTD" && -x "$HOME/.cargo/bin/rmqttd" ]] && RMQTTD=$HOME/.cargo/bin/rmqttd
  [[ -n "$RMQTTD" ]] && return 0
  if [[ -n "${BENCH_NO_RMQTT_INSTALL:-}" ]]; then
    echo "RMQTT (rmqttd) is not installed and BENCH_NO_RMQTT_INSTALL is set: RMQTT skipped" >>"$OUT/peers/notes.txt"
    return 1
  fi
  log "rmqttd missing: installing it (cargo install rmqttd --locked, about 20 minutes)"
  if ! command -v protoc >/dev/null || ! command -v cmake >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
      apt-get install -y -qq protobuf-compiler cmake >&2 || true
    fi
  fi
  if cargo install rmqttd --locked >&2; then
    RMQTTD=$HOME/.cargo/bin/rmqttd
    return 0
  fi
  echo "RMQTT (rmqttd) could not be installed (cargo install rmqttd --locked failed; it needs protobuf-compiler and cmake): RMQTT skipped" >>"$OUT/peers/notes.txt"
  return 1
}

peers_find_nginx() {
  command -v nginx >/dev/null && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "nginx missing: installing Debian's nginx-light"
    apt-get install -y -qq nginx-light >&2 || true
  fi
  command -v nginx >/dev/null
}

# nginx on PEER_NGINX_PORT, logging to $1 (appended).
start_nginx() { # access-log
  local dir=$WORK/nginx
  mkdir -p "$dir/root"
  : >"$dir/root/webhook"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  log_format events '\$msec \$status \$request_body';
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$PEER_NGINX_PORT;
    root $dir/root;
    access_log $1 events buffer=256k flush=200ms;
    client_body_buffer_size 64k;
    client_max_body_size 16m;
    # The mirror reads the body into memory, so \$request_body has it; the
    # static module then refuses the POST (405, or 403 where the worker may
    # not read the folder), answered 200 with an empty body instead.
    location / {
      mirror /mirror;
      mirror_request_body on;
      error_page 403 404 405 =200 @ok;
    }
    location = /mirror { internal; return 204; }
    location @ok { return 200; }
  }
}
EOF
  nginx -c "$dir/nginx.conf" -p "$dir" 2>>"$dir/error.log" &
  NGINX_PID=$!
  wait_port "$PEER_NGINX_PORT" "$NGINX_PID" || {
    cp "$dir/error.log" "$OUT/peers/nginx-error.log" 2>/dev/null
    log "nginx did not start: $(tail -n 2 "$dir/error.log" 2>/dev/null | tr '\n' ' ')(kept in $OUT/peers/nginx-error.log)"
    return 1
  }
}

# Graceful stop (QUIT: answers what it has, writes its log buffer).
stop_nginx() { stop_pid "$NGINX_PID" QUIT 10; NGINX_PID=""; }

peers_rmqtt_conf() { # file on|off
  local plugins=$WORK/rmqtt-plugins startups='[]'
  mkdir -p "$plugins"
  [[ $2 == on ]] && startups='["rmqtt-web-hook"]'
  cat >"$plugins/rmqtt-web-hook.toml" <<EOF
urls = ["http://127.0.0.1:$PEER_NGINX_PORT/webhook"]
rule.message_publish = [{action = "message_publish"}]
EOF
  cat >"$1" <<EOF
# RMQTT: one plain TCP listener, limits raised as for Herald; the busy check
# (which refuses handshakes when the load average is high) off; its HTTP API
# plugin off (it would take port 6060).
node.id = 1
node.busy.check_enable = false
rpc.server_addr = "127.0.0.1:$PEER_RMQTT_RPC_PORT"
log.to = "console"
log.level = "warn"
plugins.dir = "$plugins"
plugins.default_startups = $startups
plugins.disabled_default_startups = ["rmqtt-http-api"]

[listener.tcp.external]
addr = "127.0.0.1:$PEER_RMQTT_PORT"
max_connections = 1048576
max_inflight = 65535
max_mqueue_len = 1000000
EOF
}

peers_herald_conf() { # file batch
  cat >"$1" <<EOF
web.hook.url = http://127.0.0.1:$PEER_NGINX_PORT/webhook
web.hook.rule.message.publish.1 = {"action": "on_message_publish"}
web.hook.body.encoding_of_payload_field = base64
web.hook.pool_size = 32
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

# Starts the broker of a variant; sets PEER_BROKER_PID and PEER_PORT.
peers_start_broker() { # variant logfile
  local v=$1 logf=$2
  case $v in
    herald-off) start_herald "" "$logf" ;;
    herald-on) start_herald "$WORK/peer-on.conf" "$logf" ;;
    herald-batch) start_herald "$WORK/peer-batch.conf" "$logf" ;;
    rmqtt-off | rmqtt-on)
      (cd "$WORK" && exec "$RMQTTD" -f "$WORK/$v.toml") >>"$logf" 2>&1 &
      PEER_BROKER_PID=$!
      PEER_PORT=$PEER_RMQTT_PORT
      wait_port "$PEER_PORT" "$PEER_BROKER_PID" || { log "rmqttd did not start; see $logf"; return 1; }
      sleep 0.5
      return 0 ;;
  esac
  PEER_BROKER_PID=$HERALD_PID
  PEER_PORT=$MQTT_PORT
}

peers_stop_broker() {
  if [[ "$PEER_BROKER_PID" == "$HERALD_PID" ]]; then stop_herald; else stop_pid "$PEER_BROKER_PID" TERM 5; fi
  PEER_BROKER_PID=""
}

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat" 2>/dev/null; }

# Waits until the access log has `expected` lines, or has not grown for
# 5 s, or 120 s passed.
wait_logged() { # access-log expected
  local last=-1 same=0 n
  for _ in $(seq 600); do
    n=$(wc -l <"$1" 2>/dev/null || echo 0)
    (( n >= $2 )) && return 0
    if (( n == last )); then same=$((same + 1)); else same=0; last=$n; fi
    (( same >= 25 )) && return 0
    sleep 0.2
  done
}

# One flat-out run: nginx, the variant's broker, the load, the drain.
peers_case() { # dir variant publishers
  local dir=$1 v=$2 pubs=$3 name="$2-p$3" rc=0 sent
  local m="$dir/$name.meta" per=$((PEER_MSGS / $3))
  mkdir -p "$dir"
  : >"$m"
  start_nginx "$dir/$name.access.log"
  peers_start_broker "$v" "$dir/$name.broker.log"
  local args=(fan-in -c "$pubs" --qos 1 -n "$per" -q --drain 10 --port "$PEER_PORT")
  echo "herald-bench ${args[*]}" >"$dir/$name.cmd"
  local t0; t0=$(now)
  timeout 300 "$BENCH" "${args[@]}" --json "$dir/$name.json" >"$dir/$name.out" 2>&1 || rc=$?
  local t1; t1=$(now)
  if [[ $v != *-off ]]; then
    sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sent"])' "$dir/$name.json" 2>/dev/null || echo "$PEER_MSGS")
    wait_logged "$dir/$name.access.log" "$sent"
  fi
  meta "$m" "rc=$rc" "t0=$t0" "t1=$t1" "drained=$(now)" "variant=$v" "publishers=$pubs" \
    "cpu_ticks=$(cpu_ticks "$PEER_BROKER_PID")" "clk_tck=$(getconf CLK_TCK)" \
    "hwm_kib=$(awk '/^VmHWM:/{print $2}' "/proc/$PEER_BROKER_PID/status" 2>/dev/null)" \
    "load1=$(cut -d' ' -f1 /proc/loadavg)"
  peers_stop_broker
  stop_nginx
  log "peers $name: rc=$rc $(grep -E '^  received' "$dir/$name.out" | tr -s ' ' || true), logged $(wc -l <"$dir/$name.access.log")"
}

# The outage: fixed rate, nginx stopped in the middle.
peers_outage() { # dir variant
  local dir=$1 v=$2 rc=0 sent
  local m="$dir/$v.meta" down_at=$(( (PEER_OUTAGE_LOAD - PEER_OUTAGE) / 2 ))
  mkdir -p "$dir"
  : >"$m"
  start_nginx "$dir/$v.access.log"
  peers_start_broker "$v" "$dir/$v.broker.log"
  ( while kill -0 "$PEER_BROKER_PID" 2>/dev/null; do
      printf '%s %s\n' "$(date +%s.%N)" "$(awk '/^VmRSS:/{print $2}' "/proc/$PEER_BROKER_PID/status" 2>/dev/null)"
      sleep 0.2
    done ) >"$dir/$v.rss.txt" 2>/dev/null &
  SAMPLER_PID=$!
  local args=(fan-in -c "$PEER_OUTAGE_PUBS" --qos 1 -d "$PEER_OUTAGE_LOAD" --total-rate "$PEER_OUTAGE_RATE" -q --drain 10 --port "$PEER_PORT")
  echo "herald-bench ${args[*]}" >"$dir/$v.cmd"
  meta "$m" "t0=$(now)" "variant=$v"
  "$BENCH" "${args[@]}" --json "$dir/$v.json" >"$dir/$v.out" 2>&1 &
  LOAD_PID=$!
  sleep "$down_at"
  meta "$m" "down=$(now)"
  stop_nginx
  sleep "$PEER_OUTAGE"
  meta "$m" "up=$(now)"
  start_nginx "$dir/$v.access.log"
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=""
  meta "$m" "t1=$(now)" "rc=$rc"
  sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sent"])' "$dir/$v.json" 2>/dev/null || echo 0)
  wait_logged "$dir/$v.access.log" "$sent"
  meta "$m" "drained=$(now)" "cpu_ticks=$(cpu_ticks "$PEER_BROKER_PID")" "clk_tck=$(getconf CLK_TCK)" \
    "hwm_kib=$(awk '/^VmHWM:/{print $2}' "/proc/$PEER_BROKER_PID/status" 2>/dev/null)" \
    "load1=$(cut -d' ' -f1 /proc/loadavg)"
  stop_sampler
  peers_stop_broker
  stop_nginx
  log "peers outage $v: rc=$rc, logged $(wc -l <"$dir/$v.access.log")"
}

# With BENCH_LOCK=<file>, each round (and each outage run) holds that lock
# (flock), so that benchmarks sharing the machine take turns in short holds.
peers_lock() {
  [[ -z "${BENCH_LOCK:-}" ]] && return 0
  exec 9>>"$BENCH_LOCK"
  log "peers: waiting for $BENCH_LOCK"
  flock 9
}
peers_unlock() { [[ -z "${BENCH_LOCK:-}" ]] || flock -u 9; }

peers_part() {
  mkdir -p "$OUT/peers"
  : >"$OUT/peers/notes.txt"
  if ! peers_find_nginx; then
    echo "nginx is not installed (Debian's nginx-light) and could not be: the peers part was skipped" >>"$OUT/peers/notes.txt"
    log "peers: no nginx; skipped"
    return 0
  fi
  local variants=() outage_variants=() v
  if peers_find_rmqttd; then
    peers_rmqtt_conf "$WORK/rmqtt-off.toml" off
    peers_rmqtt_conf "$WORK/rmqtt-on.toml" on
    echo "rmqttd_version=$("$RMQTTD" --version 2>/dev/null | head -1)" >>"$OUT/env.txt"
  fi
  for v in $PEER_VARIANTS; do
    [[ $v == rmqtt-* && -z "$RMQTTD" ]] || variants+=("$v")
  done
  for v in $PEER_OUTAGE_VARIANTS; do
    [[ $v == rmqtt-* && -z "$RMQTTD" ]] || outage_variants+=("$v")
  done
  echo "nginx_version=$(nginx -v 2>&1 | head -1)" >>"$OUT/env.txt"
  peers_herald_conf "$WORK/peer-on.conf" 1
  peers_herald_conf "$WORK/peer-batch.conf" 100
  for f in peer-on peer-batch rmqtt-on; do
    local src=$WORK/$f.conf
    [[ $f == rmqtt-on ]] && src=$WORK/rmqtt-on.toml
    [[ -f $src ]] && sed "s#$WORK#<tmp>#g; s#$OUT#<out>#g" "$src" >"$OUT/peers/$(basename "$src")"
  done
  [[ -f $WORK/rmqtt-plugins/rmqtt-web-hook.toml ]] && cp "$WORK/rmqtt-plugins/rmqtt-web-hook.toml" "$OUT/peers/"
  sed "s#$WORK#<tmp>#g; s#$OUT#<out>#g" "$WORK/nginx/nginx.conf" >"$OUT/peers/nginx.conf" 2>/dev/null || true
  {
    echo "peer_variants=${variants[*]}"
    echo "peer_publishers=$PEER_PUBS"
    echo "peer_messages=$PEER_MSGS"
    echo "peer_outage=$PEER_OUTAGE_PUBS $PEER_OUTAGE_RATE $PEER_OUTAGE_LOAD $PEER_OUTAGE"
    echo "peer_outage_variants=${outage_variants[*]}"
  } >>"$OUT/env.txt"
  for r in $(seq "$ROUNDS"); do
    peers_lock
    for pubs in $PEER_PUBS; do
      for v in "${variants[@]}"; do
        peers_case "$OUT/peers/round-$r" "$v" "$pubs"
      done
    done
    peers_unlock
  done
  for v in "${outage_variants[@]}"; do
    peers_lock
    peers_outage "$OUT/peers/outage" "$v"
    peers_unlock
  done
  sed "s#$WORK#<tmp>#g; s#$OUT#<out>#g" "$WORK/nginx/nginx.conf" >"$OUT/peers/nginx.conf" 2>/dev/null || true
}
