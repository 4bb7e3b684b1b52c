#!/usr/bin/env python3
"""The "auth" section of BENCHMARKS.md from the raw results of bench/auth.sh
(issue 14: connect rate with a password file and with HTTP auth against
mosquitto; publish throughput with a 1,000-rule ACL on vs off).

    python3 bench/auth_report.py target/bench/auth-<date> BENCHMARKS.md
    (a last argument of "-" prints the section instead)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import (fmt_cell, fmt_ratio, load_json, machine, med,  # noqa: E402
                    read_env, read_meta, ratio, splice)

CONN = ["herald-open", "herald-passwd", "herald-http", "mosquitto-open", "mosquitto-passwd"]
ACL = ["herald-acl-off", "herald-acl-on", "mosquitto-acl-off", "mosquitto-acl-on"]
ACL_AIM = 0.90


def render(outdir, target):
    out = Path(outdir)
    env = read_env(out / "env.txt")
    rounds = sorted(p for p in out.glob("round-*") if p.is_dir())
    loads = []

    def vals(kind, broker, field, ok=lambda j: True):
        xs = []
        for rd in rounds:
            meta = read_meta(rd / f"{kind}.{broker}.meta")
            if meta.get("load1"):
                loads.append(float(meta["load1"]))
            j = load_json(rd / f"{kind}.{broker}.json")
            if j is None or meta.get("rc") != "0" or not ok(j):
                xs.append(None)
                continue
            xs.append(field(j, meta))
        return xs

    def cpu_per_msg(j, m):
        if not m.get("cpu_ticks") or not j.get("received"):
            return None
        return float(m["cpu_ticks"]) / float(m.get("clk_tck") or 100) * 1e6 / j["received"]

    def conn_ok(j):
        return j.get("failed") == 0 and j.get("connected") == j.get("requested")

    def load_ok(j):
        return not j.get("errors") and j.get("failed_clients", 0) == 0

    rate = {b: vals("conn", b, lambda j, m: j["connect_rate"], conn_ok) for b in CONN}
    p99 = {b: vals("conn", b, lambda j, m: (j.get("handshake_us") or {}).get("p99"), conn_ok)
           for b in CONN}
    recv = {(s, b): vals(s, b, lambda j, m: j["recv_rate"], load_ok)
            for s in ("fanin-q0", "pairs-q1") for b in ACL}
    lost = {(s, b): vals(s, b, lambda j, m: 100.0 * j["lost"] / j["expected"] if j["expected"] else None,
                         load_ok)
            for s in ("fanin-q0", "pairs-q1") for b in ACL}
    cpu = {(s, b): vals(s, b, cpu_per_msg, load_ok)
           for s in ("fanin-q0", "pairs-q1") for b in ACL}

    t = "## Access control (`bench/auth.sh`, issue 14)\n\n"
    t += (f"- Date: {env.get('date_utc', '?')}; {len(rounds)} round(s), brokers interleaved "
          f"within each round, a fresh broker per figure.\n")
    t += f"- Herald: commit `{env.get('commit', '?')}`, `{env.get('herald_version', '?')}`.\n"
    t += f"- Peers: {env.get('mosquitto_version', '?')}; auth service {env.get('nginx_version', '?')}.\n"
    load_note = (f"1-minute load average before each run {min(loads):.1f}–{max(loads):.1f} "
                 f"(start {env.get('loadavg_start', '?')}, end {env.get('loadavg_end', '?')})."
                 if loads else "load average not recorded.")
    t += machine(env, load_note)
    t += ("- Load generator and broker share the two cores; all clients MQTT 3.1.1 on "
          "127.0.0.1.\n\n")

    t += "### Connect rate (CONNECT → CONNACK)\n\n"
    t += (f"`herald-bench conn -c {env.get('conns', '?')} --concurrency 100`, every CONNECT "
          "with the same user name and password. The password file was made by Debian's "
          f"`mosquitto_passwd` ({Path(out / 'passwd-entries').read_text().strip() if (out / 'passwd-entries').exists() else '?'} "
          "`$7$` PBKDF2-SHA512 entries); the HTTP source is an EMQX 4.3 "
          "`emqx_auth_http.conf` whose `auth_req` is a GET to a local nginx that answers "
          "200 for the right password and 403 otherwise.\n\n")
    t += "| Broker | Authentication | connect rate, conn/s ↑ | handshake p99, µs ↓ |\n|---|---|---|---|\n"
    label = {
        "herald-open": ("Herald", "none (`allow_anonymous = true`)"),
        "herald-passwd": ("Herald", "`auth.password_file`"),
        "herald-http": ("Herald", "`auth.http_conf` (nginx)"),
        "mosquitto-open": ("mosquitto", "none (`allow_anonymous true`)"),
        "mosquitto-passwd": ("mosquitto", "`password_file`, the same file"),
    }
    for b in CONN:
        t += f"| {label[b][0]} | {label[b][1]} | {fmt_cell(rate[b])} | {fmt_cell(p99[b])} |\n"
    hp, mp, ho, hh = (med(rate["herald-passwd"]), med(rate["mosquitto-passwd"]),
                      med(rate["herald-open"]), med(rate["herald-http"]))
    t += "\n"
    t += f"- Herald with the password file ÷ mosquitto with the same file: {fmt_ratio(ratio(hp, mp))}.\n"
    t += f"- Herald with the password file ÷ Herald without authentication: {fmt_ratio(ratio(hp, ho))}.\n"
    t += f"- Herald with HTTP auth ÷ Herald without authentication: {fmt_ratio(ratio(hh, ho))}.\n"
    t += (f"- mosquitto with the password file ÷ mosquitto without: "
          f"{fmt_ratio(ratio(mp, med(rate['mosquitto-open'])))}.\n\n")

    t += "### Publish throughput with a 1,000-rule ACL\n\n"
    t += ("The ACL file (mosquitto format, read by both brokers) holds 1,000 rules that all "
          "apply to the bench clients (user `bench`): 100 `pattern deny` rules, the user's "
          "section of 499 grants that match nothing, 399 `pattern readwrite site<n>/%u/%c/#` "
          "rules, and last `pattern readwrite herald-bench/#`, the one that grants the bench "
          "topics. Each client's first check of a topic walks all of them; later checks of "
          "the same topic are answered from the client's cache.\n\n")
    t += ("| Scenario | Broker | ACL off, msg/s delivered ↑ | ACL on, msg/s delivered ↑ | "
          "on ÷ off | broker CPU per delivered message, µs (off / on) ↓ | lost, % (off / on) |\n"
          "|---|---|---|---|---|---|---|\n")
    verdicts = []
    names = {"fanin-q0": "Fan-in 2 → 1, QoS 0, flat out (`fan-in --qos 0 -c 2`)",
             "pairs-q1": "100 pairs, QoS 1, flat out (`pairs --qos 1 -c 100`)"}
    for s in ("fanin-q0", "pairs-q1"):
        for broker, off, on in (("Herald", "herald-acl-off", "herald-acl-on"),
                                ("mosquitto", "mosquitto-acl-off", "mosquitto-acl-on")):
            r = ratio(med(recv[(s, on)]), med(recv[(s, off)]))
            c = ratio(med(cpu[(s, off)]), med(cpu[(s, on)]))
            t += (f"| {names[s]} | {broker} | {fmt_cell(recv[(s, off)])} | {fmt_cell(recv[(s, on)])} "
                  f"| {fmt_ratio(r)} | {fmt_cell(cpu[(s, off)])} / {fmt_cell(cpu[(s, on)])} "
                  f"| {fmt_cell(lost[(s, off)])} / {fmt_cell(lost[(s, on)])} |\n")
            if broker == "Herald":
                verdicts.append((names[s], r, c))
    t += "\n"
    for name, r, c in verdicts:
        met = r is not None and r >= ACL_AIM
        t += (f"- Aim of issue 14, ACL on ≥ 90 % of off, {name}: "
              f"{'—' if r is None else f'{100 * r:.0f} %'} of the throughput — "
              f"**{'met' if met else 'not met'}**; messages per second of broker CPU, on ÷ off: "
              f"{'—' if c is None else f'{100 * c:.0f} %'}.\n")
    t += ("\nOn a busy machine throughput moves by tens of percent between rounds (see the "
          "ranges; an ACL run faster than its ACL-free twin is that noise); the broker's CPU "
          "time per delivered message is the steadier measure of what the rules cost.\n")
    t += ("\nRatios are medians ÷ medians of the same run. Within a round the brokers run "
          "one after another (A B C …), so background load hits each alike; the range "
          "(min–max) over rounds is beside each median.\n\n")
    t += "### How it was run\n\n```sh\nBENCH_LOCK=/work/bench.lock bash bench/auth.sh   # "
    t += (f"BENCH_ROUNDS={env.get('rounds', '?')} BENCH_CONNS={env.get('conns', '?')} "
          f"BENCH_DURATION={env.get('duration', '?')}\n```\n")
    t += ("\nThe files (password file, `emqx_auth_http.conf`, ACL, nginx and mosquitto "
          "configuration) are written by the script; raw JSON stays in `target/bench/auth-*/`.\n")
    splice(target, "auth", t)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    render(sys.argv[1], sys.argv[2])
