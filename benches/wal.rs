//! The write-ahead log's produce latency, throughput and PUTs per hour (docs/wal.md).
//!
//! Starts moto's S3 server (from `compat/setup.sh`'s venv) behind a proxy that delays every byte
//! by half of `--delay-ms` each way (so each request takes `--delay-ms` longer: 5 ms stands for
//! S3 Express One Zone, 50 ms for S3 Standard), or uses a local directory (`--store dir`), and
//! zombi with `--wal-store` there; then, with 1 KiB records and acks=all:
//! 1. produce latency at `--rate` records/s for `--seconds` on 16 partitions (p50, p99, p99.9);
//! 2. produce throughput of `--records` records on 16 partitions;
//! 3. write-ahead log PUTs per hour at 1, 100 and 1000 partitions: `--rate` records/s spread over
//!    every partition for `--seconds`, counted from zombi's `/metrics`.
//!
//! `cargo bench --bench wal -- [--store s3|dir] [--delay-ms D] [--interval-ms I] [--rate R]
//!  [--seconds S] [--records N]`; defaults: s3, 0, zombi's default interval (250), 2000, 10,
//!  100000. `ZOMBI_BIN=PATH` runs another build of the broker.

mod support;

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::producer::{RECORD_BYTES, create_topic, latency, producer, send, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Args {
    store: String,
    delay_ms: u64,
    interval_ms: Option<u64>,
    rate: u64,
    seconds: u64,
    records: u64,
}

fn parse_args() -> Args {
    let mut args =
        Args { store: "s3".into(), delay_ms: 0, interval_ms: None, rate: 2000, seconds: 10, records: 100_000 };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--store" => args.store = value(),
            "--delay-ms" => args.delay_ms = value().parse().expect("--delay-ms D"),
            "--interval-ms" => args.interval_ms = Some(value().parse().expect("--interval-ms I")),
            "--rate" => args.rate = value().parse().expect("--rate R"),
            "--seconds" => args.seconds = value().parse().expect("--seconds S"),
            "--records" => args.records = value().parse().expect("--records N"),
            _ => {}
        }
    }
    args
}

/// Kills the child process when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port()
}

/// moto's S3 server with the bucket `zombi-wal`.
fn start_moto() -> (Process, u16) {
    let cache = std::env::var("ZOMBI_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/zombi"));
    let moto = cache.join("venv/bin/moto_server");
    assert!(moto.exists(), "{} is missing: compat/setup.sh installs it", moto.display());
    let port = free_port();
    let child = Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server");
    let process = Process(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let request = format!(
                "PUT /zombi-wal HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).expect("create bucket");
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            assert!(answer.starts_with("HTTP/1.1 200"), "create bucket: {answer}");
            return (process, port);
        }
        assert!(Instant::now() < deadline, "moto did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP proxy that delivers every chunk `delay` after it arrived, in order, each way.
async fn delay_proxy(target: u16, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else { return };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::join!(pipe(client_read, server_write, delay), pipe(server_read, client_write, delay));
            });
        }
    });
    address
}

async fn pipe(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, delay: Duration) {
    let (chunks, mut due) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(read) = from.read(&mut buffer).await {
            if read == 0 || chunks.send((tokio::time::Instant::now() + delay, buffer[..read].to_vec())).is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// zombi with the write-ahead log on `store_args`; returns it and its Kafka and HTTP addresses.
fn start_zombi(data: &std::path::Path, store_args: &[String], env: &[(&str, &str)]) -> (Process, String, String) {
    let binary = std::env::var_os("ZOMBI_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_zombi").into());
    let mut child = Command::new(binary)
        .arg("--data-dir")
        .arg(data)
        .args(["--kafka-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--iceberg-enable", "false"])
        .args(store_args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start zombi");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).expect("listening line");
    let field = |name: &str| line.split_whitespace().find_map(|p| p.strip_prefix(name)).expect("address").to_string();
    (Process(child), field("kafka="), field("http="))
}

/// The broker's `zombi_wal_objects_total` (each one PUT).
fn wal_objects(http: &str) -> u64 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(http).expect("http");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n").expect("get");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    text.lines()
        .find_map(|line| line.strip_prefix("zombi_wal_objects_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("zombi_wal_objects_total in /metrics")
}

fn throughput(bootstrap: &str, topic: &str, partitions: i32, records: u64) {
    let (producer, delivered) = producer(bootstrap, "5");
    let payload = vec![b't'; RECORD_BYTES];
    let start = Instant::now();
    for i in 0..records {
        send(&producer, topic, partitions, i, &payload, delivered.start);
    }
    wait_for(&delivered, records);
    let seconds = start.elapsed().as_secs_f64();
    let failed = delivered.failed.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "produce  partitions={partitions:<4} records={records} {:.0} records/s {:.1} MB/s ({seconds:.2} s, {failed} failed)",
        records as f64 / seconds,
        records as f64 * RECORD_BYTES as f64 / 1e6 / seconds
    );
}

/// PUTs per hour at `rate` records/s spread over `partitions` partitions.
fn puts_per_hour(bootstrap: &str, http: &str, partitions: i32, rate: u64, seconds: u64) {
    let topic = format!("puts-{partitions}-{}", std::process::id());
    create_topic(bootstrap, &topic, partitions);
    let (producer, delivered) = producer(bootstrap, "1");
    let payload = vec![b'p'; RECORD_BYTES];
    let total = rate * seconds;
    let before = wal_objects(http);
    let start = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        send(&producer, &topic, partitions, i, &payload, delivered.start);
    }
    wait_for(&delivered, total);
    let elapsed = start.elapsed().as_secs_f64();
    let puts = wal_objects(http) - before;
    println!(
        "puts     partitions={partitions:<4} rate={rate}/s for {elapsed:.1} s: {puts} write-ahead log objects, {:.0} PUTs/hour",
        puts as f64 * 3600.0 / elapsed
    );
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store_args: Vec<String> =
        vec!["--object-store".into(), format!("file://{}", dir.path().join("bucket").display())];
    let mut _moto = None;
    match args.store.as_str() {
        "s3" => {
            let (moto, port) = start_moto();
            _moto = Some(moto);
            let proxy = runtime.block_on(delay_proxy(port, Duration::from_millis(args.delay_ms) / 2));
            store_args.extend([
                "--wal-store".into(),
                "s3://zombi-wal/wal".into(),
                "--s3-endpoint".into(),
                format!("http://{proxy}"),
                "--s3-region".into(),
                "us-east-1".into(),
            ]);
        }
        "dir" => store_args.extend(["--wal-store".into(), format!("file://{}", dir.path().join("wal").display())]),
        other => panic!("--store s3 or dir, not {other}"),
    }
    if let Some(interval) = args.interval_ms {
        store_args.extend(["--wal-interval-ms".into(), interval.to_string()]);
    }
    let env = [("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")];
    let (_zombi, bootstrap, http) = start_zombi(&dir.path().join("data"), &store_args, &env);
    println!(
        "zombi write-ahead log bench: store={} added latency={} ms per request, wal-interval-ms={}, {} bytes/record, acks=all",
        args.store,
        args.delay_ms,
        args.interval_ms.map_or("default (250)".to_string(), |i| i.to_string()),
        RECORD_BYTES
    );
    let topic = format!("latency-{}", std::process::id());
    create_topic(&bootstrap, &topic, 16);
    latency(&bootstrap, &topic, 16, args.rate, args.seconds);
    let topic = format!("throughput-{}", std::process::id());
    create_topic(&bootstrap, &topic, 16);
    throughput(&bootstrap, &topic, 16, args.records);
    for partitions in [1, 100, 1000] {
        puts_per_hour(&bootstrap, &http, partitions, args.rate, args.seconds);
    }
}
