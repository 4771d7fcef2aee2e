#!/usr/bin/env python3
"""Byte-exact compatibility checks of a running zombi broker with confluent-kafka.

    python compat/confluent_kafka_check.py BOOTSTRAP      (e.g. 127.0.0.1:9092)

Each check function below is one test. Records carry keys (incl. NULL and
empty), NULL/empty/binary/UTF-8/large values, headers with repeated keys and
NULL header values, and explicit CreateTime timestamps that grow by 1000 ms per
record. They are produced with every compression codec, acks=all and
enable.idempotence=True (plus two non-idempotent variants); delivery reports
record (partition, offset). A Consumer then assign()s every partition from
OFFSET_BEGINNING (no group commits are used or relied on) and every record is
compared with what was produced at its reported offset. Topics are created with
AdminClient (3 partitions) and checked through list_topics(); offsets_for_times
is checked against the explicit timestamps.

The last line printed is "N passed, M failed"; the exit status is 1 if any
check failed.
"""
import os
import random
import sys
import time
import traceback
import uuid
import zlib

from confluent_kafka import (OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME, Consumer,
                             KafkaException, Producer, TopicPartition)
from confluent_kafka import __version__ as ck_version
from confluent_kafka import libversion
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 3
TIMEOUT = float(os.environ.get("CK_TIMEOUT", "30"))   # seconds, per blocking step
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]

BOOTSTRAP = None
RUN_ID = "{}-{}".format(int(time.time()), uuid.uuid4().hex[:8])
# Explicit CreateTime base, whole seconds, an hour in the past.
BASE_TS = (int(time.time()) - 3600) * 1000

client_errors = []


def error_cb(err):
    # Transient client errors (e.g. a coordinator lookup) are reported, not fatal;
    # a fatal one fails the running check through its own assertions.
    client_errors.append(str(err))


def topic_name(what):
    return "zombi-compat-ck-{}-{}".format(RUN_ID, what)


_admin = None


def admin():
    # One long-lived client: a dropped AdminClient destroys its handle and
    # fails the futures it returned (_DESTROY).
    global _admin
    if _admin is None:
        _admin = AdminClient({"bootstrap.servers": BOOTSTRAP, "error_cb": error_cb})
    return _admin


def create_topic(name, partitions=PARTITIONS):
    futures = admin().create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)],
        operation_timeout=TIMEOUT, request_timeout=TIMEOUT)
    try:
        futures[name].result(timeout=TIMEOUT)
    except KafkaException as e:
        raise AssertionError("create_topics({}) failed: {}".format(name, e))
    except TimeoutError:
        raise AssertionError("create_topics({}) did not complete within {}s".format(
            name, TIMEOUT))
    wait_for_partitions(name, partitions)


def wait_for_partitions(name, partitions):
    """Poll metadata (bounded) until the topic shows `partitions` partitions."""
    deadline = time.monotonic() + TIMEOUT
    last = None
    while time.monotonic() < deadline:
        md = admin().list_topics(topic=name, timeout=TIMEOUT)
        t = md.topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions:
            return md
        last = t
        time.sleep(0.2)   # poll interval only
    raise AssertionError("topic {} did not show {} partitions in metadata within {}s "
                         "(last seen: {})".format(
                             name, partitions, TIMEOUT,
                             None if last is None else
                             "error={} partitions={}".format(last.error, sorted(last.partitions))))


def make_records(n, rng):
    """n records: dicts with key, value, headers (list of tuples), timestamp."""
    recs = []
    for i in range(n):
        kind = i % 8
        if i % 10 == 9:
            key = None
        elif i % 10 == 4:
            key = b""
        elif i % 3 == 0:
            key = "ключ-ü-{}".format(i).encode()
        else:
            key = "key-{:04d}".format(i).encode()
        if kind == 0:
            value = None                                    # NULL value (tombstone)
        elif kind == 1:
            value = b""                                     # empty, not NULL
        elif kind == 2:
            value = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))) + b"\x00"
        elif kind == 3:
            value = b"\x00" * 64 + bytes(range(256)) + b"\x00"
        elif kind == 4:
            value = "ünïcødé ✓ 日本語 🙂 record {}".format(i).encode()
        elif kind == 5:
            value = (b"compressible " * 8000) + str(i).encode()   # ~100 KB
        elif kind == 6:
            value = rng.randbytes(rng.randrange(1000, 20000))
        else:
            value = "plain-{}".format(i).encode()
        hkind = i % 4
        if hkind == 0:
            headers = []
        elif hkind == 1:
            headers = [("dup", b"1"), ("dup", b"2"), ("other", b"x"), ("dup", b"3")]
        elif hkind == 2:
            headers = [("bin", b"\x00\xff\x01"), ("empty", b""), ("null", None),
                       ("ключ", "значение".encode()), ("bin", bytes([i % 256]))]
        else:
            headers = [("trace", "t-{}".format(i).encode())]
        recs.append({"key": key, "value": value, "headers": headers,
                     "timestamp": BASE_TS + 1000 * i})
    return recs


def produce(topic, recs, conf, partition_of):
    """Produce recs (record i to partition_of(i)); returns {(p, off): rec}."""
    reports = {}
    errors = []

    def on_delivery(i):
        def cb(err, msg):
            if err is not None:
                errors.append("record {}: {}".format(i, err))
            else:
                reports[i] = (msg.partition(), msg.offset(), msg.timestamp())
        return cb

    pconf = {"bootstrap.servers": BOOTSTRAP, "error_cb": error_cb,
             "linger.ms": 20, "message.timeout.ms": int(TIMEOUT * 1000)}
    pconf.update(conf)
    p = Producer(pconf)
    for i, r in enumerate(recs):
        kwargs = {"partition": partition_of(i), "timestamp": r["timestamp"],
                  "on_delivery": on_delivery(i)}
        if r["key"] is not None:
            kwargs["key"] = r["key"]
        if r["value"] is not None:
            kwargs["value"] = r["value"]
        if r["headers"]:
            kwargs["headers"] = r["headers"]
        p.produce(topic, **kwargs)
        p.poll(0)
    remaining = p.flush(TIMEOUT * 2)
    assert remaining == 0, "{} records not delivered within {}s".format(remaining, TIMEOUT * 2)
    assert not errors, "delivery errors: {}".format(errors[:5])
    assert len(reports) == len(recs), "{} delivery reports for {} records".format(
        len(reports), len(recs))

    by_offset = {}
    per_partition = {}
    for i in range(len(recs)):
        part, off, _ts = reports[i]
        assert part == partition_of(i), "record {} reported partition {}, sent to {}".format(
            i, part, partition_of(i))
        assert (part, off) not in by_offset, "offset {} on partition {} reported twice".format(
            off, part)
        by_offset[(part, off)] = recs[i]
        per_partition.setdefault(part, []).append(off)
    # A fresh topic: each partition's offsets are dense from 0, in produce order.
    for part, offs in per_partition.items():
        assert offs == list(range(len(offs))), (
            "partition {}: delivery offsets not 0..{} in produce order: {}".format(
                part, len(offs) - 1, offs[:20]))
    return by_offset


def consume_all(topic, partitions, expected_count):
    """assign() every partition from OFFSET_BEGINNING and read expected_count records."""
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "error_cb": error_cb,
                  "group.id": "zombi-compat-{}".format(uuid.uuid4().hex),
                  "enable.auto.commit": False, "enable.auto.offset.store": False,
                  "auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        got = []
        deadline = time.monotonic() + TIMEOUT * 2
        while len(got) < expected_count and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, "consumer error: {}".format(msg.error())
            got.append(msg)
        assert len(got) == expected_count, (
            "consumed {} of {} records within {}s".format(len(got), expected_count, TIMEOUT * 2))
        return got, c
    except BaseException:
        c.close()
        raise


def check_records(topic, by_offset, got, consumer, partitions):
    problems = []
    seen = set()
    last_offset = {}
    for msg in got:
        part, off = msg.partition(), msg.offset()
        where = "{}[{}]@{}".format(topic, part, off)
        if (part, off) in seen:
            problems.append("{}: consumed twice".format(where))
            continue
        seen.add((part, off))
        if part in last_offset and off <= last_offset[part]:
            problems.append("{}: out of order after offset {}".format(where, last_offset[part]))
        last_offset[part] = off
        exp = by_offset.get((part, off))
        if exp is None:
            problems.append("{}: no record was produced at this offset".format(where))
            continue
        if msg.key() != exp["key"]:
            problems.append("{}: key {!r} != {!r}".format(where, short(msg.key()), short(exp["key"])))
        if msg.value() != exp["value"]:
            problems.append("{}: value {!r} != {!r}".format(
                where, short(msg.value()), short(exp["value"])))
        exp_headers = exp["headers"] or None
        got_headers = msg.headers()
        if got_headers is not None:
            got_headers = [(k, v) for k, v in got_headers]
        if got_headers != exp_headers:
            problems.append("{}: headers {!r} != {!r}".format(where, got_headers, exp_headers))
        ts_type, ts = msg.timestamp()
        if (ts_type, ts) != (TIMESTAMP_CREATE_TIME, exp["timestamp"]):
            problems.append("{}: timestamp (type {}, {}) != CreateTime {}".format(
                where, ts_type, ts, exp["timestamp"]))
    missing = set(by_offset) - seen
    if missing:
        problems.append("{} produced records never consumed, e.g. {}".format(
            len(missing), sorted(missing)[:5]))
    # Nothing beyond what was produced: high watermark == count per partition.
    counts = {}
    for part, _off in by_offset:
        counts[part] = counts.get(part, 0) + 1
    for part in range(partitions):
        lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=TIMEOUT)
        if (lo, hi) != (0, counts.get(part, 0)):
            problems.append("{}[{}]: watermarks (low, high) = ({}, {}), expected (0, {})".format(
                topic, part, lo, hi, counts.get(part, 0)))
    assert not problems, "{} mismatches:\n    ".format(len(problems)) + "\n    ".join(problems[:15])


def short(b):
    if b is None or len(b) <= 48:
        return b
    return b[:48] + "...({} bytes)".format(len(b)).encode()


def roundtrip(codec, conf, n=120):
    topic = topic_name("{}-{}".format(codec, "-".join(
        "{}{}".format(k.split(".")[-1], v) for k, v in sorted(conf.items()))))
    create_topic(topic)
    rng = random.Random(zlib.crc32(codec.encode()) + n)
    recs = make_records(n, rng)
    pconf = {"compression.type": codec}
    pconf.update(conf)
    by_offset = produce(topic, recs, pconf, lambda i: i % PARTITIONS)
    got, consumer = consume_all(topic, PARTITIONS, len(recs))
    try:
        check_records(topic, by_offset, got, consumer, PARTITIONS)
    finally:
        consumer.close()


# ---------------------------------------------------------------- the checks

def check_create_topic_and_metadata():
    topic = topic_name("meta")
    create_topic(topic)
    md = admin().list_topics(timeout=TIMEOUT)        # all topics
    assert md.brokers, "metadata lists no brokers"
    t = md.topics.get(topic)
    assert t is not None, "list_topics() does not show {} (topics: {})".format(
        topic, sorted(md.topics)[:20])
    assert t.error is None, "topic {} has error {}".format(topic, t.error)
    assert sorted(t.partitions) == list(range(PARTITIONS)), (
        "topic {} partitions {} != {}".format(topic, sorted(t.partitions), list(range(PARTITIONS))))
    for pid, pm in t.partitions.items():
        assert pm.error is None, "partition {} error {}".format(pid, pm.error)
        assert pm.leader in md.brokers, "partition {} leader {} not among brokers {}".format(
            pid, pm.leader, sorted(md.brokers))
    # Creating it again must fail with TOPIC_ALREADY_EXISTS.
    futures = admin().create_topics([NewTopic(topic, num_partitions=PARTITIONS,
                                              replication_factor=1)],
                                    request_timeout=TIMEOUT)
    try:
        futures[topic].result(timeout=TIMEOUT)
        raise AssertionError("creating {} a second time did not fail".format(topic))
    except KafkaException as e:
        assert e.args[0].name() == "TOPIC_ALREADY_EXISTS", (
            "second create_topics gave {} instead of TOPIC_ALREADY_EXISTS".format(e))
    except TimeoutError:
        raise AssertionError("second create_topics({}) got no answer within {}s".format(
            topic, TIMEOUT))


def make_roundtrip_check(codec, conf):
    def check():
        roundtrip(codec, conf)
    label = ",".join("{}={}".format(k, v) for k, v in sorted(conf.items()))
    check.__name__ = "check_roundtrip[compression={},{}]".format(codec, label)
    return check


def check_offsets_for_times():
    topic = topic_name("times")
    create_topic(topic)
    n = 30
    recs = make_records(n, random.Random(7))
    by_offset = produce(topic, recs, {"acks": "all", "enable.idempotence": True},
                        lambda i: i % PARTITIONS)
    # Record i sits on partition i % 3 at offset i // 3 with timestamp BASE_TS + 1000 i.
    queries = []
    for part in range(PARTITIONS):
        idx = [i for i in range(n) if i % PARTITIONS == part]
        for j, i in enumerate(idx):
            queries.append((part, BASE_TS + 1000 * i, j))          # exact timestamp
            queries.append((part, BASE_TS + 1000 * i - 1, j))      # just before it
        queries.append((part, 0, 0))                               # before everything
        queries.append((part, BASE_TS + 1000 * idx[-1] + 1, -1))   # after the last record
    assert len(by_offset) == n
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "error_cb": error_cb,
                  "group.id": "zombi-compat-{}".format(uuid.uuid4().hex),
                  "enable.auto.commit": False})
    try:
        problems = []
        # A partition may appear only once per offsets_for_times() call: query
        # in rounds, each holding at most one timestamp per partition.
        pending = list(queries)
        while pending:
            batch, rest, used = [], [], set()
            for q in pending:
                (rest if q[0] in used else batch).append(q)
                used.add(q[0])
            res = c.offsets_for_times([TopicPartition(topic, p, ts) for p, ts, _ in batch],
                                      timeout=TIMEOUT)
            for (part, ts, want), tp in zip(batch, res):
                if tp.error is not None or tp.partition != part or tp.offset != want:
                    problems.append("partition {} timestamp {}: got offset {} (error {}), "
                                    "expected {}".format(part, ts, tp.offset, tp.error, want))
            pending = rest
        assert not problems, "{} wrong answers:\n    ".format(len(problems)) + \
            "\n    ".join(problems[:15])
    finally:
        c.close()


CHECKS = [check_create_topic_and_metadata]
for _codec in CODECS:
    CHECKS.append(make_roundtrip_check(_codec, {"acks": "all", "enable.idempotence": True}))
CHECKS.append(make_roundtrip_check("none", {"acks": "all", "enable.idempotence": False}))
CHECKS.append(make_roundtrip_check("zstd", {"acks": "1", "enable.idempotence": False}))
CHECKS.append(check_offsets_for_times)


def main(argv):
    global BOOTSTRAP
    if len(argv) != 2:
        print("usage: {} BOOTSTRAP".format(argv[0]), file=sys.stderr)
        return 2
    BOOTSTRAP = argv[1]
    print("confluent-kafka {} (librdkafka {}), bootstrap {}, run id {}".format(
        ck_version, libversion()[0], BOOTSTRAP, RUN_ID), flush=True)
    passed = failed = 0
    for check in CHECKS:
        name = check.__name__
        start = time.monotonic()
        del client_errors[:]
        try:
            check()
        except Exception as e:   # noqa: BLE001 - every failure is reported the same way
            failed += 1
            print("FAIL {}: {}".format(name, e if isinstance(e, AssertionError) else
                                       traceback.format_exc()), flush=True)
            if client_errors:
                print("  client errors during the check: {}".format(client_errors[:5]))
        else:
            passed += 1
            print("PASS {} ({:.0f} ms)".format(name, 1000 * (time.monotonic() - start)),
                  flush=True)
    print("{} passed, {} failed".format(passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
