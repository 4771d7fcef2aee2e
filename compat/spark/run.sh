#!/usr/bin/env bash
# Spark 3.5.8 with Iceberg 1.10.1's Spark runtime reads zombi's Iceberg tables exactly.
#
#   ZOMBI_BIN=/path/to/zombi compat/spark/run.sh
#
# Installs (once, into ${ZOMBI_CACHE:-~/.cache/zombi}/spark/lib; about 1 min and 300 MB from Maven
# Central) spark-sql_2.13 3.5.8, iceberg-spark-runtime-3.5_2.13 1.10.1 and sqlite-jdbc, compiles
# SparkRead.java, starts zombi on 127.0.0.1 with a fresh data dir and a 1 s Iceberg commit
# interval, produces 300 records over 3 partitions (produce.py, confluent-kafka from the venv of
# compat/setup.sh), waits for the sink to commit them all (pyiceberg), and has Spark (local[1],
# Iceberg's JdbcCatalog on the broker's SQLite catalog file, catalog name zombi) read the table:
# every (partition, offset) once, with its key, value, timestamp and headers exact.
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

trap 'zombi_stop' EXIT
export ZOMBI_KEEP_DATA=
zombi_start --iceberg-commit-interval-ms 1000
work=$(mktemp -d "${TMPDIR:-/tmp}/zombi-spark.XXXXXX")
trap 'zombi_stop; rm -rf "$work"' EXIT
data=$ZOMBI_WORK/data
topic=spark.check-1
"$CACHE/venv/bin/python" "$HERE/produce.py" "$ZOMBI_BOOTSTRAP" "$topic" "$data/iceberg/catalog.db" \
    "$work/expected.jsonl"
# Spark 3.5 on Java 17 needs the module openings its launcher passes (JavaModuleOptions)
opens=()
for p in java.lang java.lang.invoke java.lang.reflect java.io java.net java.nio java.util \
    java.util.concurrent java.util.concurrent.atomic sun.nio.ch sun.nio.cs sun.security.action sun.util.calendar; do
    opens+=(--add-opens "java.base/$p=ALL-UNNAMED")
done
timeout -k 10 600 java -Xmx1g "${opens[@]}" -Djdk.reflect.useDirectMethodHandle=false \
    -Dlog4j2.configurationFile="$COMPAT/kafka/log4j2-tools.properties" \
    -cp "$LIB/*:$DIR/classes" SparkRead "jdbc:sqlite:$data/iceberg/catalog.db" "file://$data/iceberg/warehouse" \
    "$topic" "$work/expected.jsonl" 2>"$work/spark.log" | tee "$work/out"
tail -n 1 "$work/out" | grep -q '^[0-9]* passed, 0 failed$' || { tail -n 30 "$work/spark.log" >&2; exit 1; }
