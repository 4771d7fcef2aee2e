//! Starts the real `zombi` binary on free ports with its own data dir, and builds rdkafka clients.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
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
    _watched: Watched,
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
            _watched: Watched::new(),
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

/// How long a test may hold a broker. Every wait in a test is bounded by `WAIT_MAX`, so a test
/// past this is stuck in something that never returns (a client library's close, say): the
/// watchdog names it, kills every process the tests started, and ends the run, so that a hang
/// fails CI in minutes instead of holding it to its limit.
const STUCK_AFTER: Duration = Duration::from_secs(600);

/// The tests holding a broker: an id each, with the test's name and when it started one.
fn watched() -> &'static Mutex<BTreeMap<u64, (String, Instant)>> {
    static WATCHED: OnceLock<Mutex<BTreeMap<u64, (String, Instant)>>> = OnceLock::new();
    WATCHED.get_or_init(|| {
        std::thread::spawn(watchdog);
        Mutex::default()
    })
}

/// A test's registration with the watchdog, for as long as it holds a broker.
struct Watched(u64);

impl Watched {
    fn new() -> Watched {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let test = std::thread::current().name().unwrap_or("an unnamed test").to_string();
        watched().lock().unwrap_or_else(|e| e.into_inner()).insert(id, (test, Instant::now()));
        Watched(id)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        watched().lock().unwrap_or_else(|e| e.into_inner()).remove(&self.0);
    }
}

fn watchdog() {
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let stuck = watched()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .find(|(_, started)| started.elapsed() > STUCK_AFTER)
            .map(|(test, _)| test.clone());
        if let Some(test) = stuck {
            eprintln!("watchdog: {test} has held a broker for over {STUCK_AFTER:?}; it is stuck. Ending the run.");
            kill_descendants();
            std::process::exit(101);
        }
    }
}

/// SIGKILL to every process this one started, and theirs (brokers, moto, PostgreSQL, clients),
/// so that none outlives the run holding its ports or its output pipe.
fn kill_descendants() {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // `pid (comm) state ppid …`: the command may hold spaces and parentheses; the fields
        // after its last `)` do not.
        let parent = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
        if let Some(parent) = parent {
            children.entry(parent).or_default().push(pid);
        }
    }
    let mut pending = vec![std::process::id()];
    let mut doomed = Vec::new();
    while let Some(pid) = pending.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            doomed.push(child.to_string());
            pending.push(child);
        }
    }
    if !doomed.is_empty() {
        let _ = Command::new("kill").arg("-9").args(&doomed).status();
    }
}

/// A subscribed group consumer whose drop is bounded. rust-rdkafka's own drop polls until
/// librdkafka reports the consumer closed, without a limit, and librdkafka's close can wait
/// forever (a cooperative rebalance arriving while it closes, confluentinc/librdkafka#4527). This
/// one closes (leaving the group, as a closing consumer does), polls for up to `WAIT_MAX`, and
/// then leaks the handle rather than hang the run; the test has its answer by then.
pub struct Member<C: ConsumerContext + 'static = rdkafka::consumer::DefaultConsumerContext>(Option<BaseConsumer<C>>);

impl<C: ConsumerContext + 'static> Member<C> {
    pub fn new(consumer: BaseConsumer<C>) -> Member<C> {
        Member(Some(consumer))
    }
}

impl<C: ConsumerContext + 'static> std::ops::Deref for Member<C> {
    type Target = BaseConsumer<C>;

    fn deref(&self) -> &BaseConsumer<C> {
        self.0.as_ref().expect("a member is only taken apart by its drop")
    }
}

impl<C: ConsumerContext + 'static> Drop for Member<C> {
    fn drop(&mut self) {
        let Some(consumer) = self.0.take() else { return };
        let deadline = Instant::now() + WAIT_MAX;
        if consumer.close_queue().is_ok() {
            while !consumer.closed() && Instant::now() < deadline {
                let _ = consumer.poll(Duration::from_millis(100));
            }
        }
        if consumer.closed() {
            drop(consumer);
        } else {
            eprintln!("a group consumer did not close within {WAIT_MAX:?}; leaving it behind");
            std::mem::forget(consumer);
        }
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
