#!/usr/bin/env python3
"""A stand-in for Apache Kafka's bin/kafka-topics.sh, for librdkafka's tests.

Some librdkafka tests (0045 partition changes and topic removal, 0052 timestamps, 0077
compaction) change topics through `$KAFKA_PATH/bin/kafka-topics.sh --bootstrap-server $BROKERS`
instead of the Admin API. This machine has no Kafka distribution, so run_librdkafka.sh points
KAFKA_PATH here and this script sends the same requests Kafka's tool sends (CreateTopics,
CreatePartitions, DeleteTopics) through confluent-kafka's AdminClient, waiting for the answer as
the tool does. Only the options those tests use are understood; anything else is an error.

  kafka-topics.sh --bootstrap-server HOST:PORT --create --topic T --partitions N
                  --replication-factor R [--config K=V]...
  kafka-topics.sh --bootstrap-server HOST:PORT --alter --topic T --partitions N
  kafka-topics.sh --bootstrap-server HOST:PORT --delete --topic T
"""
import argparse
import sys

from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

TIMEOUT_S = 30


def main():
    parser = argparse.ArgumentParser(prog="kafka-topics.sh")
    parser.add_argument("--bootstrap-server", required=True)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--create", action="store_true")
    action.add_argument("--alter", action="store_true")
    action.add_argument("--delete", action="store_true")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int)
    parser.add_argument("--replication-factor", type=int, default=-1)
    parser.add_argument("--config", action="append", default=[])
    args = parser.parse_args()

    admin = AdminClient({"bootstrap.servers": args.bootstrap_server})
    if args.create:
        configs = dict(kv.split("=", 1) for kv in args.config)
        futures = admin.create_topics(
            [NewTopic(args.topic, args.partitions or -1, args.replication_factor, config=configs)],
            request_timeout=TIMEOUT_S)
        verb = "Created"
    elif args.alter:
        if args.partitions is None:
            parser.error("--alter needs --partitions")
        futures = admin.create_partitions([NewPartitions(args.topic, args.partitions)],
                                          request_timeout=TIMEOUT_S)
        verb = "Altered"
    else:
        futures = admin.delete_topics([args.topic], request_timeout=TIMEOUT_S)
        verb = "Deleted"
    try:
        futures[args.topic].result(timeout=TIMEOUT_S + 5)
    except Exception as error:  # the tool prints the error and exits 1
        print("Error while executing topic command : %s" % error, file=sys.stderr)
        return 1
    print("%s topic %s." % (verb, args.topic))
    return 0


if __name__ == "__main__":
    sys.exit(main())
