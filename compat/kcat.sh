#!/usr/bin/env bash
# Byte-exact produce/consume round trips against a running Kafka-compatible
# broker (zombi) with Debian's kcat (librdkafka inside).
#
#   compat/kcat.sh BOOTSTRAP          e.g. compat/kcat.sh 127.0.0.1:9092
#
# For each compression codec (none gzip snappy lz4 zstd) it produces, to a fresh
# auto-created topic, partition 0:
#   a) 200 keyed records framed with -K '\x1f' -D '\x1e' (ASCII, UTF-8, binary
#      values holding every byte but 0x1e, empty values, ~25 KB values, NULL keys)
#   b) records carrying headers from -H (repeated keys, UTF-8, '=' in the value,
#      an empty value, a NULL value)
#   c) records produced with -Z (tombstones: NULL values, NULL keys)
#   d) one record per file (kcat's file mode: any byte, NUL included, 70 KB)
# then consumes the partition from the beginning and checks every record
# (dense offsets 0..N-1, order, key, value, NULL vs empty, headers in order,
# CreateTime inside the produce window) byte for byte. It also checks
# ListOffsets by timestamp (kcat -Q) and metadata (kcat -L).
# The data generator/verifier is compat/kcat_data.py (python3 stdlib only).
#
# Env: KCAT_TIMEOUT (seconds per kcat call, default 60),
#      ZOMBI_COMPAT_KEEP=1 keeps the work directory for inspection.
# Last line of output: "N passed, M failed". Exit status 1 if any failed.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 BOOTSTRAP" >&2
    exit 2
fi
BOOTSTRAP=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TIMEOUT=${KCAT_TIMEOUT:-60}
CODECS=(none gzip snappy lz4 zstd)

if ! command -v kcat >/dev/null 2>&1; then
    echo "kcat not found; installing it with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y kcat || { apt-get update && apt-get install -y kcat; }
fi
command -v python3 >/dev/null 2>&1 || { echo "python3 is required" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/zombi-kcat.XXXXXX")
cleanup() {
    if [ "${ZOMBI_COMPAT_KEEP:-0}" = 1 ]; then
        echo "kept work directory $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

RUN_ID="$(date +%s)-$$-$RANDOM"
DATA=$WORK/data
mkdir -p "$DATA"
N_RECORDS=$(python3 "$HERE/kcat_data.py" gen "$DATA")
FORMAT=$(python3 "$HERE/kcat_data.py" format)

mapfile -t B_HDRS <"$DATA/b.headers"
mapfile -t D_HDRS <"$DATA/d.headers"
B_HARGS=()
for h in "${B_HDRS[@]}"; do B_HARGS+=(-H "$h"); done
D_HARGS=()
for h in "${D_HDRS[@]}"; do D_HARGS+=(-H "$h"); done
D_KEY=$(cat "$DATA/d.key")
D_FILES=()
for ((i = 0; i < $(cat "$DATA/d.count"); i++)); do D_FILES+=("$DATA/d$i.bin"); done

echo "kcat compat: $(kcat -V 2>&1 | grep -m1 Version)"
echo "kcat compat: bootstrap $BOOTSTRAP, run id $RUN_ID, $N_RECORDS records per topic"

now_ms() { date +%s%3N; }

# kcat with a bounded run time and metadata timeout.
kc() { timeout "$TIMEOUT" kcat -b "$BOOTSTRAP" -m 15 "$@"; }

topic_for() { echo "zombi-compat-kcat-$RUN_ID-$1"; }

# Produce batches a..d (in that order, each kcat run waits for its deliveries).
produce_all() {
    local topic=$1 codec=$2
    local p=(-P -t "$topic" -p 0 -X "compression.codec=$codec"
             -X "message.timeout.ms=$((TIMEOUT * 1000 / 2))")
    kc "${p[@]}" -K '\x1f' -D '\x1e' <"$DATA/a.in" ||
        { echo "  kcat produce (batch a: keyed records) failed, exit $?"; return 1; }
    kc "${p[@]}" -K '\x1f' -D '\x1e' "${B_HARGS[@]}" <"$DATA/b.in" ||
        { echo "  kcat produce (batch b: headers) failed, exit $?"; return 1; }
    kc "${p[@]}" -K '\x1f' -D '\x1e' -Z <"$DATA/c.in" ||
        { echo "  kcat produce (batch c: NULL keys/values) failed, exit $?"; return 1; }
    kc "${p[@]}" -k "$D_KEY" "${D_HARGS[@]}" "${D_FILES[@]}" ||
        { echo "  kcat produce (batch d: one record per file) failed, exit $?"; return 1; }
}

test_roundtrip() {
    local codec=$1 topic t0 t1 out
    topic=$(topic_for "$codec")
    out=$WORK/$codec.out
    t0=$(now_ms)
    produce_all "$topic" "$codec" || return 1
    t1=$(now_ms)
    if ! kc -C -t "$topic" -p 0 -o beginning -e -q -f "$FORMAT" >"$out"; then
        echo "  kcat consume failed or did not reach end of partition within ${TIMEOUT}s"
        echo "  ($(wc -c <"$out") bytes consumed before that)"
        return 1
    fi
    python3 "$HERE/kcat_data.py" verify "$DATA" "$out" "$t0" "$t1" "$WORK/$codec.query" ||
        { echo "  topic $topic: consumed records differ from produced ones"; return 1; }
}

# ListOffsets by timestamp: first offset whose timestamp >= T, -1 past the end.
test_query() {
    local codec=$1 topic q="$WORK/$1.query" ts want got line rc=0
    topic=$(topic_for "$codec")
    if [ ! -s "$q" ]; then
        echo "  no verified records for codec $codec (round trip failed), nothing to query"
        return 1
    fi
    while read -r ts want; do
        if ! line=$(kc -Q -t "$topic:0:$ts" 2>&1); then
            echo "  kcat -Q -t $topic:0:$ts failed: $line"
            rc=1
            continue
        fi
        got=$(printf '%s\n' "$line" | sed -n 's/.*\[0\] offset \(-\{0,1\}[0-9][0-9]*\).*/\1/p' | head -n1)
        if [ "$got" != "$want" ]; then
            echo "  offset for timestamp $ts: got '${got:-?}' (kcat said: $line), expected $want"
            rc=1
        fi
    done <"$q"
    return "$rc"
}

test_metadata() {
    local topic out
    topic=$(topic_for none)
    if ! out=$(kc -L -t "$topic" 2>&1); then
        echo "  kcat -L failed: $out"
        return 1
    fi
    if ! grep -q "topic \"$topic\" with [1-9][0-9]* partitions:" <<<"$out"; then
        echo "  topic $topic missing from metadata:"
        sed 's/^/    /' <<<"$out"
        return 1
    fi
    if ! grep -Eq "partition 0, leader [0-9]+," <<<"$out"; then
        echo "  partition 0 of $topic has no leader in metadata:"
        sed 's/^/    /' <<<"$out"
        return 1
    fi
    if grep -qi "error" <<<"$out"; then
        echo "  metadata reports an error:"
        sed 's/^/    /' <<<"$out"
        return 1
    fi
}

PASSED=0
FAILED=0
N_TESTS=$((2 * ${#CODECS[@]} + 1))

# Fail fast (every test counted failed) when the broker does not answer metadata.
if ! preflight=$(timeout 30 kcat -b "$BOOTSTRAP" -m 10 -L 2>&1); then
    echo "kcat compat: broker at $BOOTSTRAP does not answer a metadata request:"
    printf '%s\n' "$preflight" | tail -n 5 | sed 's/^/  /'
    echo "0 passed, $N_TESTS failed"
    exit 1
fi

FAILED_NAMES=()
# Runs a test in a subshell with errexit active, so an unexpected failing
# command fails that test instead of the whole script.
run_test() {
    local name=$1 rc start
    shift
    start=$(now_ms)
    set +e
    (set -e; "$@")
    rc=$?
    set -e
    if [ "$rc" -eq 0 ]; then
        PASSED=$((PASSED + 1))
        echo "PASS $name ($(($(now_ms) - start)) ms)"
    else
        FAILED=$((FAILED + 1))
        FAILED_NAMES+=("$name")
        echo "FAIL $name"
    fi
}

for codec in "${CODECS[@]}"; do
    run_test "kcat roundtrip codec=$codec" test_roundtrip "$codec"
    run_test "kcat offsets-for-times codec=$codec" test_query "$codec"
done
run_test "kcat metadata" test_metadata

if [ "$FAILED" -gt 0 ]; then
    echo "kcat compat: failed: ${FAILED_NAMES[*]}"
fi
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
