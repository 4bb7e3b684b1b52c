"""The "webhook-peers" section of BENCHMARKS.md from the raw results of the
"peers" part of bench/webhook.sh (bench/webhook_peers.sh): Herald's WebHook
beside RMQTT's web-hook, both posting to one nginx. Called by bench/report.py,
which passes its helpers.

Every figure about events is counted at the web server: nginx logs each
request's time, status and body; each event's payload (base64) starts with
the load generator's publisher id (u32) and sequence number (u64)."""

import base64
import json
import re
import struct
from pathlib import Path

ESCAPE = re.compile(rb"\\x([0-9A-Fa-f]{2})")
VARIANTS = [
    ("herald-on", "Herald"),
    ("herald-own", "Herald, hand-written client, pipelining on"),
    ("herald-own-nopipe", "Herald, hand-written, pipelining off"),
    ("herald-hyper", "Herald, hyper client"),
    ("rmqtt-on", "RMQTT web-hook"),
]


def read_log(path):
    """[(time_s, publisher, seq)] of the events of answered requests, in the
    order nginx finished them; and the number of requests."""
    out, requests = [], 0
    try:
        f = open(path, "rb")
    except OSError:
        return out, 0
    with f:
        for line in f:
            parts = line.rstrip(b"\n").split(b" ", 2)
            if len(parts) != 3 or not parts[1].startswith(b"2"):
                continue
            requests += 1
            t = float(parts[0])
            raw = ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), parts[2])
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            for ev in doc if isinstance(doc, list) else [doc]:
                try:
                    head = base64.b64decode(ev["payload"])[:12]
                    pub, seq = struct.unpack(">IQ", head)
                except Exception:
                    continue
                out.append((t, pub, seq))
    return out, requests


def account(events):
    """distinct, duplicates, order violations (an event older than one
    already received from the same publisher), first-arrival times."""
    seen, top, dup, order, firsts = set(), {}, 0, 0, []
    for t, pub, seq in events:
        if (pub, seq) in seen:
            dup += 1
            continue
        seen.add((pub, seq))
        if seq < top.get(pub, -1):
            order += 1
        top[pub] = max(top.get(pub, -1), seq)
        firsts.append(t)
    return len(seen), dup, order, firsts


def run_figures(rd, name, load_json, read_meta):
    meta = read_meta(rd / f"{name}.meta")
    j = load_json(rd / f"{name}.json") or {}
    if not meta:
        return None
    t0, t1 = float(meta.get("t0", 0)), float(meta.get("t1", 0))
    fig = {
        "mqtt": j.get("recv_rate"),
        "sent": j.get("sent"),
        "mqtt_lost": j.get("lost"),
        "hwm_mib": float(meta["hwm_kib"]) / 1024 if meta.get("hwm_kib") else None,
        "load1": float(meta["load1"]) if meta.get("load1") else None,
        "rc": meta.get("rc"),
    }
    ticks, hz = meta.get("cpu_ticks"), meta.get("clk_tck")
    cpu = float(ticks) / float(hz) if ticks and hz else None
    fig["cpu_s"] = cpu
    if name.startswith(("herald-off", "rmqtt-off")):
        return fig
    events, requests = read_log(rd / f"{name}.access.log")
    distinct, dup, order, firsts = account(events)
    fig.update(distinct=distinct, dup=dup, order=order, requests=requests)
    sent = fig["sent"] or 0
    fig["lost"] = max(0, sent - distinct)
    during = sum(1 for t in firsts if t0 <= t <= t1)
    fig["rate_load"] = during / (t1 - t0) if t1 > t0 else None
    fig["rate_all"] = distinct / (max(firsts) - t0) if firsts and max(firsts) > t0 else None
    fig["cpu_per_100k"] = cpu / distinct * 1e5 if cpu and distinct else None
    return fig


def render(out, target, read_env, load_json, read_meta, med, fmt_num, fmt_cell, ratio,
           fmt_ratio, splice, machine):
    env = read_env(out / "env.txt")
    root = out / "peers"
    notes = (root / "notes.txt").read_text().strip() if (root / "notes.txt").exists() else ""
    rounds = sorted(p for p in root.glob("round-*") if p.is_dir())
    pubs_list = env.get("peer_publishers", "2 20").split()
    variants = env.get("peer_variants", "").split()
    figs = {}  # (variant, pubs) -> [fig per round]
    loads = []
    for rd in rounds:
        for v in variants:
            for p in pubs_list:
                f = run_figures(rd, f"{v}-p{p}", load_json, read_meta)
                if f:
                    figs.setdefault((v, p), []).append(f)
                    if f.get("load1") is not None:
                        loads.append(f["load1"])

    def vals(v, p, k):
        return [f.get(k) for f in figs.get((v, p), []) if f.get(k) is not None]

    def m(v, p, k):
        return med(vals(v, p, k))

    def onoff(v, p):
        base = "herald-off" if v.startswith("herald") else "rmqtt-off"
        return ratio(m(v, p, "mqtt"), m(base, p, "mqtt"))

    lines = ["## WebHook beside RMQTT, one nginx (`bench/webhook.sh`, part `peers`, issue 17)", ""]
    lines.append(f"- Date: {env.get('date_utc', '?')}; {len(rounds)} round(s), variants "
                 f"interleaved within each round; total {env.get('elapsed_s', '?')} s for the "
                 f"whole script.")
    lines.append(f"- Herald: commit `{env.get('commit', '?')}`"
                 + (" (with uncommitted changes)" if env.get("dirty", "0") != "0" else "")
                 + f"; RMQTT: {env.get('rmqttd_version', 'not run')}; web server: "
                 f"{env.get('nginx_version', '?')} (one worker).")
    load_note = (f"1-minute load average before each run {min(loads):.1f}–{max(loads):.1f}"
                 if loads else "load average not recorded")
    lines.append(machine(env, f"{load_note} (start {env.get('loadavg_start', '?')}, "
                               f"end {env.get('loadavg_end', '?')}).").rstrip())
    if notes:
        for n in notes.splitlines():
            lines.append(f"- {n}")
    lines.append("")
    lines.append(f"MQTT fan-in N → 1, QoS 1, 64 B payloads, {int(env.get('peer_messages', 100000)):,} "
                 "messages in all, flat out; each broker's web-hook posts every "
                 "`message.publish` event, one per request unless *batched*, to nginx "
                 "answering 200. *During the load*: distinct events nginx logged between the "
                 "start and the end of the load generator ÷ that time; *until drained*: all "
                 "distinct events ÷ the time from the start to the last one. Lost, duplicated "
                 "and out of order are counted at nginx from each event's payload (publisher "
                 "id, sequence number). CPU is the broker process's utime + stime over the "
                 "whole run (start, load, drain). Medians of the rounds, range in brackets.")
    lines.append("")
    have_rmqtt = any(v == "rmqtt-on" for v in variants)
    # Herald's column for the ratios: herald-on, or in the run that compared
    # HTTP clients, herald-own (the default then: hand-written, pipelining).
    main = "herald-on" if "herald-on" in variants else "herald-own"
    for p in pubs_list:
        cols = [(v, label) for v, label in VARIANTS if v in variants]
        if "herald-batch" in variants:
            cols.append(("herald-batch", "Herald batched (100 / 10 ms)"))
        head = "| " + f"{p} publishers" + " | " + " | ".join(l for _, l in cols)
        if have_rmqtt:
            head += " | Herald ÷ RMQTT"
        lines.append(head + " |")
        lines.append("|---" * (len(cols) + 1 + (1 if have_rmqtt else 0)) + "|")

        def row(label, key, unit="", better=None, fn=None):
            cells = []
            for v, _ in cols:
                if fn:
                    xs = [fn(v, p)] if fn(v, p) is not None else []
                    cells.append(fmt_cell(xs) if xs else "—")
                else:
                    xs = vals(v, p, key)
                    cells.append(fmt_cell(xs, unit) if xs else "—")
            r = ""
            if have_rmqtt:
                a = fn(main, p) if fn else m(main, p, key)
                b = fn("rmqtt-on", p) if fn else m("rmqtt-on", p, key)
                r = " | " + fmt_ratio(ratio(a, b))
            lines.append(f"| {label} | " + " | ".join(cells) + r + " |")

        row("events/s at nginx during the load ↑", "rate_load")
        row("events/s at nginx until drained ↑", "rate_all")
        row("MQTT msg/s delivered, hook on ↑", "mqtt")
        row("MQTT throughput, hook on ÷ off ↑", None, fn=onoff)
        row("broker CPU s per 100,000 events ↓", "cpu_per_100k")
        row("broker peak RSS, MiB ↓", "hwm_mib")
        row("events lost (sum of rounds) ↓", None,
            fn=lambda v, p: sum(vals(v, p, "lost")) if vals(v, p, "lost") else None)
        row("events duplicated (sum) ↓", None,
            fn=lambda v, p: sum(vals(v, p, "dup")) if vals(v, p, "dup") else None)
        row("per-publisher order violations (sum) ↓", None,
            fn=lambda v, p: sum(vals(v, p, "order")) if vals(v, p, "order") else None)
        offs = []
        for b in ("herald-off", "rmqtt-off"):
            if b in variants:
                offs.append(f"{b.split('-')[0].replace('herald', 'Herald').replace('rmqtt', 'RMQTT')} "
                            f"{fmt_cell(vals(b, p, 'mqtt'))} msg/s")
        lines.append("")
        if offs:
            lines.append(f"Hook off, {p} publishers: " + ", ".join(offs) + ".")
        if have_rmqtt:
            lines.append(f"The ratio column is `{main}` ÷ RMQTT.")
        lines.append("")

    # Outage
    od = root / "outage"
    outage = {}
    for v in env.get("peer_outage_variants", f"{main} rmqtt-on").split():
        f = run_figures(od, v, load_json, read_meta) if od.exists() else None
        if f and f.get("sent"):
            meta = read_meta(od / f"{v}.meta")
            rss = []
            try:
                for ln in (od / f"{v}.rss.txt").read_text().split("\n"):
                    parts = ln.split()
                    if len(parts) == 2 and parts[1].isdigit():
                        rss.append(int(parts[1]))
            except OSError:
                pass
            f["rss_peak"] = max(rss) / 1024 if rss else None
            f["down"] = meta.get("down")
            outage[v] = f
    o_pubs, o_rate, o_load, o_out = (env.get("peer_outage", "20 2000 40 20").split() + ["?"] * 4)[:4]
    if outage:
        lines.append(f"### nginx down for {o_out} s under {int(o_rate):,} msg/s")
        lines.append("")
        lines.append(f"{o_pubs} publishers → 1 subscriber, QoS 1, a fixed {int(o_rate):,} msg/s "
                     f"for {o_load} s; nginx stopped (gracefully) in the middle for {o_out} s "
                     "and started again; then until nginx has every event or 5 s pass "
                     "without one.")
        lines.append("")
        names = {"herald-own": "Herald", "herald-on": "Herald", "rmqtt-on": "RMQTT web-hook"}
        cols = [v for v in outage]
        lines.append("| | " + " | ".join(names.get(v, v) for v in cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")

        def orow(label, fn):
            lines.append(f"| {label} | " + " | ".join(fn(outage[v]) for v in cols) + " |")

        orow("MQTT messages published (acknowledged)", lambda f: fmt_num(f.get("sent")))
        orow("events lost (published, never at nginx)", lambda f: fmt_num(f.get("lost")))
        orow("events duplicated", lambda f: fmt_num(f.get("dup")))
        orow("per-publisher order violations", lambda f: fmt_num(f.get("order")))
        orow("broker peak RSS (sampled every 0.2 s / VmHWM), MiB",
             lambda f: f"{fmt_num(f.get('rss_peak'))} / {fmt_num(f.get('hwm_mib'))}")
        orow("1-minute load average at the end", lambda f: fmt_num(f.get("load1")))
        lines.append("")

    # Aims
    lines.append("### Against the aims of issue 17")
    lines.append("")

    def verdict(ok):
        return "**met**" if ok else "**not met**"

    if have_rmqtt:
        for p, aim in (("20", 3.5), ("2", 1.3)):
            if p not in pubs_list:
                continue
            a, b = m(main, p, "rate_all"), m("rmqtt-on", p, "rate_all")
            al, bl = m(main, p, "rate_load"), m("rmqtt-on", p, "rate_load")
            r, rl = ratio(a, b), ratio(al, bl)
            lines.append(f"- One event per request, {p} publishers, events/s ≥ {aim}× RMQTT's: "
                         f"until drained {fmt_num(a)} vs {fmt_num(b)} ({fmt_ratio(r)}), during "
                         f"the load {fmt_num(al)} vs {fmt_num(bl)} ({fmt_ratio(rl)}) — "
                         f"{verdict(r is not None and r >= aim)} (judged until drained).")
        for p in pubs_list:
            a, b = m(main, p, "cpu_per_100k"), m("rmqtt-on", p, "cpu_per_100k")
            r = ratio(a, b)
            lines.append(f"- Broker CPU per event ≤ 0.25× RMQTT's, {p} publishers: {fmt_num(a)} "
                         f"vs {fmt_num(b)} s per 100,000 ({fmt_ratio(r)}) — "
                         f"{verdict(r is not None and r <= 0.25)}.")
        for p in pubs_list:
            a, b = onoff(main, p), onoff("rmqtt-on", p)
            r = ratio(a, b)
            lines.append(f"- Hook on ÷ off MQTT throughput ≥ 3× RMQTT's ratio, {p} publishers: "
                         f"{fmt_num(a)} vs {fmt_num(b)} ({fmt_ratio(r)}) — "
                         f"{verdict(r is not None and r >= 3)}.")
    else:
        lines.append("- RMQTT was not run, so no aim against it can be judged.")
    h = outage.get(main)
    if h:
        ok = h.get("lost") == 0 and h.get("order") == 0
        lines.append(f"- Outage: 0 events lost or reordered: Herald lost {fmt_num(h.get('lost'))}, "
                     f"{fmt_num(h.get('order'))} order violations — {verdict(ok)}.")
    lines.append("")

    # HTTP client
    if "herald-hyper" in variants:
        lines.append("### The HTTP client: hand-written against hyper's `client::conn::http1`")
        lines.append("")
        for p in pubs_list:
            own, nop, hyp = (m(v, p, "rate_all") for v in ("herald-own", "herald-own-nopipe",
                                                             "herald-hyper"))
            cown, chyp = m("herald-own", p, "cpu_per_100k"), m("herald-hyper", p, "cpu_per_100k")
            lines.append(f"- {p} publishers, events/s until drained: hand-written pipelining on "
                         f"{fmt_num(own)}, off {fmt_num(nop)}, hyper {fmt_num(hyp)}: hand-written "
                         f"÷ hyper {fmt_ratio(ratio(own, hyp))} (on), "
                         f"{fmt_ratio(ratio(nop, hyp))} (off); broker CPU s per 100,000 events "
                         f"{fmt_num(cown)} vs {fmt_num(chyp)}.")
        ratios = [ratio(m("herald-own", p, "rate_all"), m("herald-hyper", p, "rate_all"))
                  for p in pubs_list]
        keep = all(r is not None and r >= 1.3 for r in ratios)
        lines.append(f"- Decision (issue 17: keep the hand-written client only if it is at least "
                     f"1.3× faster): {'kept' if keep else 'not 1.3× faster at every load: hyper'}"
                     f" (lowest ratio, pipelining on: "
                     f"{fmt_ratio(min((r for r in ratios if r is not None), default=None))}).")
        lines.append("")

    lines.append("```sh")
    lines.append("BENCH_PARTS=peers BENCH_LOCK=/work/bench.lock bash bench/webhook.sh   "
                 f"# BENCH_ROUNDS={env.get('rounds', '?')}")
    lines.append(f"nginx -c nginx.conf   # below; access log '$msec $status $request_body'")
    lines.append("herald-bench fan-in -c N --qos 1 -n <messages ÷ N> -q --drain 10 --port PORT")
    lines.append(f"herald-bench fan-in -c {o_pubs} --qos 1 -d {o_load} --total-rate {o_rate} -q "
                 "--drain 10 --port PORT   # the outage")
    conf = "peer-on.conf" if main == "herald-on" else "peer-own.conf"
    hyper_note = ("   # HERALD_WEBHOOK_HTTP_CLIENT=hyper for the hyper runs (a switch of that "
                  "build only)" if "herald-hyper" in variants else "")
    lines.append("HERALD_MQTT__MAX_QUEUED_MESSAGES=1000000 HERALD_MQTT__MAX_INFLIGHT=1024 "
                 f"herald --listen … --webhook-conf {conf}{hyper_note}")
    lines.append("rmqttd -f rmqtt-on.toml")
    lines.append("```")
    lines.append("")
    for f in ("peer-on.conf", "peer-own.conf", "rmqtt-on.toml", "rmqtt-web-hook.toml", "nginx.conf"):
        p = root / f
        if p.exists():
            lines.append(f"`{f}`:")
            lines.append("")
            lines.append("```")
            lines.append(p.read_text().rstrip())
            lines.append("```")
            lines.append("")
    splice(target, "webhook-peers", "\n".join(lines))
