#!/usr/bin/env bash
# Differential conformance: starts Apache Kafka (compat/kafka) and zombi side by side on
# 127.0.0.1, each fresh and with the same group settings, runs run.py against both and stops both.
#
#   ZOMBI_BIN=/path/to/zombi compat/differential/run.sh [--fast] [run.py args...]
#
# --fast runs the scenarios marked fast (the CI form, scripts/test.sh). The observations and every
# difference go to $ZOMBI_CACHE/differential/last.json; a full run (no --fast/--only) also writes
# compat/results/differential.section.md, which compat/suites/report.py copies into
# compat/REPORT.md. Last line: "N passed, M failed".
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
COMPAT=$(cd "$HERE/.." && pwd)
CACHE=${ZOMBI_CACHE:-$HOME/.cache/zombi}
VENV=$CACHE/venv
KAFKA_PYTHON_VERSION=3.0.12
# shellcheck source=compat/kafka/lib.sh
. "$COMPAT/kafka/lib.sh"
# shellcheck source=compat/suites/lib.sh
. "$COMPAT/suites/lib.sh"
require_zombi_bin

"$COMPAT/setup.sh" >&2
if ! "$VENV/bin/python" -c "import sys, kafka
sys.exit(kafka.__version__ != '$KAFKA_PYTHON_VERSION')" >/dev/null 2>&1; then
    echo "differential: installing kafka-python==$KAFKA_PYTHON_VERSION (its protocol classes) into $VENV" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check "kafka-python==$KAFKA_PYTHON_VERSION"
fi
kafka_install

OUT=$CACHE/differential
mkdir -p "$OUT"
trap 'kafka_stop; zombi_stop' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Both brokers: one partition per new topic, no initial rebalance delay, Kafka's session limits.
kafka_start group.initial.rebalance.delay.ms=0
zombi_start --group-initial-rebalance-delay-ms 0 --num-partitions 1
section=()
case " $* " in
*" --fast "*|*" --only "*) ;;
*) section=(--section "$COMPAT/results/differential.section.md") ;;   # full runs only
esac
set +e
KAFKA_REF_VERSION=$(basename "$(dirname "$KAFKA_LIB")") \
"$VENV/bin/python" "$HERE/run.py" --kafka "$KAFKA_BOOTSTRAP" --zombi "$ZOMBI_BOOTSTRAP" \
    --json "$OUT/last.json" "${section[@]}" "$@"
rc=$?
set -e
if ! zombi_alive; then
    echo "differential: zombi died during the run; end of its log:"
    tail -n 40 "$ZOMBI_LOG" || true
    echo "0 passed, 1 failed"
    exit 1
fi
exit $rc
