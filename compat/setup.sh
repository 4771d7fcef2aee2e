#!/usr/bin/env bash
# Installs the external peers the compat scripts and the integration tests use: kcat (Debian),
# confluent-kafka and moto's S3 server (PyPI, in a venv under ${ZOMBI_CACHE:-~/.cache/zombi}/venv).
# Idempotent.
set -euo pipefail
CONFLUENT_KAFKA_VERSION=2.16.1
MOTO_VERSION=5.2.5
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
