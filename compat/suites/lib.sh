# Shared helpers for compat/suites/run_*.sh (sourced, not executed).
#
# Provides:
#   CACHE               ${ZOMBI_CACHE:-$HOME/.cache/zombi}
#   SUITES_DIR          $CACHE/suites (sources and builds of the client suites)
#   RESULTS_DIR         compat/results (JSON results)
#   require_zombi_bin   checks $ZOMBI_BIN
#   apt_install PKG...  installs Debian packages that are missing
#   zombi_start [ARGS]  starts $ZOMBI_BIN on 127.0.0.1 with free ports (Kafka port
#                       $ZOMBI_KAFKA_PORT if set) and a fresh data dir;
#                       sets ZOMBI_PID, ZOMBI_BOOTSTRAP (host:port), ZOMBI_PORT, ZOMBI_LOG
#   port_free PORT      true if nothing listens on 127.0.0.1:PORT
#   zombi_stop          SIGTERM, then SIGKILL after 10 s
#   zombi_alive         true while the broker runs
#   zombi_restart [ARGS] stop, then start again with a fresh data dir
#   zombi_identity      "sha256=<12 hex> mtime=<UTC>" of $ZOMBI_BIN, for the result files
#   suite_lock SUITE    holds $SUITES_DIR/.SUITE.lock for the rest of the script: two runs of
#                       one suite share its build, logs and (librdkafka) tests/test.conf, so the
#                       second waits (at most $ZOMBI_SUITE_LOCK_WAIT s, default 3600) or fails
#   cargo_crate_src NAME VERSION  prints the crate's source dir in the cargo registry, after
#                       `cargo fetch`ing it from crates.io if it is not there
# The skeleton every run_<suite>.sh follows:
#   suite_begin SUITE VERSION   sets SUITE, VERSION, LOGDIR ($SUITES_DIR/logs/SUITE, -smoke with
#                       SMOKE=1) and ZOMBI_ID; checks $ZOMBI_BIN and takes the suite's lock
#   (prepare the suite)
#   suite_run_begin     empties LOGDIR, creates JSONL (LOGDIR/results.jsonl), sends the broker
#                       logs to LOGDIR and stops the broker on exit
#   (zombi_start, run the tests, record them in JSONL with results.py)
#   suite_finish SECONDS [KEY=VALUE...]  writes compat/results/SUITE.json (not with SMOKE=1)
#   suite_summary [RUNNER_RC]  prints "N passed, M failed, K skipped", the script's last line;
#                       fails on a failed test or a runner exit code other than 0 and 1
#   seconds_since T0    seconds since T0, a `date +%s.%N` value
# With ZOMBI_LOG_DIR set, the broker logs go to $ZOMBI_LOG_DIR/zombi-N.log (N counts starts) and
# the temporary dir is removed on stop.

SUITES_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
COMPAT_DIR=$(cd "$SUITES_HERE/.." && pwd)
CACHE=${ZOMBI_CACHE:-$HOME/.cache/zombi}
SUITES_DIR=$CACHE/suites
RESULTS_DIR=${ZOMBI_RESULTS_DIR:-$COMPAT_DIR/results}
ZOMBI_START_TIMEOUT=${ZOMBI_START_TIMEOUT:-30}
mkdir -p "$SUITES_DIR" "$RESULTS_DIR"

ZOMBI_PID=
ZOMBI_WORK=
ZOMBI_BOOTSTRAP=
ZOMBI_PORT=
ZOMBI_LOG=
ZOMBI_STARTS=0

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

require_zombi_bin() {
    if [ -z "${ZOMBI_BIN:-}" ]; then
        echo "set ZOMBI_BIN to the zombi binary, e.g. ZOMBI_BIN=\$CARGO_TARGET_DIR/release/zombi $0" >&2
        exit 2
    fi
    if [ ! -x "$ZOMBI_BIN" ]; then
        echo "ZOMBI_BIN=$ZOMBI_BIN is not an executable file" >&2
        exit 2
    fi
}

apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    timeout 900 apt-get install -y -qq "${missing[@]}" >/dev/null ||
        { timeout 300 apt-get update -qq && timeout 900 apt-get install -y -qq "${missing[@]}" >/dev/null; }
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

zombi_alive() { [ -n "$ZOMBI_PID" ] && kill -0 "$ZOMBI_PID" 2>/dev/null; }

# zombi_start [extra zombi flags...]
zombi_start() {
    ZOMBI_WORK=$(mktemp -d "${TMPDIR:-/tmp}/zombi-suite.XXXXXX")
    ZOMBI_STARTS=$((ZOMBI_STARTS + 1))
    if [ -n "${ZOMBI_LOG_DIR:-}" ]; then
        mkdir -p "$ZOMBI_LOG_DIR"
        ZOMBI_LOG=$ZOMBI_LOG_DIR/zombi-$ZOMBI_STARTS.log
    else
        ZOMBI_LOG=$ZOMBI_WORK/zombi.log
    fi
    mkdir -p "$ZOMBI_WORK/data"
    "$ZOMBI_BIN" --data-dir "$ZOMBI_WORK/data" \
        --kafka-listen "127.0.0.1:${ZOMBI_KAFKA_PORT:-0}" --http-listen 127.0.0.1:0 "$@" \
        >"$ZOMBI_WORK/stdout" 2>>"$ZOMBI_LOG" &
    ZOMBI_PID=$!
    local line="" i
    for i in $(seq 1 $((ZOMBI_START_TIMEOUT * 10))); do   # bounded: poll every 0.1 s
        line=$(grep -m1 '^zombi listening kafka=' "$ZOMBI_WORK/stdout" 2>/dev/null || true)
        [ -n "$line" ] && break
        zombi_alive || break
        sleep 0.1
    done
    if [ -z "$line" ]; then
        log "zombi did not start within ${ZOMBI_START_TIMEOUT}s"
        tail -n 30 "$ZOMBI_LOG" >&2 || true
        zombi_stop
        return 1
    fi
    ZOMBI_BOOTSTRAP=$(sed -E 's/^zombi listening kafka=([^ ]+).*/\1/' <<<"$line")
    ZOMBI_PORT=${ZOMBI_BOOTSTRAP##*:}
    ZOMBI_HTTP=$(sed -E 's/.* http=([^ ]+).*/\1/' <<<"$line")
    log "zombi $ZOMBI_PID listening on $ZOMBI_BOOTSTRAP (log $ZOMBI_LOG)"
}

zombi_stop() {
    if zombi_alive; then
        kill -TERM "$ZOMBI_PID" 2>/dev/null || true
        local i
        for i in $(seq 1 100); do
            kill -0 "$ZOMBI_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$ZOMBI_PID" 2>/dev/null; then
            log "zombi did not stop on SIGTERM within 10 s; killing it"
            kill -KILL "$ZOMBI_PID" 2>/dev/null || true
        fi
        wait "$ZOMBI_PID" 2>/dev/null || true
    fi
    ZOMBI_PID=
    if [ -n "$ZOMBI_WORK" ] && [ -z "${ZOMBI_KEEP_DATA:-}" ]; then
        if [ -n "${ZOMBI_LOG_DIR:-}" ]; then
            rm -rf "$ZOMBI_WORK"
        else
            rm -rf "$ZOMBI_WORK/data"     # keep the log beside it
        fi
    fi
    ZOMBI_WORK=
}

suite_lock() {
    exec 9>"$SUITES_DIR/.$1.lock"
    if ! flock -n 9; then
        log "another run of the $1 suite holds $SUITES_DIR/.$1.lock; waiting"
        if ! flock -w "${ZOMBI_SUITE_LOCK_WAIT:-3600}" 9; then
            echo "gave up waiting for $SUITES_DIR/.$1.lock" >&2
            exit 1
        fi
    fi
}

zombi_identity() {
    local sum mtime
    sum=$(sha256sum "$ZOMBI_BIN" | cut -c1-12)
    mtime=$(date -u -r "$ZOMBI_BIN" +%Y-%m-%dT%H:%M:%SZ)
    echo "sha256=$sum mtime=$mtime"
}

zombi_restart() {
    zombi_stop
    zombi_start "$@"
}

# cargo_crate_src NAME VERSION
cargo_crate_src() {
    local name=$1 version=$2 dir tmp
    dir=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$name-$version" 2>/dev/null | head -n 1)
    if [ -z "$dir" ]; then
        log "fetching $name $version from crates.io"
        tmp=$(mktemp -d)
        mkdir -p "$tmp/src"
        printf '[package]\nname = "fetch-%s"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n%s = "=%s"\n' \
            "$name" "$name" "$version" >"$tmp/Cargo.toml"
        touch "$tmp/src/lib.rs"
        (cd "$tmp" && timeout 900 cargo fetch -q) || { rm -rf "$tmp"; return 1; }
        rm -rf "$tmp"
        dir=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$name-$version" 2>/dev/null | head -n 1)
    fi
    if [ -z "$dir" ]; then
        echo "crate $name $version is not in the cargo registry even after cargo fetch" >&2
        return 1
    fi
    echo "$dir"
}

# suite_begin SUITE VERSION
suite_begin() {
    SUITE=$1
    VERSION=$2
    LOGDIR=$SUITES_DIR/logs/$SUITE${SMOKE:+-smoke}
    require_zombi_bin
    suite_lock "$SUITE"
    ZOMBI_ID=$(zombi_identity)
}

suite_run_begin() {
    rm -rf "$LOGDIR"
    mkdir -p "$LOGDIR"
    JSONL=$LOGDIR/results.jsonl
    : >"$JSONL"
    trap 'zombi_stop' EXIT
    export ZOMBI_LOG_DIR=$LOGDIR
}

seconds_since() {
    python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$(date +%s.%N)"
}

# suite_finish SECONDS [KEY=VALUE...]: the binary's identity is always part of the metadata.
suite_finish() {
    local secs=$1
    shift
    [ -z "${SMOKE:-}" ] || return 0
    python3 "$SUITES_HERE/results.py" finish "$JSONL" "$RESULTS_DIR/$SUITE.json" "$SUITE" "$VERSION" "$secs" \
        "zombi_bin=$ZOMBI_BIN $ZOMBI_ID" "$@"
}

# suite_summary [RUNNER_RC]
suite_summary() {
    python3 "$SUITES_HERE/results.py" summary "$JSONL" "$@"
}
