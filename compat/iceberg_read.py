#!/usr/bin/env python3
"""Reads a topic's Iceberg table with two independent readers and prints what they saw as JSON.

Usage: iceberg_read.py CATALOG NAMESPACE TABLE [S3_ENDPOINT]

CATALOG is the broker's SQLite catalog file, an SQLAlchemy URL (`postgresql+psycopg2://...`
for a Postgres catalog), or an Iceberg REST catalog's URI (`http://...`, the catalog the broker
commits through with `--iceberg-catalog http://...`; OAuth2 client credentials from the AWS keys
below, the warehouse from ICEBERG_REST_WAREHOUSE). With S3_ENDPOINT (an S3-compatible server such as moto, path-style, any
credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, else "test") the warehouse is read from S3.

- pyiceberg: SqlCatalog("zombi") on the broker's catalog, a full table scan, the current
  snapshot's summary, and each data file's Parquet metadata (codec, field ids, bounds), read
  through the table's own FileIO (local files or S3).
- DuckDB: iceberg_scan() on the table's current metadata file (extensions from the PyPI wheels,
  so nothing is downloaded; httpfs with an S3 secret for an S3 warehouse).

Binary values are hex strings, null stays null; timestamps are microseconds since the epoch.
Prints {"pyiceberg": {...}, "duckdb": {...}} on one line; exits 3 if the table does not exist yet.
"""

import json
import os
import sys
from urllib.parse import urlparse


def hexed(value):
    return None if value is None else bytes(value).hex()


def row(partition, offset, timestamp_us, key, value, headers):
    return {
        "partition": partition,
        "offset": offset,
        "timestamp_us": timestamp_us,
        "key": hexed(key),
        "value": hexed(value),
        "headers": [[h["key"], hexed(h["value"])] for h in (headers or [])],
    }


def scan_rows(table):
    """Every row of a pyiceberg table, as `row` prints it."""
    import pyarrow as pa

    arrow = table.scan().to_arrow()
    timestamps = arrow.column("timestamp").cast(pa.int64()).to_pylist()
    return [
        row(r["partition"], r["offset"], ts, r["key"], r["value"], r["headers"])
        for r, ts in zip(arrow.to_pylist(), timestamps)
    ]


def s3_credentials():
    return (os.environ.get("AWS_ACCESS_KEY_ID", "test"), os.environ.get("AWS_SECRET_ACCESS_KEY", "test"))


def open_catalog(catalog_arg, s3_endpoint):
    from pyiceberg.catalog.sql import SqlCatalog

    uri = catalog_arg if "://" in catalog_arg else f"sqlite:///{catalog_arg}"
    properties = {}
    if uri.startswith(("http://", "https://")):
        from pyiceberg.catalog.rest import RestCatalog

        key_id, secret = s3_credentials()
        properties = {"credential": f"{key_id}:{secret}", "s3.access-key-id": key_id, "s3.secret-access-key": secret}
        if os.environ.get("ICEBERG_REST_WAREHOUSE"):
            properties["warehouse"] = os.environ["ICEBERG_REST_WAREHOUSE"]
        if s3_endpoint:
            properties |= {"s3.endpoint": s3_endpoint, "s3.region": "us-east-1", "s3.force-virtual-addressing": "false"}
        return RestCatalog("zombi", uri=uri, **properties)
    if s3_endpoint:
        key_id, secret = s3_credentials()
        properties = {
            "s3.endpoint": s3_endpoint,
            "s3.access-key-id": key_id,
            "s3.secret-access-key": secret,
            "s3.region": "us-east-1",
            "s3.force-virtual-addressing": "false",
        }
    return SqlCatalog("zombi", uri=uri, **properties)


def read_pyiceberg(catalog_arg, namespace, table_name, s3_endpoint):
    import pyarrow.parquet as pq
    from pyiceberg.exceptions import NoSuchTableError

    catalog = open_catalog(catalog_arg, s3_endpoint)
    try:
        table = catalog.load_table((namespace, table_name))
    except NoSuchTableError:
        sys.exit(3)
    snapshot = table.current_snapshot()
    rows = scan_rows(table)
    files = []
    for f in table.inspect.files().to_pylist():
        parquet = pq.ParquetFile(table.io.new_input(f["file_path"]).open())
        schema = parquet.schema_arrow
        files.append({
            "path": f["file_path"],
            "record_count": f["record_count"],
            "partition": {k: str(v) for k, v in (f.get("partition") or {}).items()},
            # Iceberg's bounds by field id (2 is offset).
            "bound_field_ids": sorted(field_id for field_id, _ in (f.get("lower_bounds") or [])),
            "codecs": sorted({parquet.metadata.row_group(g).column(c).compression
                              for g in range(parquet.metadata.num_row_groups)
                              for c in range(parquet.metadata.num_columns)}),
            "field_ids": {name: int(schema.field(name).metadata[b"PARQUET:field_id"])
                          for name in schema.names},
        })
    return {
        "metadata_location": table.metadata_location,
        "summary": dict(snapshot.summary.additional_properties) | {"operation": snapshot.summary.operation.value}
        if snapshot else None,
        "snapshots": len(table.metadata.snapshots),
        "partition_spec": str(table.spec()),
        "rows": rows,
        "files": files,
    }


def read_duckdb(metadata_location, s3_endpoint):
    import duckdb
    from duckdb_extensions import import_extension

    con = duckdb.connect()
    extensions = ["avro", "iceberg"] + (["httpfs"] if s3_endpoint else [])
    for name in extensions:
        import_extension(name, con=con)
        con.execute(f"LOAD {name}")
    if s3_endpoint:
        endpoint = urlparse(s3_endpoint)
        key_id, secret = s3_credentials()
        quoted = lambda text: "'" + text.replace("'", "''") + "'"  # noqa: E731 (DDL takes no parameters)
        con.execute(
            f"CREATE SECRET warehouse (TYPE s3, KEY_ID {quoted(key_id)}, SECRET {quoted(secret)}, "
            f"REGION 'us-east-1', ENDPOINT {quoted(endpoint.netloc)}, URL_STYLE 'path', "
            f"USE_SSL {'true' if endpoint.scheme == 'https' else 'false'})"
        )
    path = metadata_location.removeprefix("file://")
    result = con.execute(
        'SELECT "partition", "offset", epoch_us("timestamp"), "key", "value", "headers" '
        "FROM iceberg_scan(?)",
        [path],
    ).fetchall()
    return {"rows": [row(*r) for r in result]}


def metadata_location(catalog_arg, namespace, table_name, s3_endpoint):
    """The table's current metadata file, as the catalog says now (None: no table)."""
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return open_catalog(catalog_arg, s3_endpoint).load_table((namespace, table_name)).metadata_location
    except NoSuchTableError:
        return None


def main():
    catalog_arg, namespace, table_name = sys.argv[1:4]
    s3_endpoint = sys.argv[4] if len(sys.argv) > 4 else None
    # A reader whose snapshot the writer expired while it read (the sink deletes an expired
    # snapshot's files at once with --iceberg-snapshot-max-age-ms 0) finds a file gone. It reads
    # the new table again, as a query engine retries; a missing file of a table that did not
    # move during the read is the sink's bug and fails.
    for attempt in range(5):
        before = metadata_location(catalog_arg, namespace, table_name, s3_endpoint)
        try:
            seen = read_pyiceberg(catalog_arg, namespace, table_name, s3_endpoint)
            duckdb = read_duckdb(seen["metadata_location"], s3_endpoint)
            break
        except Exception:
            moved = metadata_location(catalog_arg, namespace, table_name, s3_endpoint) != before
            if not moved or attempt == 4:
                raise
    print(json.dumps({"pyiceberg": seen, "duckdb": duckdb}))


if __name__ == "__main__":
    main()
