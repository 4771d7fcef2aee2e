//! The Iceberg sink on other catalogs and storage: a real PostgreSQL catalog (a private cluster
//! per test), an S3 warehouse on moto's S3 server, and partition specs chosen by flag. rdkafka
//! produces; pyiceberg (SqlCatalog over Postgres or SQLite, S3 through its own FileIO) and DuckDB
//! (iceberg_scan, httpfs for S3) must see every record exactly as produced.

use std::collections::BTreeSet;

use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureRecord;
use serde_json::Value;

use crate::common::{TestBroker, WAIT_MAX, unique_topic};
use crate::iceberg::{
    Expected, Reader, acknowledged, assert_exact, broker_args, compaction_args, files_per_day, hex, live_paths,
    next_offsets, produce, read_table_from, spread, wait_for_rows_from,
};
use crate::postgres::{PASSWORD, Postgres};
use crate::tiering::{S3Server, http};

/// The Postgres catalog holds the tables (in the SQL catalog's own `iceberg_tables`, where
/// pyiceberg's SqlCatalog and Iceberg's JDBC catalog look), commits go on across two rounds and a
/// `kill -9`, and the password never shows in the admin view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_catalog_holds_exact_tables() {
    let postgres = Postgres::start();
    let url = postgres.url();
    let mut args: Vec<&str> = broker_args("3").to_vec();
    args.extend(["--iceberg-catalog", &url]);
    let mut broker = TestBroker::start(&args);
    let reader = Reader { catalog: postgres.sqlalchemy_url(), s3_endpoint: None };
    let topic = unique_topic("ice.pg");

    let mut expected = produce(&broker, &topic, 3, 0..150, "zstd").await;
    wait_for_rows_from(&reader, &topic, expected.len());
    expected.extend(produce(&broker, &topic, 3, 150..240, "lz4").await);
    broker.kill_and_restart();
    expected.extend(produce(&broker, &topic, 3, 240..300, "gzip").await);
    let seen = wait_for_rows_from(&reader, &topic, expected.len());
    assert_exact(&seen, &expected);
    assert_eq!(next_offsets(&seen), [(0, 100), (1, 100), (2, 100)].into());

    let rows = postgres.query(&format!(
        "SELECT catalog_name || '|' || table_namespace || '|' || table_name FROM iceberg_tables \
         WHERE table_name = '{topic}'"
    ));
    assert_eq!(rows, format!("zombi|zombi|{topic}"));

    let view = crate::http_client::get(&broker.http, "/admin/iceberg");
    let text = String::from_utf8_lossy(&view.body);
    assert!(!text.contains(PASSWORD), "the admin view shows the password: {text}");
    let view: Value = serde_json::from_slice(&view.body).expect("JSON");
    assert_eq!(view["catalog"], format!("postgres://zombi:***@127.0.0.1:{}/zombi", postgres.port));
    assert!(view["catalog_error"].is_null(), "{view}");
}

/// `?sslmode=require` reaches a Postgres that admits TCP clients only over TLS (rustls in the
/// broker; the server's certificate is self-signed, which `require` does not verify).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_catalog_over_tls() {
    let postgres = Postgres::start_with(true);
    let url = format!("{}?sslmode=require", postgres.url());
    let mut args: Vec<&str> = broker_args("2").to_vec();
    args.extend(["--iceberg-catalog", &url]);
    let broker = TestBroker::start(&args);
    let reader = Reader { catalog: format!("{}?sslmode=require", postgres.sqlalchemy_url()), s3_endpoint: None };
    let topic = unique_topic("ice-pg-tls");
    let expected = produce(&broker, &topic, 2, 0..60, "zstd").await;
    let seen = wait_for_rows_from(&reader, &topic, expected.len());
    assert_exact(&seen, &expected);
    let encrypted = postgres
        .query("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND usename = 'zombi'");
    assert!(encrypted.parse::<i64>().is_ok_and(|n| n >= 1), "{encrypted}");
}

/// Creates `topic` with its table switched off.
async fn create_without_table(broker: &TestBroker, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = broker.client_config().create().expect("admin");
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1)).set("zombi.iceberg.enable", "false");
    for created in admin.create_topics([&new], &AdminOptions::new()).await.expect("create") {
        created.expect("topic created");
    }
}

/// Switches the table of `topic` on: everything produced so far goes into one commit.
async fn switch_table_on(broker: &TestBroker, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = broker.client_config().create().expect("admin");
    let on = AlterConfig::new(ResourceSpecifier::Topic(topic)).set("zombi.iceberg.enable", "true");
    for altered in admin.alter_configs([&on], &AdminOptions::new()).await.expect("alter") {
        altered.expect("config altered");
    }
}

/// `count` records of 16 KiB of pseudo-random (incompressible) bytes on partition 0, all on one
/// day: together one Parquet file of about `count * 16` KiB.
async fn produce_large(broker: &TestBroker, topic: &str, count: usize) -> Vec<Expected> {
    let producer = broker.producer(&[("acks", "all"), ("compression.type", "none"), ("linger.ms", "20")]);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut pending = Vec::new();
    for i in 0..count {
        let value: Vec<u8> = (0..16 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let key = format!("large-{i}");
        let timestamp_ms = 1_700_000_000_123;
        let record = FutureRecord::<[u8], [u8]>::to(topic)
            .partition(0)
            .key(key.as_bytes())
            .payload(&value)
            .timestamp(timestamp_ms);
        let delivery = producer.send_result(record).map_err(|(e, _)| e).expect("queued");
        let expected = Expected {
            partition: 0,
            offset: -1,
            timestamp_us: timestamp_ms * 1000,
            key: Some(hex(key.as_bytes())),
            value: Some(hex(&value)),
            headers: Vec::new(),
        };
        pending.push((delivery, expected));
    }
    acknowledged(pending).await
}

/// (key, size, ETag) of the objects under `prefix` in moto's bucket, read over plain HTTP.
fn list_objects(server: &S3Server, prefix: &str) -> Vec<(String, u64, String)> {
    let address = server.endpoint.trim_start_matches("http://");
    let (status, body) = http(address, "GET", &format!("/zombi-tiering?list-type=2&max-keys=1000&prefix={prefix}"));
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("<IsTruncated>true</IsTruncated>"), "more objects than one listing page");
    let field = |item: &str, name: &str| -> String {
        let open = format!("<{name}>");
        let start = item.find(&open).map(|i| i + open.len()).unwrap_or_else(|| panic!("{name} in {item}"));
        item[start..].split('<').next().expect("value").to_string()
    };
    body.split("<Contents>")
        .skip(1)
        .map(|item| (field(item, "Key"), field(item, "Size").parse().expect("size"), field(item, "ETag")))
        .collect()
}

/// With the log on S3 and no `--iceberg-warehouse`, tables go to `s3://BUCKET/PREFIX/iceberg/
/// warehouse` through the same endpoint and credentials; a data file above one upload part
/// (8 MiB) is sent as a multipart upload; both readers read the rows from S3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_warehouse_beside_the_log_holds_exact_tables() {
    let server = S3Server::start();
    let args = [
        "--object-store",
        "s3://zombi-tiering/cluster-i",
        "--s3-endpoint",
        &server.endpoint,
        "--s3-region",
        "us-east-1",
        "--num-partitions",
        "2",
        "--iceberg-commit-interval-ms",
        "200",
        "--log-retention-ms=-1",
    ];
    let broker = TestBroker::start_with_env(&args, &[("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")]);
    let reader = Reader {
        catalog: broker.data_dir.join("iceberg/catalog.db").display().to_string(),
        s3_endpoint: Some(server.endpoint.clone()),
    };

    // Small records of every shape, committed in two rounds.
    let small = unique_topic("ice-s3");
    let mut expected = produce(&broker, &small, 2, 0..120, "zstd").await;
    wait_for_rows_from(&reader, &small, expected.len());
    expected.extend(produce(&broker, &small, 2, 120..200, "snappy").await);
    let seen = wait_for_rows_from(&reader, &small, expected.len());
    assert_exact(&seen, &expected);
    let metadata = seen["pyiceberg"]["metadata_location"].as_str().expect("metadata location");
    let table_root = format!("s3://zombi-tiering/cluster-i/iceberg/warehouse/zombi/{small}/");
    assert!(metadata.starts_with(&format!("{table_root}metadata/")), "{metadata}");
    for file in seen["pyiceberg"]["files"].as_array().expect("files") {
        let path = file["path"].as_str().expect("path");
        assert!(path.starts_with(&format!("{table_root}data/")), "{path}");
        assert_eq!(file["codecs"], serde_json::json!(["ZSTD"]), "{file}");
    }
    assert!(!broker.data_dir.join("iceberg/warehouse").exists(), "nothing of the warehouse on local disk");

    // 12 MiB of incompressible values in one commit: one data file sent in two parts.
    let large = unique_topic("ice-s3-large");
    create_without_table(&broker, &large, 1).await;
    let expected = produce_large(&broker, &large, 768).await;
    switch_table_on(&broker, &large).await;
    let seen = wait_for_rows_from(&reader, &large, expected.len());
    assert_exact(&seen, &expected);
    let prefix = format!("cluster-i/iceberg/warehouse/zombi/{large}/data/");
    let files = list_objects(&server, &prefix);
    assert_eq!(files.len(), 1, "one data file: {files:?}");
    let (_, size, etag) = &files[0];
    assert!(*size > 8 * 1024 * 1024, "{files:?}");
    // S3 (and moto) mark an object assembled from N parts with an ETag ending in "-N".
    let part_count: String = etag.rsplit('-').next().unwrap_or("").chars().take_while(char::is_ascii_digit).collect();
    assert!(etag.contains('-') && part_count == "2", "{files:?}");
}

/// `--iceberg-partition-by` sets the spec of new tables: each data file holds one hour, one
/// Kafka partition, or (unpartitioned) whatever a commit took in; the rows stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partition_spec_is_chosen_by_flag() {
    let cases = [("hour", "hour(3)", "timestamp_hour"), ("partition", "identity(1)", "partition"), ("none", "[]", "")];
    for (flag, spec, field) in cases {
        let mut args: Vec<&str> = broker_args("2").to_vec();
        args.extend(["--iceberg-partition-by", flag]);
        let broker = TestBroker::start(&args);
        let topic = unique_topic(&format!("ice-spec-{flag}"));
        create_without_table(&broker, &topic, 2).await;
        let expected = produce(&broker, &topic, 2, 0..12, "none").await;
        switch_table_on(&broker, &topic).await;
        let seen = wait_for_rows_from(&Reader::sqlite(&broker), &topic, expected.len());
        assert_exact(&seen, &expected);
        let shown = seen["pyiceberg"]["partition_spec"].as_str().expect("spec");
        assert!(shown.contains(spec) && shown.contains(field), "{flag}: {shown}");
        let partitions: BTreeSet<String> = seen["pyiceberg"]["files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|file| file["partition"].as_object().expect("partition").values().map(|v| v.to_string()).collect())
            .collect();
        // Records are four hours apart over two Kafka partitions, all in one commit.
        let distinct = match flag {
            "hour" => 12,
            "partition" => 2,
            _ => 1,
        };
        assert_eq!(partitions.len(), distinct, "{flag}: {partitions:?}");
        assert_eq!(seen["pyiceberg"]["files"].as_array().map(Vec::len), Some(distinct), "{flag}");
    }
}

/// Table maintenance where both new kinds meet: a Postgres catalog (the maintenance commits by
/// its own compare-and-swap SQL, `$1` placeholders) and an S3 warehouse (files read back, rewritten
/// and deleted through S3). Small files of four commits become one file per day, older snapshots
/// expire, the rewritten objects are gone from the bucket, and the rows stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_compacts_on_postgres_and_s3() {
    let postgres = Postgres::start();
    let server = S3Server::start();
    let url = postgres.url();
    let mut args = compaction_args("300", &["--iceberg-snapshot-max-age-ms", "0"]);
    args.extend(["--iceberg-catalog", &url, "--object-store", "s3://zombi-tiering/cluster-m"]);
    args.extend(["--s3-endpoint", &server.endpoint, "--s3-region", "us-east-1"]);
    let credentials = [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")];
    let mut broker = TestBroker::start_with_env(&args, &credentials);
    let reader = Reader { catalog: postgres.sqlalchemy_url(), s3_endpoint: Some(server.endpoint.clone()) };
    let topic = unique_topic("ice-compact-s3");
    let mut expected = Vec::new();
    for (round, codec) in ["zstd", "lz4", "gzip", "none"].into_iter().enumerate() {
        expected.extend(produce(&broker, &topic, 2, spread(round, 4, 160), codec).await);
        wait_for_rows_from(&reader, &topic, expected.len());
    }
    let deadline = std::time::Instant::now() + WAIT_MAX;
    let seen = loop {
        if let Some(seen) = read_table_from(&reader, &topic) {
            let compacted = files_per_day(&seen).values().all(|&n| n == 1) && seen["pyiceberg"]["snapshots"] == 1;
            if compacted {
                break seen;
            }
            assert!(std::time::Instant::now() < deadline, "not compacted: {:?}", files_per_day(&seen));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_exact(&seen, &expected);
    assert_eq!(seen["pyiceberg"]["summary"]["operation"], "replace");
    assert_eq!(next_offsets(&seen), [(0, 80), (1, 80)].into(), "offsets carried through compaction");
    let prefix = format!("cluster-m/iceberg/warehouse/zombi/{topic}/data/");
    let mut in_bucket: Vec<String> = list_objects(&server, &prefix)
        .into_iter()
        .map(|(key, _, _)| format!("s3://zombi-tiering/{key}"))
        .filter(|path| path.ends_with(".parquet"))
        .collect();
    in_bucket.sort();
    assert_eq!(in_bucket, live_paths(&seen), "rewritten files are deleted from the bucket");

    // An object no snapshot references (what a crash before a commit leaves) is deleted by the
    // sweep once older than the orphan age: 1 s here, so a restart's first pass after a second
    // (or the one after it) finds it old enough.
    let address = server.endpoint.trim_start_matches("http://").to_string();
    let stray = format!("{prefix}stray.parquet");
    let (status, body) = crate::tiering::http(&address, "PUT", &format!("/zombi-tiering/{stray}"));
    assert_eq!(status, 200, "{body}");
    args.extend(["--iceberg-orphan-min-age-ms", "1000"]);
    broker.restart_with(&args, &credentials);
    let deadline = std::time::Instant::now() + WAIT_MAX;
    while list_objects(&server, &prefix).iter().any(|(key, _, _)| *key == stray) {
        assert!(std::time::Instant::now() < deadline, "the stray object was not swept");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let seen = read_table_from(&reader, &topic).expect("table");
    assert_exact(&seen, &expected);
}
