#!/usr/bin/env python3
"""Reads a topic's Iceberg table through zombi's Iceberg REST catalog with three readers.

Usage: iceberg_rest_read.py CATALOG_URI NAMESPACE TABLE

CATALOG_URI is `http://HOST:PORT/iceberg`. Each reader connects the way its users configure it:

- pyiceberg: RestCatalog with OAuth2 client credentials (`credential=id:secret`), a full scan;
  also the catalog's namespace and table listings, and the refusal of a write.
- polars: `pl.scan_iceberg` on the table pyiceberg loaded through the catalog.
- DuckDB: `ATTACH '' AS z (TYPE iceberg, ENDPOINT ...)` with an OAuth2 secret, then a plain
  SELECT from `z.NAMESPACE.TABLE` (extensions from the PyPI wheels, nothing downloaded).

Rows are printed as compat/iceberg_read.py prints them. Prints {"pyiceberg": ..., "polars": ...,
"duckdb": ..., "catalog": ...} on one line; exits 3 if the table does not exist yet.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from iceberg_read import row, scan_rows  # noqa: E402

CREDENTIAL = ("reader", "secret")


def read_pyiceberg(uri, namespace, table_name):
    from pyiceberg.catalog.rest import RestCatalog
    from pyiceberg.exceptions import NoSuchTableError

    catalog = RestCatalog("zombi", uri=uri, credential=":".join(CREDENTIAL))
    try:
        table = catalog.load_table((namespace, table_name))
    except NoSuchTableError:
        sys.exit(3)
    snapshot = table.current_snapshot()
    rows = scan_rows(table)
    try:
        catalog.create_namespace(("written_by_a_reader",))
        write = "accepted"
    except Exception as error:  # the catalog is read-only: the refusal is what is checked
        write = type(error).__name__
    listing = {
        "namespaces": [list(n) for n in catalog.list_namespaces()],
        "tables": sorted(t[-1] for t in catalog.list_tables(namespace)),
        "table_exists": catalog.table_exists((namespace, table_name)),
        "missing_table_exists": catalog.table_exists((namespace, "no_such_table_here")),
        "write": write,
    }
    seen = {
        "metadata_location": table.metadata_location,
        "summary": dict(snapshot.summary.additional_properties) if snapshot else None,
        "rows": rows,
    }
    return seen, table, listing


def read_polars(table):
    import polars as pl

    frame = pl.scan_iceberg(table).collect()
    # Exact microseconds from the integer representation (no float conversion).
    micros = frame.get_column("timestamp").cast(pl.Int64).to_list()
    rows = [
        row(r["partition"], r["offset"], us, r["key"], r["value"], r["headers"])
        for r, us in zip(frame.iter_rows(named=True), micros)
    ]
    return {"rows": rows}


def read_duckdb(uri, namespace, table_name):
    import duckdb
    from duckdb_extensions import import_extension

    con = duckdb.connect()
    for name in ["avro", "httpfs", "iceberg"]:
        import_extension(name, con=con)
        con.execute(f"LOAD {name}")
    quoted = lambda text: "'" + text.replace("'", "''") + "'"  # noqa: E731 (DDL takes no parameters)
    con.execute(
        f"CREATE SECRET zombi_catalog (TYPE iceberg, CLIENT_ID {quoted(CREDENTIAL[0])}, "
        f"CLIENT_SECRET {quoted(CREDENTIAL[1])}, OAUTH2_SERVER_URI {quoted(uri + '/v1/oauth/tokens')})"
    )
    con.execute(f"ATTACH '' AS z (TYPE iceberg, ENDPOINT {quoted(uri)}, SECRET zombi_catalog)")
    ident = f'z."{namespace}"."{table_name}"'
    result = con.execute(
        f'SELECT "partition", "offset", epoch_us("timestamp"), "key", "value", "headers" FROM {ident}'
    ).fetchall()
    return {"rows": [row(*r) for r in result]}


def main():
    uri, namespace, table_name = sys.argv[1:4]
    seen, table, listing = read_pyiceberg(uri, namespace, table_name)
    print(json.dumps({
        "pyiceberg": seen,
        "polars": read_polars(table),
        "duckdb": read_duckdb(uri, namespace, table_name),
        "catalog": listing,
    }))


if __name__ == "__main__":
    main()
