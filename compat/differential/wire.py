"""A raw Kafka protocol connection for the differential harness.

Requests and responses are kafka-python's message classes, generated from Kafka's own JSON
message definitions, so any API can be sent at any version and the whole response compared.
`send_raw` sends arbitrary frames for the edge cases (bad versions, sizes, bodies)."""

import socket
import struct

import kafka.protocol.admin as admin  # noqa: F401  (registers the response classes)
import kafka.protocol.consumer as consumer  # noqa: F401
import kafka.protocol.metadata as metadata  # noqa: F401
import kafka.protocol.producer as producer  # noqa: F401
from kafka.protocol.api_header import ResponseHeader
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

CLOSED = "connection closed"
TIMEOUT = "no answer"


class Closed(Exception):
    pass


def classes():
    """name -> message class, for every request and response kafka-python knows."""
    out = {}
    for mod in (admin, consumer, metadata, producer):
        for name in getattr(mod, "__all__", []):
            out[name] = getattr(mod, name)
    return out


CLASSES = classes()


def request_class(api):
    return CLASSES[api + "Request"]


def response_class(api):
    return CLASSES[api + "Response"]


class Conn:
    def __init__(self, bootstrap, timeout=30.0, client_id="zombi-diff"):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.settimeout(timeout)
        self.correlation = 0
        self.client_id = client_id

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except (ConnectionResetError, BrokenPipeError):
                raise Closed()
            if not chunk:
                raise Closed()
            buf += chunk
        return bytes(buf)

    def read_frame(self):
        (size,) = struct.unpack(">i", self._read_exact(4))
        return self._read_exact(size)

    def send_frame(self, payload):
        try:
            self.sock.sendall(struct.pack(">i", len(payload)) + payload)
        except (ConnectionResetError, BrokenPipeError):
            raise Closed()

    def request(self, api, version, expect_response=True, **fields):
        """Sends API at VERSION with FIELDS (nested structs as plain dicts; fields left out take
        the schema's defaults); returns the decoded response object."""
        cls = request_class(api)
        req = cls(version=version, **_build(cls._struct, fields))
        self.correlation += 1
        req.with_header(correlation_id=self.correlation, client_id=self.client_id)
        self.send_frame(bytes(req.encode(header=True)))
        if not expect_response:
            return None
        frame = self.read_frame()
        resp_cls = response_class(api)
        flexible = api != "ApiVersions" and resp_cls.flexible_version_q(version)
        import io
        data = io.BytesIO(frame)
        header = ResponseHeader.decode(data, flexible=flexible)
        assert header.correlation_id == self.correlation, (header.correlation_id, self.correlation)
        return resp_cls.decode(data.read(), version=version)

    def call(self, api, version, **fields):
        """Like request, but returns the response as a dict (or CLOSED / TIMEOUT)."""
        try:
            return self.request(api, version, **fields).to_dict(json=False)
        except Closed:
            return CLOSED
        except socket.timeout:
            return TIMEOUT

    def send_raw(self, payload, read=True):
        """Sends one frame with PAYLOAD (header and body as given); returns the response frame's
        bytes, CLOSED, or TIMEOUT."""
        try:
            self.send_frame(payload)
            if not read:
                return None
            return self.read_frame()
        except Closed:
            return CLOSED
        except socket.timeout:
            return TIMEOUT


def _build(struct, values):
    """Plain dicts -> kafka-python's data classes, following the message schema."""
    out = {}
    for name, value in values.items():
        field = struct.fields.get(name)
        if field is None:
            raise KeyError("%s has no field %s" % (struct.name, name))
        if field.is_struct_array() and value is not None:
            value = [v if not isinstance(v, dict) else field.data_class(**_build(field, v))
                     for v in value]
        elif field.is_struct() and isinstance(value, dict):
            value = field.data_class(**_build(field, value))
        out[name] = value
    return out


def request_header(api_key, version, correlation=1, client_id="zombi-diff", flexible=False):
    cid = client_id.encode()
    out = struct.pack(">hhih", api_key, version, correlation, len(cid)) + cid
    if flexible:
        out += b"\x00"  # no tagged fields
    return out


def batch(records, base_offset=0, compression=0, producer_id=-1, producer_epoch=-1,
          base_sequence=-1, transactional=False):
    """A v2 record batch of RECORDS, each (timestamp_ms or None, key, value, headers)."""
    b = DefaultRecordBatchBuilder(magic=2, compression_type=compression,
                                  is_transactional=transactional, producer_id=producer_id,
                                  producer_epoch=producer_epoch, base_sequence=base_sequence,
                                  batch_size=1 << 30)
    for i, (ts, key, value, headers) in enumerate(records):
        b.append(base_offset + i, ts, key, value, headers or [])
    return bytes(b.build())


def jsonable(x):
    """Bytes as hex, everything else as JSON data."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (set, frozenset)):
        return sorted(jsonable(v) for v in x)
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x).hex()
    if hasattr(x, "hex") and type(x).__name__ == "UUID":
        return str(x)
    return x


def decode_batches(data):
    """The batches and records of a fetched records field, as plain dicts."""
    out = []
    if not data:
        return out
    recs = MemoryRecords(bytes(data))
    while True:
        b = recs.next_batch()
        if b is None:
            break
        rows = []
        for r in b:
            rows.append({"offset": r.offset, "timestamp": r.timestamp,
                         "timestamp_type": r.timestamp_type,
                         "key": None if r.key is None else bytes(r.key).hex(),
                         "value": None if r.value is None else bytes(r.value).hex(),
                         "headers": [[k, None if v is None else bytes(v).hex()] for k, v in r.headers]})
        out.append({"base_offset": b.base_offset, "last_offset_delta": b.last_offset_delta,
                    "magic": b.magic, "attributes": b.attributes,
                    "timestamp_type": b.timestamp_type, "compression": b.compression_type,
                    "producer_id": b.producer_id, "producer_epoch": b.producer_epoch,
                    "base_sequence": b.base_sequence, "transactional": b.is_transactional,
                    "control": b.is_control_batch, "records": rows})
    return out
