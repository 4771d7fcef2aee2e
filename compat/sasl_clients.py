"""Produces and reads back records over a SASL listener with kafka-python and confluent-kafka,
each with its own SASL configuration, as their users write it.

Usage: sasl_clients.py BOOTSTRAP TOPIC USER PASSWORD
Prints one JSON line: {"kafka-python": {MECHANISM: [offsets]}, "confluent-kafka": {...},
"read": [[offset, value], ...]}.
"""

import json
import sys

import confluent_kafka
import kafka

MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def main():
    bootstrap, topic, user, password = sys.argv[1:]
    result = {"kafka-python": {}, "confluent-kafka": {}}
    for mechanism in MECHANISMS:
        producer = kafka.KafkaProducer(
            bootstrap_servers=bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=mechanism,
            sasl_plain_username=user,
            sasl_plain_password=password,
        )
        futures = [producer.send(topic, f"kafka-python-{mechanism}-{i}".encode(), partition=0) for i in range(3)]
        producer.flush(30)
        result["kafka-python"][mechanism] = [f.get(timeout=30).offset for f in futures]
        producer.close()
    for mechanism in MECHANISMS:
        offsets = []
        producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": bootstrap,
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": mechanism,
                "sasl.username": user,
                "sasl.password": password,
            }
        )
        for i in range(3):
            producer.produce(
                topic,
                f"confluent-kafka-{mechanism}-{i}".encode(),
                partition=0,
                on_delivery=lambda err, msg: offsets.append(msg.offset() if err is None else str(err)),
            )
            producer.flush(30)
        result["confluent-kafka"][mechanism] = offsets
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username=user,
        sasl_plain_password=password,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=10000,
    )
    partition = kafka.TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    read = []
    for message in consumer:
        read.append([message.offset, message.value.decode()])
        if len(read) == 18:
            break
    consumer.close()
    result["read"] = read
    print(json.dumps(result))


if __name__ == "__main__":
    main()
