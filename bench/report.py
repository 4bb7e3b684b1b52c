#!/usr/bin/env python3
"""Turns the raw results of bench/compare.sh and bench/webhook.sh into
Markdown and splices it into BENCHMARKS.md, each script into its own marked
section, so either can be re-run alone.

    python3 bench/report.py compare target/bench/compare-<date> BENCHMARKS.md
    python3 bench/report.py webhook target/bench/webhook-<date> BENCHMARKS.md
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
[`bench/compare.sh`](bench/compare.sh) and
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
    "pairs-q1": "100 pairs, QoS 1, flat out",
    "latency-q1": "Fan-in 2 → 1, QoS 1, fixed 5,000 msg/s",
    "conn": "Connections",
}


def compare(outdir, target):
    out = Path(outdir)
    env = read_env(out / "env.txt")
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
    lines.append("")
    lines.append("↑ higher is better, ↓ lower is better. Ratios are Herald's median ÷ the "
                 "peer's median: above 1.00× Herald delivers more (↑ rows) or uses more "
                 "(↓ rows). *Delivered* counts messages received by subscribers per second "
                 "(for fan-out: summed over the 100 subscribers); *lost* is what a subscriber "
                 "never got (QoS 0 allows it; at QoS 1 it means the broker dropped or never "
                 "delivered an acknowledged message within the 3 s drain). Flat-out latency is "
                 "queueing, not the broker's speed; the fixed-rate row is the latency figure. "
                 "Peak RSS is the broker's VmHWM at the end of a run (each run starts a fresh "
                 "broker).")
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


# ------------------------------------------------------------------ webhook
def webhook(outdir, target):
    import webhook_report  # noqa: F401  (bench/webhook_report.py)

    webhook_report.render(Path(outdir), target, read_env, load_json, read_meta, med,
                          fmt_num, fmt_cell, ratio, fmt_ratio, splice, machine)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    if len(sys.argv) != 4 or sys.argv[1] not in ("compare", "webhook"):
        sys.exit(__doc__)
    {"compare": compare, "webhook": webhook}[sys.argv[1]](sys.argv[2], sys.argv[3])
