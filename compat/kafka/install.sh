#!/usr/bin/env bash
# Installs Apache Kafka (the broker, its tools, Streams and Connect) as a reference peer:
# `mvn dependency:copy-dependencies` of compat/kafka/pom.xml into
# ${ZOMBI_CACHE:-~/.cache/zombi}/kafka/<version>/lib, from Maven Central only. Idempotent: a
# finished install leaves a stamp holding the pom's checksum, and a second run with the same pom
# does nothing. Prints the lib dir (the classpath is "LIB/*") as its last line.
#
#   compat/kafka/install.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${ZOMBI_CACHE:-$HOME/.cache/zombi}
VERSION=$(sed -n 's#.*<kafka.version>\(.*\)</kafka.version>.*#\1#p' "$HERE/pom.xml")
DIR=$CACHE/kafka/$VERSION
LIB=$DIR/lib
STAMP=$DIR/.installed
SUM=$(sha256sum "$HERE/pom.xml" | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$SUM" ]; then
    echo "$LIB"
    exit 0
fi
need() { command -v "$1" >/dev/null 2>&1; }
if ! need mvn || ! need java; then
    echo "kafka: installing maven and a JDK with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq maven openjdk-17-jdk-headless >/dev/null ||
        { apt-get update -qq && apt-get install -y -qq maven openjdk-17-jdk-headless >/dev/null; }
fi
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock -w 1800 9                          # two installs at once: the second waits, then finds the stamp
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$SUM" ]; then
    echo "$LIB"
    exit 0
fi
echo "kafka: fetching Apache Kafka $VERSION and its dependencies from Maven Central into $LIB" >&2
t0=$(date +%s)
rm -rf "$LIB.tmp"
# maven's own repository (~/.m2) keeps the downloads; the lib dir gets copies.
if ! mvn -q -B -Dstyle.color=never -f "$HERE/pom.xml" \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DoutputDirectory="$LIB.tmp" -DincludeScope=runtime >"$DIR/mvn.log" 2>&1; then
    echo "kafka: mvn dependency:copy-dependencies failed; its output:" >&2
    cat "$DIR/mvn.log" >&2
    exit 1
fi
rm -rf "$LIB"
mv "$LIB.tmp" "$LIB"
echo "$SUM" >"$STAMP"
echo "kafka: installed $(ls "$LIB" | wc -l) jars in $(( $(date +%s) - t0 )) s" >&2
echo "$LIB"
