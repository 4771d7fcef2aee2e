#!/usr/bin/env bash
# Installs the external peers the compat scripts and the integration tests use: kcat (Debian),
# confluent-kafka, moto's S3 server and the Iceberg readers (pyiceberg with SQLite and Postgres
# catalog drivers, DuckDB with its iceberg, avro and httpfs extensions as PyPI wheels, so nothing is
# downloaded at run time), all from PyPI in a venv under ${ZOMBI_CACHE:-~/.cache/zombi}/venv.
# Idempotent. (PostgreSQL itself, for the Postgres catalog tests, is a Debian package: scripts/deps.sh.)
set -euo pipefail
CONFLUENT_KAFKA_VERSION=2.16.1
MOTO_VERSION=5.2.5
PYICEBERG_VERSION=0.12.0
DUCKDB_VERSION=1.5.5
PSYCOPG2_VERSION=2.9.13
CACHE=${ZOMBI_CACHE:-$HOME/.cache/zombi}
VENV=$CACHE/venv

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "$@" || { apt-get update && apt-get install -y "$@"; }
}
if ! command -v kcat >/dev/null 2>&1; then
    echo "compat: installing kcat" >&2
    apt_install kcat
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "compat: installing python3" >&2
    apt_install python3 python3-venv
fi
if ! "$VENV/bin/python" -c "import sys, confluent_kafka
sys.exit(confluent_kafka.__version__ != '$CONFLUENT_KAFKA_VERSION')" >/dev/null 2>&1; then
    echo "compat: installing confluent-kafka==$CONFLUENT_KAFKA_VERSION into $VENV" >&2
    mkdir -p "$CACHE"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check \
        "confluent-kafka==$CONFLUENT_KAFKA_VERSION"
fi

if ! "$VENV/bin/python" -c "import sys, moto
sys.exit(moto.__version__ != '$MOTO_VERSION')" >/dev/null 2>&1 || [ ! -x "$VENV/bin/moto_server" ]; then
    echo "compat: installing moto[server]==$MOTO_VERSION (the S3 server of the tiering tests) into $VENV" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

if ! "$VENV/bin/python" -c "import sys, pyiceberg, pyarrow, sqlalchemy, duckdb, duckdb_extensions, psycopg2
import duckdb_extension_iceberg, duckdb_extension_avro, duckdb_extension_httpfs
sys.exit(pyiceberg.__version__ != '$PYICEBERG_VERSION' or duckdb.__version__ != '$DUCKDB_VERSION'
         or not psycopg2.__version__.startswith('$PSYCOPG2_VERSION '))" >/dev/null 2>&1; then
    echo "compat: installing pyiceberg==$PYICEBERG_VERSION and duckdb==$DUCKDB_VERSION (the Iceberg readers) into $VENV" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check "pyiceberg[sql-sqlite,sql-postgres,pyarrow]==$PYICEBERG_VERSION" \
        "psycopg2-binary==$PSYCOPG2_VERSION" \
        "duckdb==$DUCKDB_VERSION" "duckdb-extensions==$DUCKDB_VERSION" \
        "duckdb-extension-iceberg==$DUCKDB_VERSION" "duckdb-extension-avro==$DUCKDB_VERSION" \
        "duckdb-extension-httpfs==$DUCKDB_VERSION"
fi
