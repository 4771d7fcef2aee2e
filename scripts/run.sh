#!/usr/bin/env bash
# Builds zombi (release) and starts it with embedded defaults; extra arguments go to zombi.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zombi-target}"
cargo build --release --bin zombi
exec "$CARGO_TARGET_DIR/release/zombi" "$@"
