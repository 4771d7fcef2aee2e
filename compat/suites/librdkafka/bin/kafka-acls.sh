#!/usr/bin/env bash
# Apache Kafka's kafka-acls.sh for librdkafka's tests (0109, 0115, 0119): Kafka's own AclCommand
# from the jars compat/kafka/install.sh puts in the cache (a JDK and Maven are installed there on
# first use).
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../../kafka/lib.sh
source "$HERE/../../../kafka/lib.sh"
kafka_java org.apache.kafka.tools.AclCommand "$@"
