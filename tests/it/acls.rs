//! ACLs (issue 18): `--authorizer standard` with Kafka's StandardAuthorizer semantics. SCRAM
//! users and their ACLs are managed with confluent-kafka's AdminClient (compat/acl_admin.py and
//! compat/scram_admin.py); rdkafka producers and consumers authenticated as those users get
//! exactly what the ACLs allow and Kafka's error codes for the rest; raw requests check the
//! codes the admin clients hide.

use std::process::Command;
use std::time::Duration;

use kafka_protocol::messages::{
    CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest, DescribeGroupsRequest, GroupId, MetadataRequest,
    create_acls_request::AclCreation, delete_acls_request::DeleteAclsFilter, metadata_request::MetadataRequestTopic,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{Value, json};

use crate::common::{TestBroker, unique_topic};
use crate::raw::Raw;
use crate::security::{ADMIN, ADMIN_PASSWORD, authenticate, handshake, python, sasl, scram_admin, secured};

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const SECURITY_DISABLED: i16 = 54;
const INVALID_REQUEST: i16 = 42;

fn acl_admin(broker: &TestBroker, user: &str, password: &str, action: &str, argument: Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/compat/acl_admin.py");
    let output = Command::new(python())
        .arg(script)
        .args([broker.listener("SASL_PLAINTEXT").as_str(), user, password, action, &argument.to_string()])
        .output()
        .expect("run acl_admin.py");
    assert!(output.status.success(), "acl_admin.py: {}", String::from_utf8_lossy(&output.stderr));
    let line = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn admin(broker: &TestBroker, action: &str, argument: Value) -> Value {
    acl_admin(broker, ADMIN, ADMIN_PASSWORD, action, argument)
}

pub(crate) fn user(broker: &TestBroker, name: &str) {
    let created = scram_admin(broker, &["upsert", name, &format!("{name}-pw"), "SCRAM-SHA-256", "4096"]);
    assert_eq!(created["ok"], true, "{created}");
}

fn client(broker: &TestBroker, name: &str) -> ClientConfig {
    let password = if name == ADMIN { ADMIN_PASSWORD.to_string() } else { format!("{name}-pw") };
    sasl(&broker.listener("SASL_PLAINTEXT"), "SASL_PLAINTEXT", "SCRAM-SHA-256", name, &password)
}

/// Produces one record to partition 0 and returns its offset or the error code.
async fn send(config: &ClientConfig, topic: &str, value: &str) -> Result<i64, RDKafkaErrorCode> {
    let producer: FutureProducer = config.clone().set("message.timeout.ms", "10000").create().expect("producer");
    let record = FutureRecord::<(), _>::to(topic).partition(0).payload(value.as_bytes());
    match producer.send(record, Duration::from_secs(15)).await {
        Ok(delivery) => Ok(delivery.offset),
        Err((KafkaError::MessageProduction(code), _)) => Err(code),
        Err((other, _)) => panic!("unexpected error {other}"),
    }
}

/// Reads partition 0 from the start with `group` until `count` records or an error.
fn read(config: &ClientConfig, topic: &str, group: &str, count: usize) -> Result<Vec<(i64, String)>, KafkaError> {
    let consumer: BaseConsumer =
        config.clone().set("group.id", group).set("enable.auto.commit", "false").create().expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning).expect("offset");
    consumer.assign(&list).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut read = Vec::new();
    while read.len() < count && std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message?;
            let value = String::from_utf8(message.payload().unwrap_or_default().to_vec()).expect("utf-8");
            read.push((message.offset(), value));
        }
    }
    let mut committed = TopicPartitionList::new();
    committed.add_partition_offset(topic, 0, Offset::Offset(read.len() as i64)).expect("offset");
    consumer.commit(&committed, CommitMode::Sync)?;
    Ok(read)
}

fn topics_listed(config: &ClientConfig) -> Vec<String> {
    let consumer: BaseConsumer = config.create().expect("consumer");
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).expect("metadata");
    let mut names: Vec<String> = metadata.topics().iter().map(|t| t.name().to_string()).collect();
    names.sort();
    names
}

fn acl(kind: &str, name: &str, pattern: &str, principal: &str, operation: &str, permission: &str) -> Value {
    json!([kind, name, pattern, principal, "*", operation, permission])
}

/// Alice may write every `orders-…` topic but one (a DENY wins over the prefixed ALLOW), read one
/// of them with one group; bob may only use his group. Each gets exactly that, with Kafka's error codes
/// through rdkafka; Metadata lists only what each may describe; the ACLs are described back
/// exactly, survive kill -9, and deleting one takes its right away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_decide_what_each_user_may_do() {
    let mut broker = secured("SASL_PLAINTEXT://127.0.0.1:0", &["--authorizer", "standard"]);
    let orders = unique_topic("orders-");
    let secret = format!("{orders}-secret");
    let other = unique_topic("payments");
    for topic in [&orders, &secret, &other] {
        assert_eq!(send(&client(&broker, ADMIN), topic, "by the admin").await, Ok(0), "the super user writes {topic}");
    }
    user(&broker, "alice");
    user(&broker, "bob");
    let granted = vec![
        acl("TOPIC", "orders-", "PREFIXED", "User:alice", "WRITE", "ALLOW"),
        acl("TOPIC", &secret, "LITERAL", "User:alice", "WRITE", "DENY"),
        acl("TOPIC", &orders, "LITERAL", "User:alice", "READ", "ALLOW"),
        acl("GROUP", "alice-group", "LITERAL", "User:alice", "READ", "ALLOW"),
        acl("GROUP", "bob-group", "LITERAL", "User:bob", "READ", "ALLOW"),
    ];
    assert_eq!(admin(&broker, "create", json!(granted))["ok"], true);

    let alice = client(&broker, "alice");
    let bob = client(&broker, "bob");
    assert_eq!(send(&alice, &orders, "from alice").await, Ok(1));
    assert_eq!(send(&alice, &secret, "denied").await, Err(RDKafkaErrorCode::TopicAuthorizationFailed));
    assert_eq!(send(&alice, &other, "not granted").await, Err(RDKafkaErrorCode::TopicAuthorizationFailed));
    assert_eq!(send(&bob, &orders, "not granted").await, Err(RDKafkaErrorCode::TopicAuthorizationFailed));

    let expected = vec![(0, "by the admin".to_string()), (1, "from alice".to_string())];
    assert_eq!(read(&alice, &orders, "alice-group", 2).expect("alice reads with her group"), expected);
    let other_group = read(&alice, &orders, "another-group", 2).expect_err("another group is refused");
    assert_eq!(other_group.rdkafka_error_code(), Some(RDKafkaErrorCode::GroupAuthorizationFailed), "{other_group}");
    let unread = read(&bob, &orders, "bob-group", 1).expect_err("bob may not read the topic");
    assert_eq!(unread.rdkafka_error_code(), Some(RDKafkaErrorCode::TopicAuthorizationFailed), "{unread}");

    // WRITE implies DESCRIBE, even where WRITE itself is denied (the DENY names WRITE only).
    let mut alices = vec![orders.clone(), secret.clone()];
    alices.sort();
    let listed: Vec<String> = topics_listed(&alice).into_iter().filter(|t| !t.starts_with("__")).collect();
    assert_eq!(listed, alices);
    assert!(topics_listed(&bob).is_empty(), "bob may describe nothing");

    // The authorizer's metrics: a refusal counts as denied, and the gauge holds the five ACLs.
    let decisions = |result: &str| {
        crate::http_limits::metric(&broker, &format!("zombi_authorizer_decisions_total{{result=\"{result}\"}}"))
    };
    let (allowed, denied) = (decisions("allowed"), decisions("denied"));
    assert!(allowed > 0.0 && denied >= 5.0, "allowed {allowed}, denied {denied}");
    assert_eq!(send(&bob, &other, "not granted").await, Err(RDKafkaErrorCode::TopicAuthorizationFailed));
    assert!(decisions("denied") > denied, "bob's refusal was counted");
    assert_eq!(crate::http_limits::metric(&broker, "zombi_authorizer_acls"), 5.0);

    let everything = json!(["ANY", null, "ANY", null, null, "ANY", "ANY"]);
    let mut stored: Vec<Value> = granted.clone();
    stored.sort_by_key(|v| v.to_string());
    let described = admin(&broker, "describe", everything.clone());
    let mut acls: Vec<Value> = described["acls"].as_array().expect("acls").clone();
    acls.sort_by_key(|v| v.to_string());
    assert_eq!(acls, stored, "{described}");
    let refused = acl_admin(
        &broker,
        "alice",
        "alice-pw",
        "create",
        json!([acl("TOPIC", "x", "LITERAL", "User:alice", "ALL", "ALLOW")]),
    );
    assert_eq!(refused["error"], "CLUSTER_AUTHORIZATION_FAILED", "alice may not grant herself rights: {refused}");

    broker.kill_and_restart();
    let mut after: Vec<Value> = admin(&broker, "describe", everything)["acls"].as_array().expect("acls").clone();
    after.sort_by_key(|v| v.to_string());
    assert_eq!(after, stored, "ACLs survive kill -9");
    let alice = client(&broker, "alice");
    assert_eq!(send(&alice, &orders, "after the restart").await, Ok(2));

    let deleted = admin(&broker, "delete", json!([["TOPIC", orders, "LITERAL", "User:alice", "*", "READ", "ANY"]]));
    assert_eq!(deleted["acls"], json!([[acl("TOPIC", &orders, "LITERAL", "User:alice", "READ", "ALLOW")]]));
    let unread = read(&alice, &orders, "alice-group", 1).expect_err("READ was deleted");
    assert_eq!(unread.rdkafka_error_code(), Some(RDKafkaErrorCode::TopicAuthorizationFailed), "{unread}");
    assert_eq!(crate::http_limits::metric(&broker, "zombi_authorizer_acls"), 4.0);
}

/// A raw connection authenticated with PLAIN.
pub(crate) fn authenticated(address: &str, user: &str, password: &str) -> Raw {
    let mut raw = Raw::connect(address);
    assert_eq!(handshake(&mut raw, "PLAIN").0, 0);
    assert_eq!(authenticate(&mut raw, format!("\0{user}\0{password}").as_bytes()).0, 0);
    raw
}

pub(crate) fn creation(
    kind: i8,
    name: &str,
    pattern: i8,
    principal: &str,
    operation: i8,
    permission: i8,
) -> AclCreation {
    AclCreation::default()
        .with_resource_type(kind)
        .with_resource_name(StrBytes::from_string(name.to_string()))
        .with_resource_pattern_type(pattern)
        .with_principal(StrBytes::from_string(principal.to_string()))
        .with_host(StrBytes::from_static_str("*"))
        .with_operation(operation)
        .with_permission_type(permission)
}

fn describe_filter(kind: i8, name: Option<&str>, pattern: i8) -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_type_filter(kind)
        .with_resource_name_filter(name.map(|n| StrBytes::from_string(n.to_string())))
        .with_pattern_type_filter(pattern)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(1)
        .with_permission_type(1)
}

/// The codes behind the admin clients' exceptions: SECURITY_DISABLED without an authorizer,
/// CLUSTER_AUTHORIZATION_FAILED for a user without ALTER on the cluster, INVALID_REQUEST for an
/// ACL Kafka would not store; a MATCH filter finds the literal, wildcard and prefixed ACLs that
/// apply to a name; Metadata answers TOPIC_AUTHORIZATION_FAILED for a named topic the user may
/// not describe, and DescribeGroups GROUP_AUTHORIZATION_FAILED with the authorized operations.
#[test]
fn acl_apis_answer_with_kafkas_error_codes() {
    let open = secured("SASL_PLAINTEXT://127.0.0.1:0", &[]);
    let mut raw = authenticated(&open.listener("SASL_PLAINTEXT"), ADMIN, ADMIN_PASSWORD);
    let response = raw.call(3, &describe_filter(1, None, 1));
    assert_eq!(response.error_code, SECURITY_DISABLED, "no authorizer");
    drop(open);

    let broker = secured("SASL_PLAINTEXT://127.0.0.1:0", &["--authorizer", "standard"]);
    let address = broker.listener("SASL_PLAINTEXT");
    user(&broker, "carol");
    let mut carol = authenticated(&address, "carol", "carol-pw");
    let create = CreateAclsRequest::default().with_creations(vec![creation(2, "t", 3, "User:carol", 3, 3)]);
    assert_eq!(carol.call(3, &create).results[0].error_code, CLUSTER_AUTHORIZATION_FAILED);
    assert_eq!(carol.call(3, &describe_filter(1, None, 1)).error_code, CLUSTER_AUTHORIZATION_FAILED);

    let mut admin = authenticated(&address, ADMIN, ADMIN_PASSWORD);
    let create = CreateAclsRequest::default().with_creations(vec![
        creation(2, "orders", 3, "User:carol", 3, 3),
        creation(2, "*", 3, "User:carol", 8, 3),
        creation(2, "ord", 4, "User:carol", 4, 2),
        creation(2, "payments", 3, "User:carol", 3, 3),
        creation(4, "not-the-cluster", 3, "User:carol", 7, 3),
        creation(2, "t", 1, "User:carol", 3, 3),
        creation(2, "t", 3, "carol", 3, 3),
        creation(3, "carol-group", 3, "User:carol", 8, 3),
    ]);
    let codes: Vec<i16> = admin.call(3, &create).results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![0, 0, 0, 0, INVALID_REQUEST, INVALID_REQUEST, INVALID_REQUEST, 0]);

    let matched = admin.call(3, &describe_filter(2, Some("orders"), 2));
    assert_eq!(matched.error_code, 0);
    let names: Vec<(String, i8)> =
        matched.resources.iter().map(|r| (r.resource_name.to_string(), r.pattern_type)).collect();
    assert_eq!(names, vec![("*".to_string(), 3), ("ord".to_string(), 4), ("orders".to_string(), 3)]);
    assert_eq!(admin.call(3, &describe_filter(0, None, 1)).error_code, INVALID_REQUEST, "UNKNOWN filter");

    // carol may describe every topic (the wildcard), but "secret" only through it.
    let named = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(StrBytes::from_static_str("orders").into())),
    ]));
    let metadata = carol.call(12, &named.with_allow_auto_topic_creation(false));
    assert_eq!(metadata.topics[0].error_code, 3, "described, and unknown (UNKNOWN_TOPIC_OR_PARTITION)");
    let group = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_static_str("carol-group")), GroupId(StrBytes::from_static_str("x"))])
        .with_include_authorized_operations(true);
    let described = carol.call(5, &group);
    assert_eq!(described.groups[0].error_code, 0);
    assert_eq!(described.groups[0].authorized_operations, 1 << 8, "DESCRIBE only");
    assert_eq!(described.groups[1].error_code, GROUP_AUTHORIZATION_FAILED);

    // Deleting through two filters reports each ACL once, under the first filter that matched it.
    let filter = |name: Option<&str>, pattern: i8| {
        DeleteAclsFilter::default()
            .with_resource_type_filter(2)
            .with_resource_name_filter(name.map(|n| StrBytes::from_string(n.to_string())))
            .with_pattern_type_filter(pattern)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_operation(1)
            .with_permission_type(1)
    };
    let delete = DeleteAclsRequest::default().with_filters(vec![filter(Some("orders"), 2), filter(None, 1)]);
    let deleted = admin.call(3, &delete);
    let counts: Vec<usize> = deleted.filter_results.iter().map(|r| r.matching_acls.len()).collect();
    assert_eq!(counts, vec![3, 1], "orders' three, then payments");
    assert!(admin.call(3, &describe_filter(2, None, 1)).resources.is_empty());
    let metadata = carol.call(
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(StrBytes::from_static_str("orders").into())),
        ])),
    );
    assert_eq!(metadata.topics[0].error_code, TOPIC_AUTHORIZATION_FAILED, "no ACL left for carol");
}

/// The HTTP door takes the same principals and ACLs: with `--authorizer standard` it asks for
/// basic auth by default; alice writes and reads the topic she may, and gets 403 for the other;
/// the admin views list only what she may describe, and tiering needs DESCRIBE on the cluster.
#[test]
fn the_http_door_applies_the_same_acls() {
    use crate::http_client::{get, request_with};
    use base64::Engine;
    let broker = secured("SASL_PLAINTEXT://127.0.0.1:0", &["--authorizer", "standard"]);
    let mine = unique_topic("http-mine");
    let theirs = unique_topic("http-theirs");
    let basic = |user: &str, password: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    };
    let as_admin = basic(ADMIN, ADMIN_PASSWORD);
    let as_alice = basic("alice", "alice-pw");
    let post = |topic: &str, authorization: &str| {
        let headers = [("Content-Type", "application/json"), ("Authorization", authorization)];
        request_with(&broker.http, "POST", &format!("/events/{topic}"), &headers, br#"{"value": "v"}"#)
    };
    for topic in [&mine, &theirs] {
        let written = post(topic, &as_admin);
        assert_eq!(written.status, 200, "the super user creates {topic}: {}", written.text());
    }
    user(&broker, "alice");
    let granted = json!([
        acl("TOPIC", &mine, "LITERAL", "User:alice", "WRITE", "ALLOW"),
        acl("TOPIC", &mine, "LITERAL", "User:alice", "READ", "ALLOW"),
    ]);
    assert_eq!(admin(&broker, "create", granted)["ok"], true);

    assert_eq!(get(&broker.http, &format!("/events/{mine}?offset=0")).status, 401, "basic auth is on by default");
    let written = post(&mine, &as_alice);
    assert_eq!(written.status, 200, "{}", written.text());
    let refused = post(&theirs, &as_alice);
    assert_eq!(refused.status, 403, "{}", refused.text());
    let get_as = |path: &str| request_with(&broker.http, "GET", path, &[("Authorization", &as_alice)], b"");
    let read = get_as(&format!("/events/{mine}?offset=0"));
    assert_eq!(read.status, 200, "{}", read.text());
    let offsets: Vec<i64> = read.json()["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["offset"].as_i64().expect("offset"))
        .collect();
    assert_eq!(offsets, vec![0, 1]);
    assert_eq!(get_as(&format!("/events/{theirs}?offset=0")).status, 403);
    let topics = get_as("/admin/topics").json();
    let names: Vec<&str> =
        topics["topics"].as_array().expect("topics").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, vec![mine.as_str()], "only what alice may describe");
    assert_eq!(get_as("/admin/tiering").status, 403);
    let all = request_with(&broker.http, "GET", "/admin/topics", &[("Authorization", &as_admin)], b"").json();
    assert_eq!(all["topics"].as_array().expect("topics").len(), 2, "the super user sees both");
}

/// The Iceberg REST catalog answers as the topics' ACLs say: a reader with READ on one topic
/// lists only that topic's table and loads it; the other table is 403 ForbiddenException.
#[test]
fn the_rest_catalog_shows_each_reader_the_tables_of_its_topics() {
    use crate::http_client::request_with;
    use base64::Engine;
    let mut args = vec!["--authorizer", "standard"];
    args.extend(crate::iceberg::broker_args("1"));
    let broker = secured("SASL_PLAINTEXT://127.0.0.1:0", &args);
    let (mine, theirs) = (unique_topic("rest-mine"), unique_topic("rest-theirs"));
    let basic = |user: &str, password: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    };
    let (as_admin, as_alice) = (basic(ADMIN, ADMIN_PASSWORD), basic("alice", "alice-pw"));
    for topic in [&mine, &theirs] {
        let headers = [("Content-Type", "application/json"), ("Authorization", as_admin.as_str())];
        let written = request_with(&broker.http, "POST", &format!("/events/{topic}"), &headers, br#"{"value": "v"}"#);
        assert_eq!(written.status, 200, "{}", written.text());
    }
    // Both tables exist once the sink has committed each topic's record.
    let deadline = std::time::Instant::now() + crate::common::WAIT_MAX;
    loop {
        let view = request_with(&broker.http, "GET", "/admin/iceberg", &[("Authorization", &as_admin)], b"").text();
        if view.matches("\"committed_offset\":1").count() >= 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the sink did not commit both topics: {view}");
        std::thread::sleep(Duration::from_millis(100));
    }
    user(&broker, "alice");
    let granted = json!([acl("TOPIC", &mine, "LITERAL", "User:alice", "READ", "ALLOW")]);
    assert_eq!(admin(&broker, "create", granted)["ok"], true);

    let get_as = |path: &str| request_with(&broker.http, "GET", path, &[("Authorization", &as_alice)], b"");
    let listed = get_as("/iceberg/v1/namespaces/zombi/tables").json();
    let names: Vec<&str> =
        listed["identifiers"].as_array().expect("identifiers").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, vec![mine.as_str()], "{listed}");
    let loaded = get_as(&format!("/iceberg/v1/namespaces/zombi/tables/{mine}"));
    assert_eq!(loaded.status, 200, "{}", loaded.text());
    assert!(loaded.json()["metadata-location"].is_string());
    let refused = get_as(&format!("/iceberg/v1/namespaces/zombi/tables/{theirs}"));
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"]["type"], "ForbiddenException");

    // OAuth2 client credentials: alice's name and password buy a bearer token that stands for
    // her; a wrong password gets 401 invalid_client, a token altered by one character nothing.
    let token_for = |secret: &str| {
        let form = format!("grant_type=client_credentials&client_id=alice&client_secret={secret}&scope=catalog");
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        request_with(&broker.http, "POST", "/iceberg/v1/oauth/tokens", &headers, form.as_bytes())
    };
    let wrong = token_for("not-alices");
    assert_eq!((wrong.status, wrong.json()["error"].as_str()), (401, Some("invalid_client")), "{}", wrong.text());
    let issued = token_for("alice-pw");
    assert_eq!(issued.status, 200, "{}", issued.text());
    let token = issued.json()["access_token"].as_str().expect("access_token").to_string();
    let bearer = |token: &str| {
        let authorization = format!("Bearer {token}");
        request_with(
            &broker.http,
            "GET",
            "/iceberg/v1/namespaces/zombi/tables",
            &[("Authorization", &authorization)],
            b"",
        )
    };
    assert_eq!(bearer(&token).json(), listed, "the token is alice");
    let mut altered = token.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(bearer(std::str::from_utf8(&altered).expect("ascii")).status, 401);

    // pyiceberg's RestCatalog configured the usual way (`credential=id:secret`) lists alice's table.
    let list = |credential: &str| {
        let script = "import sys, json\n\
                      from pyiceberg.catalog.rest import RestCatalog\n\
                      c = RestCatalog('z', uri=sys.argv[1], credential=sys.argv[2])\n\
                      print(json.dumps([t[-1] for t in c.list_tables('zombi')]))";
        let uri = format!("http://{}/iceberg", broker.http);
        Command::new(python()).args(["-c", script, &uri, credential]).output().expect("python")
    };
    let output = list("alice:alice-pw");
    assert!(output.status.success(), "pyiceberg: {}", String::from_utf8_lossy(&output.stderr));
    let names: Vec<String> = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(names, vec![mine.clone()]);
    let output = list("alice:not-alices");
    assert!(!output.status.success(), "pyiceberg got in with a wrong secret");
}
