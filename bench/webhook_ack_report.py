"""The "webhook-ack" section of BENCHMARKS.md: part 5 of bench/webhook.sh,
what "acknowledged means spooled" (issue 12) costs a QoS 1 publisher.
Called by bench/report.py, which passes its helpers."""

from pathlib import Path

VARIANTS = [
    ("off", "WebHook off"),
    ("on", "on, `message.publish` hooked, disk spool, `fsync = interval` (default)"),
    ("always", "on, likewise, `fsync = always`"),
]


def render(out, target, read_env, load_json, read_meta, med, fmt_num, fmt_cell, ratio,
           fmt_ratio, splice, machine):
    env = read_env(out / "env.txt")
    warm = float(env.get("warmup", 1))
    dur = float(env.get("duration", 6))
    pubs = env.get("publishers", "?")
    rate = int(env.get("rate", 5000))
    base = out / "ackcost"
    loads = []
    res = {}
    rounds = sorted(base.glob("round-*"), key=lambda p: int(p.name.split("-")[1]))
    for kind in ("fixed", "flat"):
        for v, _ in VARIANTS:
            name = f"{kind}-{v}"
            res[name] = []
            for rd in rounds:
                meta = read_meta(rd / f"{name}.meta")
                if meta.get("load1"):
                    loads.append(float(meta["load1"]))
                j = load_json(rd / f"{name}.json")
                res[name].append(j if meta.get("rc") == "0" else None)

    def vals(name, f):
        xs = []
        for r in res[name]:
            try:
                xs.append(f(r))
            except Exception:
                xs.append(None)
        return xs

    ack = lambda k: (lambda r: r["ack_latency_us"][k])  # noqa: E731
    e2e = lambda k: (lambda r: r["latency_us"][k])  # noqa: E731
    sent = lambda r: r["send_rate"]  # noqa: E731
    recv = lambda r: r["recv_rate"]  # noqa: E731
    bad = lambda r: r["rejected"] + r["unacked"]  # noqa: E731

    lines = ["## WebHook: what \"acknowledged means spooled\" costs (`bench/webhook.sh`, part 5)\n"]
    load_note = (f"1-minute load average before each run {min(loads):.1f}–{max(loads):.1f} "
                 f"(start {env.get('loadavg_start', '?')}, end {env.get('loadavg_end', '?')})."
                 if loads else "load average not recorded.")
    lines.append(f"- Date: {env.get('date_utc', '?')}; {len(rounds)} round(s), the six "
                 f"cases interleaved in each (fixed: off, on, always; flat: off, on, always).")
    dirty = env.get("dirty", "0")
    lines.append(f"- Herald: commit `{env.get('commit', '?')}`"
                 f"{' (with uncommitted changes)' if dirty not in ('', '0') else ''}; "
                 f"spool on {env.get('disk', '?')}.")
    lines.append(machine(env, load_note))
    lines.append(
        f"A QoS 1 PUBLISH whose `message.publish` event matches a rule gets its PUBACK only "
        f"once the event's record is written to the spool (with `fsync = always`: written "
        f"and fsynced), by group commit. MQTT fan-in {pubs} → 1, QoS 1, 64 B, "
        f"inflight window 64 per publisher, {dur:g} s after a {warm:g} s warm-up; the "
        f"WebHook posts to `herald-bench sink` (one event per request). *PUBACK latency* is "
        f"the publisher's: PUBLISH written to its socket → PUBACK read "
        f"(`herald-bench --ack-latency`); *end to end* is publish → delivered to the "
        f"subscriber.\n")
    lines.append("| Variant | PUBACK p50 at "
                 f"{rate:,}/s, µs | PUBACK p99, µs | p99 ÷ off | end-to-end p50 / p99, µs | "
                 "flat out, published msg/s | ÷ off | flat out, delivered msg/s | "
                 "flat-out PUBACK p50 / p99, µs | refused + unacknowledged (all runs) |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    off_p99 = med(vals("fixed-off", ack("p99")))
    off_sent = med(vals("flat-off", sent))
    ratios = {}
    for v, label in VARIANTS:
        fx, fl = f"fixed-{v}", f"flat-{v}"
        p99 = med(vals(fx, ack("p99")))
        thr = med(vals(fl, sent))
        ratios[v] = (ratio(p99, off_p99), ratio(thr, off_sent))
        problems = sum(x for x in vals(fx, bad) + vals(fl, bad) if x is not None)
        lines.append(
            f"| {label} | {fmt_cell(vals(fx, ack('p50')))} | {fmt_cell(vals(fx, ack('p99')))} | "
            f"{fmt_ratio(ratios[v][0])} | "
            f"{fmt_num(med(vals(fx, e2e('p50'))))} / {fmt_num(med(vals(fx, e2e('p99'))))} | "
            f"{fmt_cell(vals(fl, sent))} | {fmt_ratio(ratios[v][1])} | "
            f"{fmt_cell(vals(fl, recv))} | "
            f"{fmt_num(med(vals(fl, ack('p50'))))} / {fmt_num(med(vals(fl, ack('p99'))))} | "
            f"{problems:,} |")
    lines.append("")
    lines.append("*Delivered* is what the subscriber received; flat out, the publishers outrun "
                 "one subscriber and the broker drops the excess at its queue (1,000,000 "
                 "messages; part 1 explains it), which is not counted here. *Refused + "
                 "unacknowledged* counts PUBACKs with an error reason and messages never "
                 "acknowledged.\n")
    lines.append("Medians of the rounds, range in brackets. Per round, PUBACK p99 at "
                 f"{rate:,}/s (off / on / always, µs) and flat-out published msg/s:\n")
    lines.append("| Round | p99 off | p99 on | p99 always | flat off | flat on | flat always |")
    lines.append("|---|---|---|---|---|---|---|")
    for i, rd in enumerate(rounds):
        def one(name, f):
            try:
                return fmt_num(f(res[name][i]))
            except Exception:
                return "failed"
        lines.append(f"| {rd.name.split('-')[1]} | " + " | ".join(
            [one(f"fixed-{v}", ack("p99")) for v, _ in VARIANTS]
            + [one(f"flat-{v}", sent) for v, _ in VARIANTS]) + " |")
    lines.append("")
    lines.append("```sh")
    lines.append(f"BENCH_PARTS=ackcost bash bench/webhook.sh   # BENCH_ROUNDS={env.get('rounds')} "
                 f"BENCH_DURATION={env.get('duration')}")
    lines.append(f"herald-bench fan-in -c {pubs} --qos 1 -d {dur:g} -q --total-rate {rate} "
                 f"--warmup {warm:g} --ack-latency --port 18841")
    lines.append(f"herald-bench fan-in -c {pubs} --qos 1 -d {dur:g} -q --warmup {warm:g} "
                 "--ack-latency --port 18841")
    lines.append("herald-bench sink --bind 127.0.0.1:18842 -q")
    lines.append("```")
    lines.append("")
    lines.append("The WebHook configuration is part 1's (below in the WebHook section), "
                 "with `web.hook.spool.fsync = always` for the third variant.")
    splice(target, "webhook-ack", "\n".join(lines))
