# Shared by benches/rdkafka_perf.sh and benches/sink_sustained.sh (sourced, not executed), after
# compat/suites/lib.sh. Sets PY (compat/setup.sh's venv) and OUT ($CACHE/perf), and provides:
#   rkp_build            sets RKP to librdkafka's rdkafka_performance, compiled once per librdkafka
#                        build from the source rdkafka-sys ships, against the static library cargo
#                        built for it (any `cargo bench --no-run` or release test build makes it)
#   create_topic B NAME  creates NAME with 4 partitions on the broker at B
#   peak_rss_mib PID     the process's peak RSS (VmHWM) in MiB

PY=${ZOMBI_PYTHON:-$CACHE/venv/bin/python}
[ -x "$PY" ] || { echo "no Python venv at $PY: run compat/setup.sh first" >&2; exit 2; }
OUT=$CACHE/perf
mkdir -p "$OUT"

rkp_build() {
    local target=${CARGO_TARGET_DIR:-$ROOT/target} rk_out zstd_a
    rk_out=$(ls -dt "$target"/release/build/rdkafka-sys-*/out 2>/dev/null | head -n 1 || true)
    zstd_a=$(ls -t "$target"/release/build/zstd-sys-*/out/libzstd.a 2>/dev/null | head -n 1 || true)
    if [ -z "$rk_out" ] || [ ! -f "$rk_out/src/librdkafka.a" ] || [ -z "$zstd_a" ]; then
        echo "no librdkafka build under $target/release: run cargo bench --no-run first" >&2
        exit 2
    fi
    RKP=$OUT/rdkafka_performance-$(basename "$(dirname "$rk_out")")
    if [ ! -x "$RKP" ]; then
        log "compiling rdkafka_performance from $rk_out"
        (cd "$rk_out" && gcc -O2 -I src -I . examples/rdkafka_performance.c src/librdkafka.a "$zstd_a" \
            -lm -lz -ldl -lpthread -lrt -o "$RKP.tmp") && mv "$RKP.tmp" "$RKP"
    fi
}

create_topic() {    # create_topic BOOTSTRAP NAME
    "$PY" - "$1" "$2" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for f in admin.create_topics([NewTopic(sys.argv[2], 4, 1)], request_timeout=30).values():
    f.result()
PY
}

peak_rss_mib() { awk '/^VmHWM:/ {print int($2 / 1024)}' "/proc/$1/status" 2>/dev/null || echo 0; }
