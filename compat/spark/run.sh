#!/usr/bin/env bash
# Spark 3.5.8 with Iceberg 1.10.1's Spark runtime reads zombi's Iceberg tables exactly.
#
#   ZOMBI_BIN=/path/to/zombi compat/spark/run.sh          (SPARK_MODES="local s3" by default)
#
# Installs (once, into ${ZOMBI_CACHE:-~/.cache/zombi}/spark/lib; about 1 min and 350 MB from Maven
# Central) spark-sql_2.13 3.5.8, iceberg-spark-runtime-3.5_2.13 and iceberg-aws-bundle 1.10.1 and
# sqlite-jdbc, and compiles SparkRead.java. Then, once with a local warehouse and once with the
# log and the warehouse on S3 (moto's server from the venv of compat/setup.sh, on a free port of
# 127.0.0.1), starts zombi fresh with a 1 s Iceberg commit interval, produces 300 records over 3
# partitions (produce.py, confluent-kafka), waits for the sink to commit them all (pyiceberg), and
# has Spark (local[1], Iceberg's JdbcCatalog on the broker's SQLite catalog file, catalog name
# zombi; S3FileIO for S3) read the table: every (partition, offset) once, with its key, value,
# timestamp and headers exact.
# Last line: "N passed, M failed".
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
COMPAT=$(cd "$HERE/.." && pwd)
. "$COMPAT/suites/lib.sh"
require_zombi_bin
"$COMPAT/setup.sh" >&2
DIR=$CACHE/spark
LIB=$DIR/lib
SUM=$(cat "$HERE/pom.xml" "$HERE/SparkRead.java" | sha256sum | cut -c1-16)
if [ "$(cat "$DIR/.installed" 2>/dev/null)" != "$SUM" ]; then
    log "fetching Spark 3.5.8, Iceberg's Spark runtime and sqlite-jdbc from Maven Central into $LIB"
    mkdir -p "$DIR"
    rm -rf "$LIB.tmp" "$DIR/classes"
    mvn -q -B -f "$HERE/pom.xml" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DoutputDirectory="$LIB.tmp" -DincludeScope=runtime >"$DIR/mvn.log" 2>&1 ||
        { cat "$DIR/mvn.log" >&2; exit 1; }
    rm -rf "$LIB"
    mv "$LIB.tmp" "$LIB"
    mkdir -p "$DIR/classes"
    javac -d "$DIR/classes" -cp "$LIB/*" "$HERE/SparkRead.java"
    echo "$SUM" >"$DIR/.installed"
fi

# Spark 3.5 on Java 17 needs the module openings its launcher passes (JavaModuleOptions)
opens=()
for p in java.lang java.lang.invoke java.lang.reflect java.io java.net java.nio java.util \
    java.util.concurrent java.util.concurrent.atomic sun.nio.ch sun.nio.cs sun.security.action sun.util.calendar; do
    opens+=(--add-opens "java.base/$p=ALL-UNNAMED")
done
work=$(mktemp -d "${TMPDIR:-/tmp}/zombi-spark.XXXXXX")
MOTO_PID=
cleanup() {
    zombi_stop
    [ -z "$MOTO_PID" ] || { kill "$MOTO_PID" 2>/dev/null; wait "$MOTO_PID" 2>/dev/null || true; }
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
PASSED=0
FAILED=0

# one_mode local|s3: a fresh zombi, 300 records, Spark reads them back
one_mode() {
    local mode=$1 endpoint="" port args=(--iceberg-commit-interval-ms 1000) warehouse
    if [ "$mode" = s3 ]; then
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        "$CACHE/venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
        MOTO_PID=$!
        endpoint=http://127.0.0.1:$port
        for _ in $(seq 1 100); do curl -s -o /dev/null "$endpoint" && break; sleep 0.1; done
        curl -sf -X PUT "$endpoint/zombi-spark" >/dev/null
        export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
        # the log and, beside it, the Iceberg warehouse on S3 (s3://zombi-spark/p/iceberg/warehouse)
        args+=(--object-store s3://zombi-spark/p --s3-endpoint "$endpoint" --s3-region us-east-1)
        warehouse=s3://zombi-spark/p/iceberg/warehouse
    fi
    zombi_start "${args[@]}"
    local data=$ZOMBI_WORK/data topic=spark.check-$mode
    [ "$mode" = s3 ] || warehouse=file://$data/iceberg/warehouse
    if ! "$CACHE/venv/bin/python" "$HERE/produce.py" "$ZOMBI_BOOTSTRAP" "$topic" "$data/iceberg/catalog.db" \
            "$work/expected-$mode.jsonl" ${endpoint:+"$endpoint"}; then
        echo "FAIL spark_reads_every_partition_offset_$mode: the Iceberg sink did not commit every record"
        FAILED=$((FAILED + 1))
        zombi_stop
        return
    fi
    timeout -k 10 600 java -Xmx1g "${opens[@]}" -Djdk.reflect.useDirectMethodHandle=false \
        -Dlog4j2.configurationFile="$COMPAT/kafka/log4j2-tools.properties" \
        -cp "$LIB/*:$DIR/classes" SparkRead "jdbc:sqlite:$data/iceberg/catalog.db" "$warehouse" \
        "$topic" "$work/expected-$mode.jsonl" ${endpoint:+"$endpoint"} 2>"$work/spark-$mode.log" |
        tee "$work/out-$mode" | grep -v 'passed, .* failed$' || true
    local p f
    read -r p f < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$work/out-$mode")
    if [ -z "$p" ]; then
        echo "FAIL spark_reads_every_partition_offset_$mode: Spark did not finish; end of its log:"
        tail -n 20 "$work/spark-$mode.log"
        p=0 f=1
    fi
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
    zombi_stop
    if [ -n "$MOTO_PID" ]; then kill "$MOTO_PID" 2>/dev/null; wait "$MOTO_PID" 2>/dev/null || true; MOTO_PID=; fi
}

T0=$(date +%s)
: >"$work/all.out"
for mode in ${SPARK_MODES:-local s3}; do
    one_mode "$mode" > >(tee -a "$work/all.out")
done
# the report card's section (compat/suites/report.py copies it into compat/REPORT.md)
{
    echo "## Spark reads the Iceberg tables"
    echo
    echo "\`compat/spark/run.sh\`: Spark 3.5.8 with Iceberg 1.10.1's Spark runtime (Maven Central) reads"
    echo "what zombi's Iceberg sink committed, through Iceberg's JDBC catalog on the broker's SQLite file, and"
    echo "compares every (partition, offset) with its key, value, timestamp and headers to what"
    echo "confluent-kafka produced (300 records, 3 partitions). Last run $(date -u +%Y-%m-%dT%H:%M:%SZ),"
    echo "$(( $(date +%s) - T0 )) s, zombi $(zombi_identity):"
    echo
    echo "| warehouse | check | result |"
    echo "|---|---|---|"
    sed -n 's/^\(PASS\|FAIL\) \([a-z_]*\)_\(local\|s3\)\(.*\)$/| \3 | `\2` | \1\4 |/p' "$work/all.out" |
        sed 's/| PASS/| pass/; s/| FAIL/| **FAIL**/'
    echo
    echo "Trino could not be run: its server tarball (\`io.trino:trino-server\` 483, and"
    echo "\`trino-server-core\`) is not on the Maven Central this machine reaches."
} >"$COMPAT/results/spark.section.md"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
