#!/usr/bin/env bash
# Installs what the tests need, then runs every check: formatting, clippy, unit, property and
# integration tests (real zombi binary, rdkafka over TCP; the web console in headless chromium; the
# Iceberg sink on private PostgreSQL clusters, a moto S3 server and SeaweedFS's REST catalog), the kcat / confluent-kafka
# scripts, the differential conformance run against Apache Kafka (compat/differential), and the
# packaging checks (hadolint, docker-compose config).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh kcat chromium postgresql libssl-dev pkg-config openssl
compat/setup.sh
export ZOMBI_PYTHON="${ZOMBI_CACHE:-$HOME/.cache/zombi}/venv/bin/python"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zombi-target}"
export CARGO_TERM_COLOR=never

# Every stage that runs servers and clients is bounded (all its processes are in the process group
# that `timeout` signals): a hang fails CI in minutes and names its stage, instead of holding CI
# to its limit. The bounds are several times what each stage takes on 2 cores.
bounded() {
    local limit=$1
    shift
    local status=0
    timeout --kill-after=30 "$limit" "$@" </dev/null || status=$?
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        echo "== TIMED OUT after $limit: $*"
    fi
    return "$status"
}

echo "== layers (no cycle among the modules; crates used only by their owners)"
python3 scripts/check_layers.py
echo "== packaging (Dockerfile, docker-compose.yml; no Docker engine needed)"
scripts/check-packaging.sh
echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --release --all-targets -- -D warnings
echo "== cargo test"
cargo test --release --lib --bins --tests --no-run
# Every checkout sharing this target dir writes the same release/zombi: test a private copy.
bin_dir=$(mktemp -d)
trap 'rm -rf "$bin_dir"' EXIT
cp "$CARGO_TARGET_DIR/release/zombi" "$bin_dir/zombi"
export ZOMBI_BIN="$bin_dir/zombi"
bounded 30m cargo test --release --lib --bins --tests
echo "== compat (kcat, confluent-kafka)"
bounded 10m compat/run.sh
echo "== differential conformance against Apache Kafka 4.4 (compat/differential, fast scenarios)"
bounded 15m compat/differential/run.sh --fast
echo "== Spark 3.5 reads a table through zombi's Iceberg REST catalog (compat/spark/run.sh, rest mode)"
# After the differential run, whose install brings maven and the JDK; Spark's jars come from Maven
# Central once (about 350 MB). The other modes (JDBC catalogs, S3) run with compat/spark/run.sh.
SPARK_MODES=rest bounded 10m compat/spark/run.sh
echo "== client suites, smoke list (compat/suites/smoke.txt)"
# kafka-python's suite is a pip install away and always runs. librdkafka's and the rdkafka crate's
# each compile librdkafka (~10 min apiece on 2 cores): they run here once built, which
# `compat/suites/run_smoke.sh` (or ZOMBI_SMOKE_BUILD=1 here) does on a new machine.
suites_dir="${ZOMBI_CACHE:-$HOME/.cache/zombi}/suites"
smoke=(kafka_python)
if [ "${ZOMBI_SMOKE_BUILD:-0}" = 1 ] || [ -f "$suites_dir/librdkafka-2.12.1/.zombi-built" ]; then smoke+=(librdkafka); fi
if [ "${ZOMBI_SMOKE_BUILD:-0}" = 1 ] || [ -f "$suites_dir/rdkafka-0.39.0/.zombi-prepared" ]; then smoke+=(rdkafka); fi
[ "${#smoke[@]}" -eq 3 ] || echo "smoke: librdkafka/rdkafka suites not built here; running ${smoke[*]}"
bounded 30m compat/suites/run_smoke.sh "${smoke[@]}"
if [[ " ${smoke[*]} " == *" librdkafka "* ]]; then
    echo "== client suites, librdkafka's smoke list over SASL_SSL with SCRAM (ZOMBI_SECURED=1)"
    ZOMBI_SECURED=1 bounded 15m compat/suites/run_smoke.sh librdkafka
fi
