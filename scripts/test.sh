#!/usr/bin/env bash
# Installs what the tests need, then runs every check: formatting, clippy, unit, property and
# integration tests (real zombi binary, rdkafka over TCP), and the kcat / confluent-kafka scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh kcat
compat/setup.sh
export ZOMBI_PYTHON="${ZOMBI_CACHE:-$HOME/.cache/zombi}/venv/bin/python"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zombi-target}"
export CARGO_TERM_COLOR=never

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --release --all-targets -- -D warnings
echo "== cargo test"
cargo test --release --lib --bins --tests
echo "== compat (kcat, confluent-kafka)"
ZOMBI_BIN="$CARGO_TARGET_DIR/release/zombi" compat/run.sh
