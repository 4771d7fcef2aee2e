#!/usr/bin/env bash
# Starts Apache Kafka as a reference broker on 127.0.0.1 (KRaft, one combined broker+controller,
# one replica, fresh temp dir, free ports), after installing it if needed (install.sh).
#
#   compat/kafka/start.sh [PROP=VALUE...]
#
# Prints "kafka listening bootstrap=127.0.0.1:PORT pid=PID dir=DIR" once the broker serves, then
# stays in the foreground until interrupted (Ctrl-C, SIGTERM) or until the broker exits, and stops
# the broker on the way out. Extra arguments are server.properties lines that override the defaults
# (for example group.initial.rebalance.delay.ms=0). Scripts source compat/kafka/lib.sh instead.
set -euo pipefail
# shellcheck source=compat/kafka/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
trap 'kafka_stop' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
kafka_start "$@"
echo "kafka listening bootstrap=$KAFKA_BOOTSTRAP pid=$KAFKA_PID dir=$KAFKA_WORK"
while kafka_alive; do sleep 1; done
echo "kafka: the broker exited; end of its log:" >&2
tail -n 20 "$KAFKA_LOG" >&2 || true
