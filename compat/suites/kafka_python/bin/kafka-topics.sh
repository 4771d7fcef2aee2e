#!/usr/bin/env bash
# Apache Kafka's kafka-topics.sh for kafka-python's fixtures (KAFKA_ROOT=compat/suites/kafka_python):
# Kafka's own TopicCommand from the jars compat/kafka/install.sh puts in the cache (a JDK and
# Maven are installed there on first use).
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../../kafka/lib.sh
source "$HERE/../../../kafka/lib.sh"
kafka_java org.apache.kafka.tools.TopicCommand "$@"
