//! Starts the real `zombi` binary on free ports with its own data dir, and builds rdkafka clients.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};

pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for anything a test waits on; reaching it is a failure, not a pass.
pub const WAIT_MAX: Duration = Duration::from_secs(60);

/// The broker binary: `ZOMBI_BIN` when set, else the one cargo built. Clones that share one
/// `CARGO_TARGET_DIR` overwrite each other's `target/release/zombi`; a copy named by `ZOMBI_BIN`
/// keeps a test run on the binary of its own tree.
pub fn zombi_bin() -> PathBuf {
    std::env::var_os("ZOMBI_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_zombi")), PathBuf::from)
}

pub struct TestBroker {
    child: Option<Child>,
    pub bootstrap: String,
    pub http: String,
    /// Every Kafka listener, `NAME://HOST:PORT,…`, as the broker printed them.
    pub listeners: String,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl TestBroker {
    /// Starts a broker with a fresh data dir and the given extra flags.
    pub fn start(args: &[&str]) -> TestBroker {
        Self::start_with_env(args, &[])
    }

    /// Starts a broker with a fresh data dir, extra flags and extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> TestBroker {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().to_path_buf();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut broker = TestBroker {
            child: None,
            bootstrap: String::new(),
            http: String::new(),
            listeners: String::new(),
            data_dir,
            _temp: Some(temp),
            args,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        broker.spawn("127.0.0.1:0");
        broker
    }

    fn spawn(&mut self, kafka_listen: &str) {
        let mut child = Command::new(zombi_bin())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--kafka-listen", kafka_listen, "--http-listen", "127.0.0.1:0"])
            .args(&self.args)
            .env("RUST_LOG", std::env::var("ZOMBI_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start zombi");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("zombi listening") {
                    let _ = sender.send(line);
                }
            }
        });
        let line = receiver.recv_timeout(STARTUP_TIMEOUT).expect("zombi did not start");
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|part| part.strip_prefix(name))
                .expect("listening line names its addresses")
                .to_string()
        };
        self.bootstrap = field("kafka=");
        self.http = field("http=");
        self.listeners = field("listeners=");
        self.child = Some(child);
    }

    /// `kill -9`, then start again on the same port and data dir.
    pub fn kill_and_restart(&mut self) {
        self.kill9();
        let address = self.bootstrap.clone();
        self.spawn(&address);
    }

    /// Waits (up to `WAIT_MAX`) for the broker to exit by itself, and returns how it exited.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("a running broker");
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("the broker did not exit within {WAIT_MAX:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address of the listener `name` (`SASL_SSL`).
    pub fn listener(&self, name: &str) -> String {
        let prefix = format!("{name}://");
        self.listeners
            .split(',')
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {name} listener in {}", self.listeners))
            .to_string()
    }

    /// Whether the broker process is still running (it has not exited by itself).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Starts again (after an exit) on the same port and data dir, with other flags and environment.
    pub fn restart_with(&mut self, args: &[&str], env: &[(&str, &str)]) {
        self.kill9();
        self.args = args.iter().map(|s| s.to_string()).collect();
        self.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let address = self.bootstrap.clone();
        self.spawn(&address);
    }

    /// Deletes everything in the data dir (a lost disk); the broker must not be running.
    pub fn wipe_data_dir(&mut self) {
        assert!(self.child.is_none(), "wipe the data dir of a stopped broker");
        std::fs::remove_dir_all(&self.data_dir).expect("wipe data dir");
        std::fs::create_dir_all(&self.data_dir).expect("recreate data dir");
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) the broker process.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("a running broker");
        let status = Command::new("kill").args([signal, &child.id().to_string()]).status().expect("kill");
        assert!(status.success(), "kill {signal}");
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return false };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + WAIT_MAX;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        false
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }

    pub fn producer(&self, extra: &[(&str, &str)]) -> FutureProducer {
        let mut config = self.client_config();
        config.set("message.timeout.ms", "30000").set("linger.ms", "5");
        for (key, value) in extra {
            config.set(*key, *value);
        }
        config.create().expect("producer")
    }

    pub fn consumer(&self) -> BaseConsumer {
        self.client_config()
            .set("group.id", "zombi-tests")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .expect("consumer")
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A consumed record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: rdkafka::Timestamp,
}

impl Received {
    pub fn from_message(message: &BorrowedMessage<'_>) -> Received {
        let headers = message
            .headers()
            .map(|headers| headers.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default();
        Received {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp: message.timestamp(),
        }
    }
}

/// Reads `count` records from the given partitions, from their beginning, with a bounded wait.
pub fn consume(broker: &TestBroker, topic: &str, partitions: &[i32], count: usize) -> Vec<Received> {
    let consumer = broker.consumer();
    let mut list = TopicPartitionList::new();
    for &partition in partitions {
        list.add_partition_offset(topic, partition, Offset::Beginning).expect("assign");
    }
    consumer.assign(&list).expect("assign");
    let mut out = Vec::with_capacity(count);
    let deadline = Instant::now() + WAIT_MAX;
    while out.len() < count {
        assert!(Instant::now() < deadline, "consumed only {} of {count} records of {topic}", out.len());
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => out.push(Received::from_message(&message)),
            Some(Err(error)) => panic!("consume error: {error}"),
            None => {}
        }
    }
    out
}

pub fn unique_topic(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
