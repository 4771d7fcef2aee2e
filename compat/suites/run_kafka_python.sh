#!/usr/bin/env bash
# kafka-python 3.0.12's own integration tests (test/integration of its source distribution)
# against zombi.
#
#   ZOMBI_BIN=/path/to/zombi compat/suites/run_kafka_python.sh [PYTEST_ARGS...]
#
# Prepares (once, cached under ${ZOMBI_CACHE:-$HOME/.cache/zombi}):
#   - suites/kafka_python-3.0.12: the sdist from PyPI (pip download --no-binary :all:), unpacked.
#     The sdist lacks test/__init__.py and test/service.py; the first is created empty, the second
#     is compat/suites/kafka_python/service.py (ExternalService only: KAFKA_URI mode never spawns
#     a JVM broker). KAFKA_ROOT points at an empty dir because the fixture insists it exists.
#   - kafka-python-venv: kafka-python with pytest, pytest-timeout, pytest-mock and the codec
#     libraries (lz4, python-snappy, zstandard, crc32c).
# Then starts zombi with the broker settings of kafka-python's own test broker
# (servers/resources/default/kafka.properties: num.partitions=4,
# group.min.session.timeout.ms=1000, group.initial.rebalance.delay.ms=0; its fixture's
# StandardAuthorizer with allow.everyone.if.no.acl.found=true), a PLAINTEXT and a SASL_PLAINTEXT
# listener, and the fixture's SASL user (alice, for PLAIN and SCRAM-SHA-256/512, as the bootstrap
# admin). Runs `pytest test/integration` with KAFKA_VERSION=4.0.0 KAFKA_URI=PLAINTEXT://zombi
# (each test limited by pytest-timeout, the whole run by `timeout`). test_sasl_integration.py
# skips itself when KAFKA_URI is set, so it runs again in a second pass without KAFKA_URI, where
# kafka_python/zombi_fixtures.py gives its fixture zombi's SASL_PLAINTEXT listener instead of a
# Kafka JVM of its own; that pass's results replace the skips. KAFKA_ROOT is
# compat/suites/kafka_python, whose bin/kafka-topics.sh is Kafka's TopicCommand (the SASL
# test_admin lists topics with it). Writes compat/results/kafka_python.json from pytest's JUnit
# XML. Extra arguments go to pytest (e.g. a test id; those of test_sasl_integration.py go to the
# second pass); SMOKE=1 does not write the JSON.
#
# Env: ZOMBI_BIN (required), ZOMBI_CACHE, KAFKA_PYTHON_TEST_TIMEOUT (s per test, default 120),
#      KAFKA_PYTHON_RUN_TIMEOUT (s for the whole run, default 2400).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

suite_begin kafka_python 3.0.12
TEST_TIMEOUT=${KAFKA_PYTHON_TEST_TIMEOUT:-120}
RUN_TIMEOUT=${KAFKA_PYTHON_RUN_TIMEOUT:-2400}
SRC=$SUITES_DIR/kafka_python-$VERSION
VENV=$CACHE/kafka-python-venv
# Test-only packages, pinned.
PIP_PINS=(pytest==9.2.0 pytest-timeout==2.4.0 pytest-mock==3.17.0 lz4==4.4.5 python-snappy==0.7.3
          zstandard==0.25.0 crc32c==2.9.post0)

# ---------------------------------------------------------------- prepare (idempotent)
command -v python3 >/dev/null || apt_install python3 python3-venv
if [ ! -f "$SRC/.zombi-prepared" ]; then
    log "downloading kafka-python $VERSION sdist from PyPI"
    dl=$(mktemp -d)
    timeout 600 python3 -m pip download -q --disable-pip-version-check --no-binary :all: --no-deps \
        -d "$dl" "kafka-python==$VERSION"
    rm -rf "$SRC"
    tar -xzf "$dl/kafka_python-$VERSION.tar.gz" -C "$SUITES_DIR"
    rm -rf "$dl"
    touch "$SRC/test/__init__.py"
    touch "$SRC/.zombi-prepared"
fi
cp "$SUITES_HERE/kafka_python/service.py" "$SRC/test/service.py"
cp "$SUITES_HERE/kafka_python/zombi_fixtures.py" "$SRC/test/zombi_fixtures.py"
# The sdist lacks servers/resources; the fixture renders this template for kafka-topics.sh.
mkdir -p "$SRC/servers/resources/default"
cp "$SUITES_HERE/kafka_python/sasl_command.conf" "$SRC/servers/resources/default/sasl_command.conf"
if ! "$VENV/bin/python" -c "import kafka, pytest, pytest_timeout, sys
sys.exit(kafka.__version__ != '$VERSION')" >/dev/null 2>&1; then
    log "installing kafka-python $VERSION and pytest into $VENV"
    python3 -m venv "$VENV"
    timeout 900 "$VENV/bin/pip" install -q --disable-pip-version-check "$SRC" "${PIP_PINS[@]}"
fi

# ---------------------------------------------------------------- run
suite_run_begin
# kafka-python's fixture user (KafkaFixture.broker_user / broker_password).
export ZOMBI_BOOTSTRAP_ADMIN_PASSWORD=alice-secret
ZOMBI_ARGS=(--num-partitions 4 --group-min-session-timeout-ms 1000 --group-initial-rebalance-delay-ms 0
    --listeners PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0
    --sasl-enabled-mechanisms PLAIN,SCRAM-SHA-256,SCRAM-SHA-512 --bootstrap-admin alice
    --authorizer standard --allow-everyone-if-no-acl-found true)
zombi_start "${ZOMBI_ARGS[@]}"
ZOMBI_LISTENERS=$(grep -m1 '^zombi listening' "$ZOMBI_WORK/stdout" | sed -E 's/.*listeners=([^ ]+).*/\1/')
START=$(date +%s.%N)
SASL_FILE=test/integration/test_sasl_integration.py
MAIN_ARGS=()
SASL_ARGS=()
if [ $# -eq 0 ]; then
    MAIN_ARGS=(test/integration)
    SASL_ARGS=("$SASL_FILE")
else
    for arg in "$@"; do
        case $arg in
            "$SASL_FILE"*) SASL_ARGS+=("$arg") ;;
            *) MAIN_ARGS+=("$arg") ;;
        esac
    done
fi
# pytest_pass NAME [ENV=VALUE...] -- PYTEST_ARGS...: one pytest run; sets rc (worst of the passes).
rc=0
pytest_pass() {
    local name=$1 envs=() r
    shift
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    set +e
    (cd "$SRC" && env "${envs[@]}" KAFKA_VERSION=4.0.0 KAFKA_ROOT="$SUITES_HERE/kafka_python" \
        timeout -k 30 "$RUN_TIMEOUT" "$VENV/bin/python" -m pytest -p no:cacheprovider -q -rA \
        --timeout="$TEST_TIMEOUT" --timeout-method=thread -o log_level=INFO \
        --junitxml="$LOGDIR/junit-$name.xml" "$@") >"$LOGDIR/pytest-$name.log" 2>&1
    r=$?
    set -e
    tail -n 5 "$LOGDIR/pytest-$name.log" >&2
    if [ ! -s "$LOGDIR/junit-$name.xml" ]; then
        echo "pytest ($name) wrote no JUnit XML (exit $r); see $LOGDIR/pytest-$name.log" >&2
        echo "0 passed, 1 failed"
        exit 1
    fi
    python3 "$SUITES_HERE/results.py" junit "$JSONL" "$SUITE" "$LOGDIR/junit-$name.xml" "$LOGDIR"
    [ "$r" -le "$rc" ] || rc=$r
}
if [ ${#MAIN_ARGS[@]} -gt 0 ]; then
    pytest_pass main "KAFKA_URI=PLAINTEXT://$ZOMBI_BOOTSTRAP" -- "${MAIN_ARGS[@]}"
fi
if [ ${#SASL_ARGS[@]} -gt 0 ]; then
    # Later lines of the JSONL win: these replace the main pass's "external broker" skips.
    pytest_pass sasl "ZOMBI_LISTENERS=$ZOMBI_LISTENERS" -- -p test.zombi_fixtures "${SASL_ARGS[@]}"
fi
SECS=$(seconds_since "$START")
zombi_alive || echo "zombi died during the run; see $ZOMBI_LOG" >&2
zombi_stop
suite_finish "$SECS" "zombi_args=${ZOMBI_ARGS[*]}" "per_test_timeout_s=$TEST_TIMEOUT" "kafka_version=4.0.0" \
    "logs=$LOGDIR"
# pytest exits 0 (all passed) or 1 (some failed); anything else is an error of the run.
suite_summary "$rc"
