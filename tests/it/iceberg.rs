//! The Iceberg sink end to end: rdkafka produces records with keys, null keys, empty and null
//! values, repeated header keys and explicit timestamps over several partitions; two readers that
//! are not ours (pyiceberg through SqlCatalog on the broker's SQLite catalog, and DuckDB's
//! iceberg_scan on the metadata file, both in compat/iceberg_read.py) must see every
//! (partition, offset) exactly as produced, once — also after `kill -9` between and during commits.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord};
use serde_json::Value;

use crate::common::{TestBroker, WAIT_MAX, unique_topic};

/// What a reader should see of one record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Expected {
    pub(crate) partition: i64,
    pub(crate) offset: i64,
    pub(crate) timestamp_us: i64,
    pub(crate) key: Option<String>,
    pub(crate) value: Option<String>,
    pub(crate) headers: Vec<(String, Option<String>)>,
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One record as the test produces it.
struct Produced {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp_ms: i64,
}

/// Record `i`: every fifth key null, every seventh empty; every eleventh value null, every
/// thirteenth empty; even records carry headers with a repeated key, a null and an empty value.
fn record(i: usize) -> Produced {
    let key = match i {
        i if i.is_multiple_of(5) => None,
        i if i.is_multiple_of(7) => Some(Vec::new()),
        i => Some(format!("key-{i}").into_bytes()),
    };
    let value = match i {
        i if i.is_multiple_of(11) => None,
        i if i.is_multiple_of(13) => Some(Vec::new()),
        i => Some((0..(i % 300) + 1).map(|n| (n * 31 + i) as u8).collect()),
    };
    let headers = if i.is_multiple_of(2) {
        vec![
            ("h".to_string(), Some(format!("a{i}").into_bytes())),
            ("h".to_string(), None),
            ("x".to_string(), Some(Vec::new())),
            ("h".to_string(), Some(b"b".to_vec())),
        ]
    } else {
        Vec::new()
    };
    // Four hours apart: the records span several days, so several `day(timestamp)` partitions.
    let timestamp_ms = 1_700_000_000_123 + i as i64 * 4 * 3_600_000;
    Produced { key, value, headers, timestamp_ms }
}

/// Produces records `from..to` round-robin over `partitions` and returns what the table must hold.
pub(crate) async fn produce(
    broker: &TestBroker,
    topic: &str,
    partitions: usize,
    range: impl IntoIterator<Item = usize>,
    codec: &str,
) -> Vec<Expected> {
    let producer = broker.producer(&[("acks", "all"), ("compression.type", codec), ("linger.ms", "5")]);
    let mut pending = Vec::new();
    for i in range {
        let Produced { key, value, headers, timestamp_ms } = record(i);
        let mut owned = OwnedHeaders::new();
        for (name, value) in &headers {
            owned = owned.insert(Header { key: name, value: value.as_deref() });
        }
        let mut future = FutureRecord::<[u8], [u8]>::to(topic)
            .partition((i % partitions) as i32)
            .headers(owned)
            .timestamp(timestamp_ms);
        if let Some(key) = &key {
            future = future.key(key.as_slice());
        }
        if let Some(value) = &value {
            future = future.payload(value.as_slice());
        }
        let delivery = producer.send_result(future).map_err(|(e, _)| e).expect("queued");
        let expected = Expected {
            partition: (i % partitions) as i64,
            offset: -1,
            timestamp_us: timestamp_ms * 1000,
            key: key.as_deref().map(hex),
            value: value.as_deref().map(hex),
            headers: headers.iter().map(|(k, v)| (k.clone(), v.as_deref().map(hex))).collect(),
        };
        pending.push((delivery, expected));
    }
    acknowledged(pending).await
}

/// Waits for every delivery and fills in the offset each record got.
pub(crate) async fn acknowledged(pending: Vec<(DeliveryFuture, Expected)>) -> Vec<Expected> {
    let mut out = Vec::new();
    for (delivery, mut expected) in pending {
        let delivered = delivery.await.expect("delivery").map_err(|(e, _)| e).expect("acknowledged");
        expected.offset = delivered.offset;
        out.push(expected);
    }
    out
}

pub(crate) fn python() -> String {
    std::env::var("ZOMBI_PYTHON").unwrap_or_else(|_| {
        let cache = std::env::var("ZOMBI_CACHE")
            .unwrap_or_else(|_| format!("{}/.cache/zombi", std::env::var("HOME").unwrap_or_else(|_| "/root".into())));
        format!("{cache}/venv/bin/python")
    })
}

/// Where compat/iceberg_read.py finds a broker's tables.
pub(crate) struct Reader {
    /// The SQLite catalog file, or an SQLAlchemy URL.
    pub(crate) catalog: String,
    /// An S3-compatible endpoint, for an S3 warehouse.
    pub(crate) s3_endpoint: Option<String>,
}

impl Reader {
    /// The broker's default catalog: SQLite in its data dir, tables on local disk.
    pub(crate) fn sqlite(broker: &TestBroker) -> Reader {
        Reader { catalog: broker.data_dir.join("iceberg/catalog.db").display().to_string(), s3_endpoint: None }
    }
}

/// Both readers' view of the table, or `None` while the table does not exist.
fn read_table(broker: &TestBroker, topic: &str) -> Option<Value> {
    read_table_from(&Reader::sqlite(broker), topic)
}

/// Both readers' view of the table through `reader`, or `None` while the table does not exist.
pub(crate) fn read_table_from(reader: &Reader, topic: &str) -> Option<Value> {
    try_read_table_from(reader, topic).unwrap_or_else(|error| panic!("{error}"))
}

/// As [`read_table_from`], with the reader's failure as an error.
pub(crate) fn try_read_table_from(reader: &Reader, topic: &str) -> Result<Option<Value>, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/compat/iceberg_read.py");
    let output = Command::new(python())
        .arg(script)
        .arg(&reader.catalog)
        .args(["zombi", topic])
        .args(&reader.s3_endpoint)
        .output()
        .expect("python with pyiceberg and duckdb (compat/setup.sh installs them)");
    if output.status.code() == Some(3) {
        return Ok(None);
    }
    if !output.status.success() {
        return Err(format!("iceberg_read.py failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    Ok(Some(serde_json::from_slice(&output.stdout).expect("json")))
}

/// Rows of one reader, in (partition, offset) order.
pub(crate) fn rows(seen: &Value, reader: &str) -> Vec<Expected> {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let mut rows: Vec<Expected> = seen[reader]["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| Expected {
            partition: r["partition"].as_i64().expect("partition"),
            offset: r["offset"].as_i64().expect("offset"),
            timestamp_us: r["timestamp_us"].as_i64().expect("timestamp"),
            key: text(&r["key"]),
            value: text(&r["value"]),
            headers: r["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|h| (text(&h[0]).expect("header key"), text(&h[1])))
                .collect(),
        })
        .collect();
    rows.sort();
    rows
}

/// Polls both readers until pyiceberg sees `count` rows; the deadline is a failure.
fn wait_for_rows(broker: &TestBroker, topic: &str, count: usize) -> Value {
    wait_for_rows_from(&Reader::sqlite(broker), topic, count)
}

/// As [`wait_for_rows`], through `reader`.
pub(crate) fn wait_for_rows_from(reader: &Reader, topic: &str, count: usize) -> Value {
    wait_for_rows_retrying(reader, topic, count, false)
}

/// As [`wait_for_rows_from`]; with `retry_reader_errors`, a reader that fails (a storage
/// server still starting) is asked again until the deadline, and its last failure is the
/// test's then.
pub(crate) fn wait_for_rows_retrying(reader: &Reader, topic: &str, count: usize, retry_reader_errors: bool) -> Value {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        match try_read_table_from(reader, topic) {
            Ok(Some(seen)) => {
                let rows = seen["pyiceberg"]["rows"].as_array().map_or(0, Vec::len);
                assert!(rows <= count, "the table holds {rows} rows, more than the {count} produced");
                if rows == count {
                    return seen;
                }
            }
            Ok(None) => {}
            Err(error) => assert!(retry_reader_errors && Instant::now() < deadline, "{error}"),
        }
        assert!(Instant::now() < deadline, "the table did not reach {count} rows of {topic}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Both readers see exactly `expected`: no row missing, none twice, every field byte-exact.
pub(crate) fn assert_exact(seen: &Value, expected: &[Expected]) {
    let mut expected = expected.to_vec();
    expected.sort();
    for reader in ["pyiceberg", "duckdb"] {
        let rows = rows(seen, reader);
        let mut keys: Vec<_> = rows.iter().map(|r| (r.partition, r.offset)).collect();
        keys.dedup();
        assert_eq!(keys.len(), rows.len(), "{reader}: a (partition, offset) appears twice");
        assert_eq!(rows.len(), expected.len(), "{reader}: row count");
        for (row, want) in rows.iter().zip(&expected) {
            assert_eq!(row, want, "{reader}: row at partition {} offset {}", want.partition, want.offset);
        }
    }
}

/// The next offset per partition that the current snapshot records.
pub(crate) fn next_offsets(seen: &Value) -> BTreeMap<i64, i64> {
    seen["pyiceberg"]["summary"]
        .as_object()
        .expect("summary")
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("zombi.next-offset.")?.parse().ok()?, v.as_str()?.parse().ok()?)))
        .collect()
}

/// Commits every 200 ms; retention off, since the records' timestamps are from 2023 (retention
/// would delete them before the sink gets to them, which the sink counts as skipped).
pub(crate) fn broker_args(partitions: &'static str) -> [&'static str; 5] {
    ["--num-partitions", partitions, "--iceberg-commit-interval-ms", "200", "--log-retention-ms=-1"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_reaches_the_table_exactly_as_produced() {
    let broker = TestBroker::start(&broker_args("3"));
    // Dots and dashes in the name: the table is named after the topic as it is.
    let topic = unique_topic("ice.orders");
    let mut expected = produce(&broker, &topic, 3, 0..150, "zstd").await;
    wait_for_rows(&broker, &topic, expected.len());
    // A second commit on top of the first, with another codec.
    expected.extend(produce(&broker, &topic, 3, 150..300, "gzip").await);
    let seen = wait_for_rows(&broker, &topic, expected.len());
    assert_exact(&seen, &expected);

    // The admin view agrees with the readers.
    let view = crate::http_client::get(&broker.http, "/admin/iceberg");
    assert_eq!(view.status, 200);
    let view: Value = serde_json::from_slice(&view.body).expect("JSON");
    let table = view["topics"].as_array().and_then(|t| t.iter().find(|t| t["topic"] == topic.as_str())).expect("topic");
    assert_eq!(table["records_behind"], 0, "{table}");
    assert!(table["commits"].as_u64().is_some_and(|c| c >= 2), "{table}");
    let committed: Vec<i64> = table["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter_map(|p| p["committed_offset"].as_i64())
        .collect();
    assert_eq!(committed, [100, 100, 100]);

    let summary = &seen["pyiceberg"]["summary"];
    assert_eq!(summary["operation"], "append");
    assert_eq!(summary["total-records"], "300", "Iceberg's standard summary fields are kept");
    assert_eq!(next_offsets(&seen), BTreeMap::from([(0, 100), (1, 100), (2, 100)]));
    assert!(summary["zombi.topic-id"].is_string());
    assert!(seen["pyiceberg"]["partition_spec"].as_str().expect("spec").contains("day"));
    let files = seen["pyiceberg"]["files"].as_array().expect("files");
    assert!(files.len() >= 2, "records over several days and two commits make several files");
    for file in files {
        assert_eq!(file["codecs"], serde_json::json!(["ZSTD"]), "{file}");
        assert_eq!(file["field_ids"]["partition"], 1);
        assert_eq!(file["field_ids"]["offset"], 2);
        assert_eq!(file["field_ids"]["headers"], 6);
        let bounds: Vec<i64> =
            file["bound_field_ids"].as_array().expect("bounds").iter().filter_map(Value::as_i64).collect();
        assert!(bounds.contains(&2) && bounds.contains(&3), "offset and timestamp bounds recorded: {file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_and_during_commits_keeps_the_table_exact() {
    let mut broker = TestBroker::start(&broker_args("2"));
    let topic = unique_topic("ice-crash");
    let mut expected = produce(&broker, &topic, 2, 0..100, "lz4").await;
    wait_for_rows(&broker, &topic, expected.len());
    // Kill right after producing (before the next commit), a little later (during one), and
    // after a commit; each restart resumes from the table's last snapshot.
    for (round, pause_ms) in [0u64, 150, 400].into_iter().enumerate() {
        let from = 100 + round * 100;
        expected.extend(produce(&broker, &topic, 2, from..from + 100, "snappy").await);
        std::thread::sleep(Duration::from_millis(pause_ms));
        broker.kill_and_restart();
    }
    expected.extend(produce(&broker, &topic, 2, 400..450, "none").await);
    let seen = wait_for_rows(&broker, &topic, expected.len());
    assert_exact(&seen, &expected);
    assert_eq!(next_offsets(&seen), BTreeMap::from([(0, 225), (1, 225)]));
}

/// `zombi.iceberg.enable=false` keeps a topic out of the catalog, and turning it on later (by
/// AlterConfigs) gives it a table with everything produced so far. Topics are committed in name
/// order each interval, so once the later-named enabled topic has a second commit the sink has
/// looked at the disabled one with its records present.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topic_config_switches_a_table_off_and_on() {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
    use rdkafka::client::DefaultClientContext;

    let broker = TestBroker::start(&broker_args("1"));
    let admin: AdminClient<DefaultClientContext> = broker.client_config().create().expect("admin");
    let (off, on) = (unique_topic("ice-a-off"), unique_topic("ice-b-on"));
    let disabled = NewTopic::new(&off, 1, TopicReplication::Fixed(1)).set("zombi.iceberg.enable", "false");
    let enabled = NewTopic::new(&on, 1, TopicReplication::Fixed(1));
    for created in admin.create_topics([&disabled, &enabled], &AdminOptions::new()).await.expect("create") {
        created.expect("topic created");
    }
    let expected_off = produce(&broker, &off, 1, 0..10, "none").await;
    produce(&broker, &on, 1, 0..10, "none").await;
    wait_for_rows(&broker, &on, 10);
    produce(&broker, &on, 1, 10..20, "none").await;
    wait_for_rows(&broker, &on, 20);
    assert!(read_table(&broker, &off).is_none(), "a disabled topic has no table");

    let switch_on = AlterConfig::new(ResourceSpecifier::Topic(&off)).set("zombi.iceberg.enable", "true");
    for altered in admin.alter_configs([&switch_on], &AdminOptions::new()).await.expect("alter") {
        altered.expect("config altered");
    }
    let seen = wait_for_rows(&broker, &off, 10);
    assert_exact(&seen, &expected_off);
}

/// A topic deleted and created again under the same name: the table of the earlier topic is kept
/// whole under `<topic>__<its id>`, and the new topic fills a table of its own from offset 0 (the
/// sink used to refuse the name until someone dropped the old table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_topic_gets_a_new_table_and_the_old_one_is_kept() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;

    let broker = TestBroker::start(&broker_args("1"));
    let admin: AdminClient<DefaultClientContext> = broker.client_config().create().expect("admin");
    let topic = unique_topic("ice-recreated");
    let first = produce(&broker, &topic, 1, 0..10, "none").await;
    let seen = wait_for_rows(&broker, &topic, 10);
    assert_exact(&seen, &first);
    let old_id = seen["pyiceberg"]["summary"]["zombi.topic-id"].as_str().expect("topic id").to_string();

    for deleted in admin.delete_topics(&[&topic], &AdminOptions::new()).await.expect("delete") {
        deleted.expect("topic deleted");
    }
    let new_topic = NewTopic::new(&topic, 1, TopicReplication::Fixed(1));
    let deadline = Instant::now() + WAIT_MAX;
    while admin.create_topics([&new_topic], &AdminOptions::new()).await.expect("create")[0].is_err() {
        assert!(Instant::now() < deadline, "the topic could not be created again");
        std::thread::sleep(Duration::from_millis(100));
    }
    let second = produce(&broker, &topic, 1, 10..16, "none").await;
    assert_eq!(second.iter().map(|e| e.offset).collect::<Vec<_>>(), (0..6).collect::<Vec<_>>());
    let seen = wait_for_rows(&broker, &topic, 6);
    assert_exact(&seen, &second);
    assert_ne!(seen["pyiceberg"]["summary"]["zombi.topic-id"], Value::String(old_id.clone()));
    let archived = format!("{topic}__{}", old_id.replace('-', ""));
    let kept = read_table(&broker, &archived).expect("the earlier topic's table is kept");
    assert_exact(&kept, &first);
}

/// zombi's Iceberg REST catalog at `/iceberg`: pyiceberg's RestCatalog, polars through it, and
/// DuckDB's REST attach each read every (partition, offset) exactly as produced; the catalog
/// lists, pages, answers missing tables in the spec's error shape, and refuses writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_open_the_tables_through_the_rest_catalog() {
    use crate::http_client::{get, post_json, request};

    let broker = TestBroker::start(&broker_args("3"));
    let topic = unique_topic("ice-rest");
    let other = unique_topic("ice-rest-other");
    let expected = produce(&broker, &topic, 3, 0..60, "zstd").await;
    produce(&broker, &other, 3, 0..3, "none").await;
    wait_for_rows(&broker, &topic, 60);
    wait_for_rows(&broker, &other, 3);

    let uri = format!("http://{}/iceberg", broker.http);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/compat/iceberg_rest_read.py");
    let output = Command::new(python()).arg(script).args([&uri, "zombi", &topic]).output().expect("python");
    assert!(output.status.success(), "iceberg_rest_read.py failed: {}", String::from_utf8_lossy(&output.stderr));
    let seen: Value = serde_json::from_slice(&output.stdout).expect("json");
    let mut expected = expected;
    expected.sort();
    for reader in ["pyiceberg", "polars", "duckdb"] {
        assert_eq!(rows(&seen, reader), expected, "{reader} through the REST catalog");
    }
    let catalog = &seen["catalog"];
    assert_eq!(catalog["namespaces"], serde_json::json!([["zombi"]]));
    let mut tables = vec![topic.clone(), other.clone()];
    tables.sort();
    assert_eq!(catalog["tables"], serde_json::json!(tables));
    assert_eq!(catalog["table_exists"], true);
    assert_eq!(catalog["missing_table_exists"], false);
    assert_ne!(catalog["write"], "accepted", "a reader must not create namespaces");

    // The raw protocol: paging, the spec's errors, and writes refused with 406.
    let first = get(&broker.http, "/iceberg/v1/namespaces/zombi/tables?pageToken=&pageSize=1").json();
    assert_eq!(first["identifiers"].as_array().expect("identifiers").len(), 1);
    let token = first["next-page-token"].as_str().expect("a next page").to_string();
    let second = get(&broker.http, &format!("/iceberg/v1/namespaces/zombi/tables?pageToken={token}&pageSize=1")).json();
    assert_eq!(second["identifiers"][0]["name"], tables[1]);
    assert!(second["next-page-token"].is_null());
    let missing = get(&broker.http, "/iceberg/v1/namespaces/zombi/tables/nope");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["type"], "NoSuchTableException");
    assert_eq!(missing.json()["error"]["code"], 404);
    assert_eq!(
        get(&broker.http, "/iceberg/v1/namespaces/nope/tables").json()["error"]["type"],
        "NoSuchNamespaceException"
    );
    let head = request(&broker.http, "HEAD", &format!("/iceberg/v1/namespaces/zombi/tables/{topic}"), None, b"");
    assert_eq!(head.status, 204);
    let create = post_json(&broker.http, "/iceberg/v1/namespaces/zombi/tables", &serde_json::json!({"name": "t"}));
    assert_eq!(create.status, 406);
    assert_eq!(create.json()["error"]["type"], "UnsupportedOperationException");
    let drop = request(&broker.http, "DELETE", &format!("/iceberg/v1/namespaces/zombi/tables/{topic}"), None, b"");
    assert_eq!(drop.status, 406);
    let loaded = get(&broker.http, &format!("/iceberg/v1/namespaces/zombi/tables/{topic}?snapshots=all")).json();
    assert!(loaded["metadata-location"].as_str().expect("location").ends_with(".metadata.json"));
    assert_eq!(loaded["metadata"]["format-version"], 2);
}

/// A catalog that cannot be opened (its directory cannot be created) costs produce and fetch
/// nothing, and the broker still stops cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_catalog_never_blocks_produce_or_fetch() {
    let mut broker = TestBroker::start(&[
        "--iceberg-catalog",
        "sqlite:///proc/zombi-no-such-dir/catalog.db",
        "--iceberg-commit-interval-ms",
        "50",
    ]);
    let topic = unique_topic("ice-broken");
    let produced = produce(&broker, &topic, 1, 0..50, "zstd").await;
    let consumed = crate::common::consume(&broker, &topic, &[0], produced.len());
    assert_eq!(consumed.len(), produced.len());
    for (got, want) in consumed.iter().zip(&produced) {
        assert_eq!((got.offset, got.key.as_deref().map(hex)), (want.offset, want.key.clone()));
    }
    // The admin view says why there are no tables (once the sink has tried the catalog).
    let deadline = std::time::Instant::now() + crate::common::WAIT_MAX;
    loop {
        let view = crate::http_client::get(&broker.http, "/admin/iceberg");
        let view: Value = serde_json::from_slice(&view.body).expect("JSON");
        if view["catalog_error"].is_string() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no catalog error in {view}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(broker.terminate(), "the broker stops cleanly while the sink keeps failing");
}

/// The live data files per table partition (day), as pyiceberg lists them.
pub(crate) fn files_per_day(seen: &Value) -> BTreeMap<String, usize> {
    let mut days = BTreeMap::new();
    for file in seen["pyiceberg"]["files"].as_array().expect("files") {
        *days.entry(file["partition"].to_string()).or_default() += 1;
    }
    days
}

/// Every Parquet file under the table's `data/` directory.
fn parquet_on_disk(broker: &TestBroker, topic: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![broker.data_dir.join("iceberg/warehouse/zombi").join(topic).join("data")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("table data dir").map(|e| e.expect("dir entry")) {
            if entry.file_type().expect("file type").is_dir() {
                pending.push(entry.path());
            } else if entry.path().extension().is_some_and(|e| e == "parquet") {
                found.push(format!("file://{}", entry.path().display()));
            }
        }
    }
    found.sort();
    found
}

pub(crate) fn live_paths(seen: &Value) -> Vec<String> {
    let mut paths: Vec<String> = seen["pyiceberg"]["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("path").to_string())
        .collect();
    paths.sort();
    paths
}

/// Polls until the table holds `count` rows in one file per day and a single snapshot (every
/// small file compacted, every older snapshot expired); the deadline is a failure.
fn wait_for_compacted(broker: &TestBroker, topic: &str, count: usize) -> Value {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        if let Some(seen) = read_table(broker, topic) {
            let rows = seen["pyiceberg"]["rows"].as_array().map_or(0, Vec::len);
            if rows == count && files_per_day(&seen).values().all(|&n| n == 1) && seen["pyiceberg"]["snapshots"] == 1 {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "not compacted: {rows} of {count} rows, files per day {:?}, {} snapshots",
                files_per_day(&seen),
                seen["pyiceberg"]["snapshots"]
            );
        }
        assert!(Instant::now() < deadline, "the table of {topic} does not exist");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Records of every round spread over the same days (indexes `round, round + rounds, …` are
/// four hours apart each), so each commit adds a small file to every day's partition.
pub(crate) fn spread(round: usize, rounds: usize, count: usize) -> impl Iterator<Item = usize> {
    (round..count).step_by(rounds)
}

/// Two partitions, commits every 200 ms, maintenance every `interval_ms`.
pub(crate) fn compaction_args(interval_ms: &'static str, extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = broker_args("2").to_vec();
    args.extend(["--iceberg-compaction-interval-ms", interval_ms, "--iceberg-compaction-min-files", "2"]);
    args.extend(extra);
    args
}

/// Small files from several commits are rewritten (one file per past day), old snapshots are
/// expired and their files deleted, an old stray file is removed and a fresh one kept; both
/// readers see exactly the produced rows throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_leaves_one_file_per_day_with_the_exact_rows() {
    let mut broker = TestBroker::start(&compaction_args("300", &["--iceberg-snapshot-max-age-ms", "0"]));
    let topic = unique_topic("ice-compact");
    let mut expected = Vec::new();
    for (round, codec) in ["zstd", "lz4", "gzip", "none"].into_iter().enumerate() {
        expected.extend(produce(&broker, &topic, 2, spread(round, 4, 160), codec).await);
        let seen = wait_for_rows(&broker, &topic, expected.len());
        assert_exact(&seen, &expected);
    }
    let seen = wait_for_compacted(&broker, &topic, expected.len());
    assert_exact(&seen, &expected);
    assert_eq!(seen["pyiceberg"]["summary"]["operation"], "replace");
    assert_eq!(seen["pyiceberg"]["summary"]["total-records"], "160");
    assert_eq!(next_offsets(&seen), BTreeMap::from([(0, 80), (1, 80)]), "offsets carried through compaction");
    // The pass that expired the old snapshots deletes their files, then updates its counters.
    let deadline = Instant::now() + WAIT_MAX;
    let table = loop {
        let view = crate::http_client::get(&broker.http, "/admin/iceberg");
        let view: Value = serde_json::from_slice(&view.body).expect("JSON");
        let table = view["topics"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["topic"] == topic.as_str()))
            .expect("topic")
            .clone();
        let counted = table["live_data_files"].as_u64() == Some(files_per_day(&seen).len() as u64)
            && table["unreferenced_files_deleted"].as_u64() >= table["compaction_files_rewritten"].as_u64();
        if counted && parquet_on_disk(&broker, &topic) == live_paths(&seen) {
            break table;
        }
        assert!(Instant::now() < deadline, "rewritten files were not deleted: {table}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(table["compactions"].as_u64().is_some_and(|n| n >= 1), "{table}");
    let rewritten = table["compaction_files_rewritten"].as_u64().expect("rewritten");
    assert!(rewritten > table["compaction_files_written"].as_u64().expect("written"), "{table}");
    assert_eq!(table["live_data_files"].as_u64(), Some(files_per_day(&seen).len() as u64), "{table}");
    // The same in /metrics.
    let metrics = crate::http_client::get(&broker.http, "/metrics");
    let text = String::from_utf8_lossy(&metrics.body);
    let metric = |name: &str| -> f64 {
        let prefix = format!("{name}{{topic=\"{topic}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
            .unwrap_or_else(|| panic!("{name} of {topic} in /metrics:\n{text}"))
    };
    assert!(metric("zombi_iceberg_compactions_total") >= 1.0);
    assert_eq!(metric("zombi_iceberg_compaction_files_rewritten_total"), rewritten as f64);
    assert!(metric("zombi_iceberg_compaction_bytes_rewritten_total") > 0.0);
    assert_eq!(metric("zombi_iceberg_live_data_files"), files_per_day(&seen).len() as f64);
    assert!(metric("zombi_iceberg_unreferenced_files_deleted_total") >= rewritten as f64, "rewritten files deleted");
    assert_eq!(metric("zombi_iceberg_maintenance_errors_total"), 0.0);

    // A stray file older than the orphan age (a day by default) goes; a fresh one stays, since
    // a writer may be about to commit it. Directories are listed on a table's first pass after a
    // start (then every quarter of the orphan age).
    let data = broker.data_dir.join("iceberg/warehouse/zombi").join(&topic).join("data");
    let old = data.join("stray-old.parquet");
    let fresh = data.join("stray-fresh.parquet");
    std::fs::write(&old, b"not committed").expect("write");
    std::fs::write(&fresh, b"not committed").expect("write");
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
    std::fs::File::options().write(true).open(&old).expect("open").set_modified(two_days_ago).expect("mtime");
    broker.kill_and_restart();
    let deadline = Instant::now() + WAIT_MAX;
    while old.exists() {
        assert!(Instant::now() < deadline, "the old stray file was not removed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(fresh.exists(), "a fresh unreferenced file is kept");
    assert_exact(&read_table(&broker, &topic).expect("table"), &expected);
}

/// The broker aborts at a crash point inside compaction (before the catalog swap: new files and
/// metadata written but not committed; after it: committed but nothing cleaned up). After a
/// restart the table is exact, compaction completes, and the crashed attempt's files are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_inside_compaction_leaves_the_table_exact() {
    use std::os::unix::process::ExitStatusExt;
    for point in ["iceberg-commit-before-swap", "iceberg-compaction-after-swap"] {
        // Compaction waits ten minutes after a table's first pass: two commits make two small
        // files in every day's partition.
        let mut broker = TestBroker::start(&compaction_args("600000", &[]));
        let topic = unique_topic("ice-compact-crash");
        let mut expected = produce(&broker, &topic, 2, spread(0, 2, 80), "zstd").await;
        wait_for_rows(&broker, &topic, expected.len());
        expected.extend(produce(&broker, &topic, 2, spread(1, 2, 80), "snappy").await);
        let seen = wait_for_rows(&broker, &topic, expected.len());
        assert!(
            files_per_day(&seen).values().filter(|&&n| n == 2).count() >= 10,
            "{point}: {:?}",
            files_per_day(&seen)
        );
        // Restarted with the crash point, the first pass compacts and aborts.
        broker.restart_with(&compaction_args("300", &[]), &[("ZOMBI_FAILPOINT", point)]);
        let status = broker.wait_exit();
        assert_eq!(status.signal(), Some(6), "{point}: the broker aborted at the crash point ({status})");

        let restart =
            compaction_args("300", &["--iceberg-snapshot-max-age-ms", "0", "--iceberg-orphan-min-age-ms", "1000"]);
        broker.restart_with(&restart, &[]);
        let seen = wait_for_compacted(&broker, &topic, expected.len());
        assert_exact(&seen, &expected);
        assert_eq!(next_offsets(&seen), BTreeMap::from([(0, 40), (1, 40)]), "{point}");
        let deadline = Instant::now() + WAIT_MAX;
        while parquet_on_disk(&broker, &topic) != live_paths(&seen) {
            assert!(Instant::now() < deadline, "{point}: files of the crashed attempt were not removed");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
