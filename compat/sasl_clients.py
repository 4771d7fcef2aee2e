"""Produces and reads back records over a SASL listener with kafka-python and confluent-kafka,
each with its own SASL configuration, as their users write it.

Usage: sasl_clients.py BOOTSTRAP TOPIC USER PASSWORD [CA_FILE [SSL_BOOTSTRAP CERT_FILE KEY_FILE]]
With CA_FILE the SASL listener is SASL_SSL, checked against that CA. With SSL_BOOTSTRAP, each
client also produces over that SSL listener with the client certificate (result key "mTLS").
Prints one JSON line: {"kafka-python": {MECHANISM: [offsets]}, "confluent-kafka": {...},
"read": [[offset, value], ...]}.
"""

import json
import sys

import confluent_kafka
import kafka

MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def produce_kafka_python(topic, label, **config):
    """Three records `kafka-python-LABEL-I` to partition 0; their offsets."""
    producer = kafka.KafkaProducer(**config)
    futures = [producer.send(topic, f"kafka-python-{label}-{i}".encode(), partition=0) for i in range(3)]
    producer.flush(30)
    offsets = [f.get(timeout=30).offset for f in futures]
    producer.close()
    return offsets


def produce_confluent_kafka(topic, label, config):
    """Three records `confluent-kafka-LABEL-I` to partition 0, one at a time; their offsets."""
    offsets = []
    producer = confluent_kafka.Producer(config)
    for i in range(3):
        producer.produce(
            topic,
            f"confluent-kafka-{label}-{i}".encode(),
            partition=0,
            on_delivery=lambda err, msg: offsets.append(msg.offset() if err is None else str(err)),
        )
        producer.flush(30)
    return offsets


def main():
    bootstrap, topic, user, password = sys.argv[1:5]
    ca = sys.argv[5] if len(sys.argv) > 5 else None
    mtls = sys.argv[6:9] if len(sys.argv) > 8 else None
    protocol = "SASL_SSL" if ca else "SASL_PLAINTEXT"
    python_tls = {"ssl_cafile": ca} if ca else {}
    confluent_tls = {"ssl.ca.location": ca} if ca else {}
    result = {"kafka-python": {}, "confluent-kafka": {}}
    for mechanism in MECHANISMS:
        result["kafka-python"][mechanism] = produce_kafka_python(
            topic,
            mechanism,
            bootstrap_servers=bootstrap,
            security_protocol=protocol,
            sasl_mechanism=mechanism,
            sasl_plain_username=user,
            sasl_plain_password=password,
            **python_tls,
        )
    for mechanism in MECHANISMS:
        config = {
            "bootstrap.servers": bootstrap,
            "security.protocol": protocol,
            "sasl.mechanism": mechanism,
            "sasl.username": user,
            "sasl.password": password,
            **confluent_tls,
        }
        result["confluent-kafka"][mechanism] = produce_confluent_kafka(topic, mechanism, config)
    expected = 18
    if mtls:
        ssl_bootstrap, cert, key = mtls
        result["kafka-python"]["mTLS"] = produce_kafka_python(
            topic,
            "mTLS",
            bootstrap_servers=ssl_bootstrap,
            security_protocol="SSL",
            ssl_cafile=ca,
            ssl_certfile=cert,
            ssl_keyfile=key,
        )
        config = {
            "bootstrap.servers": ssl_bootstrap,
            "security.protocol": "SSL",
            "ssl.ca.location": ca,
            "ssl.certificate.location": cert,
            "ssl.key.location": key,
        }
        result["confluent-kafka"]["mTLS"] = produce_confluent_kafka(topic, "mTLS", config)
        expected = 24
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap,
        security_protocol=protocol,
        sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username=user,
        sasl_plain_password=password,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=10000,
        **python_tls,
    )
    partition = kafka.TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    read = []
    for message in consumer:
        read.append([message.offset, message.value.decode()])
        if len(read) == expected:
            break
    consumer.close()
    result["read"] = read
    print(json.dumps(result))


if __name__ == "__main__":
    main()
