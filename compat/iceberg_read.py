#!/usr/bin/env python3
"""Reads a topic's Iceberg table with two independent readers and prints what they saw as JSON.

Usage: iceberg_read.py CATALOG_DB NAMESPACE TABLE

- pyiceberg: SqlCatalog("zombi") on the broker's SQLite catalog file, a full table scan, the
  current snapshot's summary, and each data file's Parquet metadata (codec, field ids, bounds).
- DuckDB: iceberg_scan() on the table's current metadata file (extensions from the PyPI wheels,
  so nothing is downloaded).

Binary values are hex strings, null stays null; timestamps are microseconds since the epoch.
Prints {"pyiceberg": {...}, "duckdb": {...}} on one line; exits 3 if the table does not exist yet.
"""

import json
import sys


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


def read_pyiceberg(catalog_db, namespace, table_name):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.exceptions import NoSuchTableError

    catalog = SqlCatalog("zombi", uri=f"sqlite:///{catalog_db}")
    try:
        table = catalog.load_table((namespace, table_name))
    except NoSuchTableError:
        sys.exit(3)
    snapshot = table.current_snapshot()
    arrow = table.scan().to_arrow()
    timestamps = arrow.column("timestamp").cast(pa.int64()).to_pylist()
    rows = [
        row(r["partition"], r["offset"], ts, r["key"], r["value"], r["headers"])
        for r, ts in zip(arrow.to_pylist(), timestamps)
    ]
    files = []
    for f in table.inspect.files().to_pylist():
        path = f["file_path"].removeprefix("file://")
        parquet = pq.ParquetFile(path)
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


def read_duckdb(metadata_location):
    import duckdb
    from duckdb_extensions import import_extension

    con = duckdb.connect()
    import_extension("avro", con=con)
    import_extension("iceberg", con=con)
    con.execute("LOAD avro")
    con.execute("LOAD iceberg")
    path = metadata_location.removeprefix("file://")
    result = con.execute(
        'SELECT "partition", "offset", epoch_us("timestamp"), "key", "value", "headers" '
        "FROM iceberg_scan(?)",
        [path],
    ).fetchall()
    return {"rows": [row(*r) for r in result]}


def main():
    catalog_db, namespace, table_name = sys.argv[1:4]
    seen = read_pyiceberg(catalog_db, namespace, table_name)
    print(json.dumps({"pyiceberg": seen, "duckdb": read_duckdb(seen["metadata_location"])}))


if __name__ == "__main__":
    main()
