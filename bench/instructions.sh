#!/usr/bin/env bash
# Instructions per call of each criterion bench's function, two builds side
# by side, counted by callgrind (deterministic: independent of the machine's
# load, for machines without hardware counters). Issue 11's no-regression
# check; BENCHMARKS.md "Instructions per call".
#
#   bash bench/instructions.sh BODY_OLD BODY_NEW ROUTER_OLD ROUTER_NEW CODEC_OLD CODEC_NEW
#
# Each argument is a bench executable (`cargo bench --no-run` prints their
# paths: herald-webhook's `body`, herald-broker's `router`, herald-codec's
# `codec`), e.g. one built from `git archive <commit>` and one from main.
# Needs valgrind (callgrind, callgrind_annotate).
set -euo pipefail
[[ $# -eq 6 ]] || { sed -n 2,12p "$0"; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# count NAME OLD NEW FILTER FUNCTION: prints instructions per call of FUNCTION
# while the bench FILTER runs for one second, for both executables.
count() {
  local per=()
  for bin in "$2" "$3"; do
    local out="$WORK/cg"
    CRITERION_HOME="$WORK/criterion" valgrind --tool=callgrind --callgrind-out-file="$out" \
      "$bin" --bench --profile-time 1 "$4" >/dev/null 2>&1
    per+=("$(callgrind_annotate --inclusive=yes "$out" 2>/dev/null | python3 -c '
import re, sys
best = None
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+) .*=> .*" + sys.argv[1] + r" \(([\d,]+)x\)", line)
    if m:
        ir, calls = (int(g.replace(",", "")) for g in m.groups())
        if best is None or calls > best[1]:
            best = (ir, calls)
print(f"{best[0] / best[1]:.0f}" if best else "?")
' "$5")")
  done
  printf '%-48s %8s %8s\n' "$1" "${per[0]}" "${per[1]}"
}

printf '%-48s %8s %8s\n' benchmark old new
for n in publish_v4.0_plain publish_v4.0_plain_binary publish_v4.4_base64 publish_v4.0_base62 client_connack_v4.0; do
  count "body $n" "$1" "$2" "^webhook_body/$n\$" "BodyBuilder::write"
done
for n in match_exact_and_wildcards match_nothing; do
  count "trie $n" "$3" "$4" "^trie_100k/$n\$" "for_each_match"
done
for g in publish_64B_qos1_v3.1.1 publish_1KiB_qos1_v3.1.1 connect_v5_props_will; do
  count "codec $g decode" "$5" "$6" "^$g/decode" "herald_codec::.*decode[a-z_]*"
  count "codec $g encode" "$5" "$6" "^$g/encode" "Packet.*encode"
done
