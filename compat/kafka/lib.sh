# Helpers to run Apache Kafka as a reference peer (sourced, not executed).
#
#   kafka_install          runs compat/kafka/install.sh once; sets KAFKA_LIB (the jars' dir)
#   kafka_java ARGS...     java with the Kafka classpath and a small heap (KAFKA_HEAP, default
#                          -Xmx512m), log4j2 at WARN on stderr unless -Dlog4j2... is given
#   kafka_start [PROP=VALUE...]
#                          formats a KRaft combined broker+controller (node 1, one replica) in a
#                          fresh temp dir and starts it on 127.0.0.1 with two free ports; extra
#                          server.properties lines override the defaults. Returns once the broker
#                          has logged "Kafka Server started" and its port accepts connections.
#                          Sets KAFKA_PID, KAFKA_BOOTSTRAP (host:port), KAFKA_PORT, KAFKA_WORK,
#                          KAFKA_LOG (the server log). A watchdog stops the broker when the
#                          process that sourced this file exits, even by SIGKILL.
#   kafka_stop             SIGTERM (controlled shutdown), SIGKILL after 30 s; removes the temp dir
#                          unless KAFKA_KEEP_DATA is set
#   kafka_alive            true while the broker runs
# KAFKA_START_TIMEOUT (default 120 s) bounds the wait for the broker.

KAFKA_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_LIB=
KAFKA_PID=
KAFKA_WORK=
KAFKA_BOOTSTRAP=
KAFKA_PORT=
KAFKA_LOG=
KAFKA_WATCHDOG_PID=
KAFKA_HEAP=${KAFKA_HEAP:--Xmx512m -Xms128m}

kafka_install() {
    local out
    out=$("$KAFKA_HERE/install.sh") || return 1
    KAFKA_LIB=$(tail -n 1 <<<"$out")
}

kafka_java() {
    [ -n "$KAFKA_LIB" ] || kafka_install || return 1
    # shellcheck disable=SC2086
    java $KAFKA_HEAP -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_HERE/log4j2-tools.properties" \
        -cp "$KAFKA_LIB/*" "$@"
}

kafka_alive() { [ -n "$KAFKA_PID" ] && kill -0 "$KAFKA_PID" 2>/dev/null; }

# Two distinct free ports on 127.0.0.1 (held open together while picking).
kafka_free_ports() {
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
' "$1"
}

kafka_start() {
    [ -n "$KAFKA_LIB" ] || kafka_install || return 1
    local cport cluster_id t0 i ready=0 p
    read -r KAFKA_PORT cport < <(kafka_free_ports 2)
    KAFKA_WORK=$(mktemp -d "${TMPDIR:-/tmp}/kafka-ref.XXXXXX")
    KAFKA_LOG=$KAFKA_WORK/server.log
    KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
    {
        cat <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_WORK/data
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
PROPS
        for p in "$@"; do echo "$p"; done      # later lines win in java.util.Properties
    } >"$KAFKA_WORK/server.properties"
    # As Kafka's Uuid.randomUuid: never one starting with '-', which the tool's argument parser
    # takes for an option (about one id in 64 did, and formatting failed).
    cluster_id=$(python3 -c 'import base64, os
while True:
    id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not id.startswith("-"):
        print(id)
        break')
    t0=$(date +%s.%N)
    if ! kafka_java kafka.tools.StorageTool format -t "$cluster_id" \
            -c "$KAFKA_WORK/server.properties" >"$KAFKA_WORK/format.log" 2>&1; then
        echo "kafka: formatting the storage failed:" >&2
        cat "$KAFKA_WORK/format.log" >&2
        return 1
    fi
    # shellcheck disable=SC2086
    java $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_HERE/log4j2-server.properties" \
        -Dkafka.logs.dir="$KAFKA_WORK" \
        -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_WORK/server.properties" \
        >"$KAFKA_WORK/stdout" 2>&1 &
    KAFKA_PID=$!
    # The watchdog: when the shell that started the broker is gone (exit, crash, SIGKILL), stop it.
    # It runs in its own session with its output closed, so it never holds a caller's pipe open.
    setsid bash -c '
        owner=$1 broker=$2 work=$3
        while kill -0 "$owner" 2>/dev/null && kill -0 "$broker" 2>/dev/null; do sleep 1; done
        if kill -0 "$broker" 2>/dev/null; then
            kill -TERM "$broker" 2>/dev/null
            for _ in $(seq 1 300); do kill -0 "$broker" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$broker" 2>/dev/null
            [ -n "$4" ] || rm -rf "$work"
        fi' kafka-watchdog "$$" "$KAFKA_PID" "$KAFKA_WORK" "${KAFKA_KEEP_DATA:-}" \
        </dev/null >/dev/null 2>&1 &
    KAFKA_WATCHDOG_PID=$!
    for i in $(seq 1 $(( ${KAFKA_START_TIMEOUT:-120} * 10 ))); do   # bounded: poll every 0.1 s
        kafka_alive || break
        if grep -q 'Kafka Server started' "$KAFKA_LOG" 2>/dev/null &&
            (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; then
            ready=1
            break
        fi
        sleep 0.1
    done
    if [ "$ready" != 1 ]; then
        echo "kafka: the broker did not start within ${KAFKA_START_TIMEOUT:-120} s; end of its log:" >&2
        tail -n 40 "$KAFKA_LOG" "$KAFKA_WORK/stdout" >&2 2>/dev/null || true
        kafka_stop
        return 1
    fi
    KAFKA_START_SECONDS=$(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$t0" "$(date +%s.%N)")
    echo "kafka: Apache Kafka $(basename "$(dirname "$KAFKA_LIB")") pid $KAFKA_PID serving on $KAFKA_BOOTSTRAP (format+start ${KAFKA_START_SECONDS} s, dir $KAFKA_WORK)" >&2
}

kafka_stop() {
    if kafka_alive; then
        kill -TERM "$KAFKA_PID" 2>/dev/null || true
        local i
        for i in $(seq 1 300); do
            kill -0 "$KAFKA_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$KAFKA_PID" 2>/dev/null; then
            echo "kafka: the broker did not stop on SIGTERM within 30 s; killing it" >&2
            kill -KILL "$KAFKA_PID" 2>/dev/null || true
        fi
        wait "$KAFKA_PID" 2>/dev/null || true
    fi
    if [ -n "$KAFKA_WATCHDOG_PID" ]; then
        kill "$KAFKA_WATCHDOG_PID" 2>/dev/null || true
        KAFKA_WATCHDOG_PID=
    fi
    KAFKA_PID=
    if [ -n "$KAFKA_WORK" ] && [ -z "${KAFKA_KEEP_DATA:-}" ]; then
        rm -rf "$KAFKA_WORK"
    fi
    KAFKA_WORK=
}
