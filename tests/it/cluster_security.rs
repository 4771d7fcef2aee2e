//! A secured cluster: several listeners per broker, each registered with its own addresses, and
//! the brokers reaching each other on the inter-broker listener as principals the ACLs know.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use kafka_protocol::messages::CreateAclsRequest;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::cluster::Cluster;
use crate::common::{WAIT_MAX, unique_topic};
use crate::security::{ADMIN, ADMIN_PASSWORD, certificates, sasl, signed_certificate};

const PARTITIONS: i32 = 6;
const READER_GROUP: &str = "secured-cluster-reader";

/// Each partition's leader as Metadata on `config`'s listener answers it, with every broker's
/// port there, once every partition has a live leader.
fn leaders(config: &ClientConfig, topic: &str) -> (BTreeMap<i32, i32>, BTreeMap<i32, u16>) {
    let consumer: BaseConsumer = config.create().expect("client");
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        if let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            let brokers: BTreeMap<i32, u16> = metadata.brokers().iter().map(|b| (b.id(), b.port() as u16)).collect();
            if let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) {
                let leaders: BTreeMap<i32, i32> = found.partitions().iter().map(|p| (p.id(), p.leader())).collect();
                if leaders.len() == PARTITIONS as usize && leaders.values().all(|l| brokers.contains_key(l)) {
                    return (leaders, brokers);
                }
            }
        }
        assert!(Instant::now() < deadline, "partitions of {topic} never all had a live leader");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn port(address: &str) -> u16 {
    address.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("host:port")
}

/// Sends `value` to `partition` and returns its offset or the error code.
async fn send(producer: &FutureProducer, topic: &str, partition: i32, value: &str) -> Result<i64, RDKafkaErrorCode> {
    let record = FutureRecord::<(), _>::to(topic).partition(partition).payload(value.as_bytes());
    match producer.send(record, Duration::from_secs(30)).await {
        Ok(delivery) => Ok(delivery.offset),
        Err((KafkaError::MessageProduction(code), _)) => Err(code),
        Err((other, _)) => panic!("unexpected error {other}"),
    }
}

/// Every partition's records from offset 0, `count` each.
fn read_every_partition(config: &ClientConfig, topic: &str, count: usize) -> BTreeMap<i32, Vec<(i64, String)>> {
    read_partitions(config, topic, &(0..PARTITIONS).collect::<Vec<_>>(), count)
}

/// `count` records from each of `partitions`, from the beginning: (offset, value) per partition.
fn read_partitions(
    config: &ClientConfig,
    topic: &str,
    partitions: &[i32],
    count: usize,
) -> BTreeMap<i32, Vec<(i64, String)>> {
    let consumer: BaseConsumer =
        config.clone().set("group.id", READER_GROUP).set("enable.auto.commit", "false").create().expect("consumer");
    let mut list = TopicPartitionList::new();
    for partition in partitions {
        list.add_partition_offset(topic, *partition, Offset::Beginning).expect("offset");
    }
    consumer.assign(&list).expect("assign");
    let mut read: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    let deadline = Instant::now() + WAIT_MAX;
    while read.values().map(Vec::len).sum::<usize>() < count * partitions.len() {
        assert!(Instant::now() < deadline, "read only {read:?}");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("a record");
            let value = String::from_utf8(message.payload().unwrap_or_default().to_vec()).expect("utf-8");
            read.entry(message.partition()).or_default().push((message.offset(), value));
        }
    }
    read
}

/// Three brokers with an SSL listener (client certificates required) and a SASL_PLAINTEXT one,
/// and ACLs. Each listener's Metadata names every broker at its address on that listener, so a
/// client bootstrapped on one broker reaches every leader through the listener it chose. mTLS
/// and SCRAM clients get what their ACLs allow (a certificate without ACLs is refused), and
/// records posted over HTTP to one broker reach the partitions other brokers lead: forwarded on
/// the SSL inter-broker listener with the brokers' own certificate, whose principal is a super
/// user. A broker whose principal is not a super user refuses to start, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secured_cluster_serves_every_listener_and_forwards_as_its_brokers() {
    let dir = tempfile::tempdir().expect("temp dir");
    certificates(dir.path(), "server");
    signed_certificate(dir.path(), "server", "alice", "/CN=alice", "extendedKeyUsage=clientAuth");
    signed_certificate(dir.path(), "server", "bob", "/CN=bob", "extendedKeyUsage=clientAuth");
    let file = |name: &str| dir.path().join(name).display().to_string();
    let (cert, key, ca) = (file("server.crt"), file("server.key"), file("server-ca.crt"));
    let flags = [
        "--listeners",
        "SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
        "--ssl-cert-file",
        &cert,
        "--ssl-key-file",
        &key,
        "--ssl-ca-file",
        &ca,
        "--ssl-client-auth",
        "required",
        "--authorizer",
        "standard",
        "--bootstrap-admin",
        ADMIN,
        "--super-users",
        "User:CN=localhost",
    ];
    let env = [("ZOMBI_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    let cluster = Cluster::start_with_env(3, &flags, &env);

    // The brokers' certificate names `User:CN=localhost`; without it among the super users, a
    // broker would forward as a principal the others refuse.
    let mut args = cluster.args(4);
    let at = args.iter().position(|a| a == "--super-users").expect("flag") + 1;
    args[at] = "User:CN=someone-else".to_string();
    let stderr = refused_start(&args, &env);
    assert!(stderr.contains("User:CN=localhost") && stderr.contains("--super-users"), "{stderr}");

    let topic = unique_topic("secured-cluster");
    let first = &cluster.brokers[0];
    let mut admin = crate::acls::authenticated(&first.listener("SASL_PLAINTEXT"), ADMIN, ADMIN_PASSWORD);
    assert_eq!(crate::bad_input::create_topic_partitions(&mut admin, &topic, PARTITIONS, &[]), 0);
    let (topic_type, group_type, literal, read, write, allow) = (2, 3, 3, 3, 4, 3);
    let acls = CreateAclsRequest::default().with_creations(vec![
        crate::acls::creation(topic_type, &topic, literal, "User:CN=alice", write, allow),
        crate::acls::creation(topic_type, &topic, literal, "User:CN=alice", read, allow),
        crate::acls::creation(group_type, READER_GROUP, literal, "User:CN=alice", read, allow),
    ]);
    assert!(admin.call(3, &acls).results.iter().all(|r| r.error_code == 0));

    // Each listener's Metadata, asked of broker 1 alone, names every broker on that listener.
    let as_admin = sasl(&first.listener("SASL_PLAINTEXT"), "SASL_PLAINTEXT", "SCRAM-SHA-256", ADMIN, ADMIN_PASSWORD);
    let certificate = |name: &str| {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", first.listener("SSL"))
            .set("security.protocol", "SSL")
            .set("ssl.ca.location", file("server-ca.crt"))
            .set("ssl.certificate.location", file(&format!("{name}.crt")))
            .set("ssl.key.location", file(&format!("{name}.key")))
            .set("message.timeout.ms", "30000");
        config
    };
    let (led, on_sasl) = leaders(&as_admin, &topic);
    let (led_ssl, on_ssl) = leaders(&certificate("alice"), &topic);
    assert_eq!(led, led_ssl);
    let expected = |name: &str| -> BTreeMap<i32, u16> {
        (1..).zip(&cluster.brokers).map(|(node, b)| (node, port(&b.listener(name)))).collect()
    };
    assert_eq!(on_sasl, expected("SASL_PLAINTEXT"));
    assert_eq!(on_ssl, expected("SSL"));
    assert!(led.values().any(|l| *l != 1), "some partitions are led elsewhere than broker 1: {led:?}");

    let alice: FutureProducer = certificate("alice").create().expect("producer");
    let admin_producer: FutureProducer =
        as_admin.clone().set("message.timeout.ms", "30000").create().expect("producer");
    let bob: FutureProducer = certificate("bob").create().expect("producer");
    for partition in 0..PARTITIONS {
        for i in 0..2 {
            assert_eq!(send(&alice, &topic, partition, &format!("alice-{partition}-{i}")).await, Ok(i));
        }
        assert_eq!(send(&admin_producer, &topic, partition, &format!("admin-{partition}")).await, Ok(2));
        assert_eq!(send(&bob, &topic, partition, "bob").await, Err(RDKafkaErrorCode::TopicAuthorizationFailed));
    }

    // HTTP to broker 1 for every partition: the others' are forwarded over SSL as CN=localhost.
    let basic =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN}:{ADMIN_PASSWORD}")));
    let headers = [("Content-Type", "application/json"), ("Authorization", basic.as_str())];
    for partition in 0..PARTITIONS {
        let body = serde_json::json!([{ "value": format!("http-{partition}"), "partition": partition }]).to_string();
        let answer = crate::http_client::request_with(
            &first.http,
            "POST",
            &format!("/events/{topic}"),
            &headers,
            body.as_bytes(),
        );
        assert_eq!(answer.status, 200, "partition {partition}: {}", answer.text());
        assert_eq!(answer.json()["offsets"][0]["offset"], 3, "partition {partition}");
    }

    let read = read_every_partition(&certificate("alice"), &topic, 4);
    for partition in 0..PARTITIONS {
        let values: Vec<String> = ["alice-{p}-0", "alice-{p}-1", "admin-{p}", "http-{p}"]
            .iter()
            .map(|v| v.replace("{p}", &partition.to_string()))
            .collect();
        let expected: Vec<(i64, String)> = (0..).zip(values).collect();
        assert_eq!(read[&partition], expected, "partition {partition}");
    }
}

/// Brokers reach each other on a SASL_PLAINTEXT inter-broker listener, authenticating with
/// SCRAM-SHA-512 as `--inter-broker-sasl-username` (the bootstrap admin, a super user): records
/// posted over HTTP to one broker reach the partitions the others lead (the listener closes any
/// connection that does not authenticate), over one connection kept between the calls. A broker without the password, or whose user is no
/// super user, refuses to start and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_authenticate_to_each_other_on_a_sasl_listener() {
    let flags = [
        "--listeners",
        "SASL_PLAINTEXT://127.0.0.1:0",
        "--authorizer",
        "standard",
        "--bootstrap-admin",
        ADMIN,
        "--inter-broker-sasl-username",
        ADMIN,
    ];
    let env =
        [("ZOMBI_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD), ("ZOMBI_INTER_BROKER_SASL_PASSWORD", ADMIN_PASSWORD)];
    let cluster = Cluster::start_with_env(2, &flags, &env);

    let stderr = refused_start(&cluster.args(3), &env[..1]);
    assert!(stderr.contains("ZOMBI_INTER_BROKER_SASL_PASSWORD"), "{stderr}");
    let mut args = cluster.args(3);
    args.extend(["--super-users".to_string(), "User:someone-else".to_string()]);
    let at = args.iter().position(|a| a == "--bootstrap-admin").expect("flag");
    args.drain(at..at + 2);
    let stderr = refused_start(&args, &env);
    assert!(stderr.contains(&format!("User:{ADMIN}")) && stderr.contains("--super-users"), "{stderr}");

    posts_reach_every_leader_over_one_kept_connection(&cluster, "sasl-inter-broker");
}

/// Runs a broker with `args` and `env` (and no inherited inter-broker password) that must refuse
/// to start; returns what it printed on stderr.
fn refused_start(args: &[String], env: &[(&str, &str)]) -> String {
    let data = tempfile::tempdir().expect("temp dir");
    let output = Command::new(crate::common::zombi_bin())
        .arg("--data-dir")
        .arg(data.path())
        .args(["--http-listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("ZOMBI_INTER_BROKER_SASL_PASSWORD")
        .envs(env.iter().copied())
        .output()
        .expect("run zombi");
    assert!(!output.status.success(), "the broker started: {args:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A topic of `PARTITIONS` on a cluster whose first listener is SASL_PLAINTEXT, created by the
/// bootstrap admin: the admin's SCRAM-SHA-512 client config, each partition's leader once broker 2
/// leads some, and posts to it through a broker's HTTP door as the admin (basic auth).
struct AdminTopic {
    topic: String,
    as_admin: ClientConfig,
    led: BTreeMap<i32, i32>,
    basic: String,
}

impl AdminTopic {
    fn create(cluster: &Cluster, prefix: &str) -> AdminTopic {
        let topic = unique_topic(prefix);
        let listener = cluster.brokers[0].listener("SASL_PLAINTEXT");
        let mut admin = crate::acls::authenticated(&listener, ADMIN, ADMIN_PASSWORD);
        assert_eq!(crate::bad_input::create_topic_partitions(&mut admin, &topic, PARTITIONS, &[]), 0);
        let as_admin = sasl(&listener, "SASL_PLAINTEXT", "SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD);
        // Broker 2 gets its share by hand-over if it joined as the topic was created.
        let deadline = Instant::now() + WAIT_MAX;
        let led = loop {
            let (led, _) = leaders(&as_admin, &topic);
            if led.values().any(|leader| *leader == 2) {
                break led;
            }
            assert!(Instant::now() < deadline, "broker 2 never leads a partition of {topic}: {led:?}");
            std::thread::sleep(Duration::from_millis(200));
        };
        let basic =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN}:{ADMIN_PASSWORD}")));
        AdminTopic { topic, as_admin, led, basic }
    }

    /// Posts `value` to `partition` through the HTTP door at `http`.
    fn post(&self, http: &str, partition: i32, value: &str) -> crate::http_client::HttpResponse {
        let headers = [("Content-Type", "application/json"), ("Authorization", self.basic.as_str())];
        let body = serde_json::json!([{ "value": value, "partition": partition }]).to_string();
        crate::http_client::request_with(http, "POST", &format!("/events/{}", self.topic), &headers, body.as_bytes())
    }
}

/// Records posted over HTTP to broker 1 (as the bootstrap admin, whose SCRAM-SHA-512 client
/// also reads them back) for every partition reach the partitions broker 2 leads: forwarded
/// over the inter-broker listener, whose clients must authenticate, on one connection kept
/// between the calls.
fn posts_reach_every_leader_over_one_kept_connection(cluster: &Cluster, prefix: &str) {
    let posts = AdminTopic::create(cluster, prefix);
    let (as_admin, led) = (&posts.as_admin, &posts.led);
    assert!(led.values().any(|l| *l == 2), "broker 2 leads some partitions: {led:?}");
    let first = &cluster.brokers[0];
    let rounds = 3;
    for round in 0..rounds {
        for partition in 0..PARTITIONS {
            let answer = posts.post(&first.http, partition, &format!("http-{round}-{partition}"));
            assert_eq!(answer.status, 200, "partition {partition}: {}", answer.text());
            assert_eq!(answer.json()["offsets"][0]["offset"], round, "partition {partition}");
        }
    }

    let read = read_every_partition(as_admin, &posts.topic, rounds as usize);
    for partition in 0..PARTITIONS {
        let expected: Vec<(i64, String)> = (0..rounds).map(|r| (r, format!("http-{r}-{partition}"))).collect();
        assert_eq!(read[&partition], expected, "partition {partition}");
    }
    // The forwarded posts went over one authenticated connection, kept between calls: one SCRAM
    // exchange, not one per post.
    let forwarded = rounds as u64 * led.values().filter(|l| **l == 2).count() as u64;
    let metrics = crate::http_client::get(&first.http, "/metrics").text();
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    };
    let opened = counter("zombi_inter_broker_connections_opened_total");
    let reused = counter("zombi_inter_broker_connections_reused_total");
    assert_eq!((opened, reused), (1, forwarded - 1), "{forwarded} forwarded posts");
}

/// A cluster on one SASL_PLAINTEXT listener whose brokers authenticate to each other with the
/// OAUTHBEARER token of `token_url` (subject `broker`, a super user), checked against `jwks` and
/// the test identity provider's issuer; the bootstrap admin uses SCRAM.
fn oauthbearer_cluster_flags(jwks: &std::path::Path, token_url: &str) -> Vec<String> {
    let jwks = jwks.to_str().expect("path");
    [
        "--listeners",
        "SASL_PLAINTEXT://127.0.0.1:0",
        "--sasl-enabled-mechanisms",
        "PLAIN,SCRAM-SHA-512,OAUTHBEARER",
        "--oauthbearer-jwks-file",
        jwks,
        "--oauthbearer-issuer",
        crate::oauthbearer::ISSUER,
        "--authorizer",
        "standard",
        "--bootstrap-admin",
        ADMIN,
        "--super-users",
        "User:broker",
        "--sasl-mechanism-inter-broker-protocol",
        "OAUTHBEARER",
        "--oauthbearer-token-endpoint-url",
        token_url,
    ]
    .map(String::from)
    .to_vec()
}

/// OAUTHBEARER between brokers (`--sasl-mechanism-inter-broker-protocol OAUTHBEARER`): each
/// broker presents the token in the file of `--oauthbearer-token-endpoint-url`, which the others
/// check against the JWKS as they check clients' tokens, and forwards as its subject (a super
/// user). A broker whose token the others would refuse (another issuer), or whose subject is no
/// super user, refuses to start and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_authenticate_to_each_other_with_oauthbearer_tokens() {
    use crate::oauthbearer::{ISSUER, Idp};
    let idp = Idp::new();
    let dir = tempfile::tempdir().expect("dir");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, idp.jwks().to_string()).expect("jwks");
    let token_file = |name: &str, subject: &str, issuer: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{}\n", idp.token(subject, issuer).0)).expect("token");
        format!("file://{}", path.display())
    };
    let token = token_file("broker.jwt", "broker", ISSUER);
    let flags = oauthbearer_cluster_flags(&jwks, &token);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let env = [("ZOMBI_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    let cluster = Cluster::start_with_env(2, &flags, &env);

    let refused = |token: &str, super_user: &str| {
        let mut args = cluster.args(3);
        let at = args.iter().position(|a| a.starts_with("file://") && a.ends_with(".jwt")).expect("token flag");
        args[at] = token.to_string();
        let at = args.iter().position(|a| a == "User:broker").expect("super users");
        args[at] = super_user.to_string();
        refused_start(&args, &env)
    };
    let stderr = refused(&token_file("other.jwt", "broker", "https://other.test"), "User:broker");
    assert!(stderr.contains("this broker's token") && stderr.contains("issuer"), "{stderr}");
    let stderr = refused(&token, "User:someone-else");
    assert!(stderr.contains("User:broker") && stderr.contains("--super-users"), "{stderr}");

    posts_reach_every_leader_over_one_kept_connection(&cluster, "oauth-inter-broker");
}

/// A broker's OAUTHBEARER token is renewed by rewriting its file: after the identity provider
/// rotates its key (the JWKS file now holds only the new key, so the old token is refused), the
/// brokers forward again once their token files hold tokens signed with the new key, without a
/// restart. `--connections-max-reauth-ms 3000` keeps sessions shorter than the pool's margin, so
/// every forward authenticates anew with the file as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_token_file_is_used_without_a_restart() {
    use crate::oauthbearer::{ISSUER, Idp};
    let (old, new) = (Idp::with_kid("2026-11"), Idp::with_kid("2026-12"));
    let dir = tempfile::tempdir().expect("dir");
    let jwks = dir.path().join("jwks.json");
    let both = serde_json::json!({"keys": [old.jwks()["keys"][0], new.jwks()["keys"][0]]});
    std::fs::write(&jwks, both.to_string()).expect("jwks");
    let token = dir.path().join("broker.jwt");
    std::fs::write(&token, old.token("broker", ISSUER).0).expect("token");
    let mut flags = oauthbearer_cluster_flags(&jwks, &format!("file://{}", token.display()));
    flags.extend(["--connections-max-reauth-ms".to_string(), "3000".to_string()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = Cluster::start_with_env(2, &flags, &[("ZOMBI_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)]);
    let posts = AdminTopic::create(&cluster, "oauth-renewal");
    let elsewhere = *posts.led.iter().find(|(_, leader)| **leader == 2).expect("broker 2 leads a partition").0;
    let post = |value: &str| posts.post(&cluster.brokers[0].http, elsewhere, value);
    let mut acknowledged = Vec::new();
    let answer = post("before");
    assert_eq!(answer.status, 200, "{}", answer.text());
    acknowledged.push("before".to_string());

    // The old key is withdrawn: the brokers' old tokens are refused from now on (once the JWKS
    // file is read again; posts acknowledged until then are kept).
    std::fs::write(&jwks, new.jwks().to_string()).expect("jwks");
    let refused_at = Instant::now() + WAIT_MAX;
    for attempt in 0.. {
        let value = format!("old-key-{attempt}");
        if post(&value).status != 200 {
            break;
        }
        acknowledged.push(value);
        assert!(Instant::now() < refused_at, "a token signed with a withdrawn key is still taken");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The renewed token: forwarding works again, with the same brokers.
    std::fs::write(&token, new.token("broker", ISSUER).0).expect("token");
    let renewed_at = Instant::now() + WAIT_MAX;
    loop {
        let answer = post("after");
        if answer.status == 200 {
            acknowledged.push("after".to_string());
            break;
        }
        assert!(Instant::now() < renewed_at, "the renewed token is not used: {}", answer.text());
        std::thread::sleep(Duration::from_millis(200));
    }

    // Exactly the acknowledged posts, in order, on the partition broker 2 leads.
    let read = read_partitions(&posts.as_admin, &posts.topic, &[elsewhere], acknowledged.len());
    let values: Vec<&String> = read[&elsewhere].iter().map(|(_, value)| value).collect();
    assert_eq!(values, acknowledged.iter().collect::<Vec<_>>());
}
