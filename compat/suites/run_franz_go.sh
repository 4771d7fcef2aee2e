#!/usr/bin/env bash
# franz-go's own tests of pkg/kgo (github.com/twmb/franz-go v1.22.3) against zombi.
#
#   ZOMBI_BIN=/path/to/zombi compat/suites/run_franz_go.sh [TEST_NAME...]
#
# Prepares (once, cached under ${ZOMBI_CACHE:-$HOME/.cache/zombi}/suites):
#   - franz_go-1.22.3: the module's source from the Go module proxy (go mod download), copied so it
#     is writable, and its kgo test binary (`go test -c ./pkg/kgo`, about a minute on 2 cores).
# Then starts zombi (Kafka's defaults: group.initial.rebalance.delay.ms 3000) and runs every test
# of the binary one at a time (`kgo.test -test.run '^NAME$' -test.v`) under `timeout`, with
# KGO_SEEDS=zombi, KGO_TEST_RF=1 (one broker) and KGO_TEST_RECORDS (default here 50000, the
# package's own default 500000 being hours on 2 cores). zombi has a second listener,
# SASL_PLAINTEXT with a SCRAM user (`--bootstrap-admin`), which KGO_TEST_SCRAM_SEEDS and
# KGO_TEST_SCRAM (SCRAM-SHA-512) give franz-go's SCRAM tests. Many kgo tests are unit tests that never
# dial a broker: they are recorded like the others (the report's note says so). Writes
# compat/results/franz_go.json (not with SMOKE=1). Extra arguments pick tests by exact name.
#
# Env: ZOMBI_BIN (required), ZOMBI_CACHE, FRANZ_GO_TEST_TIMEOUT (s per test, default 300),
#      FRANZ_GO_RECORDS (default 50000).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

suite_begin franz_go 1.22.3
TEST_TIMEOUT=${FRANZ_GO_TEST_TIMEOUT:-300}
RECORDS=${FRANZ_GO_RECORDS:-50000}
SRC=$SUITES_DIR/franz_go-$VERSION
BIN=$SRC/kgo.test

command -v go >/dev/null || { echo "franz-go: needs the Go toolchain (go)" >&2; exit 2; }
if [ ! -f "$SRC/.zombi-built" ]; then
    log "downloading github.com/twmb/franz-go@v$VERSION from the Go module proxy"
    dir=$(cd "$(mktemp -d)" && timeout 900 go mod download -json "github.com/twmb/franz-go@v$VERSION" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    rm -rf "$SRC"
    cp -r "$dir" "$SRC"
    chmod -R u+w "$SRC"
    log "building the kgo test binary"
    (cd "$SRC" && GOFLAGS=-mod=mod timeout 1800 go test -c -o "$BIN" ./pkg/kgo) >"$SUITES_DIR/franz_go-build.log" 2>&1 ||
        { tail -n 30 "$SUITES_DIR/franz_go-build.log" >&2; echo "franz-go test build failed" >&2; exit 1; }
    touch "$SRC/.zombi-built"
fi
mapfile -t TESTS < <(cd "$SRC/pkg/kgo" && "$BIN" -test.list '.*' | grep -E '^(Test|Example)')

suite_run_begin
SCRAM_USER=kgo-admin
export ZOMBI_BOOTSTRAP_ADMIN_PASSWORD=kgo-admin-secret
ZOMBI_ARGS=(--listeners "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0" --bootstrap-admin "$SCRAM_USER")
# The SASL_PLAINTEXT listener's address, from the broker's `zombi listening … listeners=…` line.
scram_seeds() {
    grep -m1 '^zombi listening' "$ZOMBI_WORK/stdout" | sed -E 's/.*listeners=([^ ]+).*/\1/' | tr ',' '\n' |
        sed -n 's|^SASL_PLAINTEXT://||p'
}
zombi_start "${ZOMBI_ARGS[@]}"
START=$(date +%s.%N)
for t in "${TESTS[@]}"; do
    if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx -- "$t"; then continue; fi
    logf=$LOGDIR/$t.log
    zombi_alive || { log "zombi is not running; restarting it"; zombi_restart "${ZOMBI_ARGS[@]}"; }
    t0=$(date +%s.%N)
    set +e
    (cd "$SRC/pkg/kgo" && KGO_SEEDS=$ZOMBI_BOOTSTRAP KGO_TEST_RF=1 KGO_TEST_RECORDS=$RECORDS \
        KGO_TEST_SCRAM_SEEDS=$(scram_seeds) KGO_TEST_SCRAM="$SCRAM_USER:$ZOMBI_BOOTSTRAP_ADMIN_PASSWORD:512" \
        timeout -k 10 "$TEST_TIMEOUT" "$BIN" -test.run "^${t}\$" -test.v \
        -test.timeout "$((TEST_TIMEOUT - 5))s") >"$logf" 2>&1
    rc=$?
    set -e
    secs=$(seconds_since "$t0")
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        status=timeout
    elif grep -q "^--- SKIP: $t " "$logf"; then
        status=skip
    elif [ $rc -eq 0 ] && grep -qE "^(--- PASS: $t |ok|PASS$)" "$logf"; then
        status=pass
    else
        status=fail
    fi
    if ! zombi_alive; then
        echo "zombi died during this test" >>"$logf"
        status=fail
    fi
    python3 "$SUITES_HERE/results.py" add "$JSONL" "$SUITE" "$t" "$status" "$secs" "$logf" gotest
    log "$(tr a-z A-Z <<<"$status") $t (${secs%.*} s)"
done
zombi_stop
SECS=$(seconds_since "$START")
suite_finish "$SECS" "kgo_test_rf=1" "kgo_test_records=$RECORDS" "per_test_timeout_s=$TEST_TIMEOUT" \
    "zombi_args=${ZOMBI_ARGS[*]:-(defaults)}" "logs=$LOGDIR"
suite_summary
