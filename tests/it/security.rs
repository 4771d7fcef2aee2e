//! Listeners, TLS and SASL (issue 18), with real clients: rdkafka over SASL_PLAINTEXT, SSL and
//! SASL_SSL with PLAIN and both SCRAM mechanisms, confluent-kafka's AdminClient managing SCRAM
//! users, and raw requests for the exact error codes and for what a client sends before it
//! authenticates.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::common::{TestBroker, unique_topic};
use crate::raw::Raw;

pub(crate) const ADMIN: &str = "admin";
pub(crate) const ADMIN_PASSWORD: &str = "admin-secret";

/// A broker with a PLAINTEXT and a SASL_PLAINTEXT listener and the bootstrap admin.
pub(crate) fn secured(listeners: &str, extra: &[&str]) -> TestBroker {
    let mut args = vec!["--listeners", listeners, "--bootstrap-admin", ADMIN];
    args.extend_from_slice(extra);
    TestBroker::start_with_env(&args, &[("ZOMBI_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)])
}

pub(crate) fn sasl(address: &str, protocol: &str, mechanism: &str, user: &str, password: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", address)
        .set("security.protocol", protocol)
        .set("sasl.mechanism", mechanism)
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set("message.timeout.ms", "30000");
    config
}

/// Produces `values` to partition 0, one at a time, and returns their offsets.
pub(crate) async fn produce(config: &ClientConfig, topic: &str, values: &[String]) -> Vec<i64> {
    let producer: FutureProducer = config.create().expect("producer");
    let mut offsets = Vec::new();
    for value in values {
        let record = FutureRecord::<(), _>::to(topic).partition(0).payload(value.as_bytes());
        let delivered = producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).expect("delivered");
        offsets.push(delivered.offset);
    }
    offsets
}

/// Reads `count` records of partition 0 from the start.
fn consume(config: &ClientConfig, topic: &str, count: usize) -> Vec<(i64, String)> {
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", "security-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning).expect("offset");
    consumer.assign(&list).expect("assign");
    let deadline = std::time::Instant::now() + crate::common::WAIT_MAX;
    let mut read = Vec::new();
    while read.len() < count {
        assert!(std::time::Instant::now() < deadline, "read {} of {count}", read.len());
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume");
            let value = String::from_utf8(message.payload().unwrap_or_default().to_vec()).expect("utf-8");
            read.push((message.offset(), value));
        }
    }
    read
}

/// PLAIN and both SCRAM mechanisms authenticate the bootstrap admin; records written through
/// each are read back exactly; Metadata on the SASL listener advertises the SASL listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_scram_clients_produce_and_consume_exactly() {
    let broker = secured("PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0", &[]);
    let address = broker.listener("SASL_PLAINTEXT");
    let topic = unique_topic("sasl");
    let mut expected = Vec::new();
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let config = sasl(&address, "SASL_PLAINTEXT", mechanism, ADMIN, ADMIN_PASSWORD);
        let values: Vec<String> = (0..5).map(|i| format!("{mechanism}-{i}")).collect();
        let offsets = produce(&config, &topic, &values).await;
        let first = expected.len() as i64;
        assert_eq!(offsets, (first..first + 5).collect::<Vec<_>>(), "{mechanism}: dense offsets");
        expected.extend(offsets.into_iter().zip(values));
    }
    let config = sasl(&address, "SASL_PLAINTEXT", "SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD);
    assert_eq!(consume(&config, &topic, expected.len()), expected);
    let consumer: BaseConsumer = config.create().expect("consumer");
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).expect("metadata");
    let port = address.rsplit_once(':').expect("port").1;
    assert_eq!(metadata.brokers()[0].port().to_string(), port, "the SASL listener's address is advertised on it");
    // The PLAINTEXT listener still serves, anonymously, and advertises itself.
    let plain: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &broker.bootstrap).create().expect("c");
    let metadata = plain.fetch_metadata(Some(&topic), Duration::from_secs(10)).expect("metadata");
    assert_eq!(metadata.brokers()[0].port().to_string(), broker.bootstrap.rsplit_once(':').expect("port").1);
}

pub(crate) fn handshake(raw: &mut Raw, mechanism: &str) -> (i16, Vec<String>) {
    let request = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.to_string()));
    let response = raw.call(1, &request);
    (response.error_code, response.mechanisms.iter().map(|m| m.to_string()).collect())
}

pub(crate) fn authenticate(raw: &mut Raw, token: &[u8]) -> (i16, Option<String>) {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token));
    let response = raw.call(2, &request);
    (response.error_code, response.error_message.map(|m| m.to_string()))
}

/// The exact answers: ApiVersions lists the SASL APIs; any other request before authentication
/// closes the connection unanswered; an unknown mechanism gets UNSUPPORTED_SASL_MECHANISM with
/// the enabled list; a wrong password SASL_AUTHENTICATION_FAILED and the end of the connection;
/// the right one, then Metadata, is answered.
#[test]
fn sasl_requests_get_kafkas_error_codes_and_nothing_is_served_before_authentication() {
    let broker = secured("SASL_PLAINTEXT://127.0.0.1:0", &["--sasl-enabled-mechanisms", "PLAIN,SCRAM-SHA-512"]);
    let address = broker.listener("SASL_PLAINTEXT");

    let mut raw = Raw::connect(&address);
    let versions = raw.call(3, &ApiVersionsRequest::default());
    let keys: Vec<i16> = versions.api_keys.iter().map(|k| k.api_key).collect();
    assert!(keys.contains(&(ApiKey::SaslHandshake as i16)) && keys.contains(&(ApiKey::SaslAuthenticate as i16)));
    raw.send(12, &MetadataRequest::default());
    assert_eq!(raw.read_frame(), None, "no answer, and the connection closed, before authentication");

    // A stranger cannot make the broker buffer a large frame (Kafka's sasl.server.max.receive.size).
    let mut raw = Raw::connect(&address);
    raw.send_bytes(&(1_048_576_i32).to_be_bytes());
    raw.send_bytes(&[0; 1024]);
    assert!(raw.closed_by_broker(), "a 1 MiB frame before authentication closes the connection");

    let mut raw = Raw::connect(&address);
    let (code, offered) = handshake(&mut raw, "GSSAPI");
    assert_eq!(code, 33, "UNSUPPORTED_SASL_MECHANISM");
    assert_eq!(offered, vec!["PLAIN".to_string(), "SCRAM-SHA-512".to_string()]);
    assert!(raw.closed_by_broker());

    let mut raw = Raw::connect(&address);
    assert_eq!(handshake(&mut raw, "PLAIN").0, 0);
    let (code, message) = authenticate(&mut raw, format!("\0{ADMIN}\0wrong").as_bytes());
    assert_eq!(code, 58, "SASL_AUTHENTICATION_FAILED");
    assert!(message.unwrap_or_default().contains("Authentication failed"));
    assert!(raw.closed_by_broker());

    let mut raw = Raw::connect(&address);
    assert_eq!(handshake(&mut raw, "PLAIN").0, 0);
    assert_eq!(authenticate(&mut raw, format!("\0{ADMIN}\0{ADMIN_PASSWORD}").as_bytes()).0, 0);
    let metadata = raw.call(12, &MetadataRequest::default());
    assert_eq!(metadata.brokers.len(), 1);
    let metrics = crate::http_client::get(&broker.http, "/metrics").text();
    let count = |series: &str| -> f64 {
        metrics.lines().find_map(|l| l.strip_prefix(series)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
    };
    assert_eq!(count("zombi_sasl_authentications_total{mechanism=\"PLAIN\",result=\"failure\"}"), 1.0, "{metrics}");
    assert_eq!(count("zombi_sasl_authentications_total{mechanism=\"PLAIN\",result=\"success\"}"), 1.0);

    // A real client with a wrong password or an unknown user gets nowhere.
    for (mechanism, user, password) in [("SCRAM-SHA-512", ADMIN, "wrong"), ("PLAIN", "nobody", "x")] {
        let consumer: BaseConsumer = sasl(&address, "SASL_PLAINTEXT", mechanism, user, password)
            .set("socket.timeout.ms", "5000")
            .create()
            .expect("consumer");
        assert!(consumer.fetch_metadata(None, Duration::from_secs(5)).is_err(), "{mechanism} {user} was let in");
    }
}

/// SaslHandshake is offered from v0 (librdkafka before 2.10 authenticates only then). After a v0
/// handshake, as in Kafka 3, the tokens travel as bare size-prefixed frames: the right PLAIN
/// token gets an empty bare frame and the connection is served; a wrong one closes it unanswered.
#[test]
fn a_v0_handshake_takes_bare_sasl_tokens() {
    let broker = secured("SASL_PLAINTEXT://127.0.0.1:0", &["--sasl-enabled-mechanisms", "PLAIN"]);
    let address = broker.listener("SASL_PLAINTEXT");
    let bare = |raw: &mut Raw, token: &[u8]| {
        raw.send_bytes(&(token.len() as i32).to_be_bytes());
        raw.send_bytes(token);
    };
    let v0_handshake = |raw: &mut Raw| {
        let request = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        let response = raw.call(0, &request);
        (response.error_code, response.mechanisms.iter().map(|m| m.to_string()).collect::<Vec<_>>())
    };

    let mut raw = Raw::connect(&address);
    let versions = raw.call(3, &ApiVersionsRequest::default());
    let handshake = versions.api_keys.iter().find(|k| k.api_key == ApiKey::SaslHandshake as i16).expect("listed");
    assert_eq!((handshake.min_version, handshake.max_version), (0, 1));
    assert_eq!(v0_handshake(&mut raw), (0, vec!["PLAIN".to_string()]));
    bare(&mut raw, format!("\0{ADMIN}\0{ADMIN_PASSWORD}").as_bytes());
    assert_eq!(raw.read_frame(), Some(Bytes::new()), "PLAIN's empty reply, as a bare frame");
    let metadata = raw.call(12, &MetadataRequest::default());
    assert_eq!(metadata.brokers.len(), 1);

    let mut raw = Raw::connect(&address);
    assert_eq!(v0_handshake(&mut raw).0, 0);
    bare(&mut raw, format!("\0{ADMIN}\0wrong").as_bytes());
    assert!(raw.closed_by_broker(), "a wrong bare token closes the connection");
}

/// The Python interpreter with confluent-kafka that scripts/test.sh installs.
pub(crate) fn python() -> String {
    std::env::var("ZOMBI_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        format!("{home}/.cache/zombi/venv/bin/python")
    })
}

pub(crate) fn scram_admin(broker: &TestBroker, args: &[&str]) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/compat/scram_admin.py");
    let output = Command::new(python())
        .arg(script)
        .args([broker.listener("SASL_PLAINTEXT").as_str(), ADMIN, ADMIN_PASSWORD])
        .args(args)
        .output()
        .expect("run scram_admin.py");
    assert!(output.status.success(), "scram_admin.py: {}", String::from_utf8_lossy(&output.stderr));
    let line = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn authenticates(broker: &TestBroker, mechanism: &str, user: &str, password: &str) -> bool {
    let consumer: BaseConsumer = sasl(&broker.listener("SASL_PLAINTEXT"), "SASL_PLAINTEXT", mechanism, user, password)
        .set("socket.timeout.ms", "5000")
        .create()
        .expect("consumer");
    consumer.fetch_metadata(None, Duration::from_secs(5)).is_ok()
}

/// A broker with a SASL_SSL and an SSL listener (client certificates requested) on a server
/// certificate made in `dir`, and a client certificate `client` of the same CA beside it.
fn sasl_ssl_and_mtls(dir: &Path, client: &str) -> TestBroker {
    certificates(dir, "server");
    client_certificate(dir, "server", client);
    let file = |name: &str| dir.join(name).display().to_string();
    let (cert, key, ca) = (file("server.crt"), file("server.key"), file("server-ca.crt"));
    secured(
        "SASL_SSL://127.0.0.1:0,SSL://127.0.0.1:0",
        &["--ssl-cert-file", &cert, "--ssl-key-file", &key, "--ssl-ca-file", &ca, "--ssl-client-auth", "requested"],
    )
}

/// kafka-python and confluent-kafka, each configured the usual way, authenticate over SASL_SSL
/// with PLAIN and both SCRAM mechanisms, and over SSL with a client certificate; every record
/// is read back at its offset.
#[test]
fn kafka_python_and_confluent_kafka_authenticate_with_every_mechanism() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = sasl_ssl_and_mtls(dir.path(), "py-client");
    let file = |name: &str| dir.path().join(name).display().to_string();
    let ca = file("server-ca.crt");
    let topic = unique_topic("sasl-py");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/compat/sasl_clients.py");
    let (client_cert, client_key) = (file("py-client.crt"), file("py-client.key"));
    let output = Command::new(python())
        .args([script, &broker.listener("SASL_SSL"), &topic, ADMIN, ADMIN_PASSWORD, &ca])
        .args([&broker.listener("SSL"), &client_cert, &client_key])
        .output()
        .expect("run sasl_clients.py");
    assert!(output.status.success(), "sasl_clients.py: {}", String::from_utf8_lossy(&output.stderr));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let mut expected = Vec::new();
    let sasl = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].map(|m| ["kafka-python", "confluent-kafka"].map(|c| (c, m)));
    let order = [
        sasl.iter().map(|pair| pair[0]).collect::<Vec<_>>(),
        sasl.iter().map(|pair| pair[1]).collect(),
        vec![("kafka-python", "mTLS"), ("confluent-kafka", "mTLS")],
    ]
    .concat();
    for (client, mechanism) in order {
        let first = expected.len() as i64;
        assert_eq!(result[client][mechanism], serde_json::json!([first, first + 1, first + 2]), "{client} {mechanism}");
        for i in 0..3 {
            expected.push(serde_json::json!([first + i, format!("{client}-{mechanism}-{i}")]));
        }
    }
    assert_eq!(result["read"], serde_json::Value::Array(expected));
}

/// confluent-kafka's AdminClient creates, describes and deletes a SCRAM user; the user
/// authenticates with SCRAM and with PLAIN (checked against the same credential), survives
/// kill -9, and is refused once deleted. Bad iteration counts get UNACCEPTABLE_CREDENTIAL.
#[test]
fn scram_users_are_managed_by_the_admin_api_and_survive_kill_9() {
    let mut broker = secured("PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0", &[]);
    let created = scram_admin(&broker, &["upsert", "alice", "alice-pw", "SCRAM-SHA-256", "8192"]);
    assert_eq!(created["ok"], true, "{created}");
    let described = scram_admin(&broker, &["describe", "alice"]);
    assert_eq!(described["users"]["alice"], serde_json::json!([["SCRAM_SHA_256", 8192]]), "{described}");
    let all = scram_admin(&broker, &["describe"]);
    assert_eq!(
        all["users"][ADMIN],
        serde_json::json!([["SCRAM_SHA_256", 4096], ["SCRAM_SHA_512", 4096]]),
        "the bootstrap admin: {all}"
    );
    let refused = scram_admin(&broker, &["upsert", "bob", "bob-pw", "SCRAM-SHA-512", "1000"]);
    assert_eq!(refused["error"], "UNACCEPTABLE_CREDENTIAL", "{refused}");

    assert!(authenticates(&broker, "SCRAM-SHA-256", "alice", "alice-pw"));
    assert!(authenticates(&broker, "PLAIN", "alice", "alice-pw"));
    assert!(!authenticates(&broker, "SCRAM-SHA-512", "alice", "alice-pw"), "alice has no SCRAM-SHA-512 credential");
    assert!(!authenticates(&broker, "SCRAM-SHA-256", "alice", "wrong"));

    broker.kill_and_restart();
    assert!(authenticates(&broker, "SCRAM-SHA-256", "alice", "alice-pw"), "credentials survive kill -9");

    let deleted = scram_admin(&broker, &["delete", "alice", "SCRAM-SHA-256"]);
    assert_eq!(deleted["ok"], true, "{deleted}");
    let missing = scram_admin(&broker, &["describe", "alice"]);
    assert_eq!(missing["error"], "RESOURCE_NOT_FOUND", "{missing}");
    assert!(!authenticates(&broker, "SCRAM-SHA-256", "alice", "alice-pw"));
    assert!(!authenticates(&broker, "PLAIN", "alice", "alice-pw"));
}

/// `--http-auth basic`: the events API answers 401 with a challenge without credentials or with
/// a wrong password, and serves the SCRAM users with theirs; probes and `/metrics` stay open.
#[test]
fn http_basic_auth_takes_the_scram_users() {
    use crate::http_client::{get, request_with};
    use base64::Engine;
    let broker = secured("SASL_PLAINTEXT://127.0.0.1:0", &["--http-auth", "basic"]);
    let topic = unique_topic("http-auth");
    let path = format!("/events/{topic}");
    let basic = |user: &str, password: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    };
    let post = |authorization: Option<&str>| {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(value) = authorization {
            headers.push(("Authorization", value));
        }
        request_with(&broker.http, "POST", &path, &headers, br#"{"value": "behind basic auth"}"#)
    };
    let anonymous = post(None);
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    assert_eq!(anonymous.header("www-authenticate"), Some("Basic realm=\"zombi\", charset=\"UTF-8\""));
    assert_eq!(post(Some(&basic(ADMIN, "wrong"))).status, 401);
    assert_eq!(post(Some(&basic("nobody", ADMIN_PASSWORD))).status, 401);
    let written = post(Some(&basic(ADMIN, ADMIN_PASSWORD)));
    assert_eq!(written.status, 200, "{}", written.text());
    let authorization = basic(ADMIN, ADMIN_PASSWORD);
    let read =
        request_with(&broker.http, "GET", &format!("{path}?offset=0"), &[("Authorization", &authorization)], b"");
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.json()["records"][0]["value"], "behind basic auth");
    assert_eq!(get(&broker.http, &format!("{path}?offset=0")).status, 401, "reads need credentials too");
    assert_eq!(get(&broker.http, "/health/live").status, 200);
    assert_eq!(get(&broker.http, "/metrics").status, 200);
}

/// `--http-metrics-auth`: `/metrics` needs credentials (401 without), and with an authorizer
/// DESCRIBE on the cluster (403 for a user without, 200 for the admin); `/health/live` stays
/// open.
#[test]
fn metrics_can_be_put_behind_authentication() {
    use crate::http_client::{get, request_with};
    use base64::Engine;
    let broker = secured("SASL_PLAINTEXT://127.0.0.1:0", &["--authorizer", "standard", "--http-metrics-auth"]);
    crate::acls::user(&broker, "carol");
    let basic = |user: &str, password: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    };
    let scrape = |user: &str, password: &str| {
        request_with(&broker.http, "GET", "/metrics", &[("Authorization", &basic(user, password))], b"")
    };
    assert_eq!(get(&broker.http, "/metrics").status, 401);
    assert_eq!(scrape("carol", "carol-pw").status, 403);
    let scraped = scrape(ADMIN, ADMIN_PASSWORD);
    assert_eq!(scraped.status, 200);
    assert!(scraped.text().contains("kafka_network_requestmetrics_requests_total"));
    assert_eq!(get(&broker.http, "/health/live").status, 200);
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made with openssl.
pub(crate) fn certificates(dir: &Path, name: &str) {
    let (ca_key, ca_crt, subject) = (format!("{name}-ca.key"), format!("{name}-ca.crt"), format!("/CN={name}-ca"));
    let ca = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &ca_key, "-out", &ca_crt];
    openssl(dir, &[&ca[..], &["-days", "2", "-subj", &subject]].concat());
    signed_certificate(dir, name, name, "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost");
}

/// A client certificate for `name`, signed by the CA of `certificates(dir, ca)`.
fn client_certificate(dir: &Path, ca: &str, name: &str) {
    signed_certificate(dir, ca, name, &format!("/CN={name}"), "extendedKeyUsage=clientAuth");
}

/// `name.key` and `name.crt` with `subject` and the X.509v3 `extension`, signed by `ca`'s CA.
pub(crate) fn signed_certificate(dir: &Path, ca: &str, name: &str, subject: &str, extension: &str) {
    let extensions = format!("{name}.ext");
    std::fs::write(dir.join(&extensions), format!("{extension}\n")).expect("extensions file");
    let (key, csr, crt) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"));
    let (ca_crt, ca_key) = (format!("{ca}-ca.crt"), format!("{ca}-ca.key"));
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject]);
    let sign = ["x509", "-req", "-in", &csr, "-CA", &ca_crt, "-CAkey", &ca_key, "-CAcreateserial", "-out", &crt];
    openssl(dir, &[&sign[..], &["-days", "2", "-extfile", &extensions]].concat());
}

/// With `--ssl-client-auth required`, a client without a certificate is refused and one with a
/// certificate of the CA is served; a new certificate written over the files is used for new
/// connections without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_and_new_certificates_are_picked_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    certificates(dir.path(), "server");
    certificates(dir.path(), "renewed");
    client_certificate(dir.path(), "server", "client");
    let file = |name: &str| dir.path().join(name).display().to_string();
    // The broker reads live.crt and live.key, which start as the server's.
    std::fs::copy(file("server.crt"), file("live.crt")).expect("copy");
    std::fs::copy(file("server.key"), file("live.key")).expect("copy");
    let (cert, key, ca) = (file("live.crt"), file("live.key"), file("server-ca.crt"));
    let broker = secured(
        "SSL://127.0.0.1:0",
        &["--ssl-cert-file", &cert, "--ssl-key-file", &key, "--ssl-ca-file", &ca, "--ssl-client-auth", "required"],
    );
    let client = |trusted_ca: &str, certificate: bool| {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", broker.listener("SSL"))
            .set("security.protocol", "SSL")
            .set("ssl.ca.location", file(trusted_ca))
            .set("message.timeout.ms", "30000");
        if certificate {
            config.set("ssl.certificate.location", file("client.crt")).set("ssl.key.location", file("client.key"));
        }
        config
    };
    let anonymous: BaseConsumer = client("server-ca.crt", false).create().expect("consumer");
    assert!(anonymous.fetch_metadata(None, Duration::from_secs(5)).is_err(), "served without a client certificate");
    let topic = unique_topic("mtls");
    let values: Vec<String> = (0..3).map(|i| format!("mtls-{i}")).collect();
    assert_eq!(produce(&client("server-ca.crt", true), &topic, &values).await, vec![0, 1, 2]);

    // Renewal: another certificate (of another CA) written over the files.
    std::fs::copy(file("renewed.crt"), file("live.crt")).expect("copy");
    std::fs::copy(file("renewed.key"), file("live.key")).expect("copy");
    let deadline = std::time::Instant::now() + crate::common::WAIT_MAX;
    loop {
        let renewed: BaseConsumer = client("renewed-ca.crt", true).create().expect("consumer");
        if renewed.fetch_metadata(None, Duration::from_secs(5)).is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the renewed certificate was never served");
    }
    let expected: Vec<(i64, String)> = (0..).zip(values).collect();
    assert_eq!(consume(&client("renewed-ca.crt", true), &topic, 3), expected);
}

/// SSL and SASL_SSL listeners (rustls) serve rdkafka clients that trust the CA, byte for byte;
/// a client trusting another CA is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listeners_serve_clients_that_trust_the_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    certificates(dir.path(), "server");
    certificates(dir.path(), "other");
    let file = |name: &str| dir.path().join(name).display().to_string();
    let (cert, key) = (file("server.crt"), file("server.key"));
    let broker =
        secured("SSL://127.0.0.1:0,SASL_SSL://127.0.0.1:0", &["--ssl-cert-file", &cert, "--ssl-key-file", &key]);
    let topic = unique_topic("tls");
    let mut ssl = ClientConfig::new();
    ssl.set("bootstrap.servers", broker.listener("SSL"))
        .set("security.protocol", "SSL")
        .set("ssl.ca.location", file("server-ca.crt"));
    let values: Vec<String> = (0..5).map(|i| format!("over-tls-{i}")).collect();
    assert_eq!(produce(&ssl, &topic, &values).await, vec![0, 1, 2, 3, 4]);
    let mut sasl_ssl = sasl(&broker.listener("SASL_SSL"), "SASL_SSL", "SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD);
    sasl_ssl.set("ssl.ca.location", file("server-ca.crt"));
    let more: Vec<String> = (0..5).map(|i| format!("over-sasl-ssl-{i}")).collect();
    assert_eq!(produce(&sasl_ssl, &topic, &more).await, vec![5, 6, 7, 8, 9]);
    let expected: Vec<(i64, String)> = (0..).zip(values.into_iter().chain(more)).collect();
    assert_eq!(consume(&sasl_ssl, &topic, 10), expected);
    assert_eq!(consume(&ssl, &topic, 10), expected);

    let distrusting: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.listener("SSL"))
        .set("security.protocol", "SSL")
        .set("ssl.ca.location", file("other-ca.crt"))
        .create()
        .expect("consumer");
    assert!(distrusting.fetch_metadata(None, Duration::from_secs(5)).is_err(), "a client of another CA got in");
}

/// On an SSL listener a client certificate names the principal through
/// `--ssl-principal-mapping-rules`, and ACLs decide by it: alice's certificate
/// (`CN=alice,OU=eng,O=acme`) maps to `User:alice` and gets what her ACLs allow; bob's, which no
/// rule but DEFAULT maps, is `User:CN=Bob,O=other` (RFC 2253, the last RDN first) and may write
/// only once an ACL names that principal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_name_principals_through_the_mapping_rules() {
    use kafka_protocol::messages::CreateAclsRequest;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    let dir = tempfile::tempdir().expect("temp dir");
    certificates(dir.path(), "server");
    signed_certificate(dir.path(), "server", "alice", "/O=acme/OU=eng/CN=alice", "extendedKeyUsage=clientAuth");
    signed_certificate(dir.path(), "server", "bob", "/O=other/CN=Bob", "extendedKeyUsage=clientAuth");
    let file = |name: &str| dir.path().join(name).display().to_string();
    let (cert, key, ca) = (file("server.crt"), file("server.key"), file("server-ca.crt"));
    let broker = secured(
        "SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
        &[
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
            "--ssl-principal-mapping-rules",
            "RULE:^CN=([^,]+),OU=eng,O=acme$/$1/L,DEFAULT",
        ],
    );
    let topic = unique_topic("mtls-principal");
    let mut admin = crate::acls::authenticated(&broker.listener("SASL_PLAINTEXT"), ADMIN, ADMIN_PASSWORD);
    assert_eq!(crate::bad_input::create_topic_raw(&mut admin, &topic, &[]), 0);
    let (topic_type, group_type, literal, read, write, allow) = (2, 3, 3, 3, 4, 3);
    let grant = |principal: &str, kind: i8, name: &str, operation: i8| {
        crate::acls::creation(kind, name, literal, principal, operation, allow)
    };
    let acls = CreateAclsRequest::default().with_creations(vec![
        grant("User:alice", topic_type, &topic, write),
        grant("User:alice", topic_type, &topic, read),
        grant("User:alice", group_type, "security-reader", read),
    ]);
    assert!(admin.call(3, &acls).results.iter().all(|r| r.error_code == 0));

    let client = |name: &str| {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", broker.listener("SSL"))
            .set("security.protocol", "SSL")
            .set("ssl.ca.location", file("server-ca.crt"))
            .set("ssl.certificate.location", file(&format!("{name}.crt")))
            .set("ssl.key.location", file(&format!("{name}.key")))
            .set("message.timeout.ms", "30000");
        config
    };
    let values: Vec<String> = (0..2).map(|i| format!("from-alice-{i}")).collect();
    assert_eq!(produce(&client("alice"), &topic, &values).await, vec![0, 1]);

    let bob: FutureProducer = client("bob").create().expect("producer");
    let refused =
        bob.send(FutureRecord::<(), _>::to(&topic).partition(0).payload("from-bob"), Duration::from_secs(30)).await;
    assert!(
        matches!(refused, Err((KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed), _))),
        "{refused:?}"
    );
    let acls =
        CreateAclsRequest::default().with_creations(vec![grant("User:CN=Bob,O=other", topic_type, &topic, write)]);
    assert!(admin.call(3, &acls).results.iter().all(|r| r.error_code == 0));
    let more = vec!["from-bob".to_string()];
    assert_eq!(produce(&client("bob"), &topic, &more).await, vec![2]);
    let expected: Vec<(i64, String)> = (0..).zip(values.into_iter().chain(more)).collect();
    assert_eq!(consume(&client("alice"), &topic, 3), expected);
}

/// `--http-tls`: the HTTP listener serves HTTPS with the Kafka listeners' certificate. A client
/// trusting the CA (Python's urllib) writes a record and reads it back over it; a plain HTTP
/// request and a client trusting another CA get nothing.
#[test]
fn the_http_listener_serves_https() {
    let dir = tempfile::tempdir().expect("temp dir");
    certificates(dir.path(), "server");
    certificates(dir.path(), "other");
    let file = |name: &str| dir.path().join(name).display().to_string();
    let (cert, key) = (file("server.crt"), file("server.key"));
    let broker = TestBroker::start(&["--ssl-cert-file", &cert, "--ssl-key-file", &key, "--http-tls"]);
    let topic = unique_topic("https");
    let script = r#"
import json, ssl, sys, urllib.request
scheme, address, ca, topic = sys.argv[1:5]
context = ssl.create_default_context(cafile=ca)
base = f"{scheme}://{address}/events/{topic}"
try:
    post = urllib.request.Request(base, data=json.dumps({"value": "over https"}).encode(),
                                  headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(post, context=context, timeout=10).read()
    read = json.load(urllib.request.urlopen(base + "?offset=0", context=context, timeout=10))
    print(json.dumps([[r["offset"], r["value"]] for r in read["records"]]))
except Exception as error:
    print("refused", type(error).__name__)
"#;
    let run = |scheme: &str, ca: &str| {
        let output = Command::new(python())
            .args(["-c", script, scheme, &broker.http, &file(ca), &topic])
            .output()
            .expect("python");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    assert_eq!(run("https", "server-ca.crt"), r#"[[0, "over https"]]"#);
    assert!(run("http", "server-ca.crt").starts_with("refused"), "plain HTTP on the HTTPS listener");
    assert!(run("https", "other-ca.crt").starts_with("refused"), "a client of another CA");
}

/// KIP-368 with `--connections-max-reauth-ms`: SaslAuthenticate answers the session lifetime; a
/// client that does not re-authenticate is served until it passes and then closed; librdkafka
/// re-authenticates on its open connections and keeps producing, every offset in order (more
/// successful authentications than connections opened).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_and_clients_re_authenticate() {
    use crate::http_limits::metric;
    use kafka_protocol::messages::{MetadataRequest, SaslAuthenticateRequest};
    let broker = secured("SASL_PLAINTEXT://127.0.0.1:0", &["--connections-max-reauth-ms", "1500"]);
    let address = broker.listener("SASL_PLAINTEXT");
    let mut raw = Raw::connect(&address);
    assert_eq!(handshake(&mut raw, "PLAIN").0, 0);
    let token = Bytes::from(format!("\0{ADMIN}\0{ADMIN_PASSWORD}"));
    let answer = raw.call(2, &SaslAuthenticateRequest::default().with_auth_bytes(token));
    assert_eq!((answer.error_code, answer.session_lifetime_ms), (0, 1500));
    let metadata = MetadataRequest::default().with_topics(None);
    assert_eq!(raw.call(12, &metadata).brokers.len(), 1, "served within the session");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    raw.send(12, &metadata);
    assert!(raw.closed_by_broker(), "served after the session expired");

    let successes = r#"zombi_sasl_authentications_total{mechanism="SCRAM-SHA-256",result="success"}"#;
    let connections = "kafka_server_socketservermetrics_connection_creation_total";
    let connections_before = metric(&broker, connections);
    let topic = unique_topic("reauth");
    let producer: FutureProducer =
        sasl(&address, "SASL_PLAINTEXT", "SCRAM-SHA-256", ADMIN, ADMIN_PASSWORD).create().expect("producer");
    let mut offsets = Vec::new();
    for i in 0..20 {
        let value = format!("r{i}");
        let record = FutureRecord::<(), _>::to(&topic).partition(0).payload(&value);
        let delivered = producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).expect("delivered");
        offsets.push(delivered.offset);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(offsets, (0..20).collect::<Vec<i64>>());
    let opened = metric(&broker, connections) - connections_before;
    let authenticated = metric(&broker, successes);
    assert!(
        authenticated > opened,
        "{authenticated} SCRAM authentications over {opened} connections: no re-authentication"
    );
}

/// Runs kcat with `args`, `input` on its stdin; returns its exit status, stdout and stderr. kcat
/// is killed after 60 s (it waits for a broker it cannot reach).
fn kcat(args: &[&str], input: &str) -> (bool, String, String) {
    use std::io::Write;
    // `cargo test` puts the build's own librdkafka (rdkafka-sys) on LD_LIBRARY_PATH; without it
    // kcat runs on the librdkafka Debian ships with it (2.0.2), as its users run it.
    let mut child = Command::new("kcat")
        .env_remove("LD_LIBRARY_PATH")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kcat (compat/setup.sh installs it)");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("kcat output");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

/// kcat (librdkafka inside, as Debian ships it) with the `-X` settings its users write: over
/// SASL_SSL with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, and over SSL with a client
/// certificate, it produces and reads back exactly; a wrong password gets no metadata.
#[test]
fn kcat_connects_over_sasl_ssl_and_mtls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = sasl_ssl_and_mtls(dir.path(), "kcat-client");
    let file = |name: &str| dir.path().join(name).display().to_string();
    let ca = file("server-ca.crt");
    let topic = unique_topic("kcat-secured");
    let sasl_ssl = |mechanism: &str, password: &str| -> Vec<String> {
        [
            "-b",
            &broker.listener("SASL_SSL"),
            "-X",
            "security.protocol=SASL_SSL",
            "-X",
            &format!("sasl.mechanisms={mechanism}"),
            "-X",
            &format!("sasl.username={ADMIN}"),
            "-X",
            &format!("sasl.password={password}"),
            "-X",
            &format!("ssl.ca.location={ca}"),
        ]
        .map(str::to_string)
        .to_vec()
    };
    let mtls: Vec<String> = [
        "-b",
        &broker.listener("SSL"),
        "-X",
        "security.protocol=SSL",
        "-X",
        &format!("ssl.ca.location={ca}"),
        "-X",
        &format!("ssl.certificate.location={}", file("kcat-client.crt")),
        "-X",
        &format!("ssl.key.location={}", file("kcat-client.key")),
    ]
    .map(str::to_string)
    .to_vec();
    let mut clients: Vec<(String, Vec<String>)> = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
        .into_iter()
        .map(|m| (m.to_string(), sasl_ssl(m, ADMIN_PASSWORD)))
        .collect();
    clients.push(("mTLS".to_string(), mtls));
    let mut expected = Vec::new();
    for (name, settings) in &clients {
        let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
        let lines: Vec<String> = (0..3).map(|i| format!("{name}-{i}")).collect();
        let produce = [&settings[..], &["-P", "-t", &topic, "-p", "0"]].concat();
        let (ok, _, errors) = kcat(&produce, &format!("{}\n", lines.join("\n")));
        assert!(ok, "kcat produced over {name}: {errors}");
        expected.extend(lines);
        let consume =
            [&settings[..], &["-C", "-t", &topic, "-p", "0", "-o", "beginning", "-e", "-f", "%o %s\n"]].concat();
        let (ok, read, errors) = kcat(&consume, "");
        assert!(ok, "kcat consumed over {name}: {errors}");
        let want: Vec<String> = expected.iter().enumerate().map(|(o, v)| format!("{o} {v}")).collect();
        assert_eq!(read.lines().collect::<Vec<_>>(), want, "read back over {name}");
    }
    let wrong = sasl_ssl("SCRAM-SHA-512", "not-the-password");
    let wrong: Vec<&str> = wrong.iter().map(String::as_str).collect();
    let (ok, listed, _) = kcat(&[&wrong[..], &["-L", "-m", "5"]].concat(), "");
    assert!(!ok && !listed.contains(&topic), "a wrong password got metadata: {listed}");
}
