#!/usr/bin/env bash
# Fast CI gate: runs only the tests listed in compat/suites/smoke.txt (a few dozen seconds once
# the suites are built), each suite against its own fresh zombi, through the same
# run_<suite>.sh scripts with SMOKE=1 (results go to $ZOMBI_CACHE/suites/logs/<suite>-smoke,
# compat/results/ is left alone).
#
#   ZOMBI_BIN=/path/to/zombi compat/suites/run_smoke.sh [SUITE...]
#
# The first run on a machine prepares the suites (builds librdkafka twice: ~20 min on 2 cores).
# Prints "N passed, M failed" as its last line and exits non-zero if any test failed or a suite
# could not run.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LIST=${ZOMBI_SMOKE_LIST:-$HERE/smoke.txt}

if [ -z "${ZOMBI_BIN:-}" ] || [ ! -x "${ZOMBI_BIN:-}" ]; then
    echo "set ZOMBI_BIN to the zombi binary" >&2
    exit 2
fi
SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(rdkafka librdkafka kafka_python)

PASSED=0
FAILED=0
for suite in "${SUITES[@]}"; do
    mapfile -t TESTS < <(awk -v s="$suite" '$1 == s { print $2 }' "$LIST")
    if [ ${#TESTS[@]} -eq 0 ]; then
        echo "smoke: no $suite tests in $LIST"
        continue
    fi
    echo "==== smoke: $suite (${#TESTS[@]} tests)"
    out=$(mktemp)
    set +e
    SMOKE=1 bash "$HERE/run_$suite.sh" "${TESTS[@]}" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    set -e
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1 || true)
    rm -f "$out"
    if [ -z "$summary" ]; then
        echo "smoke: $suite printed no summary (exit $rc); counting 1 failed"
        FAILED=$((FAILED + 1))
        continue
    fi
    p=${summary%% passed*}
    f=${summary#*passed, }
    f=${f%% failed*}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "smoke: $suite exited $rc; counting 1 failed"
        f=1
    fi
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
done
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
