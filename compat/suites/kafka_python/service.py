"""Stand-in for kafka-python's test/service.py, which its source distribution does not ship.

compat/suites/run_kafka_python.sh copies this file to test/service.py of the unpacked sdist.
Only ExternalService is used when KAFKA_URI points at a running broker (zombi); SpawnedService,
which starts a real Kafka/ZooKeeper JVM, is deliberately unavailable here.
"""


class ExternalService:
    def __init__(self, host, port):
        self.host = host
        self.port = port

    def open(self):
        pass

    def close(self):
        pass

    def stop(self):
        pass

    def dump_logs(self):
        pass

    def wait_for(self, pattern, timeout=30):
        return True


class SpawnedService:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("spawning a JVM Kafka broker is not supported by the zombi compat suite")
