//! OAUTHBEARER (issue 18): JWTs signed with a key of `--oauthbearer-jwks-file`, checked for
//! signature, expiry, issuer and audience. rdkafka clients that fetch their token through
//! `generate_oauth_token` (as applications wire an identity provider) produce and consume as the
//! token's subject, under the ACLs of that principal, and so do confluent-kafka and kafka-python
//! (compat/oauth_clients.py); a token from another issuer, and librdkafka's unsecured tokens, are
//! refused. The HTTP door takes the same tokens.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rdkafka::client::OAuthToken;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;

use crate::common::{TestBroker, unique_topic};
use crate::http_client::request_with;
use crate::security::{ADMIN, ADMIN_PASSWORD};

pub(crate) const ISSUER: &str = "https://idp.test";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An identity provider: a P-256 key whose public half is in the broker's JWKS file.
pub(crate) struct Idp {
    key: EcdsaKeyPair,
    kid: String,
}

impl Idp {
    pub(crate) fn new() -> Idp {
        Idp::with_kid("test-key")
    }

    pub(crate) fn with_kid(kid: &str) -> Idp {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).expect("pair");
        Idp { key, kid: kid.to_string() }
    }

    pub(crate) fn jwks(&self) -> serde_json::Value {
        let public = self.key.public_key().as_ref();
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig",
            "x": b64(&public[1..33]), "y": b64(&public[33..65])}]})
    }

    /// A token for `subject` from `issuer`, valid for a minute.
    pub(crate) fn token(&self, subject: &str, issuer: &str) -> (String, i64) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
        let header = b64(json!({"alg": "ES256", "typ": "JWT", "kid": self.kid}).to_string().as_bytes());
        let claims = json!({"sub": subject, "iss": issuer, "aud": "zombi", "iat": now, "exp": now + 60});
        let signed = format!("{header}.{}", b64(claims.to_string().as_bytes()));
        let signature = self.key.sign(&SystemRandom::new(), signed.as_bytes()).expect("sign");
        (format!("{signed}.{}", b64(signature.as_ref())), (now + 60) * 1000)
    }
}

/// A client context that asks the identity provider for a token, as applications do.
struct TokenContext {
    idp: Arc<Idp>,
    subject: String,
    issuer: String,
}

impl ClientContext for TokenContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let (token, lifetime_ms) = self.idp.token(&self.subject, &self.issuer);
        Ok(OAuthToken { token, principal_name: self.subject.clone(), lifetime_ms })
    }
}

impl ConsumerContext for TokenContext {}
impl rdkafka::producer::ProducerContext for TokenContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

fn oauth_config(broker: &TestBroker) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.listener("SASL_PLAINTEXT"))
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "OAUTHBEARER")
        .set("socket.timeout.ms", "10000");
    config
}

fn context(idp: &Arc<Idp>, subject: &str, issuer: &str) -> TokenContext {
    TokenContext { idp: idp.clone(), subject: subject.to_string(), issuer: issuer.to_string() }
}

/// A service authenticated with a signed token writes and reads exactly, under its principal's
/// ACLs; a token from another issuer and an unsecured token get no metadata at all; the HTTP
/// door takes the same token (and basic auth, with `--http-auth any`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_tokens_authenticate_clients_and_others_are_refused() {
    let idp = Arc::new(Idp::new());
    let dir = tempfile::tempdir().expect("dir");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, idp.jwks().to_string()).expect("jwks");
    let broker = TestBroker::start_with_env(
        &[
            "--listeners",
            "SASL_PLAINTEXT://127.0.0.1:0",
            "--sasl-enabled-mechanisms",
            "SCRAM-SHA-256,OAUTHBEARER",
            "--oauthbearer-jwks-file",
            jwks.to_str().expect("path"),
            "--oauthbearer-issuer",
            ISSUER,
            "--oauthbearer-audience",
            "zombi",
            "--authorizer",
            "standard",
            "--bootstrap-admin",
            ADMIN,
            "--http-auth",
            "any",
        ],
        &[("ZOMBI_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    );
    let topic = unique_topic("oauth");
    let admin = crate::security::sasl(
        &broker.listener("SASL_PLAINTEXT"),
        "SASL_PLAINTEXT",
        "SCRAM-SHA-256",
        ADMIN,
        ADMIN_PASSWORD,
    );
    assert_eq!(crate::security::produce(&admin, &topic, &["by the admin".to_string()]).await, vec![0]);
    let granted = json!([
        ["TOPIC", topic, "LITERAL", "User:svc-orders", "*", "WRITE", "ALLOW"],
        ["TOPIC", topic, "LITERAL", "User:svc-orders", "*", "READ", "ALLOW"],
        ["GROUP", "svc-orders-group", "LITERAL", "User:svc-orders", "*", "READ", "ALLOW"],
    ]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/compat/acl_admin.py");
    let output = std::process::Command::new(crate::security::python())
        .args([script, &broker.listener("SASL_PLAINTEXT"), ADMIN, ADMIN_PASSWORD, "create", &granted.to_string()])
        .output()
        .expect("acl_admin.py");
    assert!(String::from_utf8_lossy(&output.stdout).contains("\"ok\": true"), "{output:?}");

    let producer: FutureProducer<TokenContext> = oauth_config(&broker)
        .set("message.timeout.ms", "30000")
        .create_with_context(context(&idp, "svc-orders", ISSUER))
        .expect("producer");
    let mut offsets = Vec::new();
    for i in 0..3 {
        let payload = format!("token-{i}");
        let record = FutureRecord::<(), _>::to(&topic).partition(0).payload(payload.as_bytes());
        let delivered = producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).expect("delivered");
        offsets.push(delivered.offset);
    }
    assert_eq!(offsets, vec![1, 2, 3]);

    let consumer: BaseConsumer<TokenContext> = oauth_config(&broker)
        .set("group.id", "svc-orders-group")
        .create_with_context(context(&idp, "svc-orders", ISSUER))
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(&topic, 0, Offset::Beginning).expect("offset");
    consumer.assign(&list).expect("assign");
    let deadline = std::time::Instant::now() + crate::common::WAIT_MAX;
    let mut read = Vec::new();
    while read.len() < 4 && std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume");
            read.push((message.offset(), String::from_utf8_lossy(message.payload().unwrap_or_default()).to_string()));
        }
    }
    let expected: Vec<(i64, String)> =
        [(0, "by the admin"), (1, "token-0"), (2, "token-1"), (3, "token-2")].map(|(o, v)| (o, v.to_string())).into();
    assert_eq!(read, expected);

    // confluent-kafka and kafka-python, each with its own token hook, hand over the same kind of token.
    let (token, expiry_ms) = idp.token("svc-orders", ISSUER);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/compat/oauth_clients.py");
    let expiry_s = (expiry_ms / 1000).to_string();
    let output = std::process::Command::new(crate::security::python())
        .args([script, &broker.listener("SASL_PLAINTEXT"), &topic, "svc-orders-group", &token, &expiry_s])
        .output()
        .expect("oauth_clients.py");
    assert!(output.status.success(), "oauth_clients.py: {}", String::from_utf8_lossy(&output.stderr));
    let clients: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(clients["confluent-kafka"], json!([4, 5, 6]), "{clients}");
    assert_eq!(clients["kafka-python"], json!([7, 8, 9]), "{clients}");
    let mut everything: Vec<serde_json::Value> = expected.iter().map(|(o, v)| json!([o, v])).collect();
    everything.extend((0..3).map(|i| json!([4 + i, format!("confluent-kafka-{i}")])));
    everything.extend((0..3).map(|i| json!([7 + i, format!("kafka-python-{i}")])));
    assert_eq!(clients["read"], serde_json::Value::Array(everything));

    let foreign: BaseConsumer<TokenContext> =
        oauth_config(&broker).create_with_context(context(&idp, "svc-orders", "https://elsewhere")).expect("consumer");
    assert!(foreign.fetch_metadata(None, Duration::from_secs(5)).is_err(), "a token from another issuer");
    let unsecured: BaseConsumer =
        oauth_config(&broker).set("sasl.oauthbearer.config", "principal=svc-orders").create().expect("consumer");
    assert!(unsecured.fetch_metadata(None, Duration::from_secs(5)).is_err(), "an unsecured token");

    let path = format!("/events/{topic}?offset=0");
    let bearer = format!("Bearer {}", idp.token("svc-orders", ISSUER).0);
    let over_http = request_with(&broker.http, "GET", &path, &[("Authorization", &bearer)], b"");
    assert_eq!(over_http.status, 200, "{}", over_http.text());
    assert_eq!(over_http.json()["records"].as_array().map(Vec::len), Some(10));
    let foreign = format!("Bearer {}", idp.token("svc-orders", "https://elsewhere").0);
    assert_eq!(request_with(&broker.http, "GET", &path, &[("Authorization", &foreign)], b"").status, 401);
    let other = format!("Bearer {}", idp.token("svc-payments", ISSUER).0);
    assert_eq!(request_with(&broker.http, "GET", &path, &[("Authorization", &other)], b"").status, 403);
}

/// An identity provider's JWKS endpoint: serves the document it holds now over HTTP, counting
/// requests (a thread of the test process, gone with it).
struct JwksEndpoint {
    url: String,
    document: Arc<std::sync::Mutex<String>>,
    requests: Arc<std::sync::atomic::AtomicUsize>,
}

impl JwksEndpoint {
    fn start(document: &serde_json::Value) -> JwksEndpoint {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/realms/test/protocol/openid-connect/certs", listener.local_addr().expect("addr"));
        let document = Arc::new(std::sync::Mutex::new(document.to_string()));
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (served, counted) = (document.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = served.lock().expect("document").clone();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body.as_bytes()));
            }
        });
        JwksEndpoint { url, document, requests }
    }

    fn serve(&self, document: &serde_json::Value) {
        *self.document.lock().expect("document") = document.to_string();
    }
}

/// `--oauthbearer-jwks-endpoint-url`: the keys come from the identity provider's JWKS URL. A
/// client with a token of its key is served; after the provider rotates to a new key, a token
/// of the new key is served at once (its unknown `kid` makes the broker fetch the JWKS again)
/// and a token of the retired key is refused, over Kafka and over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_the_jwks_url_and_rotate_with_it() {
    let (old, new) = (Arc::new(Idp::with_kid("2026-11")), Arc::new(Idp::with_kid("2026-12")));
    let endpoint = JwksEndpoint::start(&old.jwks());
    let broker = TestBroker::start(&[
        "--listeners",
        "SASL_PLAINTEXT://127.0.0.1:0",
        "--sasl-enabled-mechanisms",
        "OAUTHBEARER",
        "--oauthbearer-jwks-endpoint-url",
        &endpoint.url,
        "--oauthbearer-issuer",
        ISSUER,
        "--http-auth",
        "bearer",
    ]);
    let fetched_at_start = endpoint.requests.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(fetched_at_start, 1, "the JWKS is fetched once at start");
    let topic = unique_topic("jwks-url");
    let send = |idp: &Arc<Idp>, value: &'static str| {
        let producer: FutureProducer<TokenContext> = oauth_config(&broker)
            .set("message.timeout.ms", "30000")
            .create_with_context(context(idp, "svc-orders", ISSUER))
            .expect("producer");
        let topic = topic.clone();
        async move {
            let record = FutureRecord::<(), _>::to(&topic).partition(0).payload(value.as_bytes());
            producer.send(record, Duration::from_secs(30)).await.map(|d| d.offset).map_err(|(e, _)| e)
        }
    };
    assert_eq!(send(&old, "with the old key").await.expect("served"), 0);
    assert_eq!(endpoint.requests.load(std::sync::atomic::Ordering::SeqCst), 1, "no fetch while the keys are fresh");

    endpoint.serve(&new.jwks());
    assert_eq!(send(&new, "with the new key").await.expect("served after the rotation"), 1);
    assert!(endpoint.requests.load(std::sync::atomic::Ordering::SeqCst) >= 2, "the unknown kid fetched the JWKS");
    let retired: BaseConsumer<TokenContext> =
        oauth_config(&broker).create_with_context(context(&old, "svc-orders", ISSUER)).expect("consumer");
    assert!(retired.fetch_metadata(None, Duration::from_secs(5)).is_err(), "a token of the retired key");

    let path = format!("/events/{topic}?offset=0");
    let bearer = |idp: &Idp| format!("Bearer {}", idp.token("svc-orders", ISSUER).0);
    let read = request_with(&broker.http, "GET", &path, &[("Authorization", &bearer(&new))], b"");
    assert_eq!(read.status, 200, "{}", read.text());
    let read = read.json();
    let values: Vec<&str> =
        read["records"].as_array().expect("records").iter().filter_map(|r| r["value"].as_str()).collect();
    assert_eq!(values, vec!["with the old key", "with the new key"]);
    assert_eq!(request_with(&broker.http, "GET", &path, &[("Authorization", &bearer(&old))], b"").status, 401);
}

/// An `https://` JWKS URL: the broker fetches the keys over TLS, trusting the provider's
/// certificate through `--ssl-ca-file`, and serves a client with a token of those keys. The
/// provider is `openssl s_server -WWW`, serving the JWKS file over HTTPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_an_https_jwks_url_trusted_through_the_ca_file() {
    let idp = Arc::new(Idp::new());
    let dir = tempfile::tempdir().expect("dir");
    crate::security::certificates(dir.path(), "idp");
    std::fs::write(dir.path().join("jwks.json"), idp.jwks().to_string()).expect("jwks");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let server = std::process::Command::new("openssl")
        .args(["s_server", "-WWW", "-quiet", "-accept", &format!("127.0.0.1:{port}")])
        .args(["-cert", "idp.crt", "-key", "idp.key"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server");
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Stop(server);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "openssl s_server did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ca = dir.path().join("idp-ca.crt").display().to_string();
    let url = format!("https://127.0.0.1:{port}/jwks.json");
    let start = |extra: &[&str]| {
        let args = ["--listeners", "SASL_PLAINTEXT://127.0.0.1:0", "--sasl-enabled-mechanisms", "OAUTHBEARER"];
        let jwks = ["--oauthbearer-jwks-endpoint-url", &url, "--oauthbearer-issuer", ISSUER];
        TestBroker::start(&[&args[..], &jwks, extra].concat())
    };
    let broker = start(&["--ssl-ca-file", &ca]);
    let topic = unique_topic("jwks-https");
    let producer: FutureProducer<TokenContext> = oauth_config(&broker)
        .set("message.timeout.ms", "30000")
        .create_with_context(context(&idp, "svc-orders", ISSUER))
        .expect("producer");
    let record = FutureRecord::<(), _>::to(&topic).partition(0).payload("over https keys".as_bytes());
    let delivered = producer.send(record, Duration::from_secs(30)).await.map(|d| d.offset).map_err(|(e, _)| e);
    assert_eq!(delivered.expect("served with a key fetched over HTTPS"), 0);

    // Without the provider's CA the certificate is not trusted, no key is fetched, and the same
    // token is refused.
    let untrusting = start(&[]);
    let refused: BaseConsumer<TokenContext> =
        oauth_config(&untrusting).create_with_context(context(&idp, "svc-orders", ISSUER)).expect("consumer");
    assert!(refused.fetch_metadata(None, Duration::from_secs(5)).is_err(), "keys from an untrusted server");
}
