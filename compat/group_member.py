#!/usr/bin/env python3
"""A confluent-kafka group member for the cross-client group test (tests/it/groups.rs).

    group_member.py BOOTSTRAP TOPIC GROUP

Subscribes to TOPIC in GROUP, prints one line per record ("record PARTITION OFFSET") and one per
assignment ("assigned P,P,..."), commits each record synchronously after printing it, and leaves
the group cleanly when its standard input closes.
"""
import sys
import threading

from confluent_kafka import Consumer, KafkaException


def main() -> int:
    bootstrap, topic, group = sys.argv[1:4]
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    })

    def on_assign(_consumer, partitions):
        print("assigned " + ",".join(str(p.partition) for p in partitions), flush=True)

    consumer.subscribe([topic], on_assign=on_assign)
    try:
        while not stop.is_set():
            message = consumer.poll(0.1)
            if message is None:
                continue
            if message.error():
                # Transport errors during a broker restart are retried by the client.
                print(f"error {message.error()}", file=sys.stderr, flush=True)
                continue
            print(f"record {message.partition()} {message.offset()}", flush=True)
            while True:
                try:
                    consumer.commit(message=message, asynchronous=False)
                    break
                except KafkaException as error:
                    if stop.is_set():
                        break
                    print(f"commit retry {error}", file=sys.stderr, flush=True)
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
