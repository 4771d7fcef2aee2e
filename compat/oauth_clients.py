"""Produces and reads back records over OAUTHBEARER with confluent-kafka (an `oauth_cb`) and
kafka-python (a `sasl_oauth_token_provider`), each handing the broker a token the caller signed,
as applications wire their identity provider.

Usage: oauth_clients.py BOOTSTRAP TOPIC GROUP TOKEN EXPIRY_EPOCH_S
Prints one JSON line: {"confluent-kafka": [offsets], "kafka-python": [offsets],
"read": [[offset, value], ...]} (read with confluent-kafka from the start of partition 0).
"""

import json
import sys
import time

import confluent_kafka
import kafka
from kafka.net.sasl.oauth import AbstractTokenProvider


class Provider(AbstractTokenProvider):
    def __init__(self, token):
        super().__init__()
        self._token = token

    def token(self):
        return self._token


def main():
    bootstrap, topic, group, token, expiry = sys.argv[1:]
    config = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "OAUTHBEARER",
        "oauth_cb": lambda _config: (token, float(expiry)),
    }
    result = {}
    offsets = []
    producer = confluent_kafka.Producer(config)
    for i in range(3):
        producer.produce(
            topic, f"confluent-kafka-{i}".encode(), partition=0, on_delivery=lambda e, m: offsets.append(m.offset())
        )
        producer.flush(30)
    result["confluent-kafka"] = offsets
    producer = kafka.KafkaProducer(
        bootstrap_servers=bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token_provider=Provider(token),
    )
    futures = [producer.send(topic, f"kafka-python-{i}".encode(), partition=0) for i in range(3)]
    producer.flush(30)
    result["kafka-python"] = [f.get(timeout=30).offset for f in futures]
    producer.close()
    consumer = confluent_kafka.Consumer({**config, "group.id": group, "enable.auto.commit": False})
    consumer.assign([confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
    read = []
    deadline = time.time() + 60
    while len(read) < 10 and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            raise SystemExit(f"consume: {message.error()}")
        read.append([message.offset(), message.value().decode()])
    consumer.close()
    result["read"] = read
    print(json.dumps(result))


if __name__ == "__main__":
    main()
