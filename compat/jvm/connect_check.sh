# Kafka Connect (4.4, distributed mode) against one broker, sourced by compat/jvm/run.sh:
# connect_check BOOTSTRAP TAG starts a worker whose config, offset and status topics live on the
# broker, runs FileStreamSource (a file -> a topic) and FileStreamSink (the topic -> a file) through
# the REST API, checks the lines round-trip, stops the worker (SIGTERM), appends lines, restarts it
# and checks the sink file holds every line in order (the source resumes at its stored offset, the
# sink at its committed one). Connect is at-least-once: a task restarted by a rebalance (adding the
# second connector) or by the restart resumes from its last flushed offset and may deliver a few
# lines again, against Kafka as against zombi, so the check is "the lines at their first
# occurrence are the source file", and the repeats are counted. Prints PASS/FAIL lines.

connect_check() {
    local b=$1 tag=$2
    local dir port pid="" ok t=connect-$tag name=connect_distributed_file_roundtrip_restart
    dir=$(mktemp -d "${TMPDIR:-/tmp}/zombi-connect.XXXXXX")
    port=$(kafka_free_ports 1)
    cat >"$dir/worker.properties" <<PROPS
bootstrap.servers=$b
group.id=connect-$tag
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.storage.StringConverter
config.storage.topic=connect-configs-$tag
offset.storage.topic=connect-offsets-$tag
status.storage.topic=connect-status-$tag
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
offset.storage.partitions=2
status.storage.partitions=2
offset.flush.interval.ms=500
listeners=http://127.0.0.1:$port
rest.advertised.host.name=127.0.0.1
plugin.discovery=only_scan
consumer.group.protocol=classic
PROPS
    start_worker() {
        java -Xmx384m -XX:+UseSerialGC -Djava.awt.headless=true \
            -Dlog4j2.configurationFile="$KAFKA_HERE/log4j2-tools.properties" \
            -cp "$KAFKA_LIB/*:$JVM_CLASSES" org.apache.kafka.connect.cli.ConnectDistributed "$dir/worker.properties" \
            >>"$dir/worker.log" 2>&1 &
        pid=$!
        local i
        for i in $(seq 1 600); do        # the REST API answers once the worker has joined
            kill -0 "$pid" 2>/dev/null || return 1
            curl -sf "http://127.0.0.1:$port/connectors" >/dev/null 2>&1 && return 0
            sleep 0.2
        done
        return 1
    }
    stop_worker() {
        [ -n "$pid" ] || return 0
        kill -TERM "$pid" 2>/dev/null || true
        local i
        for i in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=""
    }
    lines_of() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
    # exact_once_in_order: the sink file, each line kept at its first occurrence, is the source
    # file; prints how many lines Connect delivered again (it is at-least-once: a task restarted by
    # a rebalance or a restart resumes from its last flushed offset, as against Kafka)
    exact_in_order() {
        python3 - "$dir/in.txt" "$dir/out.txt" <<'PY'
import sys
src = open(sys.argv[1], "rb").read().splitlines()
out = open(sys.argv[2], "rb").read().splitlines()
seen, first = set(), []
for line in out:
    if line not in seen:
        seen.add(line)
        first.append(line)
print(len(out) - len(first))
sys.exit(0 if first == src else 1)
PY
    }
    # wait_lines N: until the sink file has N distinct lines (at most 120 s), and the worker runs
    wait_lines() {
        local i
        for i in $(seq 1 1200); do
            [ "$(sort -u "$dir/out.txt" 2>/dev/null | wc -l)" -ge "$1" ] && return 0
            kill -0 "$pid" 2>/dev/null || return 1
            sleep 0.1
        done
        return 1
    }
    fail() {
        echo "FAIL $name: $1"
        CONNECT_FAILED=1
        grep -E 'ERROR|Exception' "$dir/worker.log" | grep -v '^\s*at ' | head -n 8 | sed 's/^/    | /'
        stop_worker
        rm -rf "$dir"
    }
    CONNECT_FAILED=0
    for n in $(seq 1 300); do printf 'line %d: some text, UTF-8 \xc3\xa9\n' "$n"; done >"$dir/in.txt"
    start_worker || { fail "worker did not serve its REST API"; return; }
    curl -sf -X PUT -H 'Content-Type: application/json' "http://127.0.0.1:$port/connectors/src-$tag/config" \
        -d "{\"connector.class\": \"org.apache.kafka.connect.file.FileStreamSourceConnector\", \"tasks.max\": \"1\", \"file\": \"$dir/in.txt\", \"topic\": \"$t\"}" >/dev/null ||
        { fail "PUT source connector"; return; }
    curl -sf -X PUT -H 'Content-Type: application/json' "http://127.0.0.1:$port/connectors/sink-$tag/config" \
        -d "{\"connector.class\": \"org.apache.kafka.connect.file.FileStreamSinkConnector\", \"tasks.max\": \"1\", \"file\": \"$dir/out.txt\", \"topics\": \"$t\"}" >/dev/null ||
        { fail "PUT sink connector"; return; }
    wait_lines 300 || { fail "sink file has $(lines_of "$dir/out.txt") of 300 lines"; return; }
    local again
    again=$(exact_in_order) || { fail "the first 300 lines differ (or are out of order)"; return; }
    ok=$(curl -sf "http://127.0.0.1:$port/connectors/src-$tag/status")
    case "$ok" in *'"state":"RUNNING"'*) ;; *) fail "source status: $ok"; return ;; esac
    stop_worker
    for n in $(seq 301 500); do printf 'line %d: after the restart\n' "$n"; done >>"$dir/in.txt"
    start_worker || { fail "worker did not come back"; return; }
    wait_lines 500 || { fail "after the restart the sink file has $(lines_of "$dir/out.txt") of 500 lines"; return; }
    if again=$(exact_in_order); then
        echo "PASS $name"
        echo "    500 lines through FileStreamSource -> $t -> FileStreamSink in order, none lost, worker restarted after 300 ($again delivered again, at-least-once)"
        stop_worker
        rm -rf "$dir"
    else
        fail "the sink file is not the source file in order ($(lines_of "$dir/out.txt") lines)"
    fi
}
