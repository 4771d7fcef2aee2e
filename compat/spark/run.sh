#!/usr/bin/env bash
# Spark 3.5.8 with Iceberg 1.10.1's Spark runtime reads zombi's Iceberg tables exactly.
#
#   ZOMBI_BIN=/path/to/zombi compat/spark/run.sh          (SPARK_MODES="local s3 postgres rest" by default)
#
# Installs (once, into ${ZOMBI_CACHE:-~/.cache/zombi}/spark/lib; about 1 min and 350 MB from Maven
# Central) spark-sql_2.13 3.5.8, iceberg-spark-runtime-3.5_2.13 and iceberg-aws-bundle 1.10.1,
# sqlite-jdbc and the PostgreSQL JDBC driver, and compiles SparkRead.java. Then runs four times:
#   local     the SQLite catalog file and the warehouse in zombi's data dir
#   s3        the log and the warehouse on S3 (moto's server from the venv of compat/setup.sh)
#   postgres  the catalog on a private PostgreSQL cluster (Debian's postgresql), local warehouse
#   rest      as local, but Spark reads through the Iceberg REST catalog zombi serves
#             (spark.sql.catalog.zombi.type=rest, uri=http://HOST:PORT/iceberg)
# each time on 127.0.0.1 and free ports: starts zombi fresh with a 1 s Iceberg commit interval,
# produces 300 records over 3 partitions (produce.py, confluent-kafka), waits for the sink to
# commit them all (pyiceberg), and has Spark (local[1], Iceberg's JdbcCatalog, catalog name
# zombi; S3FileIO for S3) read the table: every (partition, offset) once, with its key, value,
# timestamp and headers exact. Writes compat/results/spark.section.md (in REPORT.md).
# Last line: "N passed, M failed".
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
COMPAT=$(cd "$HERE/.." && pwd)
. "$COMPAT/suites/lib.sh"
require_zombi_bin
"$COMPAT/setup.sh" >&2
if ! command -v mvn >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1; then
    log "installing maven and a JDK (Debian)"
    apt_install maven openjdk-17-jdk-headless >&2
fi
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
    pg_stop
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
    local catalog_py="" catalog_jdbc=""
    if [ "$mode" = postgres ]; then
        pg_start || { echo "FAIL spark_reads_every_partition_offset_postgres: PostgreSQL did not start"; FAILED=$((FAILED + 1)); return; }
        args+=(--iceberg-catalog "postgres://zombi:zombi@127.0.0.1:$PG_PORT/zombi")
        catalog_py="postgresql+psycopg2://zombi:zombi@127.0.0.1:$PG_PORT/zombi"
        catalog_jdbc="jdbc:postgresql://127.0.0.1:$PG_PORT/zombi?user=zombi&password=zombi"
    fi
    zombi_start "${args[@]}"
    local data=$ZOMBI_WORK/data topic=spark.check-$mode
    [ "$mode" = s3 ] || warehouse=file://$data/iceberg/warehouse
    [ -n "$catalog_py" ] || catalog_py=$data/iceberg/catalog.db
    [ -n "$catalog_jdbc" ] || catalog_jdbc=jdbc:sqlite:$data/iceberg/catalog.db
    # rest: Spark reads through the Iceberg REST catalog zombi serves (type=rest), not JDBC
    [ "$mode" != rest ] || catalog_jdbc=http://$ZOMBI_HTTP/iceberg
    if ! "$CACHE/venv/bin/python" "$HERE/produce.py" "$ZOMBI_BOOTSTRAP" "$topic" "$catalog_py" \
            "$work/expected-$mode.jsonl" ${endpoint:+"$endpoint"}; then
        echo "FAIL spark_reads_every_partition_offset_$mode: the Iceberg sink did not commit every record"
        FAILED=$((FAILED + 1))
        zombi_stop
        return
    fi
    timeout -k 10 600 java -Xmx1g "${opens[@]}" -Djdk.reflect.useDirectMethodHandle=false -Dcheck.suffix="_$mode" \
        -Dlog4j2.configurationFile="$COMPAT/kafka/log4j2-tools.properties" \
        -cp "$LIB/*:$DIR/classes" SparkRead "$catalog_jdbc" "$warehouse" \
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
    pg_stop
}

# A private PostgreSQL cluster (Debian's postgresql; initdb refuses root, so the postgres user
# runs it) on a free port of 127.0.0.1, with user zombi/zombi and database zombi.
PG_DIR=
PG_PORT=
PG_USER=
pg_start() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$bin" ] || apt_install postgresql
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/zombi-spark-pg.XXXXXX")
    PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    echo zombi >"$PG_DIR/password"
    PG_USER=
    if [ "$(id -u)" = 0 ]; then PG_USER=postgres; chown -R postgres "$PG_DIR"; fi
    pg() { if [ -n "$PG_USER" ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi; }
    pg "$bin/initdb" -D "$PG_DIR/data" -U zombi --auth=scram-sha-256 --pwfile="$PG_DIR/password" \
        --no-sync -E UTF8 >"$PG_DIR/initdb.log" 2>&1 || return 1
    pg "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off" start >/dev/null || return 1
    PGPASSWORD=zombi "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U zombi zombi
}
pg_stop() {
    [ -n "$PG_DIR" ] || return 0
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    if [ -n "$PG_USER" ]; then runuser -u "$PG_USER" -- "$bin/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    else "$bin/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true; fi
    rm -rf "$PG_DIR"
    PG_DIR=
}

T0=$(date +%s)
: >"$work/all.out"
for mode in ${SPARK_MODES:-local s3 postgres rest}; do
    one_mode "$mode" > >(tee -a "$work/all.out")
done
# the report card's section (compat/suites/report.py copies it into compat/REPORT.md), from a
# run of every mode only (CI runs the rest mode alone)
[ -n "${SPARK_MODES:-}" ] || {
    echo "## Spark reads the Iceberg tables"
    echo
    echo "\`compat/spark/run.sh\`: Spark 3.5.8 with Iceberg 1.10.1's Spark runtime (Maven Central) reads"
    echo "what zombi's Iceberg sink committed, through Iceberg's JDBC catalog (the broker's SQLite file, or"
    echo "PostgreSQL with \`--iceberg-catalog postgres://\`; warehouse local or on S3 (moto)) and through the"
    echo "Iceberg REST catalog zombi serves (\`type=rest\`, \`uri=http://HOST:PORT/iceberg\`), and"
    echo "compares every (partition, offset) with its key, value, timestamp and headers to what"
    echo "confluent-kafka produced (300 records, 3 partitions). Last run $(date -u +%Y-%m-%dT%H:%M:%SZ),"
    echo "$(( $(date +%s) - T0 )) s, zombi $(zombi_identity):"
    echo
    echo "| run | check | result |"
    echo "|---|---|---|"
    sed -n 's/^\(PASS\|FAIL\) \([a-z_]*\)_\(local\|s3\|postgres\|rest\)\(.*\)$/| \3 | `\2` | \1\4 |/p' "$work/all.out" |
        sed 's/| PASS/| pass/; s/| FAIL/| **FAIL**/'
    echo
    echo "Trino could not be run: its server tarball (\`io.trino:trino-server\` 483, and"
    echo "\`trino-server-core\`) is not on the Maven Central this machine reaches."
} >"$COMPAT/results/spark.section.md"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
