#!/usr/bin/env bash
# Access control's cost (issue 14), in one run, rounds interleaved, a fresh
# broker per figure. Prints figures; not a test.
#
#   bash bench/auth.sh                               # 3 rounds
#   BENCH_ROUNDS=1 BENCH_DURATION=3 bash bench/auth.sh   # a quick trial
#
# 1. Connect rate (CONNECT → CONNACK per second, `herald-bench conn`,
#    BENCH_CONNS connections, 100 handshakes at once, every CONNECT with the
#    same user name and password):
#      herald-open      no source, allow_anonymous = true (the baseline)
#      herald-passwd    auth.password_file: a file made by Debian's
#                       mosquitto_passwd ($7$ PBKDF2-SHA512 entries, 1,000
#                       users)
#      herald-http      auth.http_conf: an EMQX 4.3 emqx_auth_http.conf whose
#                       auth_req is a GET to a local nginx that checks the
#                       password in the query and answers 200 or 403
#      mosquitto-open   allow_anonymous true
#      mosquitto-passwd the same password file, allow_anonymous false
# 2. Publish throughput with an ACL of 1,000 rules on and off
#    (`herald-bench fan-in`, QoS 0, 2 publishers → 1 subscriber, and
#    `pairs`, QoS 1, 100 pairs), user name `bench`, no password source:
#      herald-acl-off / herald-acl-on         acl.file unset / set
#      mosquitto-acl-off / mosquitto-acl-on   acl_file unset / set (context)
#    The file (mosquitto format) holds 1,000 rules that all apply to the
#    bench clients: 100 `pattern deny` rules, the user's section of 499
#    grants that match nothing, 399 `pattern readwrite` rules with %u and %c
#    that match nothing, and last the one pattern that grants the bench
#    topics, so deciding a new topic walks all 1,000.
#
# Needs: mosquitto and mosquitto_passwd (Debian's mosquitto), nginx
# (Debian's nginx-light or nginx). Raw results in target/bench/auth-<date>/;
# the summary replaces the "auth" section of BENCHMARKS.md unless
# BENCH_NO_WRITE=1. Knobs: BENCH_ROUNDS (3), BENCH_CONNS (5000),
# BENCH_DURATION (seconds per throughput run, 5), BENCH_NO_BUILD=1,
# BENCH_LOCK (a file to flock around each round, e.g. /work/bench.lock on a
# shared machine).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source bench/lib.sh

ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNS:-5000}
DUR=${BENCH_DURATION:-5}
OUT=${BENCH_OUT:-$ROOT/target/bench/auth-$(date -u +%Y%m%d-%H%M%S)}
WORK=$(mktemp -d /tmp/herald-authbench.XXXXXX)
HERALD="$ROOT/target/release/herald"
BENCH="$ROOT/target/release/herald-bench"
HERALD_PORT=18871
MOSQUITTO_PORT=18872
NGINX_PORT=18879
USER_NAME=bench
PASSWORD=bench-pw-7
BROKER_PID=""
PORT=""
NGINX_PID=""

log() { printf '[auth %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
stop_broker() { stop_pid "$BROKER_PID" TERM 10; BROKER_PID=""; }
cleanup() {
  stop_broker
  stop_pid "$NGINX_PID" QUIT 5
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in mosquitto mosquitto_passwd nginx; do
  command -v "$tool" >/dev/null || { log "$tool is missing (apt-get install mosquitto nginx-light)"; exit 1; }
done
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
log "results in $OUT"
build_release
# mosquitto drops root for its own user: everything it reads is world-readable.
chmod 755 "$WORK"

# ------------------------------------------------------------- the files
# The password file, made by the real tool: the bench user and 999 others.
log "password file: 1,000 users with mosquitto_passwd"
PASSWD="$WORK/passwd"
mosquitto_passwd -c -b "$PASSWD" "$USER_NAME" "$PASSWORD"
for i in $(seq 1 999); do mosquitto_passwd -b "$PASSWD" "user$i" "password-$i"; done
chmod 644 "$PASSWD"
grep -c '^[^:]*:\$7\$' "$PASSWD" >"$OUT/passwd-entries"

cat >"$WORK/emqx_auth_http.conf" <<EOF
auth.http.auth_req.url = http://127.0.0.1:$NGINX_PORT/mqtt/auth
auth.http.auth_req.method = get
auth.http.auth_req.params = clientid=%c,username=%u,password=%P
auth.http.timeout = 5s
auth.http.connect_timeout = 5s
auth.http.pool_size = 32
EOF

ACL="$WORK/acl"
{
  echo "# 1,000 rules, all of which apply to user $USER_NAME"
  for i in $(seq 0 99); do echo "pattern deny vault$i/%c/#"; done
  echo "user $USER_NAME"
  for i in $(seq 0 498); do echo "topic readwrite area$i/+/sensors/#"; done
  for i in $(seq 0 398); do echo "pattern readwrite site$i/%u/%c/#"; done
  echo "pattern readwrite herald-bench/#"
} >"$ACL"
chmod 644 "$ACL"
grep -cE '^(topic|pattern) ' "$ACL" >"$OUT/acl-rules"
cp "$ACL" "$WORK/emqx_auth_http.conf" "$OUT/"

# nginx as the auth service: 200 for the right password, 403 otherwise.
mkdir -p "$WORK/nginx/logs"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
error_log stderr warn;
pid $WORK/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location = /mqtt/auth {
      if (\$arg_password = "$PASSWORD") { return 200; }
      return 403;
    }
  }
}
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e stderr >>"$OUT/nginx.log" 2>&1 &
NGINX_PID=$!
wait_port "$NGINX_PORT" "$NGINX_PID" || { log "nginx did not start; see $OUT/nginx.log"; exit 1; }
# The service says yes to the right password and no to a wrong one.
curl -fsS -o /dev/null "http://127.0.0.1:$NGINX_PORT/mqtt/auth?username=$USER_NAME&password=$PASSWORD"
[[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$NGINX_PORT/mqtt/auth?password=no") == 403 ]]

mosquitto_conf() { # file-lines... → $WORK/mosquitto.conf
  {
    echo "listener $MOSQUITTO_PORT 127.0.0.1"
    echo "persistence false"
    echo "max_queued_messages 0"
    echo "max_inflight_messages 0"
    echo "max_connections -1"
    echo "set_tcp_nodelay true"
    echo "sys_interval 0"
    echo "log_dest stderr"
    echo "log_type error"
    echo "log_type warning"
    printf '%s\n' "$@"
  } >"$WORK/mosquitto.conf"
  chmod 644 "$WORK/mosquitto.conf"
}

start_broker() { # name → BROKER_PID and PORT; waits until the port accepts
  local b=$1 logf="$OUT/broker-$1.log"
  local env=(HERALD_MQTT__MAX_QUEUED_MESSAGES=1000000 HERALD_MQTT__MAX_INFLIGHT=65535
             HERALD_MQTT__RECEIVE_MAXIMUM=65535 HERALD_SYS__INTERVAL=0 HERALD_METRICS__BIND=
             RUST_LOG=warn)
  case $b in
    herald-open | herald-acl-off) env+=(HERALD_AUTH__ALLOW_ANONYMOUS=true) ;;
    herald-passwd) env+=(HERALD_AUTH__PASSWORD_FILE="$PASSWD") ;;
    herald-http) env+=(HERALD_AUTH__HTTP_CONF="$WORK/emqx_auth_http.conf") ;;
    herald-acl-on) env+=(HERALD_AUTH__ALLOW_ANONYMOUS=true HERALD_ACL__FILE="$ACL") ;;
    mosquitto-open | mosquitto-acl-off) mosquitto_conf "allow_anonymous true" ;;
    mosquitto-passwd) mosquitto_conf "allow_anonymous false" "password_file $PASSWD" ;;
    mosquitto-acl-on) mosquitto_conf "allow_anonymous true" "acl_file $ACL" ;;
    *) log "unknown broker $b"; return 1 ;;
  esac
  case $b in
    herald-*)
      PORT=$HERALD_PORT
      rm -rf "$WORK/herald-data"
      env "${env[@]}" "$HERALD" --listen "127.0.0.1:$PORT" --data-dir "$WORK/herald-data" \
        >>"$logf" 2>&1 & ;;
    mosquitto-*)
      PORT=$MOSQUITTO_PORT
      mosquitto -c "$WORK/mosquitto.conf" >>"$logf" 2>&1 & ;;
  esac
  BROKER_PID=$!
  wait_port "$PORT" "$BROKER_PID" || { log "$b did not start on $PORT; see $logf"; return 1; }
  sleep 0.3
}

run() { # round kind broker herald-bench-args...
  local r=$1 kind=$2 b=$3 rc=0
  shift 3
  local f="$OUT/round-$r/$kind.$b"
  mkdir -p "$OUT/round-$r"
  start_broker "$b" || { echo "rc=start-failed" >"$f.meta"; stop_broker; return 0; }
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  timeout 300 "$BENCH" "$@" --port "$PORT" --username "$USER_NAME" -q --json "$f.json" \
    >"$f.out" 2>&1 || rc=$?
  # The broker's CPU time over the whole run (user + system, in ticks):
  # per delivered message it is steadier than throughput on a busy machine.
  local ticks; ticks=$(awk '{print $14 + $15}' "/proc/$BROKER_PID/stat" 2>/dev/null || echo "")
  printf 'rc=%s\nload1=%s\ncpu_ticks=%s\nclk_tck=%s\n' "$rc" "$load" "$ticks" "$(getconf CLK_TCK)" >"$f.meta"
  stop_broker
  log "round $r $kind $b: $(head -1 "$f.out") (rc=$rc, load $load)"
}

{
  machine_env
  echo "herald_version=$("$HERALD" --version 2>/dev/null | head -1)"
  echo "mosquitto_version=$(mosquitto -h 2>/dev/null | head -1 || true)"
  echo "nginx_version=$(nginx -v 2>&1)"
  echo "rounds=$ROUNDS"
  echo "conns=$CONNS"
  echo "duration=$DUR"
} >"$OUT/env.txt"

CONN=(conn -c "$CONNS" --concurrency 100 --source-ips 127.0.0.1-127.0.0.4 --password "$PASSWORD")
FANIN=(fan-in --qos 0 -c 2 -d "$DUR" --warmup 1)
PAIRS=(pairs --qos 1 -c 100 -d "$DUR" --warmup 1)
START=$(date +%s)
for r in $(seq "$ROUNDS"); do
  # One round at a time under the team's benchmark lock, if one is named.
  if [[ -n "${BENCH_LOCK:-}" ]]; then exec 9>"$BENCH_LOCK"; flock 9; fi
  for b in herald-open herald-passwd herald-http mosquitto-open mosquitto-passwd; do
    run "$r" conn "$b" "${CONN[@]}"
  done
  for b in herald-acl-off herald-acl-on mosquitto-acl-off mosquitto-acl-on; do
    run "$r" fanin-q0 "$b" "${FANIN[@]}"
  done
  for b in herald-acl-off herald-acl-on mosquitto-acl-off mosquitto-acl-on; do
    run "$r" pairs-q1 "$b" "${PAIRS[@]}"
  done
  if [[ -n "${BENCH_LOCK:-}" ]]; then flock -u 9; exec 9>&-; fi
done
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"
echo "elapsed_s=$(( $(date +%s) - START ))" >>"$OUT/env.txt"

if [[ -z "${BENCH_NO_WRITE:-}" ]]; then
  python3 "$ROOT/bench/auth_report.py" "$OUT" "$ROOT/BENCHMARKS.md"
  log "BENCHMARKS.md updated (auth section)"
else
  python3 "$ROOT/bench/auth_report.py" "$OUT" -
fi
