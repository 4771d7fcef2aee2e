"""Produces the records the Spark check reads back, and waits for zombi's Iceberg sink.

    produce.py BOOTSTRAP TOPIC CATALOG EXPECTED_JSONL [S3_ENDPOINT]

CATALOG is the SQLite catalog file, or a SQLAlchemy URL (postgresql+psycopg2://...).

Creates TOPIC (3 partitions), produces 300 records with confluent-kafka (null, empty and binary
keys and values, repeated and null headers, explicit timestamps), writes one JSON line per
record, sorted by (partition, offset), in the form SparkRead.java prints rows, then waits (at
most 180 s) until pyiceberg sees every record in the topic's table."""
import json
import os
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, topic, catalog_db, out = sys.argv[1:5]
s3_endpoint = sys.argv[5] if len(sys.argv) > 5 else None
admin = AdminClient({"bootstrap.servers": bootstrap})
admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
t0 = (int(time.time()) - 3600) * 1000
produced = []


def report(err, msg, headers):
    if err is not None:
        raise SystemExit("delivery failed: %s" % err)
    produced.append((msg, headers))   # a delivery report does not carry the headers


p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
rnd = os.urandom(4096)
for i in range(300):
    key = None if i % 10 == 0 else (b"" if i % 10 == 1 else b"k-%d" % i)
    value = None if i % 17 == 0 else (b"" if i % 17 == 1 else rnd[i:i + 1 + i % 200])
    headers = [("h", b"1"), ("h", b"2-%d" % i)] if i % 3 == 0 else (
        [("null-h", None), ("utf8-\u00e9", b"\x00\xff")] if i % 3 == 1 else [])
    p.produce(topic, value=value, key=key, partition=i % 3, timestamp=t0 + i * 1000,
              headers=headers, on_delivery=lambda err, msg, hd=headers: report(err, msg, hd))
p.flush(60)
assert len(produced) == 300, len(produced)


def h(b):
    return None if b is None else bytes(b).hex()


rows = []
for m, headers in produced:
    rows.append({"partition": m.partition(), "offset": m.offset(), "timestamp_ms": m.timestamp()[1],
                 "key": h(m.key()), "value": h(m.value()),
                 "headers": [[k, h(v)] for k, v in headers]})
rows.sort(key=lambda r: (r["partition"], r["offset"]))
with open(out, "w") as f:
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")

from pyiceberg.catalog.sql import SqlCatalog  # noqa: E402

props = {}
if s3_endpoint:
    props = {"s3.endpoint": s3_endpoint, "s3.access-key-id": os.environ["AWS_ACCESS_KEY_ID"],
             "s3.secret-access-key": os.environ["AWS_SECRET_ACCESS_KEY"], "s3.region": "us-east-1",
             "s3.force-virtual-addressing": "false"}
uri = catalog_db if "://" in catalog_db else "sqlite:///" + catalog_db
catalog = SqlCatalog("zombi", uri=uri, **props)
deadline = time.time() + 180
seen = -1
while time.time() < deadline:
    try:
        table = catalog.load_table(("zombi", topic))
        table.refresh()
        seen = table.scan(selected_fields=("offset",)).to_arrow().num_rows
        if seen >= len(rows):
            break
    except Exception:  # the table appears with the sink's first commit
        pass
    time.sleep(0.5)
print("produced %d records; the Iceberg table holds %d" % (len(rows), seen))
sys.exit(0 if seen == len(rows) else 1)
