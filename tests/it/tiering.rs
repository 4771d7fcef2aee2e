//! Tiering end to end: the real broker uploads to a real S3-compatible server (moto, started here
//! on 127.0.0.1) or to a local directory, drops uploaded data from its disk, and rdkafka consumers
//! read everything back byte for byte, from the object store; retention deletes objects; a fresh
//! broker recovers a topic from the bucket alone; kill -9 during uploads leaves no gap or copy.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use zombi::tier::segment;

use crate::common::{Received, TestBroker, WAIT_MAX, consume, unique_topic};

/// moto's S3 server on a free loopback port with the bucket `zombi-tiering`, stopped on drop.
pub(crate) struct S3Server {
    child: Child,
    pub(crate) endpoint: String,
}

impl S3Server {
    pub(crate) fn start() -> S3Server {
        let moto = std::env::var("ZOMBI_MOTO_SERVER").map(PathBuf::from).unwrap_or_else(|_| {
            let cache = std::env::var("ZOMBI_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/zombi"));
            cache.join("venv/bin/moto_server")
        });
        assert!(moto.exists(), "{} is missing: compat/setup.sh installs it", moto.display());
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let child = Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let server = S3Server { child, endpoint: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + WAIT_MAX;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let (status, _) = http(&format!("127.0.0.1:{port}"), "PUT", "/zombi-tiering");
        assert_eq!(status, 200, "create the bucket");
        server
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 exchange: status and body.
pub(crate) fn http(address: &str, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Credentials for moto, which accepts any.
const AWS_TEST_ENV: &[(&str, &str)] = &[("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")];

/// Where a test's objects go, and the same store opened by the test to look at them.
enum Backend {
    S3(S3Server),
    Directory(tempfile::TempDir),
}

impl Backend {
    fn s3() -> Backend {
        Backend::S3(S3Server::start())
    }

    fn directory() -> Backend {
        Backend::Directory(tempfile::tempdir().expect("temp dir"))
    }

    fn args(&self) -> Vec<String> {
        match self {
            Backend::S3(server) => vec![
                "--object-store".into(),
                "s3://zombi-tiering/cluster-a".into(),
                "--s3-endpoint".into(),
                server.endpoint.clone(),
                "--s3-region".into(),
                "us-east-1".into(),
            ],
            Backend::Directory(dir) => vec!["--object-store".into(), format!("file://{}", dir.path().display())],
        }
    }

    fn start_broker(&self, extra: &[&str]) -> TestBroker {
        let args = self.broker_args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        TestBroker::start_with_env(&args, AWS_TEST_ENV)
    }

    /// The store's flags, then fast tiering (small segments, short waits, nothing kept on disk
    /// once uploaded) where `extra` does not set it, then `extra`.
    fn broker_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = self.args();
        let defaults = [
            ("--remote-log-manager-task-interval-ms", "50"),
            ("--log-segment-bytes", "65536"),
            ("--log-roll-ms", "300"),
            ("--log-local-retention-ms", "0"),
        ];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                args.extend([flag.to_string(), value.to_string()]);
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// One object's body (relative to the broker's store), read without zombi's code: boto3
    /// (moto refuses anonymous reads of objects), or the file.
    fn get(&self, key: &str) -> Vec<u8> {
        match self {
            Backend::S3(server) => {
                let script = "import boto3, sys\n\
                    s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                        aws_access_key_id='test', aws_secret_access_key='test')\n\
                    body = s3.get_object(Bucket='zombi-tiering', Key='cluster-a/' + sys.argv[2])['Body']\n\
                    sys.stdout.buffer.write(body.read())\n";
                let output = Command::new(crate::iceberg::python())
                    .args(["-c", script, &server.endpoint, key])
                    .output()
                    .expect("python");
                assert!(output.status.success(), "{key}: {}", String::from_utf8_lossy(&output.stderr));
                output.stdout
            }
            Backend::Directory(dir) => std::fs::read(dir.path().join(key)).expect("object"),
        }
    }

    /// The objects under `prefix` (relative to the broker's store), read without zombi's code:
    /// moto's ListObjectsV2 over plain HTTP, or the directory tree.
    fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        match self {
            Backend::S3(server) => {
                let address = server.endpoint.trim_start_matches("http://");
                let path = format!("/zombi-tiering?list-type=2&max-keys=1000&prefix=cluster-a/{prefix}");
                let (status, body) = http(address, "GET", &path);
                assert_eq!(status, 200, "{body}");
                assert!(!body.contains("<IsTruncated>true</IsTruncated>"), "more objects than one listing page");
                let field = |item: &str, name: &str| -> String {
                    let open = format!("<{name}>");
                    let start = item.find(&open).map(|i| i + open.len()).expect("field");
                    item[start..].split('<').next().expect("value").to_string()
                };
                body.split("<Contents>")
                    .skip(1)
                    .map(|item| {
                        let key = field(item, "Key");
                        let key = key.strip_prefix("cluster-a/").expect("under the prefix").to_string();
                        (key, field(item, "Size").parse().expect("size"))
                    })
                    .collect()
            }
            Backend::Directory(dir) => {
                let mut out = Vec::new();
                let mut stack = vec![dir.path().to_path_buf()];
                while let Some(path) = stack.pop() {
                    // The broker deletes objects while this lists them: one that is gone between
                    // the listing and its metadata is not there any more, like a missing entry.
                    let Ok(entries) = std::fs::read_dir(&path) else { continue };
                    for entry in entries {
                        let entry = entry.expect("entry");
                        let relative =
                            entry.path().strip_prefix(dir.path()).expect("inside").to_string_lossy().into_owned();
                        let Ok(metadata) = entry.metadata() else { continue };
                        if metadata.is_dir() {
                            stack.push(entry.path());
                        } else if relative.starts_with(prefix) {
                            out.push((relative, metadata.len()));
                        }
                    }
                }
                out.sort();
                out
            }
        }
    }
}

/// The broker's tiering view of one partition.
fn tiering(broker: &TestBroker, topic: &str, partition: i32) -> serde_json::Value {
    let (status, body) = http(&broker.http, "GET", "/admin/tiering");
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    view["topics"]
        .as_array()
        .and_then(|topics| topics.iter().find(|t| t["topic"] == topic))
        .and_then(|t| t["partitions"].as_array())
        .and_then(|partitions| partitions.iter().find(|p| p["partition"] == partition).cloned())
        .unwrap_or_else(|| panic!("{topic}/{partition} is not in {body}"))
}

/// Waits until `done` holds for the partition's tiering view; a timeout fails the test.
fn wait_for(broker: &TestBroker, topic: &str, partition: i32, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let view = tiering(broker, topic, partition);
        if done(&view) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {view}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn offset(view: &serde_json::Value, field: &str) -> i64 {
    view[field].as_i64().unwrap_or_else(|| panic!("{field} in {view}"))
}

/// The topic id under which the store holds the topic's only partition data so far.
fn topic_id(backend: &Backend) -> uuid::Uuid {
    let objects = backend.list("data/");
    let (key, size) = objects.first().expect("objects were uploaded");
    segment::parse_segment_key(key, *size).expect("a segment").0
}

/// Segments of a partition in the store, sorted, checked to chain without gap or overlap.
fn segment_chain(backend: &Backend, prefix: &str) -> Vec<segment::SegmentInfo> {
    let mut segments: Vec<_> = backend
        .list(prefix)
        .iter()
        .map(|(key, size)| segment::parse_segment_key(key, *size).unwrap_or_else(|| panic!("stray object {key}")).2)
        .collect();
    segments.sort_by_key(|s| s.base_offset);
    for pair in segments.windows(2) {
        assert_eq!(pair[0].next_offset, pair[1].base_offset, "segments chain without gap or copy: {segments:?}");
    }
    segments
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// Produces `count` records to partition 0 with keys, headers and the given timestamps.
async fn produce(broker: &TestBroker, topic: &str, from: usize, count: usize, timestamp: impl Fn(usize) -> i64) {
    let producer =
        broker.producer(&[("acks", "all"), ("linger.ms", "20"), ("compression.type", "lz4"), ("batch.size", "16384")]);
    let mut deliveries = Vec::with_capacity(count);
    for i in from..from + count {
        let (key, value) = record(i);
        let headers = OwnedHeaders::new()
            .insert(Header { key: "n", value: Some(i.to_string().as_bytes()) })
            .insert(Header { key: "n", value: None::<&[u8]> });
        let future = producer.send_result(
            FutureRecord::to(topic).partition(0).key(&key).payload(&value).headers(headers).timestamp(timestamp(i)),
        );
        deliveries.push(future.map_err(|(e, _)| e).expect("queued"));
    }
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let delivered = delivery.await.expect("delivery").map_err(|(e, _)| e).expect("acknowledged");
        assert_eq!(delivered.offset, (from + i) as i64);
    }
}

fn record(i: usize) -> (Vec<u8>, Vec<u8>) {
    let key = format!("key-{i}").into_bytes();
    // Incompressible bytes, so that lz4 leaves the segments their size.
    let mut state = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let value: Vec<u8> = (0..200 + i % 700)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    (key, value)
}

fn check_records(records: &[Received], from: usize) {
    for (n, received) in records.iter().enumerate() {
        let i = from + n;
        let (key, value) = record(i);
        assert_eq!(received.offset, i as i64);
        assert_eq!(received.key.as_deref(), Some(key.as_slice()), "key of {i}");
        assert_eq!(received.value.as_deref(), Some(value.as_slice()), "value of {i}");
        assert_eq!(
            received.headers,
            vec![("n".to_string(), Some(i.to_string().into_bytes())), ("n".to_string(), None)]
        );
    }
}

async fn offloads_and_reads_back_from_offset_zero(backend: Backend) {
    let broker = backend.start_broker(&[]);
    let topic = unique_topic("tiered");
    let base_time = now_ms() - 3_600_000;
    produce(&broker, &topic, 0, 3000, |i| base_time + i as i64).await;
    // Everything is uploaded (the tail by age) and the hot tier keeps none of it.
    wait_for(&broker, &topic, 0, "all uploaded and trimmed", |p| {
        offset(p, "remote_end_offset") == 3000 && offset(p, "local_start_offset") == 3000
    });
    let view = tiering(&broker, &topic, 0);
    assert!(view["remote_segments"].as_u64().expect("count") >= 10, "{view}");
    let chain = segment_chain(&backend, &segment::partition_prefix(topic_id(&backend), 0));
    assert_eq!((chain[0].base_offset, chain.last().expect("segments").next_offset), (0, 3000));

    let records = consume(&broker, &topic, &[0], 3000);
    check_records(&records, 0);
    // A time lookup lands on a record that only the object store holds.
    let consumer = broker.consumer();
    let mut query = TopicPartitionList::new();
    query.add_partition_offset(&topic, 0, Offset::Offset(base_time + 1234)).expect("add");
    let found = consumer.offsets_for_times(query, Duration::from_secs(30)).expect("offsets for times");
    assert_eq!(found.find_partition(&topic, 0).expect("partition").offset(), Offset::Offset(1234));
    // Reading from the middle of a segment starts at the asked offset.
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&topic, 0, Offset::Offset(2500)).expect("add");
    consumer.assign(&assignment).expect("assign");
    let message = match consumer.poll(WAIT_MAX) {
        Some(Ok(message)) => Received::from_message(&message),
        Some(Err(error)) => panic!("{error}"),
        None => panic!("nothing read at 2500"),
    };
    check_records(&[message], 2500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_offloads_trims_and_serves_remote_reads_byte_exact() {
    offloads_and_reads_back_from_offset_zero(Backend::s3()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_offloads_trims_and_serves_remote_reads_byte_exact() {
    offloads_and_reads_back_from_offset_zero(Backend::directory()).await;
}

async fn retention_removes_old_segments(backend: Backend) {
    let broker = backend.start_broker(&["--retention-check-interval-ms", "100"]);
    let topic = unique_topic("retained");
    // 1500 records from three hours ago, uploaded before any newer record arrives, then 1500 new.
    produce(&broker, &topic, 0, 1500, |_| now_ms() - 3 * 3_600_000).await;
    wait_for(&broker, &topic, 0, "old records uploaded", |p| offset(p, "remote_end_offset") == 1500);
    produce(&broker, &topic, 1500, 1500, |_| now_ms()).await;
    wait_for(&broker, &topic, 0, "new records uploaded", |p| offset(p, "remote_end_offset") == 3000);
    let prefix = segment::partition_prefix(topic_id(&backend), 0);
    assert_eq!(segment_chain(&backend, &prefix)[0].base_offset, 0);

    // Two hours of retention expire the old segments, which are only in the object store.
    let admin: rdkafka::admin::AdminClient<_> = broker.client_config().create().expect("admin");
    let mut alter = rdkafka::admin::AlterConfig::new(rdkafka::admin::ResourceSpecifier::Topic(&topic));
    alter = alter.set("retention.ms", "7200000");
    let results = admin.alter_configs(&[alter], &rdkafka::admin::AdminOptions::new()).await.expect("alter");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    wait_for(&broker, &topic, 0, "log start moved", |p| offset(p, "log_start_offset") == 1500);
    let deadline = Instant::now() + WAIT_MAX;
    let chain = loop {
        let chain = segment_chain(&backend, &prefix);
        if chain.first().is_some_and(|s| s.base_offset >= 1500) {
            break chain;
        }
        assert!(Instant::now() < deadline, "expired segments are still in the bucket: {chain:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((chain[0].base_offset, chain.last().expect("segments").next_offset), (1500, 3000));
    let (low, high) = broker.consumer().fetch_watermarks(&topic, 0, Duration::from_secs(30)).expect("watermarks");
    assert_eq!((low, high), (1500, 3000));
    let records = consume(&broker, &topic, &[0], 1500);
    check_records(&records, 1500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_retention_deletes_expired_segments() {
    retention_removes_old_segments(Backend::s3()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_retention_deletes_expired_segments() {
    retention_removes_old_segments(Backend::directory()).await;
}

async fn fresh_broker_recovers_from_the_bucket(backend: Backend) {
    let mut first = backend.start_broker(&["--num-partitions", "2"]);
    let topic = unique_topic("recovered");
    produce(&first, &topic, 0, 2000, |_| now_ms()).await;
    wait_for(&first, &topic, 0, "uploaded", |p| offset(p, "remote_end_offset") == 2000);
    first.kill9();

    // A new broker, an empty disk, the same bucket.
    let second = backend.start_broker(&[]);
    let consumer = second.consumer();
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(30)).expect("metadata");
    let described = &metadata.topics()[0];
    assert_eq!(described.error(), None, "the topic is known again");
    assert_eq!(described.partitions().len(), 2);
    let (low, high) = consumer.fetch_watermarks(&topic, 0, Duration::from_secs(30)).expect("watermarks");
    assert_eq!((low, high), (0, 2000));
    check_records(&consume(&second, &topic, &[0], 2000), 0);
    // It continues the log, and uploads what it gets.
    produce(&second, &topic, 2000, 10, |_| now_ms()).await;
    wait_for(&second, &topic, 0, "new records uploaded", |p| offset(p, "remote_end_offset") == 2010);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_fresh_broker_recovers_topics_from_the_bucket() {
    fresh_broker_recovers_from_the_bucket(Backend::s3()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_fresh_broker_recovers_topics_from_the_store() {
    fresh_broker_recovers_from_the_bucket(Backend::directory()).await;
}

async fn kill_during_uploads_leaves_no_gap_and_no_copy(backend: Backend) {
    let mut broker = backend.start_broker(&["--log-segment-bytes", "16384"]);
    let topic = unique_topic("crashy");
    let mut produced = 0;
    let mut kills = BTreeMap::new();
    for round in 0..4 {
        produce(&broker, &topic, produced, 800, |_| now_ms()).await;
        produced += 800;
        // Kill while the flusher is uploading what was just produced.
        let view = tiering(&broker, &topic, 0);
        kills.insert(round, offset(&view, "remote_end_offset"));
        broker.kill_and_restart();
    }
    wait_for(&broker, &topic, 0, "everything uploaded after the crashes", |p| {
        offset(p, "remote_end_offset") == produced as i64
    });
    let prefix = segment::partition_prefix(topic_id(&backend), 0);
    // Orphans from interrupted uploads are deleted on the first pass after a restart.
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let objects = backend.list(&prefix);
        let view = tiering(&broker, &topic, 0);
        if objects.len() as u64 == view["remote_segments"].as_u64().expect("count") {
            break;
        }
        assert!(Instant::now() < deadline, "objects {objects:?} vs index {view}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let chain = segment_chain(&backend, &prefix);
    assert_eq!((chain[0].base_offset, chain.last().expect("segments").next_offset), (0, produced as i64), "{kills:?}");
    check_records(&consume(&broker, &topic, &[0], produced), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_kill_9_during_uploads_leaves_no_gap_and_no_copy() {
    kill_during_uploads_leaves_no_gap_and_no_copy(Backend::s3()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_kill_9_during_uploads_leaves_no_gap_and_no_copy() {
    kill_during_uploads_leaves_no_gap_and_no_copy(Backend::directory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_object_store_is_refused_at_start_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(crate::common::zombi_bin())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--object-store", "ftp://nowhere", "--kafka-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .output()
        .expect("run zombi");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("object-store") && stderr.contains("s3://"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_fetch_carry_on_while_the_object_store_is_down() {
    let backend = Backend::s3();
    let broker = backend.start_broker(&[]);
    let topic = unique_topic("s3-down");
    produce(&broker, &topic, 0, 100, |_| now_ms()).await;
    wait_for(&broker, &topic, 0, "uploaded while the store is up", |p| offset(p, "remote_end_offset") == 100);
    assert_eq!(http(&broker.http, "GET", "/health/ready").0, 200);
    let Backend::S3(server) = backend else { unreachable!("an S3 backend") };
    drop(server);
    let (status, body) = http(&broker.http, "GET", "/health/ready");
    assert_eq!(status, 503, "not ready without the object store: {body}");
    assert!(body.contains("object store"), "{body}");
    // Acknowledged and readable from the hot tier, while every upload fails and is counted.
    produce(&broker, &topic, 100, 400, |_| now_ms()).await;
    wait_for(&broker, &topic, 0, "upload errors counted", |p| p["upload_errors"].as_u64().is_some_and(|n| n > 0));
    let view = tiering(&broker, &topic, 0);
    assert_eq!(offset(&view, "remote_end_offset"), 100);
    assert_eq!(offset(&view, "high_watermark"), 500);
    // Offsets below 100 are only in the (unreachable) object store; the hot tier serves the rest.
    let consumer = broker.consumer();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&topic, 0, Offset::Offset(100)).expect("add");
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    let deadline = Instant::now() + WAIT_MAX;
    while records.len() < 400 {
        assert!(Instant::now() < deadline, "read {} of 400 records from the hot tier", records.len());
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => records.push(Received::from_message(&message)),
            Some(Err(error)) => panic!("{error}"),
            None => {}
        }
    }
    check_records(&records, 100);
}

/// Log start, local start, remote end and high watermark of a partition's tiering view.
fn partition_offsets(view: &serde_json::Value) -> [i64; 4] {
    ["log_start_offset", "local_start_offset", "remote_end_offset", "high_watermark"].map(|f| offset(view, f))
}

/// ListOffsets special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const EARLIEST_LOCAL: i64 = -4;
const READ_UNCOMMITTED: i8 = 0;
const READ_COMMITTED: i8 = 1;

/// ListOffsets (v9, raw frames) for partition 0 of `topic`: (error code, offset).
fn list_offset(broker: &TestBroker, topic: &str, timestamp: i64, isolation_level: i8) -> (i16, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{ListOffsetsRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut partition = ListOffsetsPartition::default();
    partition.partition_index = 0;
    partition.timestamp = timestamp;
    let mut wanted = ListOffsetsTopic::default();
    wanted.name = TopicName(StrBytes::from_string(topic.to_string()));
    wanted.partitions = vec![partition];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = (-1).into();
    request.isolation_level = isolation_level;
    request.topics = vec![wanted];
    let response = crate::raw::Raw::connect(&broker.bootstrap).call(9, &request);
    let answer = &response.topics[0].partitions[0];
    (answer.error_code, answer.offset)
}

/// ListOffsets with EARLIEST_LOCAL (-4, KIP-405) answers the hot tier's first offset, below which
/// records are only in the object store, while EARLIEST (-2) answers the log start. The partition
/// is tiered and trimmed, then the broker restarts with tiering off so that new records stay on
/// disk: log start 0 < local start 1000 < high watermark 1010, each answered once the trim that the
/// restart may have cut short is done again. For a topic that never tiered the answer to -4 is the
/// log start, as Kafka answers for a topic without remote storage, also once DeleteRecords moved
/// it. LATEST answers the high watermark to read_uncommitted and the last stable offset to
/// read_committed: the same offset, as no transactions are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_earliest_local_answers_the_hot_tiers_first_offset() {
    let backend = Backend::directory();
    let mut broker = backend.start_broker(&[]);
    let topic = unique_topic("earliest-local");
    produce(&broker, &topic, 0, 1000, |_| now_ms()).await;
    wait_for(&broker, &topic, 0, "all uploaded and trimmed", |p| {
        offset(p, "remote_end_offset") == 1000 && offset(p, "local_start_offset") == 1000
    });
    let args = backend.broker_args(&["--remote-storage-enable", "false"]);
    broker.restart_with(&args.iter().map(String::as_str).collect::<Vec<_>>(), AWS_TEST_ENV);
    wait_for(&broker, &topic, 0, "the hot tier trimmed again", |p| offset(p, "local_start_offset") == 1000);
    produce(&broker, &topic, 1000, 10, |_| now_ms()).await;
    let view = tiering(&broker, &topic, 0);
    let offsets = partition_offsets(&view);
    assert_eq!(offsets, [0, 1000, 1000, 1010], "{view}");
    assert_eq!(list_offset(&broker, &topic, EARLIEST, READ_UNCOMMITTED), (0, 0));
    assert_eq!(list_offset(&broker, &topic, EARLIEST_LOCAL, READ_UNCOMMITTED), (0, 1000));
    assert_eq!(list_offset(&broker, &topic, LATEST, READ_UNCOMMITTED), (0, 1010));
    assert_eq!(list_offset(&broker, &topic, LATEST, READ_COMMITTED), (0, 1010));
    check_records(&consume(&broker, &topic, &[0], 1010), 0);

    let local = unique_topic("never-tiered");
    produce(&broker, &local, 0, 10, |_| now_ms()).await;
    assert_eq!(list_offset(&broker, &local, EARLIEST_LOCAL, READ_UNCOMMITTED), (0, 0));
    let admin: rdkafka::admin::AdminClient<_> = broker.client_config().create().expect("admin");
    let mut below = TopicPartitionList::new();
    below.add_partition_offset(&local, 0, Offset::Offset(4)).expect("add");
    admin.delete_records(&below, &rdkafka::admin::AdminOptions::new()).await.expect("delete records");
    assert_eq!(list_offset(&broker, &local, EARLIEST, READ_UNCOMMITTED), (0, 4));
    assert_eq!(list_offset(&broker, &local, EARLIEST_LOCAL, READ_UNCOMMITTED), (0, 4));
}

/// A compacted topic is never tiered, although the broker default `--remote-storage-enable` is
/// true: Kafka has no tiered storage for compacted topics. Its records, produced first, stay on
/// disk and no object is written for it, while a topic produced after it is uploaded and trimmed in
/// the meantime (the flusher looks at every partition on each pass); DescribeConfigs describes its
/// `remote.storage.enable` as false.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_topics_are_never_tiered() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
    let backend = Backend::directory();
    let broker = backend.start_broker(&[]);
    let admin: AdminClient<_> = broker.client_config().create().expect("admin");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let compacted = unique_topic("compacted-local");
    let new_topic = NewTopic::new(&compacted, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    assert_eq!(admin.create_topics([&new_topic], &options).await.expect("create"), vec![Ok(compacted.clone())]);
    produce(&broker, &compacted, 0, 500, |_| now_ms()).await;
    let tiered = unique_topic("tiered-beside");
    produce(&broker, &tiered, 0, 500, |_| now_ms()).await;
    wait_for(&broker, &tiered, 0, "the other topic uploaded and trimmed", |p| {
        offset(p, "remote_end_offset") == 500 && offset(p, "local_start_offset") == 500
    });
    let view = tiering(&broker, &compacted, 0);
    let offsets = partition_offsets(&view);
    assert_eq!((offsets, view["remote_segments"].as_u64()), ([0, 0, 0, 500], Some(0)), "{view}");
    let tiered_segments = tiering(&broker, &tiered, 0)["remote_segments"].as_u64().expect("count");
    assert_eq!(backend.list("data/").len() as u64, tiered_segments, "objects of the tiered topic only");
    let described = admin.describe_configs([&ResourceSpecifier::Topic(&compacted)], &options).await.expect("describe");
    let entry = described[0].as_ref().expect("topic configs").get("remote.storage.enable").expect("listed");
    assert_eq!((entry.value.as_deref(), entry.is_default), (Some("false"), true));
    check_records(&consume(&broker, &compacted, &[0], 500), 0);
}

/// A topic written in transactions, every other one aborted, wholly uploaded to S3 and dropped
/// from the broker's disk: a read_committed consumer reading it back from the object store gets
/// exactly the committed records, as a read of the hot tier would (the aborted-transaction index
/// stays with the broker when the batches leave its disk). The aborted transactions go to the
/// bucket beside their segments, so a new broker rebuilt from the bucket alone skips the same
/// records.
#[test]
fn read_committed_reads_of_tiered_segments_skip_aborted_records() {
    use crate::transactions::{consumer, read_to, send, transactional_producer};
    use rdkafka::producer::Producer;
    let backend = Backend::s3();
    let mut broker = backend.start_broker(&["--num-partitions", "1"]);
    let topic = unique_topic("tiered-txn");
    let producer = transactional_producer(&broker, "tiered-txn", &[]);
    let timeout = Duration::from_secs(30);
    let mut committed = Vec::new();
    for round in 0..6 {
        producer.begin_transaction().expect("begin");
        for i in 0..20 {
            let value = format!("r{round}-{i}");
            send(&producer, &topic, 0, &value);
            if round % 2 == 0 {
                committed.push(value);
            }
        }
        if round % 2 == 0 {
            producer.commit_transaction(timeout).expect("commit");
        } else {
            producer.flush(timeout).expect("flush");
            producer.abort_transaction(timeout).expect("abort");
        }
    }
    // Six transactions of 20 records and a marker each.
    let end = 6 * 21;
    wait_for(&broker, &topic, 0, "all uploaded and trimmed", |p| {
        offset(p, "remote_end_offset") == end && offset(p, "local_start_offset") == end
    });
    let read = read_to(&consumer(&broker, "read_committed"), &topic, &BTreeMap::from([(0, end)]));
    let values: Vec<String> = read.into_iter().map(|(_, _, value)| value).collect();
    assert_eq!(values, committed);

    // The bucket holds the three aborted transactions (producer, first offset, marker offset),
    // each beside the segment that holds its marker.
    let mut aborted = Vec::new();
    for (info, txns) in segment_transactions(&backend) {
        assert!(info.size_bytes > 0);
        // A segment may end inside a transaction (it is uploaded when due, whatever the
        // transactions): that one is named as unresolved, by its first offset. The last segment
        // ends after every marker.
        for txn in &txns.unresolved {
            assert!(txn.first_offset % 21 == 0 && txn.first_offset < info.next_offset, "{txn:?} in {info:?}");
        }
        assert!(info.next_offset < end || txns.unresolved.is_empty(), "{txns:?} in the last segment");
        aborted.extend(txns.aborted.into_iter().map(|t| {
            assert_eq!(t.first_offset + 20, t.last_offset, "20 records, then the marker");
            t.last_offset
        }));
    }
    aborted.sort();
    assert_eq!(aborted, vec![41, 83, 125], "the markers of rounds 1, 3 and 5");

    // A new broker, an empty disk, the same bucket: the same records for read_committed, all
    // of them (markers aside) for read_uncommitted.
    broker.kill9();
    let second = backend.start_broker(&[]);
    let read = read_to(&consumer(&second, "read_committed"), &topic, &BTreeMap::from([(0, end)]));
    let values: Vec<String> = read.into_iter().map(|(_, _, value)| value).collect();
    assert_eq!(values, committed, "read_committed from a broker rebuilt from the bucket");
    let read = read_to(&consumer(&second, "read_uncommitted"), &topic, &BTreeMap::from([(0, end)]));
    assert_eq!(read.len(), 6 * 20);
}

/// Every `.aborted` object in the bucket, read, with the segment beside it (which must exist).
fn segment_transactions(backend: &Backend) -> Vec<(segment::SegmentInfo, segment::SegmentTxns)> {
    let objects = backend.list("data/");
    let mut found = Vec::new();
    for (key, _) in objects.iter().filter(|(key, _)| key.ends_with(segment::ABORTED_SUFFIX)) {
        let segment_key = format!("{}{}", key.trim_end_matches(segment::ABORTED_SUFFIX), segment::SEGMENT_SUFFIX);
        let (_, size) =
            objects.iter().find(|(k, _)| *k == segment_key).unwrap_or_else(|| panic!("{key} has no segment beside it"));
        let info = segment::parse_segment_key(&segment_key, *size).expect("a segment").2;
        found.push((info, segment::decode_txns(&backend.get(key), &info).expect("transactions")));
    }
    found
}

/// A transaction still open when its partition's last segment was uploaded: a broker rebuilt
/// from the bucket alone (the marker and the coordinator that would have written it were lost
/// with the disk) aborts it with a marker of its own, so `read_committed` readers get exactly the
/// committed records and the last stable offset reaches the high watermark instead of staying
/// behind the dead transaction.
#[test]
fn a_transaction_open_at_the_last_uploaded_segment_is_aborted_by_a_rebuilt_broker() {
    use crate::transactions::{consumer, read_to, send, transactional_producer};
    use rdkafka::consumer::Consumer;
    use rdkafka::producer::Producer;
    let backend = Backend::directory();
    let mut broker = backend.start_broker(&["--num-partitions", "1"]);
    let topic = unique_topic("tiered-open-txn");
    let producer = transactional_producer(&broker, "tiered-open-txn", &[]);
    let timeout = Duration::from_secs(30);
    let committed: Vec<String> = (0..20).map(|i| format!("committed-{i}")).collect();
    producer.begin_transaction().expect("begin");
    for value in &committed {
        send(&producer, &topic, 0, value);
    }
    producer.commit_transaction(timeout).expect("commit");
    producer.begin_transaction().expect("begin");
    for i in 0..10 {
        send(&producer, &topic, 0, &format!("open-{i}"));
    }
    producer.flush(timeout).expect("flush");
    // 20 records and their commit marker, then the open transaction's 10 records.
    let end = 31;
    wait_for(&broker, &topic, 0, "all uploaded", |p| offset(p, "remote_end_offset") == end);

    // The object beside the last segment names the open transaction, from offset 21.
    let last = segment_transactions(&backend).into_iter().find(|(info, _)| info.next_offset == end);
    let unresolved = last.map(|(_, txns)| txns.unresolved).unwrap_or_default();
    assert_eq!(unresolved.iter().map(|t| t.first_offset).collect::<Vec<_>>(), vec![21]);

    broker.kill9();
    drop(producer);
    let second = backend.start_broker(&[]);
    // Its abort marker takes offset 31: both isolation levels end at 32.
    for isolation in ["read_committed", "read_uncommitted"] {
        let reader = consumer(&second, isolation);
        let watermarks = reader.fetch_watermarks(&topic, 0, timeout).expect("watermarks");
        assert_eq!(watermarks, (0, end + 1), "{isolation}");
    }
    let read = read_to(&consumer(&second, "read_committed"), &topic, &BTreeMap::from([(0, end + 1)]));
    let values: Vec<String> = read.into_iter().map(|(_, _, value)| value).collect();
    assert_eq!(values, committed, "read_committed from a broker rebuilt from the bucket");
    let read = read_to(&consumer(&second, "read_uncommitted"), &topic, &BTreeMap::from([(0, end + 1)]));
    assert_eq!(read.len(), 30, "the aborted records are still there for read_uncommitted");
}
