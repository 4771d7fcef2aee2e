#!/usr/bin/env bash
# Does the Iceberg sink keep up with a sustained produce rate? (issue 15)
#
#   ZOMBI_BIN=/path/to/zombi benches/sink_sustained.sh [--mb-per-s 50] [--seconds 60] [--drain-max 300]
#       [ZOMBI FLAGS...]
#
# Starts zombi with its defaults (plus any flags given), creates a 4-partition topic and produces
# 1 KiB records with librdkafka's rdkafka_performance at --mb-per-s MB/s (acks=all, linger.ms=5)
# for --seconds. Every second it samples the records the sink has not committed yet
# (`zombi_iceberg_records_lag`, summed over partitions). Prints the produce rate reached and its
# delivery latency (p50/p99), the largest lag and the lag when producing stopped, then how long
# the sink took to commit the rest (at most --drain-max seconds), and the peak RSS.
# Keeping up means: the produce rate is reached and the lag stays within about one commit
# interval's worth of records (`--iceberg-commit-interval-ms`, 60 s by default) instead of growing.
# Same prerequisites as benches/rdkafka_perf.sh (benches/perf_lib.sh); a benchmark: quiet
# machine only.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$ROOT/compat/suites/lib.sh"
require_zombi_bin
MBPS=50
SECONDS_RUN=60
DRAIN_MAX=300
FLAGS=()
while [ $# -gt 0 ]; do
    case $1 in
    --mb-per-s) MBPS=$2; shift 2 ;;
    --seconds) SECONDS_RUN=$2; shift 2 ;;
    --drain-max) DRAIN_MAX=$2; shift 2 ;;
    *) FLAGS+=("$1"); shift ;;
    esac
done
. "$HERE/perf_lib.sh"
rkp_build
trap zombi_stop EXIT
zombi_start "${FLAGS[@]}" 2>/dev/null
HTTP=$(sed -nE 's/^zombi listening kafka=[^ ]+ http=([^ ]+).*/\1/p' "$ZOMBI_WORK/stdout" | head -n 1)
create_topic "$ZOMBI_BOOTSTRAP" sustained
lag() {
    # -1 when /metrics has no lag at all (the sink is off, or the request failed).
    curl -s "http://$HTTP/metrics" | awk '/^zombi_iceberg_records_lag\{/ {s += $2; n++} END {print n ? s : -1}'
}
RATE=$((MBPS * 1024))    # records of 1 KiB per second
LAT=$(mktemp)
SAMPLES=$(mktemp)
"$RKP" -P -t sustained -b "$ZOMBI_BOOTSTRAP" -s 1024 -c $((RATE * SECONDS_RUN)) -r "$RATE" -a -1 \
    -X linger.ms=5 -l -A "$LAT" -q >"$SAMPLES.prod" 2>&1 &
PROD=$!
while kill -0 "$PROD" 2>/dev/null; do
    echo "$(lag)" >>"$SAMPLES"
    sleep 1
done
wait "$PROD" || true
AT_END=$(lag)
DRAIN=0
while [ "$(lag)" -gt 0 ] && [ "$DRAIN" -lt "$DRAIN_MAX" ]; do
    sleep 1
    DRAIN=$((DRAIN + 1))
done
LEFT=$(lag)
RSS=$(peak_rss_mib "$ZOMBI_PID")
"$PY" - "$SAMPLES" "$SAMPLES.prod" "$LAT" "$AT_END" "$DRAIN" "$LEFT" "$RSS" "$MBPS" "$SECONDS_RUN" "$(zombi_identity)" "${FLAGS[*]:-}" <<'PY'
import re, sys
samples, prod, lat, at_end, drain, left, rss, mbps, secs, ident, flags = sys.argv[1:12]
lags = [int(x) for x in open(samples).read().split()]
line = next((l for l in open(prod) if "messages produced" in l), "")
m = re.search(r"in (\d+)ms: \d+ msgs/s and ([\d.]+) MB/s", line)
us = sorted(int(x) for x in open(lat).read().split())
pct = lambda p: us[min(len(us) - 1, int(len(us) * p))] / 1000.0 if us else float("nan")
print("sink_sustained: zombi %s %s; target %s MB/s for %s s" % (ident, flags or "(defaults)", mbps, secs))
print("produce: %s MB/s over %s s, %d delivered, latency p50 %.1f / p99 %.1f / p99.9 %.1f ms" % (
    m.group(2) if m else "?", int(m.group(1)) / 1000 if m else "?", len(us), pct(.5), pct(.99), pct(.999)))
if left == "-1":
    print("sink lag: no zombi_iceberg_records_lag in /metrics (is the sink off?)")
else:
    print("sink lag (records not yet in the table): max %d, when producing stopped %s; all committed %s s later%s" % (
        max(lags or [0]), at_end, drain, "" if left == "0" else " (NOT drained: %s left)" % left))
print("peak RSS %s MiB" % rss)
PY
rm -f "$LAT" "$SAMPLES" "$SAMPLES.prod"
