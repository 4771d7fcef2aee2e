"""pytest plugin for kafka-python's integration tests against zombi.

compat/suites/run_kafka_python.sh copies this file to test/zombi_fixtures.py of the unpacked sdist
and loads it with `-p test.zombi_fixtures` for the pass that runs test_sasl_integration.py.

kafka-python's `kafka_broker_factory` starts a Kafka JVM of its own (KafkaFixture.instance)
whenever KAFKA_URI is unset; test_sasl_integration.py needs that, because it asks for a broker
with a SASL_PLAINTEXT listener and one mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512), and
skips itself when KAFKA_URI is set. Here KafkaFixture.instance returns, instead of a new JVM, the
running zombi's listener for the fixture's security protocol, read from ZOMBI_LISTENERS
(`PROTOCOL://HOST:PORT,...`, as zombi prints them). zombi holds the fixture's user
(KafkaFixture.broker_user, with its password as the bootstrap admin) for every mechanism, so the
tests' clients authenticate exactly as against their own broker. Nothing else of the fixture
changes: its client parameters, its `sasl_command.conf` for Kafka's kafka-topics.sh, and the
tests themselves run as written.
"""

import os

import py

from test.integration import fixtures


def _listeners():
    found = {}
    for item in os.environ.get("ZOMBI_LISTENERS", "").split(","):
        protocol, sep, address = item.partition("://")
        if sep:
            host, _, port = address.rpartition(":")
            found[protocol.upper()] = (host, int(port))
    return found


def _zombi_instance(cls, broker_id, zookeeper=None, zk_chroot=None, host="localhost", port=None,
                    external=False, transport="PLAINTEXT", replicas=1, partitions=4,
                    sasl_mechanism=None, auto_create_topic=True, tmp_dir=None):
    listeners = _listeners()
    protocol = transport.upper()
    if protocol not in listeners:
        raise RuntimeError("zombi has no %s listener (ZOMBI_LISTENERS=%r)"
                           % (protocol, os.environ.get("ZOMBI_LISTENERS")))
    host, port = listeners[protocol]
    fixture = cls(host, port, broker_id, external=True, transport=transport, replicas=replicas,
                  partitions=partitions, sasl_mechanism=sasl_mechanism,
                  auto_create_topic=auto_create_topic,
                  tmp_dir=tmp_dir if tmp_dir is not None else py.path.local.mkdtemp())
    # open() returns early for an external broker; these are what the CLI config template uses.
    fixture.sasl_config = fixture._sasl_config()
    fixture.jaas_config = fixture._jaas_config()
    return fixture


fixtures.KafkaFixture.instance = classmethod(_zombi_instance)
