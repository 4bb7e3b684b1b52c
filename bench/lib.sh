# Shell helpers shared by the benchmark scripts (sourced, not run).

# Stops a process: `signal`, then up to `grace` seconds for it to exit,
# then SIGKILL; reaps it. An empty pid does nothing.
stop_pid() { # pid signal grace-seconds
  local pid=$1 sig=$2 grace=$3
  [[ -z "$pid" ]] && return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq $((grace * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Waits until 127.0.0.1:`port` accepts a connection, trying `tries` times
# (100) every `interval` seconds (0.1); fails early if `pid` exits first.
wait_port() { # port pid [tries] [interval]
  for _ in $(seq "${3:-100}"); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$2" 2>/dev/null || return 1
    sleep "${4:-0.1}"
  done
  return 1
}

# Builds the broker and the load tool in release mode unless BENCH_NO_BUILD
# is set.
build_release() {
  if [[ -z "${BENCH_NO_BUILD:-}" ]]; then
    log "building release"
    cargo build --release -p herald -p herald-bench >&2
  fi
}

# Prints the run's environment as key=value lines for env.txt: date, commit
# (and whether the tree is dirty), CPUs, memory, kernel, load at the start.
# Run from the repository root.
machine_env() {
  echo "date_utc=$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "commit=$(git rev-parse --short HEAD) $(git log -1 --format=%s HEAD)"
  echo "dirty=$(git status --porcelain --untracked-files=no | wc -l)"
  echo "nproc=$(nproc)"
  echo "cpu=$(lscpu | awk -F: '/^Model name/{gsub(/^ +/,"",$2); print $2; exit}')"
  echo "threads_per_core=$(lscpu | awk -F: '/^Thread\(s\) per core/{gsub(/ /,"",$2); print $2; exit}')"
  echo "mem=$(free -h | awk '/^Mem:/{print $2}')"
  echo "kernel=$(uname -sr)"
  echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
}
