"""The "webhook" section of BENCHMARKS.md from the raw results of
bench/webhook.sh (called by bench/report.py, which passes its helpers)."""

import re
import statistics
from pathlib import Path


def metrics(path):
    """Prometheus text → {name{labels}: value}."""
    out = {}
    try:
        text = Path(path).read_text()
    except Exception:
        return out
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(" ", 1)
        if len(parts) == 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return out


def msum(m, prefix):
    return sum(v for k, v in m.items() if k == prefix or k.startswith(prefix + "{"))


def publish_metric(m, kind):
    return m.get(f'herald_webhook_events_{kind}_total{{event="message.publish"}}')


def window_rate(sink, t_from, t_to):
    """Distinct events per second the sink received between two wall-clock
    times (from its 100 ms timeline)."""
    if not sink or not sink.get("timeline"):
        return None
    base = sink["started_unix_s"]
    pts = [(base + t, u) for t, u in sink["timeline"]]

    def at(t):
        prev = None
        for tt, u in pts:
            if tt >= t:
                return u if prev is None else prev[1] + (u - prev[1]) * (
                    (t - prev[0]) / (tt - prev[0]) if tt > prev[0] else 0)
            prev = (tt, u)
        return pts[-1][1]

    if t_to <= t_from:
        return None
    return (at(t_to) - at(t_from)) / (t_to - t_from)


def render(out, target, read_env, load_json, read_meta, med, fmt_num, fmt_cell, ratio,
           fmt_ratio, splice, machine):
    env = read_env(out / "env.txt")
    parts = env.get("parts", "").split()
    warm = float(env.get("warmup", 1))
    dur = float(env.get("duration", 6))
    pubs = env.get("publishers", "?")
    rate = int(env.get("rate", 5000))
    lines = ["## WebHook under MQTT load (`bench/webhook.sh`)\n"]
    loads = []

    def collect(base, names):
        res = {n: [] for n in names}
        for rd in sorted(base.glob("round-*"), key=lambda p: int(p.name.split("-")[1])):
            for n in names:
                meta = read_meta(rd / f"{n}.meta")
                if meta.get("load1"):
                    loads.append(float(meta["load1"]))
                j = load_json(rd / f"{n}.json")
                res[n].append({
                    "load": j if meta.get("rc") == "0" else None,
                    "sink": load_json(rd / f"{n}.sink.json"),
                    "meta": meta,
                    "metrics": metrics(rd / f"{n}.metrics"),
                })
        return res

    def vals(res, n, f):
        xs = []
        for r in res[n]:
            try:
                xs.append(f(r))
            except Exception:
                xs.append(None)
        return xs

    body = []
    aims = []

    # ------------------------------------------------------------- part 1
    if "throughput" in parts and (out / "throughput").exists():
        names = ["off", "single", "batch", "single-at-aim", "batch-at-aim"]
        res = collect(out / "throughput", names)
        label = {"off": "WebHook off, flat out", "single": "on, one event per request, flat out",
                 "batch": "on, batched (100 events / 10 ms), flat out",
                 "single-at-aim": "on, one event per request, MQTT at a fixed 50,000 msg/s",
                 "batch-at-aim": "on, batched, MQTT at a fixed 200,000 msg/s"}
        recv = lambda r: r["load"]["recv_rate"]  # noqa: E731

        def ev_rate(r):
            m = r["meta"]
            t0 = float(m["t0"])
            return window_rate(r["sink"], t0 + warm + 1.0, t0 + warm + dur)

        backlog = lambda r: (publish_metric(r["metrics"], "matched")  # noqa: E731
                             - publish_metric(r["metrics"], "delivered"))
        off = med(vals(res, "off", recv))
        body.append(f"### 1. Events per second, and what the WebHook costs the broker\n")
        body.append(f"MQTT fan-in {pubs} → 1, QoS 1, 64 B, flat out for {dur:g} s (after "
                    f"{warm:g} s warm-up); the WebHook on `message.publish` posts every "
                    f"message to the sink. *Events/s* is what the sink received while the MQTT "
                    f"load ran (its 100 ms timeline from 1 s after the warm-up to the end of the "
                    f"load); the spool takes the rest and delivers it later.\n")
        body.append("| Variant | MQTT delivered, msg/s | ÷ WebHook off | MQTT lost (all rounds) "
                    "| WebHook events/s to the sink "
                    "| sink peak, events/s in 1 s | events still spooled at the end | dup / missing "
                    "/ order violations | broker peak RSS, MiB |")
        body.append("|---|---|---|---|---|---|---|---|---|")
        for n in names:
            r_on = med(vals(res, n, recv))
            lost_n = sum(x or 0 for x in vals(res, n, lambda r: r["load"]["lost"]))
            rr = {"off": "1.00×", "single-at-aim": "—", "batch-at-aim": "—"}.get(
                n, fmt_ratio(ratio(r_on, off)))
            if n == "off":
                body.append(f"| {label[n]} | {fmt_cell(vals(res, n, recv))} | {rr} | {lost_n:,} "
                            f"| — | — | — | — "
                            f"| {fmt_cell(vals(res, n, lambda r: float(r['meta']['hwm_kib']) / 1024))} |")
                continue
            dmo = vals(res, n, lambda r: (r["sink"]["duplicates"], r["sink"]["missing"],
                                          r["sink"]["client_order_violations"]))
            dmo = [x for x in dmo if x]
            dmo_s = " / ".join(str(sum(x[i] for x in dmo)) for i in range(3)) if dmo else "—"
            body.append(
                f"| {label[n]} | {fmt_cell(vals(res, n, recv))} | {rr} | {lost_n:,} | "
                f"{fmt_cell(vals(res, n, ev_rate))} | "
                f"{fmt_cell(vals(res, n, lambda r: r['sink']['peak_events_per_s']))} | "
                f"{fmt_cell(vals(res, n, backlog))} | {dmo_s} | "
                f"{fmt_cell(vals(res, n, lambda r: float(r['meta']['hwm_kib']) / 1024))} |")
        body.append("")
        body.append("The fixed-rate rows ask whether the WebHook keeps up with the MQTT load at "
                    "the issue's aims: if it does, events/s to the sink matches the MQTT rate "
                    "and little is left in the spool at the end.\n")
        body.append("*MQTT lost* are QoS 1 messages the broker dropped at the subscriber's queue "
                    "(`herald_messages_dropped_total{reason=\"queue_full\"}`, 1,000,000 "
                    "messages) because the subscriber fell behind the publishers.\n")
        body.append("Duplicates, missing and order violations are summed over the rounds, as the "
                    "sink counted them (events still in the spool when the broker stopped are "
                    "neither: they were not sent yet).\n")
        single = max([x for x in (med(vals(res, "single", ev_rate)),
                                  med(vals(res, "single-at-aim", ev_rate))) if x is not None],
                     default=None)
        batch = max([x for x in (med(vals(res, "batch", ev_rate)),
                                 med(vals(res, "batch-at-aim", ev_rate))) if x is not None],
                    default=None)
        r1 = ratio(med(vals(res, "single", recv)), off)
        r2 = ratio(med(vals(res, "batch", recv)), off)

        def v(ok):
            return "**met**" if ok else "**not met**"

        if single is not None:
            aims.append(f"- ≥ 50,000 events/s one event per request, under the MQTT load (best "
                        f"of the flat-out and the fixed-rate runs): "
                        f"{fmt_num(single)} — {v(single >= 50000)}.")
        if batch is not None:
            aims.append(f"- ≥ 200,000 events/s batched (likewise): {fmt_num(batch)} — {v(batch >= 200000)}.")
        if r1 is not None:
            aims.append(f"- Broker throughput with the WebHook on ≥ 70% of off (one event per "
                        f"request): {r1:.0%} — {v(r1 >= 0.7)}.")
        if r2 is not None:
            aims.append(f"- … ≥ 90% of off (batched): {r2:.0%} — {v(r2 >= 0.9)}.")

    # ------------------------------------------------------------- part 2
    if "neverblocks" in parts and (out / "neverblocks").exists():
        modes = ["fast", "delay", "refuse", "hang"]
        names = [f"{k}-{m}" for k in ("fixed", "flat") for m in modes]
        res = collect(out / "neverblocks", names)
        label = {"fast": "(a) fast", "delay": "(b) answers after 2 s",
                 "refuse": "(c) refuses connections", "hang": "(d) accepts, never answers"}
        p99 = lambda r: r["load"]["latency_us"]["p99"]  # noqa: E731
        p50 = lambda r: r["load"]["latency_us"]["p50"]  # noqa: E731
        recv = lambda r: r["load"]["recv_rate"]  # noqa: E731
        lost = lambda r: r["load"]["lost"]  # noqa: E731
        body.append("### 2. A sick web server costs the MQTT clients nothing\n")
        body.append(f"The same fan-in ({pubs} → 1, QoS 1), WebHook on `message.publish` one event "
                    f"per request, with the web server in four states. Fixed rate: "
                    f"{rate:,} msg/s for {dur:g} s (latency publish → deliver); flat out: "
                    f"throughput. Ratios are to (a); the aim is (b), (c), (d) within 10% of (a) "
                    f"(p99 ≤ 1.10×, throughput ≥ 0.90×).\n")
        body.append("| Web server | p50 at 5,000/s, µs | p99 at 5,000/s, µs | p99 ÷ (a) | flat-out "
                    "delivered, msg/s | ÷ (a) | MQTT lost (all rounds) | sink got (fixed / flat) |")
        body.append("|---|---|---|---|---|---|---|---|")
        worst = []
        for m in modes:
            fp99 = med(vals(res, f"fixed-{m}", p99))
            frec = med(vals(res, f"flat-{m}", recv))
            rp = ratio(fp99, med(vals(res, "fixed-fast", p99)))
            rt = ratio(frec, med(vals(res, "flat-fast", recv)))
            if m != "fast":
                worst.append((m, rp, rt))
            lost_total = sum(x or 0 for x in vals(res, f"fixed-{m}", lost) + vals(res, f"flat-{m}", lost))
            lost_total = f"{lost_total:,}"
            got = []
            for k in ("fixed", "flat"):
                g = med(vals(res, f"{k}-{m}", lambda r: r["sink"]["unique"] if r["sink"] else 0))
                got.append(fmt_num(g) if g is not None else "—")
            body.append(f"| {label[m]} | {fmt_cell(vals(res, f'fixed-{m}', p50))} | "
                        f"{fmt_cell(vals(res, f'fixed-{m}', p99))} | "
                        f"{'1.00×' if m == 'fast' else fmt_ratio(rp)} | "
                        f"{fmt_cell(vals(res, f'flat-{m}', recv))} | "
                        f"{'1.00×' if m == 'fast' else fmt_ratio(rt)} | {lost_total} | "
                        f"{' / '.join(got)} |")
        body.append("")
        body.append("On two shared cores a healthy web server is the *most* expensive case for "
                    "the broker: delivering events takes CPU that the MQTT path and the load "
                    "generator would otherwise use, so (b)–(d) can come out faster than (a).\n")
        for m, rp, rt in worst:
            ok = (rp is None or rp <= 1.10) and (rt is None or rt >= 0.90)
            aims.append(f"- Never blocks, {label[m]}: p99 {fmt_ratio(rp)} and throughput "
                        f"{fmt_ratio(rt)} of (a) — {'**met**' if ok else '**not met**'}.")

    # ------------------------------------------------------------- part 3
    if "outage" in parts and (out / "outage").exists():
        d = out / "outage"
        m = read_meta(d / "meta")
        load = load_json(d / "load.json")
        s1, s2 = load_json(d / "sink1.json"), load_json(d / "sink2.json")
        mend = metrics(d / "metrics-end")
        mdown = metrics(d / "metrics-down-end")
        down, up = float(m.get("down", 0)), float(m.get("up", 0))
        t_load0 = float(m.get("load_start", 0))
        body.append("### 3. Outage: the web server down for "
                    f"{env.get('outage')} s under steady load\n")
        body.append(f"Fan-in {pubs} → 1, QoS 1, fixed {rate:,} msg/s for {env.get('outage_load')} s; "
                    f"the sink is killed {down - t_load0:.0f} s in and a new one started "
                    f"{up - down:.0f} s later on the same port. Loss is checked by event id: "
                    "per lane, the ids both sink runs received must cover 0 … n−1 without a hole, "
                    "and n summed over the lanes must equal the messages the broker accepted.\n")
        rows = []
        if load:
            lat = load.get("latency_us") or {}
            rows.append(("MQTT messages published / delivered / lost",
                         f"{load['sent']:,} / {load['received']:,} / {load['lost']:,}"))
            rows.append(("MQTT clients that failed or were disconnected",
                         f"{load['failed_clients']} (errors: {len(load['errors'])})"))
            rows.append(("MQTT p50 / p99 latency over the whole run, incl. the outage",
                         f"{fmt_num(lat.get('p50'))} / {fmt_num(lat.get('p99'))} µs"))
        matched = publish_metric(mend, "matched")
        delivered = publish_metric(mend, "delivered")
        dropped = publish_metric(mend, "dropped")
        lanes = {}
        for s in (s1, s2):
            for ln in (s or {}).get("lanes", []):
                lanes.setdefault(ln["lane"], []).append(ln)
        holes = 0
        covered = 0
        overlap = 0
        starts_at_zero = True
        for name, runs in lanes.items():
            runs = sorted(runs, key=lambda x: x["first_seq"] or 0)
            holes += sum(x["missing"] for x in runs)
            lo = runs[0]["first_seq"] or 0
            starts_at_zero &= lo == 0
            hi = runs[0]["next_seq"] or 0
            for x in runs[1:]:
                if x["first_seq"] > hi:
                    holes += x["first_seq"] - hi
                else:
                    overlap += min(hi, x["next_seq"]) - x["first_seq"]
                hi = max(hi, x["next_seq"])
            covered += hi - lo
        dups = sum((s or {}).get("duplicates", 0) for s in (s1, s2)) + overlap
        order = sum((s or {}).get("client_order_violations", 0) for s in (s1, s2))
        accepted = load["sent"] if load else None
        lost_events = None if accepted is None else accepted - covered + holes
        rows.append(("Events accepted (broker counter `matched`) / delivered (`delivered`) / "
                     "dropped", f"{fmt_num(matched)} / {fmt_num(delivered)} / {fmt_num(dropped)}"))
        rows.append(("Events received by the two sink runs, distinct (lanes, all starting at 0: "
                     f"{'yes' if starts_at_zero else 'no'})", f"{covered:,}"))
        rows.append(("Events lost (published − received), holes in lane sequences",
                     f"{lost_events if lost_events is not None else '—'}, {holes}"))
        rows.append(("Duplicates (resent after a lost answer) / per-client order violations",
                     f"{dups} / {order}"))
        # catch-up
        backlog = msum(mdown, "herald_webhook_queue_depth")
        if s2 and s2.get("timeline"):
            base = s2["started_unix_s"]
            tl = [(base + t, u) for t, u in s2["timeline"]]
            first = next((t for t, u in tl if u > 0), None)
            load_end = float(m.get("load_end", up))
            caught = None
            for t, u in tl:
                live = rate * max(0.0, min(t, load_end) - up)
                if u >= backlog + live - rate * 0.2 and u > 0:
                    caught = (t, u)
                    break
            rows.append(("Events waiting when the sink came back (queue depth)", f"{backlog:,.0f}"))
            if first is not None:
                rows.append(("First delivery after the sink came back", f"{first - up:.1f} s"))
            if caught and first is not None and caught[0] > first:
                rows.append(("Caught up with the live stream after",
                             f"{caught[0] - up:.1f} s"))
                rows.append(("Catch-up rate (events/s from first delivery until caught up)",
                             f"{caught[1] / (caught[0] - first):,.0f}"))
            rows.append(("Sink peak, events/s in 1 s, after the restart",
                         f"{s2.get('peak_events_per_s', 0):,}"))
        # memory
        rss = []
        try:
            for line in (d / "rss.txt").read_text().splitlines():
                t, k = line.split()
                rss.append((float(t), int(k)))
        except Exception:
            pass
        if rss:
            before = [k for t, k in rss if t < down]
            during = [k for t, k in rss if down <= t <= up]
            after = [k for t, k in rss if t > up]
            rows.append(("Broker RSS before the outage (median) / peak during it / peak after, MiB",
                         " / ".join(fmt_num(x / 1024) if x else "—" for x in (
                             statistics.median(before) if before else None,
                             max(during) if during else None,
                             max(after) if after else None))))
        sb = mdown.get("herald_webhook_spool_bytes")
        if sb is not None:
            rows.append(("Spool on disk at the end of the outage", f"{sb / 1048576:.1f} MiB"))
        body.append("| | |")
        body.append("|---|---|")
        for k, v in rows:
            body.append(f"| {k} | {v} |")
        body.append("")
        ok = (lost_events == 0 and holes == 0 and order == 0 and load is not None
              and load["failed_clients"] == 0 and load["lost"] == 0)
        aims.append(f"- Outage: zero events lost, all delivered, per-client order kept, every MQTT "
                    f"client connected — {'**met**' if ok else '**not met**'}.")

    load_note = (f"1-minute load average before each run {min(loads):.1f}–{max(loads):.1f}"
                 if loads else "load not recorded") + \
        f" (start {env.get('loadavg_start', '?')}, end {env.get('loadavg_end', '?')})."
    lines.append(f"- Date: {env.get('date_utc', '?')}; {env.get('rounds')} round(s) for parts 1 "
                 f"and 2 (variants interleaved), one outage run; total "
                 f"{int(env.get('elapsed_s', 0)) // 60} min.")
    lines.append(f"- Herald: commit `{env.get('commit', '?')}`"
                 + (" (with uncommitted changes)" if env.get("dirty", "0") != "0" else "")
                 + f"; broker with `HERALD_MQTT__MAX_QUEUED_MESSAGES=1000000 "
                 f"HERALD_MQTT__MAX_INFLIGHT={env.get('herald_inflight')}`; spool on "
                 f"{env.get('disk', '?')}.")
    lines.append(machine(env, load_note).rstrip())
    lines.append("- RMQTT's web-hook (the peer to beat in issue 6) is not installed here, so there "
                 "is no side-by-side figure; the issue's RMQTT numbers (24,500 events/s, broker "
                 "at 22% of its no-hook throughput) come from another run and are not comparable "
                 "as ratios.")
    lines.append("")
    lines.extend(body)
    lines.append("### Against the aims of issue 6\n")
    lines.extend(aims)
    lines.append("")
    lines.append("### How it was run\n")
    lines.append("```sh")
    lines.append(f"bash bench/webhook.sh   # BENCH_ROUNDS={env.get('rounds')} "
                 f"BENCH_DURATION={env.get('duration')} BENCH_OUTAGE_LOAD={env.get('outage_load')} "
                 f"BENCH_OUTAGE={env.get('outage')}")
    lines.append("```\n")
    lines.append("WebHook configuration (one event per request; the batched runs add "
                 "`web.hook.batch.size = 100`):\n")
    lines.append("```")
    lines.append((out / "webhook-single.conf").read_text().rstrip())
    lines.append("```\n")
    lines.append("Broker, load and sink:\n")
    lines.append("```sh")
    lines.append("HERALD_MQTT__MAX_QUEUED_MESSAGES=1000000 HERALD_MQTT__MAX_INFLIGHT="
                 f"{env.get('herald_inflight')} HERALD_SYS__INTERVAL=0 "
                 "HERALD_METRICS__BIND=127.0.0.1:18843 herald --listen 127.0.0.1:18841 "
                 "--data-dir <tmp> --webhook-conf webhook.conf")
    for p in [out / "throughput" / "round-1" / "single.cmd",
              out / "neverblocks" / "round-1" / "fixed-fast.cmd", out / "outage" / "cmd"]:
        if p.exists():
            lines.append(p.read_text().strip())
    lines.append("herald-bench sink --bind 127.0.0.1:18842 [--delay 2000 | --hang]")
    lines.append("```")
    splice(target, "webhook", "\n".join(lines))
