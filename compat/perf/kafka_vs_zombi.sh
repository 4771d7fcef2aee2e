#!/usr/bin/env bash
# zombi and Apache Kafka 4.4.0 side by side on this machine, measured with Kafka's own perf tools
# (ProducerPerformance, ConsumerPerformance): 1 KiB records, acks=all, 1 and 16 partitions,
# alternating runs (kafka, zombi, kafka, zombi, ...), each broker fresh for each run.
#
#   ZOMBI_BIN=/path/to/zombi compat/perf/kafka_vs_zombi.sh [--rounds N] [--records N] [--rate R] [--durability periodic|fsync]
#
# Per run and broker: produce throughput (records/s, MB/s) for --records records as fast as the
# producer goes; consume throughput (MB/s) of the same records; produce latency (p50/p99/p99.9)
# at --rate records/s for --records records; the broker's peak RSS (VmHWM). Like with like:
# Kafka does not fsync by default, so zombi runs with --durability periodic (default here);
# --durability fsync runs zombi with an fsync per group commit and Kafka with flush.messages=1.
# Prints one line per run and a table of medians and ranges (min-max); writes the raw numbers to
# $ZOMBI_CACHE/perf/kafka_vs_zombi-<time>.json.
#
# A benchmark: run it on a quiet machine only, and say what else ran. Both brokers and the perf
# tools run on 127.0.0.1; the tools get -Xmx512m, Kafka -Xmx1g (KAFKA_HEAP overrides).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
COMPAT=$(cd "$HERE/.." && pwd)
. "$COMPAT/kafka/lib.sh"
. "$COMPAT/suites/lib.sh"
require_zombi_bin
ROUNDS=3
RECORDS=500000
RATE=10000
DURABILITY=periodic
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --records) RECORDS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --durability) DURABILITY=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
export KAFKA_HEAP=${KAFKA_HEAP:--Xmx1g -Xms1g}
kafka_install
OUT=$CACHE/perf
mkdir -p "$OUT"
RAW=$OUT/kafka_vs_zombi-$(date -u +%Y%m%dT%H%M%SZ).jsonl
: >"$RAW"
trap 'kafka_stop; zombi_stop' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

perf_java() {
    java -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_HERE/log4j2-tools.properties" -cp "$KAFKA_LIB/*" "$@"
}
peak_rss_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

one_run() {    # one_run BROKER PARTITIONS ROUND
    local broker=$1 parts=$2 round=$3 b pid topic=perf-$2 out lat cons
    if [ "$broker" = kafka ]; then
        if [ "$DURABILITY" = fsync ]; then kafka_start flush.messages=1 >/dev/null; else kafka_start >/dev/null; fi
        b=$KAFKA_BOOTSTRAP
        pid=$KAFKA_PID
    else
        zombi_start --durability "$DURABILITY" 2>/dev/null
        b=$ZOMBI_BOOTSTRAP
        pid=$ZOMBI_PID
    fi
    perf_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$b" --create --topic "$topic" \
        --partitions "$parts" --replication-factor 1 >/dev/null
    out=$(perf_java org.apache.kafka.tools.ProducerPerformance --topic "$topic" --num-records "$RECORDS" \
        --record-size 1024 --throughput -1 --producer-props "bootstrap.servers=$b" acks=all \
        linger.ms=5 batch.size=131072 2>&1 | grep "^$RECORDS records sent")
    cons=$(perf_java org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$b" --topic "$topic" \
        --messages "$RECORDS" --timeout 60000 2>&1 | tail -n 1)
    perf_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$b" --create --topic "$topic-lat" \
        --partitions "$parts" --replication-factor 1 >/dev/null
    lat=$(perf_java org.apache.kafka.tools.ProducerPerformance --topic "$topic-lat" \
        --num-records "$RECORDS" --record-size 1024 --throughput "$RATE" \
        --producer-props "bootstrap.servers=$b" acks=all 2>&1 | grep "^$RECORDS records sent")
    local rss
    rss=$(peak_rss_kb "$pid")
    if [ "$broker" = kafka ]; then kafka_stop; else zombi_stop; fi
    python3 - "$broker" "$parts" "$round" "$out" "$cons" "$lat" "$rss" "$RAW" <<'PY'
import json, re, sys
broker, parts, rnd, out, cons, lat, rss, raw = sys.argv[1:9]
def nums(line):
    m = re.search(r"([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max "
                  r"latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th", line)
    return [float(x) for x in m.groups()] if m else None
p, l = nums(out), nums(lat)
c = [x.strip() for x in cons.split(",")]
rec = {"broker": broker, "partitions": int(parts), "round": int(rnd),
       "produce_records_s": p[0], "produce_mb_s": p[1],
       "consume_mb_s": float(c[3]) if len(c) > 4 else None,
       "consume_records": int(c[4]) if len(c) > 4 else None,
       "lat_p50_ms": l[4], "lat_p99_ms": l[6], "lat_p999_ms": l[7], "peak_rss_mb": int(rss) // 1024}
open(raw, "a").write(json.dumps(rec) + "\n")
print("%(broker)-5s p=%(partitions)-2d round %(round)d: produce %(produce_mb_s).1f MB/s "
      "(%(produce_records_s).0f rec/s), consume %(consume_mb_s).1f MB/s, latency at the fixed rate "
      "p50 %(lat_p50_ms).0f / p99 %(lat_p99_ms).0f / p99.9 %(lat_p999_ms).0f ms, peak RSS "
      "%(peak_rss_mb)d MB" % rec)
PY
}

echo "kafka_vs_zombi: $ROUNDS rounds, $RECORDS records of 1 KiB, acks=all, latency at $RATE records/s, durability $DURABILITY; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for parts in 1 16; do
    for round in $(seq 1 "$ROUNDS"); do
        one_run kafka "$parts" "$round"
        one_run zombi "$parts" "$round"
    done
done
python3 - "$RAW" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = [("produce_mb_s", "produce MB/s"), ("consume_mb_s", "consume MB/s"), ("lat_p50_ms", "p50 ms"),
        ("lat_p99_ms", "p99 ms"), ("lat_p999_ms", "p99.9 ms"), ("peak_rss_mb", "peak RSS MB")]
print("| partitions | broker | " + " | ".join(k[1] for k in keys) + " |")
print("|---:|---|" + "---:|" * len(keys))
for parts in (1, 16):
    for broker in ("kafka", "zombi"):
        rs = [r for r in rows if r["partitions"] == parts and r["broker"] == broker]
        if not rs:
            continue
        cells = []
        for k, _ in keys:
            v = [r[k] for r in rs if r[k] is not None]
            cells.append("%.1f (%.1f-%.1f)" % (statistics.median(v), min(v), max(v)) if v else "")
        print("| %d | %s | %s |" % (parts, broker, " | ".join(cells)))
print("raw: " + sys.argv[1])
PY
