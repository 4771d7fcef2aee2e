#!/usr/bin/env bash
# librdkafka 2.12.1's own test suite (tests/ of the rdkafka-sys 4.10.0+2.12.1 crate) against zombi.
#
#   ZOMBI_BIN=/path/to/zombi compat/suites/run_librdkafka.sh [NNNN...]
#
# Prepares (once, cached under ${ZOMBI_CACHE:-$HOME/.cache/zombi}/suites):
#   - librdkafka-2.12.1: the librdkafka source shipped in the rdkafka-sys crate (fetched with
#     `cargo fetch` if it is not in the cargo registry), configured with zlib, zstd, lz4, OpenSSL,
#     rapidjson (stats tests) and no GSSAPI/curl, built with `make libs` and
#     `make -C tests build` (test-runner; ~10 min).
# Then, for every test number NNNN of tests/test.c (or the given ones), one at a time:
#   TESTS=NNNN TEST_KAFKA_VERSION=3.9.0 ./test-runner -p1 -Q -E -L
# (quick mode unless LIBRDKAFKA_QUICK=0, no socket emulation, no local/mock tests unless
# LIBRDKAFKA_LOCAL=1) under `timeout` (LIBRDKAFKA_TEST_TIMEOUT s per broker sub-test, default
# 120), with tests/test.conf holding bootstrap.servers=zombi and KAFKA_PATH=compat/suites/librdkafka
# (its bin/kafka-topics.sh stands in for Kafka's tool, on confluent-kafka from compat/setup.sh;
# its bin/kafka-acls.sh is Kafka's own AclCommand, from compat/kafka/install.sh's jars;
# BROKERS=zombi). Zombi runs with --num-partitions 4 --group-initial-rebalance-delay-ms 3000 (the
# suite's default scenario) and --authorizer standard --allow-everyone-if-no-acl-found true, and
# is restarted if it died.
# The tests of the "noautocreate" scenario then run against a second zombi started with
# --auto-create-topics false. Writes compat/results/librdkafka.json (one entry per sub-test,
# e.g. 0045_subscribe_update_mock); SMOKE=1 does not write the JSON.
#
# Quick mode silently skips every sub-test not marked quick; a test that thereby ran nothing
# (under 2 ms) is recorded as skip, not pass, and is then run once more without -Q (full mode),
# whose outcome replaces the skip (LIBRDKAFKA_FULL_RETRY=0 turns this off).
#
# Env: ZOMBI_BIN (required), ZOMBI_CACHE, LIBRDKAFKA_TEST_TIMEOUT, LIBRDKAFKA_FULL_TEST_TIMEOUT
#      (s per broker sub-test in full mode, default 300), LIBRDKAFKA_LOCAL=1,
#      LIBRDKAFKA_QUICK=0 (everything in full mode), LIBRDKAFKA_FULL_RETRY=0,
#      LIBRDKAFKA_GROUP_DELAY_MS (zombi's --group-initial-rebalance-delay-ms, default 3000).
#      ZOMBI_SECURED=1: zombi serves one SASL_SSL listener (a CA and a certificate for 127.0.0.1
#      made here with openssl, a bootstrap SCRAM admin), and tests/test.conf gives the suite
#      security.protocol=SASL_SSL, SCRAM-SHA-512 and the CA: every test then runs over TLS and
#      SASL, as a secured deployment's clients do (logs under logs/librdkafka-secured[-smoke]).
#      Tests that call kafka-topics.sh or kafka-acls.sh (0045, 0052, 0077, 0109, 0115, 0119) are
#      not secured-ready.
#      LIBRDKAFKA_ZOMBI_ARGS: more zombi flags, space-separated (e.g. --connections-max-reauth-ms
#      10000 for 0142 under ZOMBI_SECURED=1).
#      RESULTS_MERGE=1 (with test numbers): their results replace theirs in the existing
#      compat/results/librdkafka.json instead of writing a file of only these tests.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

suite_begin librdkafka 2.12.1
TEST_TIMEOUT=${LIBRDKAFKA_TEST_TIMEOUT:-120}
# Full mode runs every sub-test: 0113 (cooperative rebalances) and 0150 take about 3 min.
FULL_TEST_TIMEOUT=${LIBRDKAFKA_FULL_TEST_TIMEOUT:-300}
LOCAL=${LIBRDKAFKA_LOCAL:-0}
QUICK=${LIBRDKAFKA_QUICK:-1}
FULL_RETRY=${LIBRDKAFKA_FULL_RETRY:-1}
# Kafka's default (3000), which the suite is written against: 0089, 0102 and 0118 need all their
# consumers in the group's first generation, which a delay of 0 makes a race.
GROUP_DELAY_MS=${LIBRDKAFKA_GROUP_DELAY_MS:-3000}
SRC=$SUITES_DIR/librdkafka-$VERSION
SECURED=${ZOMBI_SECURED:-0}

# ---------------------------------------------------------------- prepare (idempotent)
apt_install build-essential pkg-config zlib1g-dev libssl-dev libzstd-dev liblz4-dev rapidjson-dev python3
# librdkafka/bin/kafka-topics.sh, Kafka's tool as some tests call it, runs on confluent-kafka.
bash "$COMPAT_DIR/setup.sh"
if [ ! -x "$SRC/tests/test-runner" ] || [ ! -f "$SRC/.zombi-built" ]; then
    crate=$(cargo_crate_src rdkafka-sys "4.10.0+$VERSION")
    log "building librdkafka $VERSION and its test-runner in $SRC (about 10 min on 2 cores)"
    rm -rf "$SRC"
    cp -r "$crate/librdkafka" "$SRC"
    BUILD_LOG=$SUITES_DIR/librdkafka-build.log
    if ! (cd "$SRC" &&
        ./configure --no-download --disable-gssapi --disable-curl --enable-zstd --enable-ssl \
            --enable-lz4-ext &&
        timeout 3600 make -j"$(nproc)" libs &&
        timeout 3600 make -j"$(nproc)" -C tests build) >"$BUILD_LOG" 2>&1; then
        tail -n 40 "$BUILD_LOG" >&2
        echo "librdkafka build failed; see $BUILD_LOG" >&2
        exit 1
    fi
    touch "$SRC/.zombi-built"
fi
TESTC=$SRC/tests/test.c

# ---------------------------------------------------------------- run
if [ "$SECURED" = 1 ]; then
    LOGDIR=$SUITES_DIR/logs/librdkafka-secured${SMOKE:+-smoke}
fi
suite_run_begin
START=$(date +%s.%N)
Z_SECURITY=()
TEST_CONF_SECURITY=""
if [ "$SECURED" = 1 ]; then
    CERTS=$(mktemp -d "${TMPDIR:-/tmp}/zombi-certs.XXXXXX")
    trap 'zombi_stop; rm -rf "$CERTS"' EXIT
    (cd "$CERTS" &&
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=smoke-ca &&
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext &&
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 \
            -extfile server.ext) >/dev/null 2>&1
    export ZOMBI_BOOTSTRAP_ADMIN_PASSWORD=smoke-secret
    Z_SECURITY=(--listeners SASL_SSL://127.0.0.1:0 --ssl-cert-file "$CERTS/server.crt"
        --ssl-key-file "$CERTS/server.key" --bootstrap-admin smoke)
    TEST_CONF_SECURITY=$(printf '%s\n' security.protocol=SASL_SSL sasl.mechanisms=SCRAM-SHA-512 \
        sasl.username=smoke sasl.password=smoke-secret "ssl.ca.location=$CERTS/ca.crt")
fi

# run_pass SCENARIO QUICK LIST_CMD ZOMBI_ARGS...: runs, one at a time, every selected test number
# that LIST_CMD prints ("NNNN BROKER_SUBTEST_COUNT" lines) against a fresh zombi.
run_pass() {
    local scenario=$1 quick=$2 list_cmd=$3 num count logf rc t0 secs limit suffix="" line
    shift 3
    local zargs=("$@") rargs=(-p1 -E)
    [ "$quick" = 0 ] && suffix=-full || rargs+=(-Q)
    [ "$LOCAL" = 1 ] || rargs+=(-L)
    mapfile -t NUMS < <(eval "$list_cmd" | while read -r num count; do
        if [ ${#SELECTED[@]} -eq 0 ] || printf '%s\n' "${SELECTED[@]}" | grep -qx "$num"; then
            echo "$num $count"
        fi
    done)
    [ ${#NUMS[@]} -gt 0 ] || return 0
    zombi_start "${zargs[@]}"
    for line in "${NUMS[@]}"; do
        read -r num count <<<"$line"
        logf=$LOGDIR/$num-$scenario$suffix.log
        if [ "$count" -eq 0 ] && [ "$LOCAL" != 1 ]; then
            : >"$logf"
            python3 "$SUITES_HERE/results.py" lrk-add "$JSONL" "$SUITE" "$TESTC" "$num" "$scenario" \
                "$LOCAL" "$logf" -1 0 "$quick"
            continue
        fi
        zombi_alive || { log "zombi is not running; restarting it"; zombi_restart "${zargs[@]}"; }
        printf 'bootstrap.servers=%s\n%s\n' "$ZOMBI_BOOTSTRAP" "$TEST_CONF_SECURITY" >"$SRC/tests/test.conf"
        limit=$(( (quick == 0 ? FULL_TEST_TIMEOUT : TEST_TIMEOUT) * (count > 0 ? count : 1) ))
        t0=$(date +%s.%N)
        set +e
        (cd "$SRC/tests" && TESTS=$num TEST_KAFKA_VERSION=3.9.0 TEST_SCENARIO=$scenario \
            KAFKA_PATH=$SUITES_HERE/librdkafka BROKERS=$ZOMBI_BOOTSTRAP LD_LIBRARY_PATH=../src:../src-cpp \
            timeout -k 10 "$limit" ./test-runner "${rargs[@]}" -s "$scenario") >"$logf" 2>&1
        rc=$?
        set -e
        secs=$(seconds_since "$t0")
        if ! zombi_alive; then
            echo "zombi died during this test" >>"$logf"
            [ $rc -ne 0 ] || rc=1
        fi
        python3 "$SUITES_HERE/results.py" lrk-add "$JSONL" "$SUITE" "$TESTC" "$num" "$scenario" \
            "$LOCAL" "$logf" "$rc" "$secs" "$quick"
        log "$num ($scenario${suffix:+, full mode}): exit $rc in ${secs%.*} s: $(python3 - "$JSONL" "$num" "$scenario" <<'EOF'
import json, sys
c = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["test"].startswith(sys.argv[2] + "_") and r.get("scenario") == sys.argv[3]:
        c[r["test"]] = r["status"]
n = {}
for st in c.values():
    n[st] = n.get(st, 0) + 1
print(" ".join("%s=%d" % kv for kv in sorted(n.items())))
EOF
)"
    done
    zombi_stop
}

SELECTED=("$@")
# The suite's own brokers run an authorizer that allows what no ACL names (0109, 0115 and 0119
# add ACLs with kafka-acls.sh and expect them enforced; 0081 creates and deletes ACLs).
Z_DEFAULT=(--num-partitions 4 --group-initial-rebalance-delay-ms "$GROUP_DELAY_MS"
    --authorizer standard --allow-everyone-if-no-acl-found true "${Z_SECURITY[@]}")
# shellcheck disable=SC2206 # extra flags, split on spaces as given
Z_DEFAULT+=(${LIBRDKAFKA_ZOMBI_ARGS:-})
Z_NOAUTO=("${Z_DEFAULT[@]}" --auto-create-topics false)
R="$SUITES_HERE/results.py"
run_pass default "$QUICK" "python3 '$R' lrk-list '$TESTC' default" "${Z_DEFAULT[@]}"
run_pass noautocreate "$QUICK" "python3 '$R' lrk-list '$TESTC' noautocreate" "${Z_NOAUTO[@]}"
if [ "$QUICK" = 1 ] && [ "$FULL_RETRY" = 1 ]; then
    # Tests that quick mode reduced to nothing: run them again without -Q.
    run_pass default 0 "python3 '$R' lrk-quick-skipped '$JSONL' '$TESTC' default" "${Z_DEFAULT[@]}"
    run_pass noautocreate 0 "python3 '$R' lrk-quick-skipped '$JSONL' '$TESTC' noautocreate" "${Z_NOAUTO[@]}"
fi
rm -f "$SRC/tests/test.conf"
SECS=$(seconds_since "$START")
RUNNER_ARGS="-p1 -E$([ "$QUICK" = 1 ] && echo " -Q")$([ "$LOCAL" = 1 ] || echo " -L")"
suite_finish "$SECS" "zombi_args=${Z_DEFAULT[*]} (noautocreate: --auto-create-topics false)" \
    "runner_args=$RUNNER_ARGS" "full_mode_retry_of_quick_skips=$FULL_RETRY" "TEST_KAFKA_VERSION=3.9.0" \
    "per_test_timeout_s=$TEST_TIMEOUT (full mode: $FULL_TEST_TIMEOUT)" "logs=$LOGDIR"
suite_summary
