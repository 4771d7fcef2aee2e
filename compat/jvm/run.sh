#!/usr/bin/env bash
# The JVM ecosystem (Apache Kafka 4.4.0's own clients and tools) against zombi, and the same
# checks against Apache Kafka itself as the reference:
#   - the Java client: Admin, the idempotent producer in every codec, classic group consumers
#     (src/ClientCheck.java)
#   - the Java client's transactions: committed and aborted transactions read read_committed and
#     read_uncommitted, the last stable offset, fencing, consume-transform-produce with
#     sendOffsetsToTransaction (src/TxnCheck.java)
#   - the CLI tools through their main classes: kafka-topics, kafka-configs,
#     kafka-consumer-groups (--describe, --reset-offsets), console producer and consumer,
#     verifiable producer and consumer, producer and consumer perf tests (cli_checks.sh)
#   - Kafka Streams word count and stream-table join, at_least_once, stopped mid-stream and
#     restarted; the word count with exactly_once_v2, killed mid-stream and restarted
#     (src/StreamsCheck.java)
#   - Kafka Connect in distributed mode with the file source and sink, restarted (connect_check.sh)
#
#   ZOMBI_BIN=/path/to/zombi compat/jvm/run.sh
#
# Env: JVM_PEERS (default "zombi kafka"), ZOMBI_CACHE. Each peer is started fresh on 127.0.0.1
# (both with group.initial.rebalance.delay.ms 0) and stopped afterwards. Writes
# compat/results/jvm.json and compat/results/jvm.section.md (copied into REPORT.md by
# compat/suites/report.py); logs in $ZOMBI_CACHE/jvm/logs. Last line: zombi's
# "N passed, M failed"; exits non-zero if a check failed against zombi.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
COMPAT=$(cd "$HERE/.." && pwd)
# shellcheck source=compat/kafka/lib.sh
. "$COMPAT/kafka/lib.sh"
# shellcheck source=compat/suites/lib.sh
. "$COMPAT/suites/lib.sh"
. "$HERE/cli_checks.sh"
. "$HERE/connect_check.sh"
PEERS=${JVM_PEERS:-zombi kafka}
case " $PEERS " in *" zombi "*) require_zombi_bin ;; esac
kafka_install

OUT=$CACHE/jvm
LOGS=$OUT/logs
rm -rf "$LOGS"
mkdir -p "$LOGS"
# the test programs, compiled once per version of their sources
sum=$(cat "$HERE"/src/*.java "$HERE"/src/shim/org/apache/kafka/common/utils/*.java | sha256sum | cut -c1-12)
JVM_CLASSES=$OUT/classes-$sum
if [ ! -f "$JVM_CLASSES/.built" ]; then
    log "compiling compat/jvm/src into $JVM_CLASSES"
    rm -rf "$JVM_CLASSES"
    mkdir -p "$JVM_CLASSES"
    javac -d "$JVM_CLASSES" -cp "$KAFKA_LIB/*" $(find "$HERE/src" -name '*.java')
    touch "$JVM_CLASSES/.built"
fi
export JVM_CLASSES KAFKA_LIB KAFKA_HERE

trap 'kafka_stop; zombi_stop' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

jvm() {
    java -Xmx384m -XX:+UseSerialGC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_HERE/log4j2-tools.properties" \
        -cp "$KAFKA_LIB/*:$JVM_CLASSES" "$@"
}

T0=$(date +%s)
for peer in $PEERS; do
    start=$(date +%s)
    if [ "$peer" = kafka ]; then
        # An authorizer with User:ANONYMOUS as a super user: every check runs as before, and the
        # kafka-acls checks have ACLs to manage.
        kafka_start group.initial.rebalance.delay.ms=0 \
            authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer \
            super.users=User:ANONYMOUS
        b=$KAFKA_BOOTSTRAP
    else
        ZOMBI_LOG_DIR=$LOGS zombi_start --group-initial-rebalance-delay-ms 0 \
            --authorizer standard --super-users User:ANONYMOUS
        b=$ZOMBI_BOOTSTRAP
    fi
    log "== $peer at $b"
    {
        echo "## java-client"
        timeout -k 10 900 bash -c "$(declare -f jvm); jvm ClientCheck '$b' j" || true
        echo "## java-transactions"
        timeout -k 10 600 bash -c "$(declare -f jvm); jvm TxnCheck '$b' j" || true
        echo "## cli-tools"
        cli_checks "$b" j || true
        echo "## kafka-streams"
        timeout -k 10 600 bash -c "$(declare -f jvm); jvm StreamsCheck '$b' j" || true
        echo "## kafka-connect"
        connect_check "$b" j || true
    } 2>&1 | tee "$LOGS/$peer.log" | grep -E '^(PASS|FAIL|## |    [^|])' || true
    echo "$peer $(( $(date +%s) - start ))" >>"$LOGS/durations"
    if [ "$peer" = kafka ]; then kafka_stop; else zombi_stop; fi
done

python3 - "$LOGS" "$COMPAT/results" "$(( $(date +%s) - T0 ))" "$PEERS" "$HERE/triage.json" \
    "${ZOMBI_BIN:-} $( [ -n "${ZOMBI_BIN:-}" ] && zombi_identity)" <<'PY'
import json, os, re, sys, time
logs, results, secs, peers, triage_path, zombi_bin = sys.argv[1:7]
peers = peers.split()
triage = json.load(open(triage_path))["rules"]
durations = dict(l.split() for l in open(os.path.join(logs, "durations")))
checks, order = {}, []
for peer in peers:
    section = None
    for line in open(os.path.join(logs, peer + ".log"), errors="replace"):
        if line.startswith("## "):
            section = line[3:].strip()
            continue
        m = re.match(r"^(PASS|FAIL) ([\w.-]+)(?::? ?(.*))?$", line.rstrip("\n"))
        if m:
            name = m.group(2)
            if name not in checks:
                checks[name] = {"group": section}
                order.append(name)
            checks[name][peer] = {"status": m.group(1).lower(),
                                  "detail": (m.group(3) or "").strip()[:400]}
for name in order:
    z = checks[name].get("zombi", {})
    for rule in triage:
        if z.get("status") == "fail" and re.search(rule["check"], name) and re.search(
                rule.get("detail", ""), z.get("detail", "")):
            checks[name]["reason"] = rule["reason"]
            checks[name]["category"] = rule["category"]
            break
tot = {p: {"pass": sum(1 for c in checks.values() if c.get(p, {}).get("status") == "pass"),
           "fail": sum(1 for c in checks.values() if c.get(p, {}).get("status") == "fail")}
       for p in peers}
doc = {"totals": tot, "duration_s": int(secs), "peer_duration_s": durations,
       "run_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
       "meta": {"kafka": "4.4.0 (clients, tools, Streams, Connect from Maven Central)",
                "zombi_bin": zombi_bin.strip()},
       "checks": {n: checks[n] for n in order}}
json.dump(doc, open(os.path.join(results, "jvm.json"), "w"), indent=1)
w = ["## The JVM ecosystem: Apache Kafka 4.4.0's clients and tools", "",
     "`compat/jvm/run.sh` runs Kafka 4.4.0's Java client, CLI tools, Kafka Streams and Kafka "
     "Connect against zombi and, as the reference, against Apache Kafka 4.4.0 itself "
     "(compat/README.md). Last run %s: zombi %d passed, %d failed; Kafka %s (%d s in all: %s)." % (
         doc["run_at"], tot.get("zombi", {}).get("pass", 0), tot.get("zombi", {}).get("fail", 0),
         "%d passed, %d failed" % (tot["kafka"]["pass"], tot["kafka"]["fail"]) if "kafka" in tot else "not run",
         int(secs), ", ".join("%s %s s" % kv for kv in durations.items())), ""]
w.append("| group | check | zombi | Kafka 4.4 | reason |")
w.append("|---|---|---|---|---|")
for n in order:
    c = checks[n]
    cell = lambda p: {"pass": "pass", "fail": "**FAIL**"}.get(c.get(p, {}).get("status"), "")
    reason = c.get("reason", "")
    if c.get("zombi", {}).get("status") == "fail" and not reason:
        reason = "unclassified: " + c["zombi"]["detail"][:200]
    w.append("| %s | `%s` | %s | %s | %s |" % (c["group"], n, cell("zombi"), cell("kafka"),
                                              reason.replace("|", "\\|")))
open(os.path.join(results, "jvm.section.md"), "w").write("\n".join(w) + "\n")
z = tot.get("zombi")
if z:
    print("%d passed, %d failed" % (z["pass"], z["fail"]))
    sys.exit(1 if z["fail"] else 0)
print("%d passed, %d failed" % (tot["kafka"]["pass"], tot["kafka"]["fail"]))
sys.exit(1 if tot["kafka"]["fail"] else 0)
PY
