# Kafka's own CLI tools (4.4.0, run through their main classes) against one broker. Sourced by
# compat/jvm/run.sh after compat/kafka/lib.sh; cli_checks BOOTSTRAP TAG runs every check and
# prints PASS/FAIL lines. Each check asserts on the tool's output (exit codes alone are not
# enough: ConsumerGroupCommand exits 0 after printing an error).

cli_pass() { echo "PASS $1"; CLI_PASSED=$((CLI_PASSED + 1)); }
cli_fail() {
    echo "FAIL $1: $2"
    CLI_FAILED=$((CLI_FAILED + 1))
    if [ -n "${3:-}" ] && [ -f "$3" ]; then sed 's/^/    | /' "$3" | grep -v '^    | \s*at ' | head -n 12; fi
}

# tool CLASS ARGS...: runs a tool (as kafka_java does) for at most 120 s, output in $CLI_OUT
# (stdout and stderr; with CLI_STDOUT_ONLY=1 stderr goes to $CLI_OUT.err)
tool() {
    local err=$CLI_OUT
    [ -z "${CLI_STDOUT_ONLY:-}" ] || err=$CLI_OUT.err
    timeout -k 10 120 java -Xmx256m -XX:+UseSerialGC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_HERE/log4j2-tools.properties" \
        -cp "$KAFKA_LIB/*" "$@" >"$CLI_OUT" 2>>"$err"
}

cli_checks() {
    local b=$1 tag=$2 dir t g n line
    dir=$(mktemp -d "${TMPDIR:-/tmp}/zombi-cli.XXXXXX")
    CLI_OUT=$dir/out
    CLI_PASSED=0
    CLI_FAILED=0
    t=cli-$tag
    g=cli-g-$tag
    local TOPICS=org.apache.kafka.tools.TopicCommand
    local CONFIGS=org.apache.kafka.tools.ConfigCommand
    local CGROUPS=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand

    # kafka-topics: create, list, describe, alter, and the errors
    if tool $TOPICS --bootstrap-server "$b" --create --topic "$t" --partitions 3 \
            --replication-factor 1 --config retention.ms=3600000 &&
        grep -qx "Created topic $t." "$CLI_OUT"; then
        cli_pass kafka-topics_create
    else cli_fail kafka-topics_create "no 'Created topic'" "$CLI_OUT"; fi
    if tool $TOPICS --bootstrap-server "$b" --create --topic "$t" --partitions 1 \
            --replication-factor 1; then
        cli_fail kafka-topics_create_existing "exit 0 for an existing topic" "$CLI_OUT"
    elif grep -q "already exists" "$CLI_OUT"; then cli_pass kafka-topics_create_existing
    else cli_fail kafka-topics_create_existing "no 'already exists'" "$CLI_OUT"; fi
    if tool $TOPICS --bootstrap-server "$b" --list && grep -qx "$t" "$CLI_OUT"; then
        cli_pass kafka-topics_list
    else cli_fail kafka-topics_list "topic not listed" "$CLI_OUT"; fi
    if tool $TOPICS --bootstrap-server "$b" --describe --topic "$t" &&
        grep -q "PartitionCount: 3" "$CLI_OUT" && grep -q "retention.ms=3600000" "$CLI_OUT" &&
        [ "$(grep -c "Partition: " "$CLI_OUT")" = 3 ]; then
        cli_pass kafka-topics_describe
    else cli_fail kafka-topics_describe "no 3-partition description" "$CLI_OUT"; fi
    if tool $TOPICS --bootstrap-server "$b" --alter --topic "$t" --partitions 4 &&
        tool $TOPICS --bootstrap-server "$b" --describe --topic "$t" &&
        grep -q "PartitionCount: 4" "$CLI_OUT"; then
        cli_pass kafka-topics_alter_partitions
    else cli_fail kafka-topics_alter_partitions "partition count not 4" "$CLI_OUT"; fi

    # kafka-configs: alter and describe a topic's configs, describe the broker's
    if tool $CONFIGS --bootstrap-server "$b" --entity-type topics --entity-name "$t" --alter \
            --add-config 'max.message.bytes=65536,cleanup.policy=[delete,compact]' &&
        grep -q "Completed updating config" "$CLI_OUT"; then
        cli_pass kafka-configs_alter
    else cli_fail kafka-configs_alter "no 'Completed updating config'" "$CLI_OUT"; fi
    local ok=0
    for _ in $(seq 1 50); do        # Kafka applies it from its metadata log, a moment later
        tool $CONFIGS --bootstrap-server "$b" --entity-type topics --entity-name "$t" --describe || break
        if grep -q "max.message.bytes=65536" "$CLI_OUT" && grep -q "cleanup.policy=delete,compact" "$CLI_OUT" &&
            grep -q "retention.ms=3600000" "$CLI_OUT"; then ok=1; break; fi
        sleep 0.2
    done
    if [ $ok = 1 ]; then cli_pass kafka-configs_describe_topic
    else cli_fail kafka-configs_describe_topic "altered configs not described" "$CLI_OUT"; fi
    if tool $CONFIGS --bootstrap-server "$b" --entity-type topics --entity-name "$t" --alter \
            --delete-config max.message.bytes &&
        tool $CONFIGS --bootstrap-server "$b" --entity-type topics --entity-name "$t" --describe --all &&
        grep -q "max.message.bytes=1048588" "$CLI_OUT"; then
        cli_pass kafka-configs_delete_and_describe_all
    else cli_fail kafka-configs_delete_and_describe_all "max.message.bytes not back to 1048588" "$CLI_OUT"; fi
    if tool $CONFIGS --bootstrap-server "$b" --entity-type brokers --entity-default --describe &&
        tool $CONFIGS --bootstrap-server "$b" --entity-type brokers --describe --all &&
        grep -q "num.partitions=" "$CLI_OUT"; then
        cli_pass kafka-configs_describe_brokers
    else cli_fail kafka-configs_describe_brokers "no num.partitions" "$CLI_OUT"; fi

    # console producer -> console consumer, keys and values exact
    : >"$dir/in"
    for n in $(seq 1 200); do printf 'key-%d:value %d with spaces, UTF-8 \xc3\xa9\n' "$n" "$n" >>"$dir/in"; done
    if tool org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$b" --topic "$t" \
            --reader-property parse.key=true --reader-property key.separator=: \
            --producer-property acks=all <"$dir/in"; then
        cli_pass console-producer
    else cli_fail console-producer "exit status" "$CLI_OUT"; fi
    if CLI_STDOUT_ONLY=1 tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$b" \
            --topic "$t" --from-beginning --max-messages 200 --timeout-ms 30000 --group "$g" \
            --formatter-property print.key=true --formatter-property key.separator=: \
            --command-property group.protocol=classic; then
        sort "$CLI_OUT" >"$dir/got"
        sort "$dir/in" >"$dir/want"
        if cmp -s "$dir/want" "$dir/got"; then cli_pass console-consumer
        else cli_fail console-consumer "records differ ($(wc -l <"$dir/got") lines)" "$CLI_OUT"; fi
    else cli_fail console-consumer "exit status" "$CLI_OUT"; fi

    # kafka-consumer-groups: list, describe (lag 0 after the console consumer), reset, delete
    if tool $CGROUPS --bootstrap-server "$b" --list && grep -qx "$g" "$CLI_OUT"; then
        cli_pass kafka-consumer-groups_list
    else cli_fail kafka-consumer-groups_list "group not listed" "$CLI_OUT"; fi
    if tool $CGROUPS --bootstrap-server "$b" --describe --group "$g" &&
        ! grep -qi "error" "$CLI_OUT" &&
        [ "$(awk -v t="$t" '$2 == t {n++; cur += $4; end += $5; if ($6 != 0) bad++} END {print n+0, cur+0, end+0, bad+0}' "$CLI_OUT")" = "4 200 200 0" ]; then
        cli_pass kafka-consumer-groups_describe
    else cli_fail kafka-consumer-groups_describe "want 4 partitions, 200 committed, lag 0" "$CLI_OUT"; fi
    if tool $CGROUPS --bootstrap-server "$b" --reset-offsets --group "$g" --topic "$t" \
            --to-earliest --execute && ! grep -qi "error" "$CLI_OUT" &&
        [ "$(awk -v t="$t" '$2 == t {n++; s += $4} END {print n+0, s+0}' "$CLI_OUT")" = "4 0" ]; then
        cli_pass kafka-consumer-groups_reset_to_earliest
    else cli_fail kafka-consumer-groups_reset_to_earliest "want 4 partitions at 0" "$CLI_OUT"; fi
    if tool $CGROUPS --bootstrap-server "$b" --reset-offsets --group "$g" --topic "$t:0" \
            --to-offset 7 --execute && grep -q "$t *0 *7" "$CLI_OUT"; then
        cli_pass kafka-consumer-groups_reset_to_offset
    else cli_fail kafka-consumer-groups_reset_to_offset "partition 0 not at 7" "$CLI_OUT"; fi
    if tool $CGROUPS --bootstrap-server "$b" --delete --group "$g" &&
        grep -q "Deletion of requested consumer groups ('$g') was successful" "$CLI_OUT"; then
        cli_pass kafka-consumer-groups_delete
    else cli_fail kafka-consumer-groups_delete "no success line" "$CLI_OUT"; fi

    # verifiable producer and consumer (the system tests' tools), JSON events counted
    local vt=cli-v-$tag
    tool $TOPICS --bootstrap-server "$b" --create --topic "$vt" --partitions 2 --replication-factor 1
    if tool org.apache.kafka.tools.VerifiableProducer --bootstrap-server "$b" --topic "$vt" \
            --max-messages 1000 --acks -1 &&
        [ "$(grep -c '"name":"producer_send_success"' "$CLI_OUT")" = 1000 ] &&
        grep -q '"name":"tool_data".*"sent":1000.*"acked":1000' "$CLI_OUT"; then
        cli_pass verifiable-producer
    else cli_fail verifiable-producer "want 1000 acked sends" "$CLI_OUT"; fi
    if tool org.apache.kafka.tools.VerifiableConsumer --bootstrap-server "$b" --topic "$vt" \
            --group-id "cli-vg-$tag" --group-protocol classic --max-messages 1000 \
            --reset-policy earliest --verbose; then
        # --verbose prints one record_data event per record: 1000 distinct (partition, offset),
        # dense from 0 in each partition, values "0".."999" each once
        n=$(grep '"name":"record_data"' "$CLI_OUT" | python3 -c '
import json, sys
seen, values = {}, set()
for line in sys.stdin:
    e = json.loads(line)
    seen.setdefault(e["partition"], set()).add(e["offset"])
    values.add(e["value"])
dense = all(offs == set(range(len(offs))) for offs in seen.values())
print(sum(len(o) for o in seen.values()), dense and values == {str(i) for i in range(1000)})')
        if [ "$n" = "1000 True" ] && grep -q '"name":"offsets_committed".*"success":true' "$CLI_OUT"; then
            cli_pass verifiable-consumer
        else cli_fail verifiable-consumer "want 1000 distinct records and a commit, got $n" "$CLI_OUT"; fi
    else cli_fail verifiable-consumer "exit status" "$CLI_OUT"; fi

    # producer and consumer perf tests: every record sent, every record read
    local pt=cli-perf-$tag
    tool $TOPICS --bootstrap-server "$b" --create --topic "$pt" --partitions 2 --replication-factor 1
    if tool org.apache.kafka.tools.ProducerPerformance --topic "$pt" --num-records 20000 \
            --record-size 1024 --throughput -1 --producer-props "bootstrap.servers=$b" acks=all &&
        grep -q "^20000 records sent" "$CLI_OUT"; then
        cli_pass producer-perf-test
        line=$(grep "^20000 records sent" "$CLI_OUT")
        echo "    $line"
    else cli_fail producer-perf-test "no '20000 records sent'" "$CLI_OUT"; fi
    if tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$b" --topic "$pt" \
            --messages 20000 --timeout 30000 &&
        awk -F', *' 'NR > 1 && $5 == 20000 {found = 1} END {exit !found}' "$CLI_OUT"; then
        cli_pass consumer-perf-test
        echo "    $(tail -n 1 "$CLI_OUT")"
    else cli_fail consumer-perf-test "want 20000 records consumed" "$CLI_OUT"; fi

    ok=0
    if tool $TOPICS --bootstrap-server "$b" --delete --topic "$t"; then
        for _ in $(seq 1 50); do      # Kafka's broker drops it from its metadata a moment later
            tool $TOPICS --bootstrap-server "$b" --list || break
            if ! grep -qx "$t" "$CLI_OUT"; then ok=1; break; fi
            sleep 0.2
        done
    fi
    if [ $ok = 1 ]; then
        cli_pass kafka-topics_delete
    else cli_fail kafka-topics_delete "topic still listed" "$CLI_OUT"; fi

    # kafka-acls (the broker runs with an authorizer and User:ANONYMOUS as a super user): add a
    # prefixed ALLOW and a DENY, list them back, match a name, remove one
    local ACLS=org.apache.kafka.tools.AclCommand
    local a="acl-$tag"
    if tool $ACLS --bootstrap-server "$b" --add --allow-principal User:alice --operation Read \
            --operation Write --topic "$a" --resource-pattern-type prefixed &&
        tool $ACLS --bootstrap-server "$b" --add --deny-principal User:bob --operation All --group "$a-g" &&
        tool $ACLS --bootstrap-server "$b" --list --topic "$a" --resource-pattern-type prefixed &&
        grep -q "principal=User:alice, host=\*, operation=READ, permissionType=ALLOW" "$CLI_OUT" &&
        grep -q "principal=User:alice, host=\*, operation=WRITE, permissionType=ALLOW" "$CLI_OUT"; then
        cli_pass kafka-acls_add_list
    else cli_fail kafka-acls_add_list "alice's READ and WRITE not listed" "$CLI_OUT"; fi
    if tool $ACLS --bootstrap-server "$b" --list --topic "$a-orders" --resource-pattern-type match &&
        grep -q "name=$a, patternType=PREFIXED" "$CLI_OUT"; then
        cli_pass kafka-acls_match
    else cli_fail kafka-acls_match "the prefixed ACL does not match $a-orders" "$CLI_OUT"; fi
    if tool $ACLS --bootstrap-server "$b" --remove --force --allow-principal User:alice --operation Read \
            --topic "$a" --resource-pattern-type prefixed &&
        tool $ACLS --bootstrap-server "$b" --list --topic "$a" --resource-pattern-type prefixed &&
        grep -q "operation=WRITE" "$CLI_OUT" && ! grep -q "operation=READ" "$CLI_OUT" &&
        tool $ACLS --bootstrap-server "$b" --list --group "$a-g" &&
        grep -q "principal=User:bob, host=\*, operation=ALL, permissionType=DENY" "$CLI_OUT"; then
        cli_pass kafka-acls_remove
    else cli_fail kafka-acls_remove "READ still listed or the DENY gone" "$CLI_OUT"; fi

    # kafka-configs client quotas: set a user's and a user's client's quotas, describe them back,
    # remove one (AlterClientQuotas and DescribeClientQuotas)
    local CONFIGS=org.apache.kafka.tools.ConfigCommand
    local u="quota-$tag"
    if tool $CONFIGS --bootstrap-server "$b" --alter --entity-type users --entity-name "$u" \
            --add-config producer_byte_rate=1048576,consumer_byte_rate=2097152 &&
        tool $CONFIGS --bootstrap-server "$b" --alter --entity-type users --entity-name "$u" \
            --entity-type clients --entity-name app --add-config request_percentage=50 &&
        tool $CONFIGS --bootstrap-server "$b" --describe --entity-type users --entity-name "$u" &&
        grep -q "consumer_byte_rate=2097152.0, producer_byte_rate=1048576.0" "$CLI_OUT" &&
        tool $CONFIGS --bootstrap-server "$b" --describe --entity-type users --entity-name "$u" \
            --entity-type clients --entity-name app &&
        grep -q "request_percentage=50.0" "$CLI_OUT"; then
        cli_pass kafka-configs_quotas
    else cli_fail kafka-configs_quotas "the quotas set are not described back" "$CLI_OUT"; fi
    if tool $CONFIGS --bootstrap-server "$b" --alter --entity-type users --entity-name "$u" \
            --delete-config producer_byte_rate &&
        tool $CONFIGS --bootstrap-server "$b" --describe --entity-type users --entity-name "$u" &&
        grep -q "consumer_byte_rate=2097152.0" "$CLI_OUT" && ! grep -q "producer_byte_rate" "$CLI_OUT"; then
        cli_pass kafka-configs_quota_delete
    else cli_fail kafka-configs_quota_delete "producer_byte_rate still described" "$CLI_OUT"; fi
    rm -rf "$dir"
}
