#!/usr/bin/env bash
# Apache Kafka's kafka-topics.sh for librdkafka's tests: see ../kafka_topics.py.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "${ZOMBI_CACHE:-$HOME/.cache/zombi}/venv/bin/python" "$HERE/../kafka_topics.py" "$@"
