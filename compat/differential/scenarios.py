"""The scenarios of the differential harness.

Each scenario talks to one broker through raw Kafka protocol requests (wire.Conn) and returns what
a client observes, as plain JSON data. run.py runs every scenario against Apache Kafka and against
zombi, normalises what legitimately differs (node ids, cluster ids, ports, generated member and
producer ids) and diffs the two observations.

A scenario must be deterministic given the broker: topic names are fixed per scenario (both brokers
start empty), timestamps come from ctx.t0 (one value for the whole run), and every wait is for an
event (a response), never a sleep.
"""

import socket
import struct
import threading
import time

import wire

SCENARIOS = []

# Error codes the scenarios name (Kafka's org.apache.kafka.common.protocol.Errors).
NONE = 0
# COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR
RETRIABLE = {14, 15, 16}
REPLICA_STATE = {"replica_id": -1, "replica_epoch": -1}


def scenario(fast=True):
    def deco(fn):
        SCENARIOS.append((fn.__name__, fast, fn))
        return fn
    return deco


class Ctx:
    """One broker as seen by the scenarios."""

    def __init__(self, bootstrap, common, t0):
        self.bootstrap = bootstrap
        self.common = common          # api name -> (min, max) both brokers and kafka-python accept
        self.t0 = t0                  # a millisecond timestamp shared by both brokers' runs
        self._conns = []

    def conn(self, timeout=30.0):
        c = wire.Conn(self.bootstrap, timeout=timeout)
        self._conns.append(c)
        return c

    def close(self):
        for c in self._conns:
            c.close()

    def v(self, api):
        return self.common[api][1]

    def versions(self, api):
        lo, hi = self.common[api]
        return range(lo, hi + 1)

    # ------------------------------------------------------------ helpers
    def create(self, name, partitions=1, configs=None, rf=1):
        with wire.Conn(self.bootstrap) as c:
            r = c.call("CreateTopics", self.v("CreateTopics"), timeout_ms=30000, topics=[
                {"name": name, "num_partitions": partitions, "replication_factor": rf,
                 "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()]}])
        err = r["topics"][0]["error_code"]
        if err == 0:
            self.wait_ready(name, partitions)
        return err

    def wait_ready(self, name, partitions, timeout=30):
        """Waits until every partition of a new topic has a leader that answers ListOffsets, as a
        client's retries would (Kafka's broker learns of a new topic from the metadata log, a
        little after CreateTopics answers)."""
        deadline = time.time() + timeout
        with wire.Conn(self.bootstrap) as c:
            while time.time() < deadline:
                m = c.call("Metadata", 12, topics=[{"name": name}],
                           allow_auto_topic_creation=False)["topics"][0]
                if m["error_code"] == 0 and len(m["partitions"]) == partitions and all(
                        p["leader_id"] >= 0 for p in m["partitions"]):
                    r = c.call("ListOffsets", 7, replica_id=-1, isolation_level=0, topics=[
                        {"name": name, "partitions": [
                            {"partition_index": i, "timestamp": -1, "current_leader_epoch": -1}
                            for i in range(partitions)]}])
                    if all(p["error_code"] == 0 for p in r["topics"][0]["partitions"]):
                        return
                time.sleep(0.02)
        raise TimeoutError("topic %s not ready after %d s" % (name, timeout))

    def produce(self, topic, partition, records_bytes, acks=-1, version=None, conn=None,
                transactional_id=None):
        """Produce one records blob; returns the partition's response dict."""
        c = conn or self.conn()
        v = version or self.v("Produce")
        r = c.call("Produce", v, acks=acks, timeout_ms=30000, transactional_id=transactional_id,
                   topic_data=[{"name": topic, "topic_id": self.topic_id(topic) if v >= 13 else None,
                                "partition_data": [{"index": partition, "records": records_bytes}]}])
        if isinstance(r, str):
            return r
        return r["responses"][0]["partition_responses"][0]

    def fetch(self, topic, partition, offset, version=None, max_bytes=1 << 20, isolation=0,
              leader_epoch=-1, conn=None):
        c = conn or self.conn()
        v = version or self.v("Fetch")
        r = c.call("Fetch", v, replica_id=-1, replica_state=REPLICA_STATE, max_wait_ms=0,
                   min_bytes=0, max_bytes=max_bytes, isolation_level=isolation, session_id=0, session_epoch=-1,
                   topics=[{"topic": topic, "topic_id": self.topic_id(topic) if v >= 13 else None,
                            "partitions": [{"partition": partition, "fetch_offset": offset,
                                            "current_leader_epoch": leader_epoch,
                                            "log_start_offset": -1,
                                            "partition_max_bytes": max_bytes}]}])
        if isinstance(r, str):
            return r
        p = r["responses"][0]["partitions"][0]
        p = dict(p)
        p["records"] = wire.decode_batches(p.get("records"))
        return {"error_code": r.get("error_code"), "partition": p}

    def topic_id(self, topic):
        """The topic's id, or a random one for a topic that does not exist."""
        with wire.Conn(self.bootstrap) as c:
            r = c.call("Metadata", 12, topics=[{"name": topic}], allow_auto_topic_creation=False)
        return r["topics"][0]["topic_id"] or "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"

    def coordinator_ready(self, key, key_type=0, timeout=60):
        """Waits until the coordinator of KEY answers (Kafka creates __consumer_offsets or
        __transaction_state on the first FindCoordinator); returns the last error code."""
        deadline = time.time() + timeout
        with wire.Conn(self.bootstrap) as c:
            while True:
                r = c.call("FindCoordinator", self.v("FindCoordinator"), key_type=key_type,
                           coordinator_keys=[key])
                err = r["coordinators"][0]["error_code"]
                if err not in RETRIABLE or time.time() > deadline:
                    break
                time.sleep(0.1)
            if err == 0 and key_type == 0:
                # the coordinator may still be loading the group's partition
                while time.time() < deadline:
                    g = c.call("DescribeGroups", self.v("DescribeGroups"), groups=[key],
                               include_authorized_operations=False)["groups"][0]
                    if g["error_code"] not in RETRIABLE:
                        break
                    time.sleep(0.1)
        return err

    def init_producer_id(self, conn, transactional_id=None, timeout=60):
        """InitProducerId, retried while the broker answers a retriable error (Kafka's first
        answer waits for a block of producer ids from its controller)."""
        deadline = time.time() + timeout
        first = None
        while True:
            r = conn.call("InitProducerId", self.v("InitProducerId"),
                          transactional_id=transactional_id, transaction_timeout_ms=60000,
                          producer_id=-1, producer_epoch=-1)
            if first is None:
                first = r["error_code"]
            if r["error_code"] not in RETRIABLE or time.time() > deadline:
                return r
            time.sleep(0.1)

    def list_offsets(self, topic, partition, ts, version=None, isolation=0):
        c = self.conn()
        r = c.call("ListOffsets", version if version is not None else self.v("ListOffsets"),
                   replica_id=-1, isolation_level=isolation, timeout_ms=30000,
                   topics=[{"name": topic, "partitions": [
                       {"partition_index": partition, "timestamp": ts, "current_leader_epoch": -1,
                        "max_num_offsets": 1}]}])
        if isinstance(r, str):
            return r
        return r["topics"][0]["partitions"][0]

    def describe_configs(self, rtype, name, keys=None, synonyms=False):
        c = self.conn()
        r = c.call("DescribeConfigs", self.v("DescribeConfigs"), include_synonyms=synonyms,
                   include_documentation=False,
                   resources=[{"resource_type": rtype, "resource_name": name,
                               "configuration_keys": keys}])
        return r["results"][0]


def recs(t0, n, start=0, key=b"k", headers=None, value_size=None):
    out = []
    for i in range(start, start + n):
        value = (b"v%d-" % i) * (1 if value_size is None else value_size // 4 + 1)
        if value_size is not None:
            value = value[:value_size]
        out.append((t0 + i, key + b"%d" % i, value, headers))
    return out


# ==================================================================== framing and versions

@scenario()
def api_versions(ctx):
    """ApiVersions at every version: the error code and the ranges (run.py compares the ranges
    specially: zombi may leave out APIs, but must not claim a version Kafka does not have)."""
    out = {}
    for v in range(0, 5):
        with wire.Conn(ctx.bootstrap) as c:
            r = c.call("ApiVersions", v, client_software_name="zombi-diff",
                       client_software_version="1")
        out["v%d" % v] = {"error_code": r["error_code"],
                          "ranges": {k["api_key"]: [k["min_version"], k["max_version"]]
                                     for k in r["api_keys"]}}
    return out


@scenario()
def api_versions_unsupported_version(ctx):
    """ApiVersions v127: Kafka answers UNSUPPORTED_VERSION (35) in a v0 body listing its APIs.
    A client newer than the broker sends it with the flexible (v2) request header, as for v3+."""
    out = {}
    for name, flexible, body in (("header_v2", True, b"\x00\x00\x00"),
                                 ("header_v1", False, b"")):
        with wire.Conn(ctx.bootstrap, timeout=10) as c:
            frame = c.send_raw(wire.request_header(18, 127, correlation=7, flexible=flexible)
                               + body)
        if isinstance(frame, str):
            out[name] = {"answer": frame}
            continue
        corr, err = struct.unpack(">ih", frame[:6])
        (n,) = struct.unpack(">i", frame[6:10])
        keys = [struct.unpack(">hhh", frame[10 + 6 * i:16 + 6 * i]) for i in range(n)]
        out[name] = {"correlation_id": corr, "error_code": err,
                     "lists_apiversions": any(k[0] == 18 for k in keys), "lists_apis": n > 0}
    return out


def raw_outcome(frame):
    if isinstance(frame, str):
        return frame
    return {"answered_bytes": len(frame) > 0, "correlation_id": struct.unpack(">i", frame[:4])[0]}


@scenario()
def unsupported_version_other_api(ctx):
    """Metadata v127 (an unknown version of a known API), then whether the connection survives."""
    with wire.Conn(ctx.bootstrap, timeout=10) as c:
        a = c.send_raw(wire.request_header(3, 127, correlation=3, flexible=True) + b"\x01\x00\x00\x00")
    return {"answer": raw_outcome(a)}


@scenario()
def unknown_api_key(ctx):
    with wire.Conn(ctx.bootstrap, timeout=10) as c:
        a = c.send_raw(wire.request_header(32000, 0, correlation=3) + b"\x00" * 8)
    return {"answer": raw_outcome(a)}


@scenario()
def oversized_request(ctx):
    """A frame size above socket.request.max.bytes (104857600 on both) and a negative size:
    the broker must drop the connection without reading the body."""
    out = {}
    for name, size in (("above_max", 104857601), ("negative", -5)):
        with wire.Conn(ctx.bootstrap, timeout=10) as c:
            try:
                c.sock.sendall(struct.pack(">i", size) + wire.request_header(3, 12, flexible=True))
                data = c.sock.recv(16)
                out[name] = wire.CLOSED if data == b"" else "answered"
            except (ConnectionResetError, BrokenPipeError):
                out[name] = wire.CLOSED
            except socket.timeout:
                out[name] = wire.TIMEOUT
    return out


@scenario()
def truncated_body(ctx):
    """A Metadata v12 header with a body cut short, then a valid request on the same socket."""
    with wire.Conn(ctx.bootstrap, timeout=10) as c:
        a = c.send_raw(wire.request_header(3, 12, correlation=9, flexible=True) + b"\x05")
    return {"answer": raw_outcome(a)}


@scenario()
def sasl_handshake_on_plaintext(ctx):
    """SaslHandshake v1 (PLAIN) on a PLAINTEXT listener."""
    body = struct.pack(">h", 5) + b"PLAIN"
    with wire.Conn(ctx.bootstrap, timeout=10) as c:
        a = c.send_raw(wire.request_header(17, 1, correlation=4) + body)
    if isinstance(a, str):
        return {"answer": a}
    corr, err = struct.unpack(">ih", a[:6])
    return {"correlation_id": corr, "error_code": err}


# ==================================================================== metadata

@scenario()
def metadata_unknown_topic(ctx):
    """An unknown topic at every version: v0-v3 imply auto-creation (the first answer for a new
    name), v4+ say allow_auto_topic_creation=false."""
    out = {}
    for v in ctx.versions("Metadata"):
        with wire.Conn(ctx.bootstrap) as c:
            r = c.call("Metadata", v, topics=[{"name": "diff-no-such-topic-%d" % v}],
                       allow_auto_topic_creation=False)
        out["v%d" % v] = [(t["error_code"], t["partitions"]) for t in r["topics"]]
    with wire.Conn(ctx.bootstrap) as c:
        r = c.call("Metadata", ctx.v("Metadata"),
                   topics=[{"name": None, "topic_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}],
                   allow_auto_topic_creation=False)
        out["unknown_topic_id"] = [(t["name"], t["error_code"]) for t in r["topics"]]
        r = c.call("Metadata", ctx.v("Metadata"), topics=[{"name": "bad name!"}],
                   allow_auto_topic_creation=True)
        out["invalid_name_autocreate"] = [(t["name"], t["error_code"]) for t in r["topics"]]
    return out


@scenario()
def metadata_auto_create(ctx):
    """allow_auto_topic_creation: the first answer, then the topic's shape once it exists."""
    with wire.Conn(ctx.bootstrap) as c:
        first = c.call("Metadata", ctx.v("Metadata"), topics=[{"name": "diff-auto"}],
                       allow_auto_topic_creation=True)["topics"][0]["error_code"]
        shapes = []
        deadline = time.time() + 30
        while time.time() < deadline:   # the creation is asynchronous: poll its answer
            t = c.call("Metadata", ctx.v("Metadata"), topics=[{"name": "diff-auto"}],
                       allow_auto_topic_creation=False)["topics"][0]
            if t["error_code"] == 0 and t["partitions"] and all(
                    p["leader_id"] >= 0 for p in t["partitions"]):
                shapes.append(t)
                break
            time.sleep(0.05)
    return {"first_error": first, "then": shapes}


@scenario()
def metadata_shapes(ctx):
    """Metadata for a 3-partition topic and for all topics, at every common version."""
    ctx.create("diff-meta", 3)
    out = {}
    for v in ctx.versions("Metadata"):
        with wire.Conn(ctx.bootstrap) as c:
            fields = dict(topics=[{"name": "diff-meta"}], allow_auto_topic_creation=False)
            if v >= 8:
                fields["include_topic_authorized_operations"] = True
            if 8 <= v <= 10:
                fields["include_cluster_authorized_operations"] = True
            out["v%d" % v] = c.call("Metadata", v, **fields)
    return out


@scenario()
def metadata_internal_topics(ctx):
    """Metadata for all topics once a group exists: Kafka lists __consumer_offsets, marked
    internal (regex subscriptions and tools skip it by that flag)."""
    ctx.coordinator_ready("diff-internal-g")
    with wire.Conn(ctx.bootstrap) as c:
        r = c.call("Metadata", ctx.v("Metadata"), topics=None, allow_auto_topic_creation=False)
    return sorted((t["name"], t["is_internal"]) for t in r["topics"] if t["name"].startswith("__"))


@scenario()
def describe_cluster_and_partitions(ctx):
    ctx.create("diff-dtp", 2)
    out = {}
    with wire.Conn(ctx.bootstrap) as c:
        for v in ctx.versions("DescribeCluster"):
            out["describe_cluster_v%d" % v] = c.call("DescribeCluster", v,
                                                    include_cluster_authorized_operations=True)
        if "DescribeTopicPartitions" in ctx.common:
            out["describe_topic_partitions"] = c.call(
                "DescribeTopicPartitions", 0, topics=[{"name": "diff-dtp"}, {"name": "diff-none"}],
                response_partition_limit=1)
    return out


# ==================================================================== topic admin

@scenario()
def create_topics_errors(ctx):
    v = ctx.v("CreateTopics")
    ctx.create("diff-exists")
    ctx.coordinator_ready("diff-exists-g")     # Kafka's __consumer_offsets exists from here on
    cases = {
        "exists": {"name": "diff-exists", "num_partitions": 1, "replication_factor": 1},
        "empty_name": {"name": "", "num_partitions": 1, "replication_factor": 1},
        "dot": {"name": ".", "num_partitions": 1, "replication_factor": 1},
        "dotdot": {"name": "..", "num_partitions": 1, "replication_factor": 1},
        "too_long": {"name": "a" * 250, "num_partitions": 1, "replication_factor": 1},
        "slash": {"name": "bad/name", "num_partitions": 1, "replication_factor": 1},
        "space": {"name": "bad name", "num_partitions": 1, "replication_factor": 1},
        "rf3": {"name": "diff-rf3", "num_partitions": 1, "replication_factor": 3},
        "rf0": {"name": "diff-rf0", "num_partitions": 1, "replication_factor": 0},
        "partitions0": {"name": "diff-p0", "num_partitions": 0, "replication_factor": 1},
        "partitions_neg2": {"name": "diff-pm2", "num_partitions": -2, "replication_factor": 1},
        "defaults": {"name": "diff-defaults", "num_partitions": -1, "replication_factor": -1},
        "bad_config_value": {"name": "diff-badcv", "num_partitions": 1, "replication_factor": 1,
                             "configs": [{"name": "cleanup.policy", "value": "bogus"}]},
        "bad_config_number": {"name": "diff-badnum", "num_partitions": 1, "replication_factor": 1,
                              "configs": [{"name": "retention.ms", "value": "soon"}]},
        "unknown_config": {"name": "diff-unkc", "num_partitions": 1, "replication_factor": 1,
                           "configs": [{"name": "no.such.config", "value": "1"}]},
        "null_config_value": {"name": "diff-nullcv", "num_partitions": 1, "replication_factor": 1,
                              "configs": [{"name": "retention.ms", "value": None}]},
        "assignment_unknown_broker": {"name": "diff-asg", "num_partitions": -1,
                                      "replication_factor": -1,
                                      "assignments": [{"partition_index": 0, "broker_ids": [77]}]},
        "assignment_and_count": {"name": "diff-asg2", "num_partitions": 2, "replication_factor": 1,
                                 "assignments": [{"partition_index": 0, "broker_ids": [77]}]},
        "internal_name": {"name": "__consumer_offsets", "num_partitions": 1,
                          "replication_factor": 1},
    }
    out = {}
    with wire.Conn(ctx.bootstrap) as c:
        for name, topic in cases.items():
            r = c.call("CreateTopics", v, timeout_ms=30000, topics=[topic])
            t = r["topics"][0]
            out[name] = {"error_code": t["error_code"],
                         "num_partitions": t.get("num_partitions"),
                         "replication_factor": t.get("replication_factor")}
        # the same name twice in one request
        r = c.call("CreateTopics", v, timeout_ms=30000, topics=[
            {"name": "diff-twice", "num_partitions": 1, "replication_factor": 1},
            {"name": "diff-twice", "num_partitions": 1, "replication_factor": 1}])
        out["duplicate_in_request"] = sorted((t["name"], t["error_code"]) for t in r["topics"])
        # validate_only creates nothing
        r = c.call("CreateTopics", v, timeout_ms=30000, validate_only=True, topics=[
            {"name": "diff-validate", "num_partitions": 2, "replication_factor": 1}])
        out["validate_only"] = r["topics"][0]["error_code"]
        m = c.call("Metadata", ctx.v("Metadata"), topics=[{"name": "diff-validate"}],
                   allow_auto_topic_creation=False)
        out["validate_only_then_metadata"] = m["topics"][0]["error_code"]
        # the error for an existing topic at every version
        out["exists_by_version"] = {
            "v%d" % ver: c.call("CreateTopics", ver, timeout_ms=30000, topics=[
                cases["exists"]])["topics"][0]["error_code"]
            for ver in ctx.versions("CreateTopics")}
    return out


@scenario()
def create_topics_configs(ctx):
    """CreateTopics (v5+) returns the new topic's configs: names, values, read-only, sources."""
    with wire.Conn(ctx.bootstrap) as c:
        r = c.call("CreateTopics", ctx.v("CreateTopics"), timeout_ms=30000, topics=[
            {"name": "diff-cfg", "num_partitions": 2, "replication_factor": 1,
             "configs": [{"name": "retention.ms", "value": "3600000"},
                         {"name": "cleanup.policy", "value": "compact"}]}])
    t = r["topics"][0]
    return {"error_code": t["error_code"], "topic_config_error_code": t["topic_config_error_code"],
            "num_partitions": t["num_partitions"], "replication_factor": t["replication_factor"],
            "configs": {cf["name"]: {"value": cf["value"], "read_only": cf["read_only"],
                                     "source": cf["config_source"],
                                     "sensitive": cf["is_sensitive"]} for cf in t["configs"]}}


@scenario()
def delete_topics(ctx):
    ctx.create("diff-del")
    out = {}
    with wire.Conn(ctx.bootstrap) as c:
        for v in ctx.versions("DeleteTopics"):
            if v < 6:
                r = c.call("DeleteTopics", v, timeout_ms=30000, topic_names=["diff-del-none"])
            else:
                r = c.call("DeleteTopics", v, timeout_ms=30000,
                           topics=[{"name": "diff-del-none", "topic_id": None}])
            out["unknown_v%d" % v] = [x["error_code"] for x in r["responses"]]
        if ctx.v("DeleteTopics") >= 6:
            r = c.call("DeleteTopics", ctx.v("DeleteTopics"), timeout_ms=30000, topics=[
                {"name": None, "topic_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}])
            out["unknown_id"] = [x["error_code"] for x in r["responses"]]
        r = c.call("DeleteTopics", 5, timeout_ms=30000, topic_names=["diff-del"])
        out["existing"] = [x["error_code"] for x in r["responses"]]
        deadline = time.time() + 10
        while True:    # Kafka's brokers learn of the deletion from the metadata log, a bit later
            m = c.call("Metadata", ctx.v("Metadata"), topics=[{"name": "diff-del"}],
                       allow_auto_topic_creation=False)
            if m["topics"][0]["error_code"] != 0 or time.time() > deadline:
                break
            time.sleep(0.05)
        out["then_metadata"] = m["topics"][0]["error_code"]
        r = c.call("DeleteTopics", 5, timeout_ms=30000, topic_names=["__consumer_offsets"])
        out["internal"] = [x["error_code"] for x in r["responses"]]
    return out


@scenario()
def create_partitions(ctx):
    ctx.create("diff-cp", 1)
    v = ctx.v("CreatePartitions")
    out = {}
    with wire.Conn(ctx.bootstrap) as c:
        def cp(name, count, validate=False, assignments=None):
            r = c.call("CreatePartitions", v, timeout_ms=30000, validate_only=validate,
                       topics=[{"name": name, "count": count, "assignments": assignments}])
            return r["results"][0]["error_code"]
        out["validate_only_3"] = cp("diff-cp", 3, validate=True)
        out["same_count"] = cp("diff-cp", 1)
        out["grow_to_3"] = cp("diff-cp", 3)
        out["shrink_to_2"] = cp("diff-cp", 2)
        out["unknown_topic"] = cp("diff-cp-none", 2)
        out["bad_assignment_count"] = cp("diff-cp", 5, assignments=[{"broker_ids": [0]}])
        out["zero"] = cp("diff-cp", 0)
        m = c.call("Metadata", ctx.v("Metadata"), topics=[{"name": "diff-cp"}],
                   allow_auto_topic_creation=False)
        out["partitions_after"] = len(m["topics"][0]["partitions"])
    return out


# ==================================================================== configs

TOPIC = 2
BROKER = 4
GROUP = 32


def config_view(result):
    return {"error_code": result["error_code"],
            "configs": {cf["name"]: {k: cf.get(k) for k in (
                "value", "read_only", "config_source", "is_sensitive", "config_type")}
                | ({"synonyms": [(s["name"], s["source"]) for s in cf["synonyms"]]}
                   if cf.get("synonyms") else {})
                for cf in result["configs"]}}


@scenario()
def describe_configs_topic(ctx):
    ctx.create("diff-dc", 1, {"retention.ms": "7200000"})
    out = {"all": config_view(ctx.describe_configs(TOPIC, "diff-dc")),
           "synonyms": config_view(ctx.describe_configs(
               TOPIC, "diff-dc", ["retention.ms", "cleanup.policy", "max.message.bytes",
                                  "segment.bytes", "message.timestamp.type"], synonyms=True)),
           "unknown_key": config_view(ctx.describe_configs(TOPIC, "diff-dc", ["no.such.key"])),
           "unknown_topic": ctx.describe_configs(TOPIC, "diff-dc-none")["error_code"],
           "empty_name": ctx.describe_configs(TOPIC, "")["error_code"]}
    return out


BROKER_KEYS = ["auto.create.topics.enable", "num.partitions", "default.replication.factor",
               "message.max.bytes", "log.retention.ms", "log.retention.hours", "log.retention.bytes",
               "log.cleanup.policy", "log.message.timestamp.type", "offsets.retention.minutes",
               "group.initial.rebalance.delay.ms", "group.min.session.timeout.ms",
               "group.max.session.timeout.ms", "socket.request.max.bytes", "compression.type",
               "delete.topic.enable", "min.insync.replicas", "unclean.leader.election.enable",
               "log.segment.bytes", "no.such.key"]


@scenario()
def describe_configs_broker(ctx):
    with wire.Conn(ctx.bootstrap) as c:
        node = c.call("Metadata", ctx.v("Metadata"), topics=[])["brokers"][0]["node_id"]
    return {"chosen": config_view(ctx.describe_configs(BROKER, str(node), BROKER_KEYS,
                                                      synonyms=True)),
            "other_node": ctx.describe_configs(BROKER, "77", ["num.partitions"])["error_code"],
            "not_a_number": ctx.describe_configs(BROKER, "x", ["num.partitions"])["error_code"],
            "cluster_default": config_view(ctx.describe_configs(BROKER, "", ["num.partitions"])),
            "group": config_view(ctx.describe_configs(GROUP, "diff-group-cfg"))}


ALTER_KEYS = ["retention.ms", "cleanup.policy", "max.message.bytes", "segment.ms"]


@scenario()
def incremental_alter_configs(ctx):
    ctx.create("diff-iac", 1)
    v = ctx.v("IncrementalAlterConfigs")
    SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
    out = {}
    last = {}
    with wire.Conn(ctx.bootstrap) as c:
        def iac(configs, validate=False, name="diff-iac", rtype=TOPIC):
            last["changed"] = False
            r = c.call("IncrementalAlterConfigs", v, validate_only=validate, resources=[
                {"resource_type": rtype, "resource_name": name,
                 "configs": [{"name": n, "config_operation": op, "value": val}
                             for n, op, val in configs]}])
            return r["responses"][0]["error_code"]

        def seen():
            """The topic's configs once an accepted change shows (Kafka's brokers apply it from
            the metadata log, after the answer); at most 10 s."""
            deadline = time.time() + 10
            while True:
                view = config_view(ctx.describe_configs(TOPIC, "diff-iac", ALTER_KEYS))
                if view != last.get("view") or not last.get("changed") or time.time() > deadline:
                    break
                time.sleep(0.05)
            last["view"] = view
            return view

        def iac_changing(configs):
            err = iac(configs)
            last["changed"] = err == 0
            return err

        out["set"] = iac_changing([("retention.ms", SET, "1234567"), ("max.message.bytes", SET, "50000")])
        out["after_set"] = seen()
        out["validate_only"] = iac([("segment.ms", SET, "99999")], validate=True)
        out["after_validate_only"] = seen()
        out["append_policy"] = iac_changing([("cleanup.policy", APPEND, "compact")])
        out["after_append"] = seen()
        out["subtract_policy"] = iac_changing([("cleanup.policy", SUBTRACT, "delete")])
        out["after_subtract"] = seen()
        out["delete"] = iac_changing([("retention.ms", DELETE, None)])
        out["after_delete"] = seen()
        out["bad_value"] = iac([("retention.ms", SET, "soon")])
        out["bad_enum"] = iac([("cleanup.policy", SET, "bogus")])
        out["unknown_key"] = iac([("no.such.key", SET, "1")])
        out["append_to_non_list"] = iac([("retention.ms", APPEND, "5")])
        out["unknown_op"] = iac([("retention.ms", 9, "5")])
        out["same_key_twice"] = iac_changing([("retention.ms", SET, "5"),
                                              ("retention.ms", SET, "6")])
        out["unknown_topic"] = iac([("retention.ms", SET, "5")], name="diff-iac-none")
        last["changed"] = out["same_key_twice"] == 0
        out["after_errors"] = seen()
    return out


@scenario()
def alter_configs_legacy(ctx):
    ctx.create("diff-ac", 1, {"retention.ms": "7200000", "segment.ms": "3600000"})
    v = ctx.v("AlterConfigs")
    with wire.Conn(ctx.bootstrap) as c:
        r = c.call("AlterConfigs", v, validate_only=False, resources=[
            {"resource_type": TOPIC, "resource_name": "diff-ac",
             "configs": [{"name": "max.message.bytes", "value": "40000"}]}])
        first = r["responses"][0]["error_code"]
        r = c.call("AlterConfigs", v, validate_only=False, resources=[
            {"resource_type": TOPIC, "resource_name": "diff-ac",
             "configs": [{"name": "retention.ms", "value": "nope"}]}])
        bad = r["responses"][0]["error_code"]
    # AlterConfigs replaces the whole set: retention.ms and segment.ms fall back to defaults.
    return {"set": first, "bad": bad,
            "after": config_view(ctx.describe_configs(TOPIC, "diff-ac", ALTER_KEYS))}


# ==================================================================== produce and fetch

HEADERS = [("h", b"1"), ("h", b"2"), ("empty", b""), ("null", None), ("utf8-\u00e9", b"\x00\xff")]


def codecs():
    out = [0, 1]     # none, gzip (always available)
    try:
        import snappy  # noqa: F401
        out.append(2)
    except ImportError:
        pass
    try:
        import lz4  # noqa: F401
        out.append(3)
    except ImportError:
        pass
    try:
        import zstandard  # noqa: F401
        out.append(4)
    except ImportError:
        pass
    return out


@scenario()
def produce_fetch_roundtrip(ctx):
    """Batches in every codec the harness has, with keys, null values, headers (repeated keys,
    null and binary values) and explicit timestamps; read back exactly, with the watermarks."""
    ctx.create("diff-rt", 2)
    out = {"produce": [], "codecs": codecs()}
    c = ctx.conn()
    offset = 0
    for codec in out["codecs"]:
        rows = recs(ctx.t0, 5, start=offset, headers=HEADERS)
        rows.append((ctx.t0 + 100 + offset, None, None, []))          # a tombstone, no key
        rows.append((ctx.t0 + 200 + offset, b"", b"", [("", b"")]))   # empty key and value
        r = ctx.produce("diff-rt", 0, wire.batch(rows, compression=codec), conn=c)
        out["produce"].append(r)
        offset += len(rows)
    out["fetch"] = ctx.fetch("diff-rt", 0, 0, conn=c)
    out["fetch_middle"] = ctx.fetch("diff-rt", 0, 3, conn=c)
    out["fetch_other_partition"] = ctx.fetch("diff-rt", 1, 0, conn=c)
    for v in ctx.versions("Fetch"):
        f = ctx.fetch("diff-rt", 0, 0, version=v, conn=ctx.conn())
        out["fetch_v%d" % v] = f if isinstance(f, str) else {
            "error_code": f["error_code"],
            "high_watermark": f["partition"]["high_watermark"],
            "offsets": [r["offset"] for b in f["partition"]["records"] for r in b["records"]]}
    for v in ctx.versions("Produce"):
        r = ctx.produce("diff-rt", 1, wire.batch(recs(ctx.t0, 2)), version=v, conn=ctx.conn())
        out["produce_v%d" % v] = r
    return out


@scenario()
def log_append_time(ctx):
    ctx.create("diff-lat", 1, {"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    r = ctx.produce("diff-lat", 0, wire.batch(recs(ctx.t0, 3)))
    after = int(time.time() * 1000)
    f = ctx.fetch("diff-lat", 0, 0)
    lat = r["log_append_time_ms"]
    batches = f["partition"]["records"]
    return {"error_code": r["error_code"], "base_offset": r["base_offset"],
            "log_append_time_in_window": before <= lat <= after,
            "batch_timestamp_type": [b["timestamp_type"] for b in batches],
            "record_timestamps_equal_append_time": [r2["timestamp"] == lat
                                                    for b in batches for r2 in b["records"]],
            "list_offsets_max_ts": ctx.list_offsets("diff-lat", 0, -3)["offset"]
            if ctx.v("ListOffsets") >= 7 else None}


def corrupt(batch_bytes):
    b = bytearray(batch_bytes)
    b[-1] ^= 0xFF
    return bytes(b)


@scenario()
def produce_errors(ctx):
    ctx.create("diff-pe", 1, {"max.message.bytes": "2000"})
    ctx.create("diff-pe-compact", 1, {"cleanup.policy": "compact"})
    t = ctx.t0
    out = {}
    c = ctx.conn()
    good = wire.batch(recs(t, 2))
    out["unknown_topic"] = ctx.produce("diff-pe-none", 0, good, conn=c)
    out["unknown_partition"] = ctx.produce("diff-pe", 7, good, conn=c)
    out["bad_crc"] = ctx.produce("diff-pe", 0, corrupt(good), conn=c)
    out["acks_2"] = ctx.produce("diff-pe", 0, good, acks=2, conn=ctx.conn())
    out["too_large"] = ctx.produce("diff-pe", 0, wire.batch(recs(t, 1, value_size=5000)),
                                   conn=ctx.conn())
    now = int(time.time() * 1000)
    out["timestamp_far_future"] = ctx.produce("diff-pe", 0, wire.batch(
        [(now + 3 * 3600 * 1000, b"k", b"v", [])]), conn=ctx.conn())
    out["compacted_no_key"] = ctx.produce("diff-pe-compact", 0, wire.batch(
        [(t, b"k", b"v", []), (t, None, b"v", [])]), conn=ctx.conn())
    out["empty_records"] = ctx.produce("diff-pe", 0, b"", conn=ctx.conn())
    out["garbage_records"] = ctx.produce("diff-pe", 0, b"\x00" * 70, conn=ctx.conn())
    tb = wire.batch(recs(t, 1), producer_id=1, producer_epoch=0, base_sequence=0,
                    transactional=True)
    out["transactional_batch_without_txn"] = ctx.produce("diff-pe", 0, tb, conn=ctx.conn())
    out["after"] = {"end": ctx.list_offsets("diff-pe", 0, -1)["offset"],
                    "compact_end": ctx.list_offsets("diff-pe-compact", 0, -1)["offset"]}
    # acks=0: no response at all; the next request on the connection is answered in order
    for name, topic in (("acks0_ok", "diff-pe"), ("acks0_unknown_topic", "diff-pe-none")):
        c0 = ctx.conn(timeout=10)
        c0.request("Produce", 12, expect_response=False, acks=0, timeout_ms=1000, topic_data=[
            {"name": topic, "partition_data": [{"index": 0, "records": good}]}])
        m = c0.call("Metadata", ctx.v("Metadata"), topics=[])
        out[name] = {"next_request": m if isinstance(m, str) else "answered",
                     "end": ctx.list_offsets("diff-pe", 0, -1)["offset"]}
    return out


@scenario()
def idempotent_producer(ctx):
    ctx.create("diff-idem", 1)
    t = ctx.t0
    out = {}
    c = ctx.conn()
    r = ctx.init_producer_id(c)
    pid, epoch = r["producer_id"], r["producer_epoch"]
    out["init"] = {"error_code": r["error_code"], "epoch": epoch, "pid_non_negative": pid >= 0}

    def send(seq, n=3, e=None, p=None):
        return ctx.produce("diff-idem", 0, wire.batch(
            recs(t, n, start=seq), producer_id=pid if p is None else p,
            producer_epoch=epoch if e is None else e, base_sequence=seq), conn=c)

    out["seq0"] = send(0)
    out["duplicate_seq0"] = send(0)
    out["gap_seq5"] = send(5)
    out["seq3"] = send(3)
    out["duplicate_seq3"] = send(3)
    out["old_seq0_again"] = send(0)
    out["epoch_bump_seq0"] = send(0, e=epoch + 1)
    out["old_epoch"] = send(6, e=epoch)
    out["unknown_pid_seq0"] = send(0, p=pid + 1000, e=0)
    out["unknown_pid_seq7"] = send(7, p=pid + 2000, e=0)
    f = ctx.fetch("diff-idem", 0, 0)
    out["log"] = [(b["base_offset"], b["base_sequence"], b["producer_epoch"],
                   len(b["records"])) for b in f["partition"]["records"]]
    if "DescribeProducers" in ctx.common:
        r = c.call("DescribeProducers", 0, topics=[{"name": "diff-idem", "partition_indexes": [0]}])
        # In no particular order (Kafka's is a hash map's): sorted by what does not depend on
        # the generated producer ids.
        out["describe_producers"] = r if isinstance(r, str) else sorted((
            {k: v for k, v in st.items() if k not in ("last_timestamp", "coordinator_epoch")}
            for st in r["topics"][0]["partitions"][0]["active_producers"]),
            key=lambda st: (st["last_sequence"], st["producer_epoch"]))
    return out


@scenario()
def init_producer_id_transactional(ctx):
    """A transactional producer's first steps: find its coordinator, then InitProducerId."""
    find = ctx.coordinator_ready("diff-txn", key_type=1, timeout=20)
    with wire.Conn(ctx.bootstrap) as c:
        r = ctx.init_producer_id(c, transactional_id="diff-txn")
    return {"find_coordinator": find,
            "init": r if isinstance(r, str) else {"error_code": r["error_code"],
                                                  "epoch": r["producer_epoch"]}}


@scenario()
def transaction_errors(ctx):
    """The transaction APIs' answers, right and wrong: a timeout over the maximum, a foreign
    producer id, a stale epoch, an unknown partition, EndTxn with nothing in progress, a commit
    and its retry, an abort after it; what read_committed sees of an aborted transaction."""
    tid = "diff-txn-errors"
    ctx.create("diff-txn-t", 2)
    ctx.coordinator_ready(tid, key_type=1, timeout=20)
    out = {}
    c = ctx.conn()
    r = c.call("InitProducerId", ctx.v("InitProducerId"), transactional_id=tid,
               transaction_timeout_ms=10 ** 9, producer_id=-1, producer_epoch=-1)
    out["timeout_too_large"] = r["error_code"]
    r = ctx.init_producer_id(c, transactional_id=tid)
    pid, epoch = r["producer_id"], r["producer_epoch"]
    out["init"] = {"error_code": r["error_code"], "epoch": epoch}
    # v4+ is the brokers' batched form; clients send v3 and below.
    av = min(ctx.v("AddPartitionsToTxn"), 3)

    def add(partitions, p=None, e=None, topic="diff-txn-t"):
        r = c.call("AddPartitionsToTxn", av, v3_and_below_transactional_id=tid,
                   v3_and_below_producer_id=pid if p is None else p,
                   v3_and_below_producer_epoch=epoch if e is None else e,
                   v3_and_below_topics=[{"name": topic, "partitions": partitions}])
        if isinstance(r, str):
            return r
        return sorted((t["name"], x["partition_index"], x["partition_error_code"])
                      for t in r["results_by_topic_v3_and_below"] for x in t["results_by_partition"])

    def end(commit, e=None):
        r = c.call("EndTxn", ctx.v("EndTxn"), transactional_id=tid, producer_id=pid,
                   producer_epoch=epoch if e is None else e, committed=commit)
        return r if isinstance(r, str) else r["error_code"]

    def completed():
        """Waits until the transaction's markers are written: Kafka answers EndTxn once its
        decision is stored and writes them after (CONCURRENT_TRANSACTIONS meanwhile), zombi
        answers once they are written."""
        deadline = time.time() + 20
        while time.time() < deadline:
            d = c.call("DescribeTransactions", ctx.v("DescribeTransactions"), transactional_ids=[tid])
            state = d["transaction_states"][0]["transaction_state"]
            if state in ("CompleteCommit", "CompleteAbort"):
                return state
            time.sleep(0.05)
        return "still " + state

    out["end_with_nothing_in_progress"] = end(True)
    out["add_foreign_producer_id"] = add([0], p=pid + 1000)
    out["add_stale_epoch"] = add([0], e=epoch - 1 if epoch > 0 else epoch + 5)
    out["add_unknown_partition"] = add([0, 7])
    out["add"] = add([0, 1])
    t = ctx.t0
    for partition in (0, 1):
        batch = wire.batch(recs(t, 3), producer_id=pid, producer_epoch=epoch, base_sequence=0,
                           transactional=True)
        out["produce_%d" % partition] = ctx.produce("diff-txn-t", partition, batch, conn=c,
                                                     transactional_id=tid)["error_code"]
    def producers(marker_written=False):
        """DescribeProducers of partition 0: the one producer's state (its id relative to ours).
        After a marker the last timestamp is the marker's, the broker's clock: only its order
        against the batch's is compared."""
        r = c.call("DescribeProducers", 0, topics=[{"name": "diff-txn-t", "partition_indexes": [0]}])
        if isinstance(r, str):
            return r
        p = r["topics"][0]["partitions"][0]
        return {"error_code": p["error_code"],
                "producers": [dict(st, producer_id=st["producer_id"] - pid,
                                   last_timestamp=st["last_timestamp"] >= ctx.t0 if marker_written
                                   else st["last_timestamp"]) for st in p["active_producers"]]}

    if "DescribeProducers" in ctx.common:
        out["producers_while_open"] = producers()
    open_lso = ctx.list_offsets("diff-txn-t", 0, -1, isolation=1)
    out["while_open"] = {"lso": open_lso.get("offset"),
                         "end": ctx.list_offsets("diff-txn-t", 0, -1)["offset"]}
    out["commit"] = end(True)
    out["completed_commit"] = completed()
    if "DescribeProducers" in ctx.common:
        out["producers_after_commit"] = producers(marker_written=True)
    out["commit_retry"] = end(True)
    out["abort_after_commit"] = end(False)
    out["after_commit"] = {"lso": ctx.list_offsets("diff-txn-t", 0, -1, isolation=1)["offset"]}
    out["add_again"] = add([0])
    batch = wire.batch(recs(t, 2), producer_id=pid, producer_epoch=epoch, base_sequence=3,
                       transactional=True)
    out["produce_again"] = ctx.produce("diff-txn-t", 0, batch, conn=c, transactional_id=tid)["error_code"]
    out["abort"] = end(False)
    out["completed_abort"] = completed()
    fetched = ctx.fetch("diff-txn-t", 0, 0, isolation=1)
    if not isinstance(fetched, str):
        p = fetched["partition"]
        out["read_committed"] = {
            "high_watermark": p["high_watermark"], "last_stable_offset": p["last_stable_offset"],
            "aborted": [(a["producer_id"] == pid, a["first_offset"])
                        for a in (p.get("aborted_transactions") or [])],
            "batches": len(p["records"] or [])}
    d = c.call("DescribeTransactions", ctx.v("DescribeTransactions"), transactional_ids=[tid])
    if not isinstance(d, str):
        s = d["transaction_states"][0]
        out["describe"] = {"error_code": s["error_code"], "state": s["transaction_state"],
                           "epoch": s["producer_epoch"] - epoch}
    for name, states in (("list_aborted", ["CompleteAbort", "Bogus"]), ("list_ongoing", ["Ongoing"])):
        r = c.call("ListTransactions", ctx.v("ListTransactions"), state_filters=states,
                   producer_id_filters=[pid], duration_filter=-1)
        if not isinstance(r, str):
            out[name] = {"error_code": r["error_code"], "unknown": r["unknown_state_filters"],
                         "found": [(t["transactional_id"], t["transaction_state"])
                                   for t in r["transaction_states"]]}
    return out


# ==================================================================== offsets

@scenario()
def list_offsets(ctx):
    ctx.create("diff-lo", 2)
    t = ctx.t0
    rows = [(t, b"a", b"0", []), (t + 10, b"b", b"1", []), (t + 5, b"c", b"2", []),
            (t + 20, b"d", b"3", []), (t + 20, b"e", b"4", [])]
    ctx.produce("diff-lo", 0, wire.batch(rows[:2]))
    ctx.produce("diff-lo", 0, wire.batch(rows[2:]))
    specs = {"latest": -1, "earliest": -2, "max_timestamp": -3, "earliest_local": -4,
             "latest_tiered": -5, "earliest_pending_upload": -6, "unknown_special": -7,
             "before_all": t - 1, "first": t, "between": t + 6, "last": t + 20,
             "after_all": t + 21, "zero": 0}
    minimum = {"max_timestamp": 7, "earliest_local": 8, "latest_tiered": 9,
               "earliest_pending_upload": 11}
    out = {}
    for v in ctx.versions("ListOffsets"):
        row = {}
        for name, ts in specs.items():
            if v < minimum.get(name, 0):
                continue
            row[name] = ctx.list_offsets("diff-lo", 0, ts, version=v)
        out["v%d" % v] = row
    out["empty_partition"] = {n: ctx.list_offsets("diff-lo", 1, ts) for n, ts in specs.items()}
    out["unknown_partition"] = ctx.list_offsets("diff-lo", 9, -1)
    out["unknown_topic"] = ctx.list_offsets("diff-lo-none", 0, -1)
    out["read_committed_latest"] = ctx.list_offsets("diff-lo", 0, -1, isolation=1)
    return out


@scenario()
def delete_records(ctx):
    ctx.create("diff-dr", 1)
    ctx.produce("diff-dr", 0, wire.batch(recs(ctx.t0, 10)))
    v = ctx.v("DeleteRecords")
    out = {}
    c = ctx.conn()

    def dr(offset, partition=0, topic="diff-dr"):
        r = c.call("DeleteRecords", v, timeout_ms=30000, topics=[
            {"name": topic, "partitions": [{"partition_index": partition, "offset": offset}]}])
        return r["topics"][0]["partitions"][0]

    out["to_4"] = dr(4)
    out["earliest_after"] = ctx.list_offsets("diff-dr", 0, -2)
    out["fetch_below"] = ctx.fetch("diff-dr", 0, 2)
    out["fetch_at_start"] = ctx.fetch("diff-dr", 0, 4)
    out["back_to_2"] = dr(2)
    out["beyond_hw"] = dr(11)
    out["to_hw_minus_1"] = dr(-1)
    out["unknown_partition"] = dr(1, partition=5)
    out["unknown_topic"] = dr(1, topic="diff-dr-none")
    out["produce_after"] = ctx.produce("diff-dr", 0, wire.batch(recs(ctx.t0, 2)))
    out["list_after"] = {n: ctx.list_offsets("diff-dr", 0, ts) for n, ts in
                         (("earliest", -2), ("latest", -1), ("t0", ctx.t0))}
    return out


@scenario()
def fetch_errors(ctx):
    ctx.create("diff-fe", 1)
    ctx.produce("diff-fe", 0, wire.batch(recs(ctx.t0, 3)))
    ctx.produce("diff-fe", 0, wire.batch(recs(ctx.t0, 3, start=3)))
    out = {"past_hw": ctx.fetch("diff-fe", 0, 10),
           "at_hw": ctx.fetch("diff-fe", 0, 6),
           "unknown_partition": ctx.fetch("diff-fe", 4, 0),
           "epoch_too_new": ctx.fetch("diff-fe", 0, 0, leader_epoch=5),
           "epoch_current": ctx.fetch("diff-fe", 0, 0, leader_epoch=0),
           "max_bytes_1": ctx.fetch("diff-fe", 0, 0, max_bytes=1),
           "negative_offset": ctx.fetch("diff-fe", 0, -1)}
    v = ctx.v("Fetch")
    c = ctx.conn()
    r = c.call("Fetch", v, replica_id=-1, replica_state=REPLICA_STATE, max_wait_ms=0,
               min_bytes=0, max_bytes=1 << 20,
               isolation_level=0, session_id=0, session_epoch=-1, topics=[
                   {"topic": "diff-fe-none", "topic_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                    "partitions": [{"partition": 0, "fetch_offset": 0, "current_leader_epoch": -1,
                                    "log_start_offset": -1, "partition_max_bytes": 1 << 20}]}])
    out["unknown_topic_id"] = r if isinstance(r, str) else {
        "error_code": r["error_code"],
        "partitions": [p["error_code"] for t in r["responses"] for p in t["partitions"]]}
    r = c.call("Fetch", 11, replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20,
               isolation_level=0, session_id=0, session_epoch=-1, topics=[
                   {"topic": "diff-fe-none", "partitions": [
                       {"partition": 0, "fetch_offset": 0, "current_leader_epoch": -1,
                        "log_start_offset": -1, "partition_max_bytes": 1 << 20}]}])
    out["unknown_topic_v11"] = r if isinstance(r, str) else [
        p["error_code"] for t in r["responses"] for p in t["partitions"]]
    # long poll: min_bytes=1 on an idle partition waits max_wait_ms, then answers empty
    t0 = time.time()
    r = c.call("Fetch", v, replica_id=-1, replica_state=REPLICA_STATE, max_wait_ms=300,
               min_bytes=1, max_bytes=1 << 20,
               isolation_level=0, session_id=0, session_epoch=-1, topics=[
                   {"topic": "diff-fe", "topic_id": ctx.topic_id("diff-fe"),
                    "partitions": [{"partition": 0, "fetch_offset": 6, "current_leader_epoch": -1,
                                    "log_start_offset": -1, "partition_max_bytes": 1 << 20}]}])
    waited = time.time() - t0
    out["long_poll_waited_about_max_wait"] = 0.25 <= waited < 5
    return out


@scenario()
def offset_for_leader_epoch(ctx):
    ctx.create("diff-ofle", 1)
    ctx.produce("diff-ofle", 0, wire.batch(recs(ctx.t0, 4)))
    out = {}
    with wire.Conn(ctx.bootstrap) as c:
        for v in ctx.versions("OffsetForLeaderEpoch"):
            row = {}
            for name, epoch, current in (("epoch0", 0, -1), ("epoch3", 3, -1),
                                         ("fenced_current", 0, 7), ("unknown_topic", 0, -1)):
                topic = "diff-ofle-none" if name == "unknown_topic" else "diff-ofle"
                r = c.call("OffsetForLeaderEpoch", v, replica_id=-1, topics=[
                    {"topic": topic, "partitions": [{"partition": 0, "leader_epoch": epoch,
                                                     "current_leader_epoch": current}]}])
                row[name] = r if isinstance(r, str) else r["topics"][0]["partitions"][0]
            out["v%d" % v] = row
    return out


# ==================================================================== groups

def consumer_subscription(topics):
    """ConsumerProtocolSubscription v0: the bytes a Java consumer sends as protocol metadata."""
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + struct.pack(">i", -1)


def consumer_assignment(parts):
    out = struct.pack(">hi", 0, len(parts))
    for topic, ps in parts.items():
        out += struct.pack(">h", len(topic)) + topic.encode() + struct.pack(">i", len(ps))
        for p in ps:
            out += struct.pack(">i", p)
    return out + struct.pack(">i", -1)


def join(c, group, member_id="", protocols=None, session=10000, rebalance=30000, version=None,
         instance=None, protocol_type="consumer"):
    return c.call("JoinGroup", version, group_id=group, session_timeout_ms=session,
                  rebalance_timeout_ms=rebalance, member_id=member_id, group_instance_id=instance,
                  protocol_type=protocol_type, reason=None,
                  protocols=protocols if protocols is not None else [
                      {"name": "range", "metadata": consumer_subscription(["diff-grp"])}])


@scenario()
def group_errors(ctx):
    v = ctx.v("JoinGroup")
    ctx.coordinator_ready("diff-g1")
    out = {}
    c = ctx.conn()
    for kv in ctx.versions("FindCoordinator"):
        fields = {"key_type": 0}
        if kv >= 4:
            fields["coordinator_keys"] = ["diff-g1", ""]
        else:
            fields["key"] = "diff-g1"
        r = c.call("FindCoordinator", kv, **fields)
        if kv >= 4:
            out["find_coordinator_v%d" % kv] = [(x["key"], x["error_code"]) for x in
                                                r["coordinators"]]
        else:
            out["find_coordinator_v%d" % kv] = r["error_code"]
    r = c.call("FindCoordinator", ctx.v("FindCoordinator"), key_type=7, coordinator_keys=["x"])
    out["find_coordinator_bad_key_type"] = r if isinstance(r, str) else [
        x["error_code"] for x in r["coordinators"]]
    c = ctx.conn()
    r = join(c, "diff-g1", version=v)
    out["join_without_member_id"] = {"error_code": r["error_code"],
                                     "got_member_id": bool(r["member_id"])}
    out["session_too_small"] = join(c, "diff-g1", session=10, version=v)["error_code"]
    out["session_too_large"] = join(c, "diff-g1", session=10 ** 9, version=v)["error_code"]
    out["empty_group_id"] = join(c, "", version=v)["error_code"]
    out["no_protocols"] = join(c, "diff-g1", protocols=[], version=v)["error_code"]
    out["empty_protocol_type"] = join(c, "diff-g1", protocol_type="", version=v)["error_code"]
    out["unknown_member_join"] = join(c, "diff-g1", member_id="nobody", version=v)["error_code"]
    out["heartbeat_unknown_group"] = c.call("Heartbeat", ctx.v("Heartbeat"), group_id="diff-g-x",
                                            generation_id=1, member_id="nobody")["error_code"]
    out["sync_unknown_group"] = c.call("SyncGroup", ctx.v("SyncGroup"), group_id="diff-g-x",
                                       generation_id=1, member_id="nobody",
                                       protocol_type="consumer", protocol_name="range",
                                       assignments=[])["error_code"]
    r = c.call("LeaveGroup", ctx.v("LeaveGroup"), group_id="diff-g-x",
               members=[{"member_id": "nobody"}])
    out["leave_unknown_group"] = (r["error_code"], [m["error_code"] for m in r["members"]])
    out["describe_unknown_group"] = [
        {k: g[k] for k in ("error_code", "group_id", "group_state", "protocol_type", "members")}
        for g in c.call("DescribeGroups", ctx.v("DescribeGroups"), groups=["diff-g-x"],
                        include_authorized_operations=False)["groups"]]
    r = c.call("DeleteGroups", ctx.v("DeleteGroups"), groups_names=["diff-g-x"])
    out["delete_unknown_group"] = [x["error_code"] for x in r["results"]]
    return out


@scenario()
def group_offsets_simple(ctx):
    """Commits without a member (admin tools, assign()-style consumers), fetched back."""
    ctx.create("diff-go", 2)
    ctx.coordinator_ready("diff-go-g")
    c = ctx.conn()
    out = {}
    for v in ctx.versions("OffsetCommit"):
        if v >= 10:
            continue   # topic ids in v10: covered at v9 by name
        r = c.call("OffsetCommit", v, group_id="diff-go-g", generation_id_or_member_epoch=-1,
                   member_id="", group_instance_id=None, retention_time_ms=-1, topics=[
                       {"name": "diff-go", "partitions": [
                           {"partition_index": 0, "committed_offset": 5 + v,
                            "committed_leader_epoch": -1, "committed_metadata": "meta%d" % v},
                           {"partition_index": 1, "committed_offset": 1,
                            "committed_leader_epoch": -1, "committed_metadata": None}]},
                       {"name": "diff-go-none", "partitions": [
                           {"partition_index": 0, "committed_offset": 1,
                            "committed_leader_epoch": -1, "committed_metadata": ""}]}])
        out["commit_v%d" % v] = sorted((t["name"], [p["error_code"] for p in t["partitions"]])
                                       for t in r["topics"])
    for v in ctx.versions("OffsetFetch"):
        if v >= 10:
            continue
        if v >= 8:
            r = c.call("OffsetFetch", v, require_stable=False, groups=[
                {"group_id": "diff-go-g", "member_id": None, "member_epoch": -1,
                 "topics": [{"name": "diff-go", "partition_indexes": [0, 1, 2]}]},
                {"group_id": "diff-go-unknown", "member_id": None, "member_epoch": -1,
                 "topics": None}])
            out["fetch_v%d" % v] = r["groups"]
        else:
            r = c.call("OffsetFetch", v, group_id="diff-go-g", require_stable=False,
                       topics=[{"name": "diff-go", "partition_indexes": [0, 1, 2]}])
            out["fetch_v%d" % v] = r
    r = c.call("DescribeGroups", ctx.v("DescribeGroups"), groups=["diff-go-g"],
               include_authorized_operations=False)
    out["describe"] = r["groups"]
    r = c.call("ListGroups", ctx.v("ListGroups"), states_filter=[], types_filter=[])
    out["list"] = sorted((g["group_id"], g.get("group_state"), g.get("protocol_type"),
                          g.get("group_type")) for g in r["groups"]
                         if g["group_id"].startswith("diff-go"))
    r = c.call("OffsetDelete", 0, group_id="diff-go-g",
               topics=[{"name": "diff-go", "partitions": [{"partition_index": 1}]}])
    out["offset_delete"] = r
    r = c.call("OffsetFetch", 7, group_id="diff-go-g", require_stable=False, topics=None)
    out["fetch_all_after_delete"] = r
    out["delete_group"] = c.call("DeleteGroups", ctx.v("DeleteGroups"),
                                 groups_names=["diff-go-g", "diff-go-g"])["results"]
    out["delete_again"] = c.call("DeleteGroups", ctx.v("DeleteGroups"),
                                 groups_names=["diff-go-g"])["results"]
    return out


@scenario()
def group_offsets_by_topic_id(ctx):
    """OffsetCommit v10 and OffsetFetch v10 name topics by id (KIP-848); franz-go 1.22 sends them
    as soon as the broker advertises v10."""
    ctx.create("diff-gov10", 2)
    ctx.coordinator_ready("diff-gov10-g")
    tid = ctx.topic_id("diff-gov10")
    out = {}
    if ctx.v("OffsetCommit") >= 10:
        with wire.Conn(ctx.bootstrap) as c:
            r = c.call("OffsetCommit", 10, group_id="diff-gov10-g",
                       generation_id_or_member_epoch=-1, member_id="", group_instance_id=None,
                       topics=[{"topic_id": tid, "partitions": [
                           {"partition_index": 0, "committed_offset": 3,
                            "committed_leader_epoch": -1, "committed_metadata": "m"}]},
                           {"topic_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "partitions": [
                               {"partition_index": 0, "committed_offset": 3,
                                "committed_leader_epoch": -1, "committed_metadata": "m"}]}])
        out["commit_v10"] = r if isinstance(r, str) else sorted(
            (str(t["topic_id"]) == str(tid), [p["error_code"] for p in t["partitions"]])
            for t in r["topics"])
    if ctx.v("OffsetFetch") >= 10:
        for name, topics in (("fetch_v10_by_id", [{"topic_id": tid, "partition_indexes": [0, 1]}]),
                             ("fetch_v10_all", None)):
            with wire.Conn(ctx.bootstrap) as c:
                r = c.call("OffsetFetch", 10, require_stable=False, groups=[
                    {"group_id": "diff-gov10-g", "member_id": None, "member_epoch": -1,
                     "topics": topics}])
            out[name] = r if isinstance(r, str) else r["groups"]
    return out


@scenario()
def group_rebalance(ctx):
    """Two members of a classic consumer group, step by step: join, sync, a second member, the
    rebalance, heartbeats, commits with the generation, leave (group.initial.rebalance.delay.ms=0
    on both brokers)."""
    ctx.create("diff-grp", 2)
    g = "diff-grp-g"
    ctx.coordinator_ready(g)
    v = ctx.v("JoinGroup")
    ca, cb = ctx.conn(), ctx.conn()
    out = {}
    r = join(ca, g, version=v)
    a = r["member_id"]
    r = join(ca, g, member_id=a, version=v)
    out["a_join"] = r
    out["a_sync"] = ca.call("SyncGroup", ctx.v("SyncGroup"), group_id=g,
                            generation_id=r["generation_id"], member_id=a,
                            protocol_type="consumer", protocol_name="range",
                            assignments=[{"member_id": a, "assignment": consumer_assignment(
                                {"diff-grp": [0, 1]})}])
    out["describe_stable_1"] = ca.call("DescribeGroups", ctx.v("DescribeGroups"), groups=[g],
                                       include_authorized_operations=False)["groups"]
    r = join(cb, g, version=v)
    b = r["member_id"]
    results = {}

    def b_join():
        results["b_join"] = join(cb, g, member_id=b, version=v)

    th = threading.Thread(target=b_join)
    th.start()
    # A learns of the rebalance through its heartbeat (the join of B is pending until A rejoins).
    deadline = time.time() + 30
    hb = None
    while time.time() < deadline:
        hb = ca.call("Heartbeat", ctx.v("Heartbeat"), group_id=g, generation_id=1, member_id=a)
        if hb["error_code"] != 0:
            break
        time.sleep(0.05)
    out["a_heartbeat_during_rebalance"] = hb["error_code"]
    ra = join(ca, g, member_id=a, version=v)
    th.join(60)
    rb = results.get("b_join")
    out["a_rejoin"] = ra
    out["b_join"] = rb
    gen = ra["generation_id"]
    leader_is_a = ra["leader"] == a
    out["leader_is_a"] = leader_is_a
    assignments = [{"member_id": a, "assignment": consumer_assignment({"diff-grp": [0]})},
                   {"member_id": b, "assignment": consumer_assignment({"diff-grp": [1]})}]
    res = {}

    def b_sync():
        res["b"] = cb.call("SyncGroup", ctx.v("SyncGroup"), group_id=g, generation_id=gen,
                           member_id=b, protocol_type="consumer", protocol_name="range",
                           assignments=[])
    th = threading.Thread(target=b_sync)
    th.start()
    out["a_sync_2"] = ca.call("SyncGroup", ctx.v("SyncGroup"), group_id=g, generation_id=gen,
                              member_id=a, protocol_type="consumer", protocol_name="range",
                              assignments=assignments)
    th.join(60)
    out["b_sync_2"] = res.get("b")
    out["old_generation_heartbeat"] = ca.call("Heartbeat", ctx.v("Heartbeat"), group_id=g,
                                              generation_id=gen - 1, member_id=a)["error_code"]
    out["heartbeat"] = ca.call("Heartbeat", ctx.v("Heartbeat"), group_id=g, generation_id=gen,
                               member_id=a)["error_code"]
    out["commit_with_generation"] = ca.call(
        "OffsetCommit", 9, group_id=g, generation_id_or_member_epoch=gen, member_id=a,
        group_instance_id=None, topics=[{"name": "diff-grp", "partitions": [
            {"partition_index": 0, "committed_offset": 3, "committed_leader_epoch": -1,
             "committed_metadata": ""}]}])["topics"]
    out["commit_old_generation"] = ca.call(
        "OffsetCommit", 9, group_id=g, generation_id_or_member_epoch=gen - 1, member_id=a,
        group_instance_id=None, topics=[{"name": "diff-grp", "partitions": [
            {"partition_index": 0, "committed_offset": 4, "committed_leader_epoch": -1,
             "committed_metadata": ""}]}])["topics"]
    out["commit_unknown_member"] = ca.call(
        "OffsetCommit", 9, group_id=g, generation_id_or_member_epoch=gen, member_id="nobody",
        group_instance_id=None, topics=[{"name": "diff-grp", "partitions": [
            {"partition_index": 0, "committed_offset": 4, "committed_leader_epoch": -1,
             "committed_metadata": ""}]}])["topics"]
    out["describe_stable_2"] = ca.call("DescribeGroups", ctx.v("DescribeGroups"), groups=[g],
                                       include_authorized_operations=True)["groups"]
    out["delete_non_empty"] = ca.call("DeleteGroups", ctx.v("DeleteGroups"),
                                      groups_names=[g])["results"]
    out["offset_delete_subscribed"] = ca.call("OffsetDelete", 0, group_id=g, topics=[
        {"name": "diff-grp", "partitions": [{"partition_index": 0}]}])
    out["list_stable"] = sorted((x["group_id"], x.get("group_state")) for x in ca.call(
        "ListGroups", ctx.v("ListGroups"), states_filter=["Stable"], types_filter=[])["groups"])
    out["b_leave"] = cb.call("LeaveGroup", ctx.v("LeaveGroup"), group_id=g,
                             members=[{"member_id": b, "group_instance_id": None,
                                       "reason": "done"}])
    out["a_heartbeat_after_leave"] = ca.call("Heartbeat", ctx.v("Heartbeat"), group_id=g,
                                             generation_id=gen, member_id=a)["error_code"]
    out["a_leave"] = ca.call("LeaveGroup", ctx.v("LeaveGroup"), group_id=g,
                             members=[{"member_id": a, "group_instance_id": None,
                                       "reason": "done"}])
    out["describe_after_leave"] = ca.call("DescribeGroups", ctx.v("DescribeGroups"), groups=[g],
                                          include_authorized_operations=False)["groups"]
    out["committed_after"] = ca.call("OffsetFetch", 7, group_id=g, require_stable=True,
                                     topics=None)
    return by_role(wire.jsonable(out), {a: "<A>", b: "<B>"})


def by_role(x, roles):
    """Generated member ids replaced by the members' roles, member lists in role order (the
    order of a JoinGroup's member list is not part of the protocol)."""
    if isinstance(x, dict):
        return {k: by_role(v, roles) for k, v in x.items()}
    if isinstance(x, list):
        items = [by_role(v, roles) for v in x]
        if items and all(isinstance(i, dict) and "member_id" in i for i in items):
            items.sort(key=lambda i: str(i["member_id"]))
        return items
    if isinstance(x, str) and x in roles:
        return roles[x]
    return x


@scenario()
def static_membership(ctx):
    """A static member (group.instance.id) rejoining with a new member id keeps its place."""
    g = "diff-static"
    ctx.coordinator_ready(g)
    v = ctx.v("JoinGroup")
    c = ctx.conn()
    out = {}
    r = join(c, g, instance="inst-1", version=v)
    out["first_join"] = r
    r2 = join(c, g, instance="inst-1", version=v)
    out["rejoin_empty_member_id"] = r2
    out["sync"] = c.call("SyncGroup", ctx.v("SyncGroup"), group_id=g,
                         generation_id=r2["generation_id"], member_id=r2["member_id"],
                         group_instance_id="inst-1", protocol_type="consumer",
                         protocol_name="range", assignments=[])
    out["fenced_old_member_heartbeat"] = c.call(
        "Heartbeat", ctx.v("Heartbeat"), group_id=g, generation_id=r2["generation_id"],
        member_id=r["member_id"], group_instance_id="inst-1")["error_code"]
    out["describe"] = c.call("DescribeGroups", ctx.v("DescribeGroups"), groups=[g],
                             include_authorized_operations=False)["groups"]
    out["leave"] = c.call("LeaveGroup", ctx.v("LeaveGroup"), group_id=g,
                          members=[{"member_id": "", "group_instance_id": "inst-1",
                                    "reason": None}])
    return out


@scenario(fast=False)
def describe_log_dirs(ctx):
    ctx.create("diff-dld", 1)
    with wire.Conn(ctx.bootstrap) as c:
        r = c.call("DescribeLogDirs", ctx.v("DescribeLogDirs"),
                   topics=[{"topic": "diff-dld", "partitions": [0]}])
    return r if isinstance(r, str) else {
        "error_code": r.get("error_code"),
        "dirs": [{"error_code": d["error_code"],
                  "topics": [(t["name"], [(p["partition_index"], p["is_future_key"])
                                          for p in t["partitions"]]) for t in d["topics"]]}
                 for d in r["results"]]}
