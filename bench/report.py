#!/usr/bin/env python3
"""Turns the raw results of bench/compare.sh and bench/webhook.sh into
Markdown and splices it into BENCHMARKS.md, each script into its own marked
section, so either can be re-run alone.

    python3 bench/report.py compare target/bench/compare-<date> BENCHMARKS.md
    python3 bench/report.py memory target/bench/memory-<date> BENCHMARKS.md
    python3 bench/report.py listeners target/bench/listeners-<date> BENCHMARKS.md
    python3 bench/report.py webhook target/bench/webhook-<date> BENCHMARKS.md
    python3 bench/report.py webhook-peers target/bench/webhook-<date> BENCHMARKS.md
    python3 bench/report.py webhook-ack target/bench/webhook-<date> BENCHMARKS.md
    (a last argument of "-" prints the section instead)
"""

import json
import statistics
import sys
from pathlib import Path

HEADER = """# Benchmarks

Herald measured against its peers on the same machine in the same run, one
broker at a time, scenarios interleaved (A B C A B C …) so background load
hits every broker alike. Everything here is the latest output of
[`bench/compare.sh`](bench/compare.sh),
[`bench/memory.sh`](bench/memory.sh),
[`bench/listeners.sh`](bench/listeners.sh) and
[`bench/webhook.sh`](bench/webhook.sh), written by
[`bench/report.py`](bench/report.py); raw JSON stays in `target/bench/`.
The load tool is `herald-bench` (crates/herald-bench). Figures are medians
of the rounds with the range (min–max) beside them.

"""


# ------------------------------------------------------------------ helpers
def read_env(path):
    env = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            env[k] = v
    return env


def load_json(path):
    try:
        return json.loads(Path(path).read_text())
    except Exception:
        return None


def read_meta(path):
    try:
        return read_env(path)
    except Exception:
        return {}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_num(x, unit=""):
    if x is None:
        return "—"
    if abs(x) >= 100:
        s = f"{x:,.0f}"
    elif abs(x) >= 10:
        s = f"{x:.1f}"
    else:
        s = f"{x:.2f}"
    return s + unit


def fmt_cell(xs, unit="", scale=1.0):
    xs = [x * scale for x in xs if x is not None]
    if not xs:
        return "failed"
    m = statistics.median(xs)
    if len(xs) == 1:
        return fmt_num(m, unit)
    return f"{fmt_num(m, unit)} ({fmt_num(min(xs))}–{fmt_num(max(xs))})"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}×"


def splice(target, name, text):
    if target == "-":
        print(text)
        return
    p = Path(target)
    body = p.read_text() if p.exists() else HEADER
    if not body.startswith("# Benchmarks"):
        body = HEADER + body
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in body and end in body:
        pre = body.split(begin)[0]
        post = body.split(end, 1)[1]
        body = pre + block + post
    else:
        # compare first, webhook after it
        if name == "compare" and "<!-- BEGIN webhook -->" in body:
            pre, post = body.split("<!-- BEGIN webhook -->", 1)
            body = pre + block + "\n\n<!-- BEGIN webhook -->" + post
        elif name.startswith("webhook-") and "<!-- END webhook -->" in body:
            pre, post = body.split("<!-- END webhook -->", 1)
            body = pre + "<!-- END webhook -->\n\n" + block + post
        else:
            body = body.rstrip() + "\n\n" + block + "\n"
    p.write_text(body)


def machine(env, load_note):
    return (
        f"- Machine: {env.get('cpu', '?')}, {env.get('nproc', '?')} CPUs "
        f"(`nproc`; {env.get('threads_per_core', '?')} thread(s) per core), "
        f"{env.get('mem', '?')} RAM, {env.get('kernel', '?')}. Shared with other "
        f"engineers' builds: {load_note}\n"
    )


# ------------------------------------------------------------------ compare
SCEN = {
    "fanin-q0": "Fan-in 2 → 1, QoS 0, flat out",
    "fanin-q1": "Fan-in 2 → 1, QoS 1, flat out",
    "fanout-q1": "Fan-out 1 → 100, QoS 1, flat out",
    "fanout10k-q0": "Fan-out 1 → {wide}, QoS 0, {msgs} messages flat out",
    "fanout10k-q1": "Fan-out 1 → {wide}, QoS 1, {msgs} messages flat out",
    "pairs-q1": "100 pairs, QoS 1, flat out",
    "latency-q1": "Fan-in 2 → 1, QoS 1, fixed 5,000 msg/s",
    "conn": "Connections",
}


def compare(outdir, target):
    out = Path(outdir)
    env = read_env(out / "env.txt")
    wide = f"{int(env.get('fanout_wide', 10000)):,}"
    for k in SCEN:
        SCEN[k] = SCEN[k].replace("{wide}", wide).replace(
            "{msgs}", env.get("fanout_msgs", "100"))
    brokers = env.get("brokers", "").split()
    scenarios = env.get("scenarios", "").split()
    rounds = sorted(out.glob("round-*"), key=lambda p: int(p.name.split("-")[1]))
    notes = (out / "notes.txt").read_text().strip() if (out / "notes.txt").exists() else ""

    # results[s][b] = list of (json, meta) per round
    res = {s: {b: [] for b in brokers} for s in scenarios}
    loads = []
    for rd in rounds:
        for s in scenarios:
            for b in brokers:
                j = load_json(rd / f"{s}.{b}.json")
                m = read_meta(rd / f"{s}.{b}.meta")
                if m.get("load1"):
                    loads.append(float(m["load1"]))
                ok = j is not None and m.get("rc") == "0"
                res[s][b].append((j if ok else None, m))

    def vals(s, b, f):
        out_ = []
        for j, m in res[s][b]:
            try:
                out_.append(f(j, m) if j is not None else None)
            except Exception:
                out_.append(None)
        return out_

    def okcount(s, b):
        return sum(1 for j, _ in res[s][b] if j is not None)

    peers = [b for b in brokers if not b.startswith("herald")]
    lines = []
    lines.append("## Herald against its peers (`bench/compare.sh`)\n")
    load_note = (
        f"1-minute load average before each run {min(loads):.1f}–{max(loads):.1f}"
        if loads else "load not recorded"
    ) + f" (start {env.get('loadavg_start', '?')}, end {env.get('loadavg_end', '?')})."
    lines.append(f"- Date: {env.get('date_utc', '?')}; {len(rounds)} round(s), "
                 f"{env.get('duration')} s per run after {env.get('warmup')} s warm-up; "
                 f"total {int(env.get('elapsed_s', 0)) // 60} min.")
    lines.append(f"- Herald: commit `{env.get('commit', '?')}`"
                 + (" (with uncommitted changes)" if env.get("dirty", "0") != "0" else "")
                 + f", `{env.get('herald_version', '')}`.")
    vers = []
    if "mosquitto" in brokers:
        vers.append(env.get("mosquitto_version", "mosquitto ?"))
    if "rumqttd" in brokers:
        vers.append(env.get("rumqttd_version", "rumqttd ?") + " (`cargo install rumqttd`)")
    if "rmqttd" in brokers:
        vers.append(env.get("rmqttd_version", "rmqttd ?"))
    lines.append("- Peers: " + "; ".join(vers) + ".")
    if notes:
        for n in notes.splitlines():
            lines.append(f"- Skipped: {n}")
    lines.append(machine(env, load_note).rstrip())
    lines.append("- Load generator and brokers share the two cores: a broker that needs "
                 "less CPU leaves more to the load generator. All clients are MQTT 3.1.1, "
                 "64-byte payloads, on 127.0.0.1.")
    lines.append("")

    # ---- main table
    hdr = "| Scenario | Metric | " + " | ".join(brokers) + " | " + " | ".join(
        f"Herald / {p}" for p in peers) + " |"
    sep = "|" + "---|" * (2 + len(brokers) + len(peers))
    lines.append(hdr)
    lines.append(sep)

    def row(s, label, f, unit="", scale=1.0, better="higher"):
        cells = [fmt_cell(vals(s, b, f), unit, scale) for b in brokers]
        h = med(vals(s, "herald", f)) if "herald" in brokers else None
        rs = [fmt_ratio(ratio(h, med(vals(s, p, f)))) for p in peers]
        arrow = "↑" if better == "higher" else "↓"
        lines.append(f"| {SCEN.get(s, s)} | {label} {arrow} | " + " | ".join(cells) + " | "
                     + " | ".join(rs) + " |")

    def lat(key):
        return lambda j, m: j["latency_us"][key]

    hwm = lambda j, m: float(m["hwm_kib"]) / 1024 if m.get("hwm_kib") else None  # noqa: E731

    def cpu_per_msg(j, m):
        if not m.get("cpu_ticks") or not j.get("received"):
            return None
        return float(m["cpu_ticks"]) / float(m.get("clk_tck") or 100) * 1e6 / j["received"]
    def cores(key):
        def f(j, m):
            w = j.get("window_cpu") or {}
            if w.get(key) is None or not w.get("wall_s"):
                return None
            return w[key] / w["wall_s"]
        return f

    lossp = lambda j, m: 100.0 * j["lost"] / j["expected"] if j["expected"] else 0.0  # noqa: E731

    for s in scenarios:
        if s == "conn":
            row(s, "connect rate, conn/s", lambda j, m: j["connect_rate"])
            row(s, f"RSS per idle connection ({env.get('idle')} held), bytes",
                lambda j, m: j["rss_per_connection_bytes"], better="lower")
            row(s, "handshake p99, µs", lambda j, m: j["handshake_us"]["p99"], better="lower")
        elif s == "latency-q1":
            row(s, "p50 latency, µs", lat("p50"), better="lower")
            row(s, "p99 latency, µs", lat("p99"), better="lower")
            row(s, "delivered, msg/s", lambda j, m: j["recv_rate"])
            row(s, "lost, %", lossp, better="lower")
        else:
            row(s, "delivered, msg/s", lambda j, m: j["recv_rate"])
            row(s, "published, msg/s", lambda j, m: j["send_rate"])
            row(s, "lost, %", lossp, better="lower")
            row(s, "p99 latency (queueing), ms", lat("p99"), scale=1 / 1000, better="lower")
            row(s, "broker peak RSS, MiB", hwm, better="lower")
            row(s, "broker CPU per delivered message, µs", cpu_per_msg, better="lower")
            row(s, "while messages flowed: broker CPU, cores", cores("broker_cpu_s"),
                better="lower")
            row(s, "while messages flowed: load generator CPU, cores", cores("loadgen_cpu_s"),
                better="lower")
    lines.append("")
    lines.append("↑ higher is better, ↓ lower is better. Ratios are Herald's median ÷ the "
                 "peer's median: above 1.00× Herald delivers more (↑ rows) or uses more "
                 "(↓ rows). *Delivered* counts messages received by subscribers per second "
                 "(for fan-out: summed over the subscribers); *lost* is what a subscriber "
                 "never got (QoS 0 allows it; at QoS 1 it means the broker dropped or never "
                 "delivered an acknowledged message within the 3 s drain). Flat-out latency is "
                 "queueing, not the broker's speed; the fixed-rate row is the latency figure. "
                 "Peak RSS is the broker's VmHWM at the end of a run (each run starts a fresh "
                 "broker). Broker CPU is its user + system time over the whole run (start-up, "
                 "connections, warm-up and drain included) ÷ messages delivered: what a "
                 "delivery costs, steadier than a rate on a shared machine.")
    if "herald-base" in brokers:
        lines.append(f"`herald-base` is another Herald binary, {env.get('herald_base', '?')}, "
                     "with the same settings (a before/after comparison in one run); the "
                     "ratio columns use `herald`.")
    variants = [b for b in brokers if b.startswith("herald-inflight")]
    for v in variants:
        lines.append(f"`{v}` is Herald with a session inflight window of "
                     f"{v[len('herald-inflight'):]} instead of {env.get('herald_inflight', '65535')} "
                     "(everything else equal); the ratio columns use `herald`.")
    lines.append("")

    # failures
    fails = []
    for s in scenarios:
        for b in brokers:
            for i, (j, m) in enumerate(res[s][b], 1):
                if j is None:
                    fails.append(f"round {i} {s} {b}: rc={m.get('rc', '?')}, broker alive "
                                 f"after: {m.get('alive', '?')}")
    if fails:
        lines.append("Runs that failed (no report; counted as missing, not as zero): "
                     + "; ".join(fails) + ".")
        lines.append("")

    # ---- aims
    lines.append("### Against the aims of issue 7\n")

    def verdict(ok):
        return "**met**" if ok else "**not met**"

    aims = []
    if "rumqttd" in brokers:
        for s in ("fanin-q0", "fanin-q1", "fanout-q1"):
            if s in scenarios:
                h = med(vals(s, "herald", lambda j, m: j["recv_rate"]))
                r = med(vals(s, "rumqttd", lambda j, m: j["recv_rate"]))
                if h is not None and r is not None:
                    aims.append(f"- Throughput at least rumqttd's, {SCEN[s]}: Herald "
                                f"{fmt_num(h)} vs rumqttd {fmt_num(r)} msg/s delivered "
                                f"({fmt_ratio(ratio(h, r))}) — {verdict(h >= r)}.")
                elif h is not None:
                    aims.append(f"- Throughput at least rumqttd's, {SCEN[s]}: rumqttd has no "
                                f"successful run to compare with.")
    if "latency-q1" in scenarios:
        p99 = lambda j, m: j["latency_us"]["p99"]  # noqa: E731
        h = med(vals("latency-q1", "herald", p99))
        best = [(med(vals("latency-q1", p, p99)), p) for p in peers]
        best = [x for x in best if x[0] is not None]
        if h is not None and best:
            bv, bp = min(best)
            aims.append(f"- p99 at 5,000 msg/s at most the best peer's: Herald "
                        f"{fmt_num(h)} µs vs {bp} {fmt_num(bv)} µs — {verdict(h <= bv)}.")
    if "conn" in scenarios:
        h = med(vals("conn", "herald", lambda j, m: j["rss_per_connection_bytes"]))
        if h is not None:
            aims.append(f"- At most 2 KB (2,048 B) per idle connection: Herald {fmt_num(h)} B "
                        f"— {verdict(h <= 2048)}.")
    peak = [(b, max([x for x in sum((vals(s, b, hwm) for s in scenarios
                                     if s not in ("conn", "latency-q1")), []) if x is not None],
                    default=None)) for b in brokers]
    aims.append("- Memory bounded under load: highest peak RSS over the flat-out runs — "
                + ", ".join(f"{b} {fmt_num(v)} MiB" for b, v in peak) + ".")
    lines.extend(aims)
    lines.append("")
    fanouts = [s for s in scenarios if s.startswith("fanout")]
    if "rumqttd" in brokers and fanouts:
        lines.append("")
        lines.append("### Against the aims of issue 13\n")
        for s in fanouts:
            h = med(vals(s, "herald", lambda j, m: j["recv_rate"]))
            r = med(vals(s, "rumqttd", lambda j, m: j["recv_rate"]))
            if h is not None and r is not None:
                lines.append(f"- Fan-out at least 1.3× rumqttd's, {SCEN[s]}: Herald "
                             f"{fmt_num(h)} vs rumqttd {fmt_num(r)} msg/s delivered "
                             f"({fmt_ratio(ratio(h, r))}) — {verdict(h >= 1.3 * r)}.")
            else:
                lines.append(f"- Fan-out at least 1.3× rumqttd's, {SCEN[s]}: no successful "
                             "run of both to compare.")
        lines.append("")

    # ---- commands
    lines.append("### How it was run\n")
    lines.append("```sh")
    lines.append(f"bash bench/compare.sh   # BENCH_ROUNDS={env.get('rounds')} "
                 f"BENCH_DURATION={env.get('duration')} BENCH_IDLE_CONNS={env.get('idle')}")
    lines.append("```\n")
    lines.append("Brokers, each started fresh for every run:\n")
    lines.append("```sh")
    for cmd in (out / "broker-commands.txt").read_text().splitlines():
        word = cmd.split()[0] if cmd.split() else ""
        if word in ("mosquitto", "rumqttd", "rmqttd") and word not in brokers:
            continue
        lines.append(cmd)
    lines.append("```\n")
    for name in ("mosquitto.conf", "rumqttd.toml"):
        if (out / name).exists() and name.split(".")[0] in brokers:
            lines.append(f"`{name}`:\n")
            lines.append("```")
            lines.append((out / name).read_text().rstrip())
            lines.append("```\n")
    lines.append("Load (round 1; `--port` is the broker's):\n")
    lines.append("```sh")
    if rounds:
        for s in scenarios:
            c = rounds[0] / f"{s}.herald.cmd"
            if c.exists():
                lines.append(c.read_text().strip().replace(str(out), "<out>"))
    lines.append("```")
    lines.append("")
    lines.append("Settings not equal across brokers: Herald and herald-bench set TCP_NODELAY, "
                 "mosquitto does with `set_tcp_nodelay true`, rumqttd has no such switch. "
                 "rumqttd keeps QoS 0 and 1 messages in a per-topic in-memory log "
                 "(10 × 100 MB segments, its default) rather than per-subscriber queues.")
    splice(target, "compare", "\n".join(lines))



# ------------------------------------------------------------------- memory
def memory(outdir, target):
    out = Path(outdir)
    env = read_env(out / "env.txt")
    brokers = env.get("brokers", "").split()
    parts = env.get("parts", "").split()
    counts = env.get("counts", "").split()
    rounds = sorted(out.glob("round-*"), key=lambda p: int(p.name.split("-")[1]))
    notes = (out / "notes.txt").read_text().strip() if (out / "notes.txt").exists() else ""
    loads = []
    lines = ["## Memory under growing input (`bench/memory.sh`, issue 13)\n"]

    ret_brokers = [b for b in brokers if b != "rumqttd"]
    ret = {}
    for rd in rounds:
        for b in ret_brokers:
            m = read_meta(rd / f"retained.{b}")
            if m.get("load1"):
                loads.append(float(m["load1"]))
            ret[(rd, b)] = m if m.get("rc") == "0" else {}
    idle = {}
    for rd in rounds:
        for n in counts:
            for b in brokers:
                m = read_meta(rd / f"idle-{n}.{b}.meta")
                if m.get("load1"):
                    loads.append(float(m["load1"]))
                j = load_json(rd / f"idle-{n}.{b}.json")
                idle[(rd, n, b)] = j if (j is not None and m.get("rc") == "0") else None

    load_note = (
        f"1-minute load average before each run {min(loads):.1f}–{max(loads):.1f}"
        if loads else "load not recorded"
    ) + f" (start {env.get('loadavg_start', '?')}, end {env.get('loadavg_end', '?')})."
    lines.append(f"- Date: {env.get('date_utc', '?')}; {len(rounds)} round(s), brokers "
                 "interleaved, a fresh broker for every figure; total "
                 f"{int(env.get('elapsed_s', 0)) // 60} min.")
    lines.append(f"- Herald: commit `{env.get('commit', '?')}`"
                 + (" (with uncommitted changes)" if env.get("dirty", "0") != "0" else "")
                 + f", `{env.get('herald_version', '')}`; peers: "
                 + "; ".join(env.get(f"{b}_version", b) for b in brokers if b != "herald") + ".")
    for n in notes.splitlines():
        lines.append(f"- Skipped: {n}")
    lines.append(machine(env, load_note).rstrip())
    lines.append("")

    def table(title, rows, bs):
        ps = [b for b in bs if b != "herald"]
        lines.append(f"| {title} | " + " | ".join(bs) + " | "
                     + " | ".join(f"Herald / {p}" for p in ps) + " |")
        lines.append("|" + "---|" * (1 + len(bs) + len(ps)))
        for label, get, unit, scale in rows:
            per = {b: [get(rd, b) for rd in rounds] for b in bs}
            meds = {b: med(v) for b, v in per.items()}
            lines.append(f"| {label} | " + " | ".join(fmt_cell(per[b], unit, scale) for b in bs)
                         + " | " + " | ".join(
                             fmt_ratio(ratio(meds.get("herald"), meds[p])) for p in ps) + " |")
        lines.append("")

    if "retained" in parts and ret_brokers:
        kib = lambda key: (lambda rd, b: float(ret[(rd, b)][key]) / 1024  # noqa: E731
                           if ret.get((rd, b), {}).get(key) else None)
        table("2,000 retained 10 B messages, each followed by a 1 MB publish nobody receives",
              [("RSS after, MiB ↓", kib("rss_kib"), "", 1.0),
               ("peak RSS (VmHWM), MiB ↓", kib("hwm_kib"), "", 1.0)], ret_brokers)
    if "idle" in parts:
        rows = []
        for n in counts:
            get = (lambda n_: lambda rd, b: (idle[(rd, n_, b)] or {}).get(
                "rss_per_connection_bytes"))(n)
            held = (lambda n_: lambda rd, b: (idle[(rd, n_, b)] or {}).get("connected"))(n)
            rows.append((f"{int(n):,} idle connections: RSS per connection, bytes ↓", get, "", 1.0))
            rows.append((f"{int(n):,} idle connections: connections held ↑", held, "", 1.0))
        table("Idle MQTT 3.1.1 connections (keep alive 60 s)", rows, brokers)
        h = [med([(idle[(rd, n, "herald")] or {}).get("rss_per_connection_bytes")
                  for rd in rounds]) for n in counts] if "herald" in brokers else []
        for n, v in zip(counts, h):
            if v is not None:
                lines.append(f"- Aim (issue 13): at most 2 KB (2,048 B) per idle connection, "
                             f"{int(n):,} held: Herald {fmt_num(v)} B — "
                             f"{'**met**' if v <= 2048 else '**not met**'}.")
        lines.append("")
    lines.append("↑ higher is better, ↓ lower is better; medians of the rounds, range in "
                 "brackets; ratios are Herald's median ÷ the peer's. RSS per connection is "
                 "(VmRSS while holding − VmRSS before connecting) ÷ connections held, read 2 s "
                 "after the last CONNACK.\n")
    lines.append("```sh")
    lines.append(f"bash bench/memory.sh   # BENCH_ROUNDS={env.get('rounds')} "
                 f"BENCH_IDLE_COUNTS=\"{env.get('counts')}\"; open-file limit "
                 f"{env.get('open_files')}")
    if rounds:
        lines.append("python3 retained.py PORT 2000 1000000   # the retained load, written by the script")
        lines.append("herald-bench conn -c N --hold 5 --concurrency 200 "
                     "--source-ips 127.0.0.1-127.0.0.8 --connect-timeout 60 "
                     "--broker-pid PID --port PORT")
    lines.append("```")
    lines.append("")
    lines.append("Brokers: Herald with `HERALD_LISTENER__MAX_CONNECTIONS` above the count and "
                 "otherwise defaults; mosquitto with `max_connections -1`, no persistence; "
                 "rumqttd with `max_connections` above the count (configurations in the "
                 "result directory and in `bench/memory.sh`).")
    splice(target, "memory", "\n".join(lines))


# ---------------------------------------------------------------- listeners
def listeners(outdir, target):
    out = Path(outdir)
    env = read_env(out / "env.txt")
    rounds = sorted(out.glob("round-*"), key=lambda p: int(p.name.split("-")[1]))
    loads = []
    for rd in rounds:
        for f in (list(rd.glob("handshakes.*")) + list(rd.glob("idle.*.meta"))
                  + list(rd.glob("fanin-*.meta"))):
            if f.suffix in ("", ".meta") and not f.name.endswith(".out"):
                m = read_meta(f)
                if m.get("load1"):
                    loads.append(float(m["load1"]))
    load_note = (
        f"1-minute load average before each run {min(loads):.1f}–{max(loads):.1f}"
        if loads else "load not recorded"
    ) + f" (start {env.get('loadavg_start', '?')}, end {env.get('loadavg_end', '?')})."
    lines = ["## TLS and WebSocket listeners (`bench/listeners.sh`, issue 15)\n"]
    def has(pattern):
        return any(next(rd.glob(pattern), None) for rd in rounds)

    base = has("*.herald-base.*")
    lines.append(f"- Date: {env.get('date_utc', '?')}; {len(rounds)} round(s), Herald and "
                 + ("herald-base and " if base else "")
                 + "mosquitto interleaved, a fresh broker for every figure; total "
                 f"{int(env.get('elapsed_s', 0)) // 60} min.")
    lines.append(f"- Herald: commit `{env.get('commit', '?')}`"
                 + (" (with uncommitted changes)" if env.get("dirty", "0") != "0" else "")
                 + f"; {env.get('mosquitto_version', 'mosquitto ?')}; "
                 f"{env.get('openssl_version', 'openssl ?')} as the TLS client.")
    if base:
        lines.append(f"- `herald-base`: another Herald binary, {env.get('herald_base', '?')}, "
                     "measured on its ws and wss listeners (the before of a before/after).")
    lines.append(machine(env, load_note).rstrip())
    lines.append("")

    def hs(rd, b):
        m = read_meta(rd / f"handshakes.{b}")
        try:
            return float(m["connections"]) / float(m["real_s"])
        except Exception:
            return None

    def idle(rd, b, k):
        m = read_meta(rd / f"idle.{b}.{k}.meta")
        j = load_json(rd / f"idle.{b}.{k}.json") or {}
        return j.get("rss_per_connection_bytes") if m.get("rc") == "0" else None

    have_hs = has("handshakes.*")
    have_idle = has("idle.*")
    if have_hs or have_idle:
        lines.append("| Figure | herald | mosquitto | Herald / mosquitto |"
                     + (" herald-base | Herald / herald-base |" if base else ""))
        lines.append("|---|---|---|---|" + ("---|---|" if base else ""))
    no_base = " — | — |" if base else ""
    if have_hs:
        h = [hs(rd, "herald") for rd in rounds]
        m = [hs(rd, "mosquitto") for rd in rounds]
        lines.append(f"| TLS 1.3 handshakes per second (`openssl s_time -new`, one client) ↑ | "
                     f"{fmt_cell(h)} | {fmt_cell(m)} | {fmt_ratio(ratio(med(h), med(m)))} |"
                     + no_base)
    idle_n = f"{int(env.get('idle', 0)):,}"
    per = {}
    for k in ("tcp", "tls", "ws", "wss") if have_idle else ():
        hk = [idle(rd, "herald", k) for rd in rounds]
        mk = [idle(rd, "mosquitto", k) for rd in rounds] if k in ("tcp", "tls") else []
        bk = [idle(rd, "herald-base", k) for rd in rounds] if k in ("ws", "wss") else []
        per[k] = med(hk)
        lines.append(f"| RSS per idle {k} connection ({idle_n} held), bytes ↓ | {fmt_cell(hk)} | "
                     + (f"{fmt_cell(mk)} | {fmt_ratio(ratio(med(hk), med(mk)))} |" if mk
                        else "no WebSocket listener in Debian's build | — |")
                     + ((f" {fmt_cell(bk)} | {fmt_ratio(ratio(med(hk), med(bk)))} |" if bk
                         else no_base) if base else ""))
    if have_hs or have_idle:
        lines.append("")
        lines.append("↑ higher is better, ↓ lower is better; medians of the rounds, range in "
                     "brackets."
                     + (" RSS per connection: (VmRSS while holding − VmRSS before) ÷ "
                        "connections, read 2 s after the last CONNACK; clients are "
                        "`bench/idle_conns.py` (Python's ssl and sockets, MQTT 3.1.1, keep "
                        "alive 60 s)." if have_idle else ""))
        if per.get("tcp"):
            lines.append("Relative to plain TCP on Herald: " + ", ".join(
                f"{k} {fmt_ratio(ratio(per[k], per['tcp']))}" for k in ("tls", "ws", "wss")
                if per.get(k)) + ".")
        lines.append("")

    def fanin(rd, b, k, q, cpu=False):
        m = read_meta(rd / f"fanin-q{q}.{b}.{k}.meta")
        j = load_json(rd / f"fanin-q{q}.{b}.{k}.json") or {}
        ok = m.get("rc") == "0" and not j.get("errors") and j.get("failed_clients", 1) == 0
        if cpu:
            w = j.get("window_cpu") or {}
            if not ok or w.get("broker_cpu_s") is None or not j.get("received"):
                return None
            return w["broker_cpu_s"] * 1e6 / j["received"]
        if ok and j.get("lost"):
            lost[(b, k, q)] = lost.get((b, k, q), 0) + j["lost"]
        return j.get("recv_rate") if ok else None

    lost = {}

    if has("fanin-q*"):
        lines.append(f"Fan-in throughput (herald-bench fan-in, 2 publishers → 1 subscriber, "
                     f"64-byte payloads, flat out for {env.get('fanin_seconds', '?')} s after a "
                     "1 s warm-up; deliveries per second, duplicates and losses counted by the "
                     "subscriber; \"lost\": messages the broker acknowledged or accepted and never "
                     "delivered (mosquitto drops QoS 1 messages beyond its 1,000-message queue "
                     "per subscriber); a run with a client failure counts as no figure):\n")
        lines.append("| Listener | QoS | herald msg/s ↑ | mosquitto msg/s ↑ | Herald / mosquitto "
                     "| Herald vs its own tcp | Herald broker CPU per delivery, µs ↓ |"
                     + (" herald-base msg/s ↑ | Herald / herald-base | herald-base CPU per "
                        "delivery, µs ↓ |" if base else ""))
        lines.append("|---|---|---|---|---|---|---|" + ("---|---|---|" if base else ""))
        for q in (0, 1):
            tcp = med([fanin(rd, "herald", "tcp", q) for rd in rounds])
            for k in ("tcp", "tls", "ws", "wss"):
                hk = [fanin(rd, "herald", k, q) for rd in rounds]
                hc = [fanin(rd, "herald", k, q, cpu=True) for rd in rounds]
                mk = [fanin(rd, "mosquitto", k, q) for rd in rounds] if k in ("tcp", "tls") else []
                note = f" (lost {lost[('herald', k, q)]:,})" if ("herald", k, q) in lost else ""
                mnote = f" (lost {lost[('mosquitto', k, q)]:,})" if ("mosquitto", k, q) in lost else ""
                row = (f"| {k} | {q} | {fmt_cell(hk)}{note} | "
                       + (f"{fmt_cell(mk)}{mnote} | {fmt_ratio(ratio(med(hk), med(mk)))}" if mk
                          else "no WebSocket listener in Debian's build | —")
                       + f" | {fmt_ratio(ratio(med(hk), tcp))} | {fmt_cell(hc)} |")
                if base and k in ("ws", "wss"):
                    bk = [fanin(rd, "herald-base", k, q) for rd in rounds]
                    bc = [fanin(rd, "herald-base", k, q, cpu=True) for rd in rounds]
                    row += (f" {fmt_cell(bk)} | {fmt_ratio(ratio(med(hk), med(bk)))} | "
                            f"{fmt_cell(bc)} |")
                elif base:
                    row += " — | — | — |"
                lines.append(row)
        lines.append("")
        lines.append("Broker CPU per delivery: the broker's user + system CPU time from the "
                     "start signal to the last delivery (warm-up included) ÷ messages "
                     "delivered in that time (herald-bench `--broker-pid`).")
        lines.append("")
        lines.append("Debian's mosquitto 2.0.11 is built without libwebsockets: a `protocol "
                     "websockets` listener logs \"Opening websockets listen socket\" and exits "
                     "with \"Unable to start any listening sockets\", so there is no WebSocket "
                     "peer in this run.")
        lines.append("")
    lines.append("```sh")
    parts = " ".join(env.get("parts", "").split())
    lines.append(f"bash bench/listeners.sh   # BENCH_ROUNDS={env.get('rounds')} "
                 f"BENCH_IDLE={env.get('idle')} BENCH_SECONDS={env.get('tls_seconds')} "
                 f"BENCH_DURATION={env.get('fanin_seconds')}"
                 + (f" BENCH_PARTS=\"{parts}\"" if parts and parts != "handshakes idle fanin"
                    else "")
                 + (" BENCH_HERALD_BASE=..." if base else ""))
    lines.append(f"openssl s_time -connect 127.0.0.1:PORT -new -time {env.get('tls_seconds')} "
                 "-CAfile ca.pem")
    lines.append(f"python3 bench/idle_conns.py --kind KIND --port PORT --count {env.get('idle')} "
                 "--pid PID --cafile ca.pem")
    lines.append("herald-bench fan-in -c 2 --qos Q -d SECS --warmup 1 --port PORT --transport KIND "
                 "--cafile ca.pem --server-name localhost --broker-pid PID")
    lines.append("```")
    splice(target, "listeners", "\n".join(lines))

# ------------------------------------------------------------------ webhook
def webhook_peers(outdir, target):
    import webhook_peers_report  # noqa: F401  (bench/webhook_peers_report.py)
    webhook_peers_report.render(Path(outdir), target, read_env, load_json, read_meta, med,
                                fmt_num, fmt_cell, ratio, fmt_ratio, splice, machine)


def webhook(outdir, target):
    import webhook_report  # noqa: F401  (bench/webhook_report.py)

    webhook_report.render(Path(outdir), target, read_env, load_json, read_meta, med,
                          fmt_num, fmt_cell, ratio, fmt_ratio, splice, machine)


def webhook_ack(outdir, target):
    import webhook_ack_report  # noqa: F401  (bench/webhook_ack_report.py)

    webhook_ack_report.render(Path(outdir), target, read_env, load_json, read_meta, med,
                              fmt_num, fmt_cell, ratio, fmt_ratio, splice, machine)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    commands = {"compare": compare, "memory": memory, "listeners": listeners, "webhook": webhook,
                "webhook-peers": webhook_peers, "webhook-ack": webhook_ack}
    if len(sys.argv) != 4 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](sys.argv[2], sys.argv[3])
