#!/usr/bin/env python3
"""Transactional producers of confluent-kafka and kafka-python, each through its own API.

    transactional_clients.py BOOTSTRAP TOPIC

Each client commits one transaction of five records to partition 0 of TOPIC, then aborts one of
five (flushed first, so the aborted records are in the log). Then a read_committed consumer of
each library reads the partition to its end. Prints JSON: the values each reader got, and the
partition's high watermark. Exits non-zero on any client error.
"""

import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition

TIMEOUT_S = 30


def confluent_producer(bootstrap, topic):
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "compat-confluent"})
    producer.init_transactions(TIMEOUT_S)
    for outcome in ("commit", "abort"):
        producer.begin_transaction()
        for i in range(5):
            producer.produce(topic, value=f"confluent-{outcome}-{i}".encode(), partition=0)
        producer.flush(TIMEOUT_S)
        if outcome == "commit":
            producer.commit_transaction(TIMEOUT_S)
        else:
            producer.abort_transaction(TIMEOUT_S)


def kafka_python_producer(bootstrap, topic):
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="compat-kafka-python")
    producer.init_transactions()
    for outcome in ("commit", "abort"):
        producer.begin_transaction()
        for i in range(5):
            producer.send(topic, value=f"kafka-python-{outcome}-{i}".encode(), partition=0)
        producer.flush(TIMEOUT_S)
        if outcome == "commit":
            producer.commit_transaction()
        else:
            producer.abort_transaction()
    producer.close(TIMEOUT_S)


def high_watermark(bootstrap, topic):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "compat-watermarks",
                         "isolation.level": "read_uncommitted"})
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), TIMEOUT_S)
    consumer.close()
    return high


def confluent_reader(bootstrap, topic, end):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "compat-txn-confluent",
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    values = []
    deadline = time.monotonic() + TIMEOUT_S
    while consumer.position([TopicPartition(topic, 0)])[0].offset < end:
        if time.monotonic() > deadline:
            raise SystemExit(f"confluent reader stopped at {values}")
        message = consumer.poll(0.2)
        if message is not None:
            if message.error():
                raise SystemExit(f"confluent reader: {message.error()}")
            values.append(message.value().decode())
    consumer.close()
    return values


def kafka_python_reader(bootstrap, topic, end):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                             enable_auto_commit=False)
    partition = KafkaTopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek(partition, 0)
    values = []
    deadline = time.monotonic() + TIMEOUT_S
    while consumer.position(partition) < end:
        if time.monotonic() > deadline:
            raise SystemExit(f"kafka-python reader stopped at {values}")
        for records in consumer.poll(timeout_ms=200).values():
            values.extend(record.value.decode() for record in records)
    consumer.close()
    return values


def main():
    bootstrap, topic = sys.argv[1:3]
    confluent_producer(bootstrap, topic)
    kafka_python_producer(bootstrap, topic)
    end = high_watermark(bootstrap, topic)
    print(json.dumps({
        "high_watermark": end,
        "confluent": confluent_reader(bootstrap, topic, end),
        "kafka_python": kafka_python_reader(bootstrap, topic, end),
    }))


if __name__ == "__main__":
    main()
