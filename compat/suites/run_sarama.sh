#!/usr/bin/env bash
# Sarama's own functional tests (github.com/IBM/sarama v1.61.1, build tag `functional`) against
# zombi.
#
#   ZOMBI_BIN=/path/to/zombi compat/suites/run_sarama.sh [TEST_NAME...]
#
# Sarama's functional tests expect a toxiproxy server (TOXIPROXY_ADDR) with proxies kafka1..kafka5
# listening on 127.0.0.1:29091-29095 in front of a 5-broker cluster, and create their seed topics
# with replication factor 3. Prepared once, cached under ${ZOMBI_CACHE:-$HOME/.cache/zombi}/suites:
#   - gobin/toxiproxy-server: toxiproxy v2.5.0's server from the Go module proxy (go install);
#   - sarama-1.61.1: the module's source from the Go module proxy, made writable, with the seed
#     topics' replication factor set to 1 (one broker) in functional_test.go, and its test binary
#     (`go test -c -tags functional`).
# Then starts zombi with the broker settings of Sarama's docker-compose.yml
# (auto.create.topics.enable=false, group.initial.rebalance.delay.ms=0) and toxiproxy (127.0.0.1:8474 or a free port) with the five proxies all in
# front of zombi (one broker reached through five addresses, advertised as the first proxy's),
# and runs each test alone (`sarama.test -test.run '^NAME$' -test.v`) with KAFKA_VERSION=4.1.0
# (the version whose protocol zombi mirrors) under `timeout`. Writes compat/results/sarama.json
# (not with SMOKE=1). Extra arguments pick tests by exact name.
#
# Env: ZOMBI_BIN (required), ZOMBI_CACHE, SARAMA_TEST_TIMEOUT (s per test, default 180).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

suite_begin sarama 1.61.1
TEST_TIMEOUT=${SARAMA_TEST_TIMEOUT:-180}
TOXIPROXY_VERSION=2.5.0
SRC=$SUITES_DIR/sarama-$VERSION
BIN=$SRC/sarama.test
TOXI=$SUITES_DIR/gobin/toxiproxy-server-$TOXIPROXY_VERSION

command -v go >/dev/null || { echo "sarama: needs the Go toolchain (go)" >&2; exit 2; }
if [ ! -x "$TOXI" ]; then
    log "installing toxiproxy $TOXIPROXY_VERSION's server from the Go module proxy"
    mkdir -p "$SUITES_DIR/gobin"
    tmp=$(mktemp -d)
    (cd "$tmp" && GOBIN=$tmp timeout 900 go install "github.com/Shopify/toxiproxy/v2/cmd/server@v$TOXIPROXY_VERSION")
    mv "$tmp/server" "$TOXI"
    rm -rf "$tmp"
fi
if [ ! -f "$SRC/.zombi-built" ]; then
    log "downloading github.com/IBM/sarama@v$VERSION from the Go module proxy"
    dir=$(cd "$(mktemp -d)" && timeout 900 go mod download -json "github.com/IBM/sarama@v$VERSION" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    rm -rf "$SRC"
    cp -r "$dir" "$SRC"
    chmod -R u+w "$SRC"
    # one broker: the seed topics get replication factor 1 instead of 3
    sed -i 's/ReplicationFactor: 3,/ReplicationFactor: 1,/' "$SRC/functional_test.go"
    log "building the functional test binary"
    (cd "$SRC" && GOFLAGS=-mod=mod timeout 1800 go test -c -tags functional -o "$BIN" .) \
        >"$SUITES_DIR/sarama-build.log" 2>&1 ||
        { tail -n 30 "$SUITES_DIR/sarama-build.log" >&2; echo "sarama test build failed" >&2; exit 1; }
    touch "$SRC/.zombi-built"
fi
# the functional tests, from their source (the binary's -test.list would run TestMain, which
# wants docker when TOXIPROXY_ADDR is not set)
mapfile -t TESTS < <(cd "$SRC" && grep -ho '^func Test[A-Za-z0-9_]*(t \*testing.T)' functional_*_test.go |
    sed 's/^func \(Test[A-Za-z0-9_]*\).*/\1/' | sort)

suite_run_begin
for p in 29091 29092 29093 29094 29095; do
    port_free "$p" || { echo "sarama: 127.0.0.1:$p is taken (Sarama's tests hard-code 29091-29095)" >&2; exit 1; }
done
TOXI_PORT=8474
port_free $TOXI_PORT || TOXI_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$TOXI" -host 127.0.0.1 -port "$TOXI_PORT" >"$LOGDIR/toxiproxy.log" 2>&1 &
TOXI_PID=$!
trap 'kill "$TOXI_PID" 2>/dev/null; zombi_stop' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$TOXI_PORT") 2>/dev/null && break; sleep 0.1; done

# the broker settings of Sarama's docker-compose.yml: no auto-creation, no initial rebalance delay;
# zombi advertises the first proxy's address, as Sarama's brokers advertise theirs, so the clients'
# traffic goes through toxiproxy (the tests that add latency or cut a proxy need that)
ZOMBI_ARGS=(--auto-create-topics false --group-initial-rebalance-delay-ms 0 --kafka-advertised 127.0.0.1:29091)
proxies() {     # (re)points the five proxies at the running zombi
    local i
    for i in 1 2 3 4 5; do
        curl -sf -X DELETE "http://127.0.0.1:$TOXI_PORT/proxies/kafka$i" >/dev/null 2>&1 || true
        curl -sf -X POST "http://127.0.0.1:$TOXI_PORT/proxies" -H 'Content-Type: application/json' \
            -d "{\"name\": \"kafka$i\", \"listen\": \"127.0.0.1:$((29090 + i))\", \"upstream\": \"$ZOMBI_BOOTSTRAP\", \"enabled\": true}" \
            >/dev/null
    done
}
zombi_start "${ZOMBI_ARGS[@]}"
proxies
START=$(date +%s.%N)
for t in "${TESTS[@]}"; do
    if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx -- "$t"; then continue; fi
    logf=$LOGDIR/$t.log
    zombi_alive || { log "zombi is not running; restarting it"; zombi_restart "${ZOMBI_ARGS[@]}"; proxies; }
    t0=$(date +%s.%N)
    set +e
    (cd "$SRC" && TOXIPROXY_ADDR=http://127.0.0.1:$TOXI_PORT KAFKA_VERSION=4.1.0 \
        timeout -k 10 "$TEST_TIMEOUT" "$BIN" -test.run "^${t}\$" -test.v \
        -test.timeout "$((TEST_TIMEOUT - 5))s") >"$logf" 2>&1
    rc=$?
    set -e
    secs=$(seconds_since "$t0")
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        status=timeout
    elif grep -q "^--- SKIP: $t " "$logf"; then
        status=skip
    elif [ $rc -eq 0 ] && grep -q "^--- PASS: $t " "$logf"; then
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
suite_finish "$SECS" "kafka_version=4.1.0" "toxiproxy=$TOXIPROXY_VERSION" "seed_topics_rf=1" \
    "per_test_timeout_s=$TEST_TIMEOUT" "zombi_args=${ZOMBI_ARGS[*]:-(defaults)}" "logs=$LOGDIR"
suite_summary
