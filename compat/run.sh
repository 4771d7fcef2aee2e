#!/usr/bin/env bash
# Client compatibility run: starts a fresh zombi broker on 127.0.0.1 and runs
# compat/kcat.sh and compat/confluent_kafka_check.py against it.
#
#   ZOMBI_BIN=/path/to/zombi compat/run.sh
#
# Env:
#   ZOMBI_BIN     (required) the zombi binary to test
#   ZOMBI_CACHE   cache dir (default ~/.cache/zombi); the Python venv with
#                 confluent-kafka lives in $ZOMBI_CACHE/venv
#   ZOMBI_COMPAT_START_TIMEOUT  seconds to wait for the Kafka port (default 30)
#
# Prints each check's output, then "N passed, M failed" for both suites
# together as the last line. Exits 1 if anything failed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [ -z "${ZOMBI_BIN:-}" ]; then
    echo "compat: set ZOMBI_BIN to the zombi binary, e.g. ZOMBI_BIN=target/release/zombi $0" >&2
    exit 2
fi
if [ ! -x "$ZOMBI_BIN" ]; then
    echo "compat: ZOMBI_BIN=$ZOMBI_BIN is not an executable file" >&2
    exit 2
fi
CACHE=${ZOMBI_CACHE:-$HOME/.cache/zombi}
VENV=$CACHE/venv
START_TIMEOUT=${ZOMBI_COMPAT_START_TIMEOUT:-30}

# ---------------------------------------------------------------- tools
"$HERE/setup.sh"

# ---------------------------------------------------------------- broker
WORK=$(mktemp -d "${TMPDIR:-/tmp}/zombi-compat.XXXXXX")
BROKER_PID=
BROKER_LOG=$WORK/zombi.log

stop_broker() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do                  # at most 10 s, then SIGKILL
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$BROKER_PID" 2>/dev/null; then
            echo "compat: broker did not stop on SIGTERM within 10 s; killing it" >&2
            kill -KILL "$BROKER_PID" 2>/dev/null || true
        fi
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    BROKER_PID=
}
cleanup() {
    stop_broker
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_broker_log() {
    echo "---- last lines of the zombi log ($BROKER_LOG) ----"
    tail -n "${1:-40}" "$BROKER_LOG" 2>/dev/null || true
    echo "---- end of zombi log ----"
}

# Two distinct free ports on 127.0.0.1 (both held open while picking).
read -r KAFKA_PORT HTTP_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
')
BOOTSTRAP=127.0.0.1:$KAFKA_PORT
mkdir -p "$WORK/data"

echo "compat: starting $ZOMBI_BIN (kafka $BOOTSTRAP, http 127.0.0.1:$HTTP_PORT, data $WORK/data)"
"$ZOMBI_BIN" --data-dir "$WORK/data" \
    --kafka-listen "127.0.0.1:$KAFKA_PORT" \
    --http-listen "127.0.0.1:$HTTP_PORT" >"$BROKER_LOG" 2>&1 &
BROKER_PID=$!

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ready=0
for _ in $(seq 1 $((START_TIMEOUT * 10))); do       # poll every 0.1 s, bounded
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        break
    fi
    if port_open "$KAFKA_PORT"; then
        ready=1
        break
    fi
    sleep 0.1
done
if [ "$ready" != 1 ]; then
    if kill -0 "$BROKER_PID" 2>/dev/null; then
        echo "compat: zombi did not accept connections on $BOOTSTRAP within ${START_TIMEOUT}s"
    else
        wait "$BROKER_PID" && rc=0 || rc=$?
        BROKER_PID=
        echo "compat: zombi exited with status $rc before accepting connections"
    fi
    show_broker_log
    echo "0 passed, 1 failed"
    exit 1
fi
echo "compat: zombi is accepting connections on $BOOTSTRAP"

# ---------------------------------------------------------------- checks
TOTAL_PASSED=0
TOTAL_FAILED=0
ANY_ERROR=0

# run_suite NAME CMD...: runs a suite, echoes its output, adds its summary.
run_suite() {
    local name=$1 out=$WORK/$1.out rc summary p f
    shift
    echo
    echo "==== $name ===="
    set +e
    "$@" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    set -e
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1 || true)
    if [ -n "$summary" ]; then
        p=${summary%% passed*}
        f=${summary#*passed, }
        f=${f%% failed*}
    else
        echo "compat: $name printed no summary line (exit status $rc); counting it as 1 failed"
        p=0
        f=1
    fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "compat: $name exited with status $rc; counting 1 failed"
        f=1
    fi
    [ "$rc" -eq 0 ] || ANY_ERROR=1
    TOTAL_PASSED=$((TOTAL_PASSED + p))
    TOTAL_FAILED=$((TOTAL_FAILED + f))
}

run_suite kcat bash "$HERE/kcat.sh" "$BOOTSTRAP"
run_suite confluent-kafka "$VENV/bin/python" "$HERE/confluent_kafka_check.py" "$BOOTSTRAP"

echo
if ! kill -0 "$BROKER_PID" 2>/dev/null; then
    echo "compat: zombi died during the checks"
    BROKER_PID=
    TOTAL_FAILED=$((TOTAL_FAILED + 1))
fi
if [ "$TOTAL_FAILED" -gt 0 ] || [ "$ANY_ERROR" -ne 0 ]; then
    show_broker_log 60
fi
stop_broker
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
[ "$TOTAL_FAILED" -eq 0 ] && [ "$ANY_ERROR" -eq 0 ]
