#!/usr/bin/env bash
# The rdkafka crate's (rust-rdkafka 0.39.0) own integration tests against zombi.
#
#   ZOMBI_BIN=/path/to/zombi compat/suites/run_rdkafka.sh [BINARY::TEST...]
#
# Prepares (once, cached under ${ZOMBI_CACHE:-$HOME/.cache/zombi}/suites):
#   - the crate source from the cargo registry (fetched with `cargo fetch` if missing),
#     copied to suites/rdkafka-0.39.0, built with its own Cargo.lock into suites/rdkafka-target
#     (`cargo test --no-run`; the first build compiles librdkafka: ~10 min on 2 cores).
# Then starts zombi (--num-partitions 3, like the crate's docker-compose broker, and
# --group-initial-rebalance-delay-ms 0; on 127.0.0.1:9092 if that port is free, since two tests
# hard-code bootstrap.servers=localhost), runs every test of tests/*.rs one at a time
# (`--exact NAME --test-threads=1`, KAFKA_HOST=zombi, each under `timeout`), restarts zombi if it
# died, and writes compat/results/rdkafka.json. Arguments (optional) run only the tests with
# these exact names (e.g. test_admin::test_groups); SMOKE=1 does not write the JSON.
#
# Env: ZOMBI_BIN (required), ZOMBI_CACHE, RDKAFKA_TEST_TIMEOUT (s per test, default 180).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

suite_begin rdkafka 0.39.0
TEST_TIMEOUT=${RDKAFKA_TEST_TIMEOUT:-180}
SRC=$SUITES_DIR/rdkafka-$VERSION
TARGET=$SUITES_DIR/rdkafka-target

# ---------------------------------------------------------------- prepare (idempotent)
apt_install build-essential pkg-config zlib1g-dev python3
if [ ! -f "$SRC/.zombi-prepared" ]; then
    crate=$(cargo_crate_src rdkafka "$VERSION")
    rm -rf "$SRC"
    cp -r "$crate" "$SRC"
    touch "$SRC/.zombi-prepared"
fi
log "building rdkafka $VERSION tests (target $TARGET)"
BUILD_LOG=$SUITES_DIR/rdkafka-build.log
if ! (cd "$SRC" && CARGO_TARGET_DIR=$TARGET timeout 3600 cargo test --locked --no-run \
        --message-format=json-render-diagnostics >"$SUITES_DIR/rdkafka-build.json" 2>"$BUILD_LOG"); then
    tail -n 40 "$BUILD_LOG" >&2
    echo "rdkafka test build failed" >&2
    exit 1
fi
# test binaries of tests/*.rs: "name<TAB>path"
mapfile -t BINARIES < <(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        print(m["target"]["name"] + "\t" + m["executable"])
' "$SUITES_DIR/rdkafka-build.json" | sort)

# ---------------------------------------------------------------- run
suite_run_begin
ZOMBI_ARGS=(--num-partitions 3 --group-initial-rebalance-delay-ms 0)
# Two tests (test_high_producers::test_future_producer_send{,_fail}) ignore KAFKA_HOST and use
# bootstrap.servers=localhost, i.e. port 9092: listen there when it is free.
if [ -z "${ZOMBI_KAFKA_PORT:-}" ] && port_free 9092; then
    export ZOMBI_KAFKA_PORT=9092
fi
zombi_start "${ZOMBI_ARGS[@]}"
START=$(date +%s.%N)

wanted() {     # wanted NAME [SELECTED...]: no selection, or NAME is one of them (exact)
    [ $# -le 1 ] && return 0
    local name=$1 f
    shift
    for f in "$@"; do [ "$name" = "$f" ] && return 0; done
    return 1
}

for entry in "${BINARIES[@]}"; do
    bin_name=${entry%%$'\t'*}
    bin_path=${entry#*$'\t'}
    mapfile -t TESTS < <("$bin_path" --list 2>/dev/null | sed -n 's/: test$//p')
    mapfile -t IGNORED < <("$bin_path" --list --ignored 2>/dev/null | sed -n 's/: test$//p')
    for t in "${TESTS[@]}"; do
        name="$bin_name::$t"
        wanted "$name" "$@" || continue
        logf=$LOGDIR/${name//::/__}.log
        if printf '%s\n' "${IGNORED[@]}" | grep -qx -- "$t"; then
            echo "test marked #[ignore] in the crate" >"$logf"
            python3 "$SUITES_HERE/results.py" add "$JSONL" "$SUITE" "$name" skip 0 "$logf" generic
            log "SKIP $name (ignored)"
            continue
        fi
        zombi_alive || { log "zombi is not running; restarting it"; zombi_restart "${ZOMBI_ARGS[@]}"; }
        t0=$(date +%s.%N)
        set +e
        (cd "$SRC" && KAFKA_HOST=$ZOMBI_BOOTSTRAP RUST_BACKTRACE=0 RUST_LOG=${RUST_LOG:-off} \
            timeout -k 10 "$TEST_TIMEOUT" "$bin_path" --exact "$t" --test-threads=1) >"$logf" 2>&1
        rc=$?
        set -e
        secs=$(seconds_since "$t0")
        if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
            status=timeout
        elif [ $rc -eq 0 ] && grep -q "test result: ok. 1 passed" "$logf"; then
            status=pass
        elif [ $rc -eq 0 ] && grep -q "1 ignored" "$logf"; then
            status=skip
        else
            status=fail
        fi
        if ! zombi_alive; then
            echo "zombi died during this test" >>"$logf"
            status=fail
        fi
        python3 "$SUITES_HERE/results.py" add "$JSONL" "$SUITE" "$name" "$status" "$secs" "$logf" rdkafka
        log "$(tr a-z A-Z <<<"$status") $name (${secs%.*} s)"
    done
done
zombi_stop
SECS=$(seconds_since "$START")
suite_finish "$SECS" "zombi_args=${ZOMBI_ARGS[*]}" "kafka_listen=127.0.0.1:${ZOMBI_KAFKA_PORT:-random}" \
    "per_test_timeout_s=$TEST_TIMEOUT" "logs=$LOGDIR"
suite_summary
