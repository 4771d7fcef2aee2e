//! The HTTP API against the real binary: records written over HTTP are read by librdkafka byte for
//! byte and the other way round, bad input gets the documented 4xx and writes nothing, group
//! offsets and lag agree with the Kafka protocol, and /metrics and the admin views show the traffic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

use crate::common::{Member, Received, TestBroker, WAIT_MAX, consume, unique_topic};
use crate::http_client::{get, post_json, request};

pub(crate) async fn create_topic(broker: &TestBroker, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = broker.client_config().create().expect("admin");
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        new_topic = new_topic.set(key, value);
    }
    let created = admin.create_topics([&new_topic], &AdminOptions::new()).await.expect("create");
    assert!(created[0].is_ok(), "{created:?}");
}

fn log_ends(broker: &TestBroker, topic: &str) -> Vec<i64> {
    let topics = get(&broker.http, "/admin/topics").json();
    let found = topics["topics"].as_array().expect("topics").iter().find(|t| t["name"] == topic).expect("topic listed");
    found["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["log_end_offset"].as_i64().expect("i64"))
        .collect()
}

fn by_position(records: Vec<Received>) -> HashMap<(i32, i64), Received> {
    records.into_iter().map(|r| ((r.partition, r.offset), r)).collect()
}

fn headers(list: &[(&str, Option<&[u8]>)]) -> Vec<(String, Option<Vec<u8>>)> {
    list.iter().map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_over_http_reach_kafka_consumers_byte_for_byte() {
    let broker = TestBroker::start(&[]);
    let topic = unique_topic("http-in");
    create_topic(&broker, &topic, 3, &[]).await;

    // An array: JSON, text and base64 fields, repeated and null headers, null key and value.
    let body = json!([
        {"partition": 1, "key": "k1", "value": {"n": 1, "s": "x"}, "timestamp": 1_700_000_000_000i64,
         "headers": [{"key": "dup", "value": "a"}, {"key": "dup", "value": "b"},
                     {"key": "none", "value": null}, {"key": "bin", "value_base64": "AAH/"}]},
        {"partition": 1, "key_base64": "AP8=", "value_base64": "//79AA=="},
        {"partition": 2, "value": "plain text é"},
        {"partition": 2}
    ]);
    let response = post_json(&broker.http, &format!("/events/{topic}"), &body);
    assert_eq!(response.status, 200, "{}", response.text());
    let answer = response.json();
    let offsets: Vec<(i64, i64)> = answer["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| (o["partition"].as_i64().expect("partition"), o["offset"].as_i64().expect("offset")))
        .collect();
    assert_eq!(offsets, vec![(1, 0), (1, 1), (2, 0), (2, 1)]);
    assert_eq!(answer["offsets"][0]["timestamp"], 1_700_000_000_000i64);

    // Raw bytes, key and partition in the query.
    let raw = request(
        &broker.http,
        "POST",
        &format!("/events/{topic}?partition=0&key=raw-key"),
        Some("application/octet-stream"),
        &[0, 1, 2, 255],
    );
    assert_eq!(raw.status, 200, "{}", raw.text());
    assert_eq!((raw.json()["partition"].as_i64(), raw.json()["offset"].as_i64()), (Some(0), Some(0)));

    // A keyed record without a partition lands where librdkafka's murmur2 partitioner (Java's
    // default) puts the same key.
    let keyed = post_json(&broker.http, &format!("/events/{topic}"), &json!({"key": "user-42", "value": "hello"}));
    assert_eq!(keyed.status, 200, "{}", keyed.text());
    let http_partition = keyed.json()["partition"].as_i64().expect("partition") as i32;
    let producer: FutureProducer = broker.producer(&[("partitioner", "murmur2")]);
    let kafka_partition = producer
        .send(FutureRecord::<str, str>::to(&topic).key("user-42").payload("again"), Timeout::After(WAIT_MAX))
        .await
        .map_err(|(e, _)| e)
        .expect("sent")
        .partition;
    assert_eq!(http_partition, kafka_partition);

    let received = by_position(consume(&broker, &topic, &[0, 1, 2], 7));
    let first = &received[&(1, 0)];
    assert_eq!(first.key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(first.value.as_deref(), Some(&br#"{"n":1,"s":"x"}"#[..]));
    assert_eq!(
        first.headers,
        headers(&[("dup", Some(b"a")), ("dup", Some(b"b")), ("none", None), ("bin", Some(&[0, 1, 255]))])
    );
    assert_eq!(first.timestamp, rdkafka::Timestamp::CreateTime(1_700_000_000_000));
    let second = &received[&(1, 1)];
    assert_eq!(
        (second.key.as_deref(), second.value.as_deref()),
        (Some(&[0u8, 255][..]), Some(&[255u8, 254, 253, 0][..]))
    );
    assert_eq!(received[&(2, 0)].value.as_deref(), Some("plain text é".as_bytes()));
    assert_eq!((received[&(2, 0)].key.clone(), received[&(2, 1)].value.clone()), (None, None));
    assert_eq!(received[&(0, 0)].value.as_deref(), Some(&[0u8, 1, 2, 255][..]));
    assert_eq!(received[&(0, 0)].key.as_deref(), Some(&b"raw-key"[..]));
    let hello = received.values().find(|r| r.value.as_deref() == Some(b"hello")).expect("keyed record");
    assert_eq!(hello.partition, http_partition);

    // Unkeyed records without a partition: round-robin over requests, one partition per request.
    let mut partitions = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let unkeyed = json!([{"value": "a"}, {"value": "b"}]);
        let answer = post_json(&broker.http, &format!("/events/{topic}"), &unkeyed).json();
        let offsets = answer["offsets"].as_array().expect("offsets").clone();
        assert_eq!(offsets[0]["partition"], offsets[1]["partition"], "{answer}");
        assert_eq!(offsets[1]["offset"].as_i64(), offsets[0]["offset"].as_i64().map(|o| o + 1));
        partitions.insert(offsets[0]["partition"].as_i64().expect("partition"));
    }
    assert_eq!(partitions.len(), 3, "{partitions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_by_kafka_read_over_http_with_every_codec() {
    let broker = TestBroker::start(&[]);
    let topic = unique_topic("http-out");
    create_topic(&broker, &topic, 1, &[]).await;
    let mut sent = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let producer: FutureProducer = broker.producer(&[("compression.codec", codec), ("linger.ms", "20")]);
        let batch: Vec<_> = (0..4u8)
            .map(|i| {
                let key = format!("{codec}-{i}").into_bytes();
                let value: Vec<u8> = (0..200u32).map(|b| (b as u8).wrapping_mul(i + 1)).collect();
                (key, value, headers(&[("dup", Some(b"1")), ("dup", Some(b"2")), ("nil", None)]))
            })
            .collect();
        let mut futures = Vec::new();
        for (key, value, header_list) in &batch {
            let mut owned = OwnedHeaders::new();
            for (k, v) in header_list {
                owned = owned.insert(Header { key: k, value: v.as_deref() });
            }
            let record = FutureRecord::<[u8], [u8]>::to(&topic).partition(0).key(key).payload(value).headers(owned);
            futures.push(producer.send(record, Timeout::After(WAIT_MAX)));
        }
        for future in futures {
            future.await.map_err(|(e, _)| e).expect("sent");
        }
        sent.extend(batch);
    }
    let response = get(&broker.http, &format!("/events/{topic}?partition=0&offset=0&limit=1000&format=base64"));
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["high_watermark"], 20);
    assert_eq!(body["next_offset"], 20);
    let records = body["records"].as_array().expect("records");
    assert_eq!(records.len(), sent.len());
    for (offset, (record, (key, value, header_list))) in records.iter().zip(&sent).enumerate() {
        assert_eq!(record["offset"], offset as i64);
        assert_eq!(BASE64.decode(record["key_base64"].as_str().expect("key")).expect("b64"), *key);
        assert_eq!(BASE64.decode(record["value_base64"].as_str().expect("value")).expect("b64"), *value);
        let got: Vec<(String, Option<Vec<u8>>)> = record["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|h| {
                let value = h["value_base64"].as_str().map(|v| BASE64.decode(v).expect("b64"));
                (h["key"].as_str().expect("key").to_string(), value)
            })
            .collect();
        assert_eq!(&got, header_list);
        assert_eq!(record["timestamp_type"], "CreateTime");
    }
    // Pages: a limit inside a compressed batch, then onwards from next_offset; text keys as text.
    let page = get(&broker.http, &format!("/events/{topic}?offset=5&limit=3")).json();
    let keys: Vec<&str> =
        page["records"].as_array().expect("records").iter().map(|r| r["key"].as_str().expect("text key")).collect();
    assert_eq!(keys, vec!["gzip-1", "gzip-2", "gzip-3"]);
    assert_eq!(page["next_offset"], 8);
    let end = get(&broker.http, &format!("/events/{topic}?offset=20")).json();
    assert_eq!(end["records"], json!([]));
    assert_eq!(end["next_offset"], 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_writes_nothing() {
    let broker = TestBroker::start(&["--http-request-max-bytes", "4096", "--auto-create-topics", "false"]);
    let topic = unique_topic("http-bad");
    create_topic(&broker, &topic, 2, &[("max.message.bytes", "1500")]).await;
    let path = format!("/events/{topic}");
    let expect = |response: crate::http_client::HttpResponse, status: u16, error: &str| {
        assert_eq!(response.status, status, "{}", response.text());
        let body = response.json();
        assert_eq!(body["error"], error, "{body}");
        assert_eq!(body["error_code"], status);
        assert!(!body["message"].as_str().unwrap_or_default().is_empty());
        body
    };
    // Without --auto-create-topics, a write to a topic nobody created is refused, whatever its body;
    // a malformed JSON body is refused as such before the topic is looked up.
    expect(request(&broker.http, "POST", "/events/no-such-topic", Some("text/plain"), b"hi"), 404, "unknown_topic");
    expect(
        request(&broker.http, "POST", "/events/no-such-topic", Some("application/json"), b"{no"),
        400,
        "bad_request",
    );
    expect(request(&broker.http, "POST", &path, Some("application/json"), &[b' '; 5000]), 413, "payload_too_large");
    let big = json!({"partition": 0, "value": "x".repeat(2000)});
    expect(post_json(&broker.http, &path, &big), 413, "payload_too_large");
    expect(post_json(&broker.http, "/events/no-such-topic", &json!({"value": "v"})), 404, "unknown_topic");
    expect(post_json(&broker.http, &path, &json!({"partition": 7, "value": "v"})), 404, "unknown_partition");
    expect(request(&broker.http, "POST", &path, Some("application/json"), b"{nope"), 400, "bad_request");
    expect(post_json(&broker.http, &path, &json!({"value": "v", "value_base64": "dg=="})), 400, "bad_request");
    expect(post_json(&broker.http, &path, &json!({"value": "v", "colour": "red"})), 400, "bad_request");
    expect(post_json(&broker.http, &path, &json!([])), 400, "bad_request");
    expect(post_json(&broker.http, &path, &json!(42)), 400, "bad_request");
    // One bad record in a request spanning both partitions: nothing of it is written.
    let mixed = json!([{"partition": 0, "value": "a"}, {"partition": 1, "value": "b"}, {"partition": 9, "value": "c"}]);
    expect(post_json(&broker.http, &path, &mixed), 404, "unknown_partition");
    let mixed = json!([{"partition": 0, "value": "a"}, {"partition": 1, "value_base64": "*not base64*"}]);
    expect(post_json(&broker.http, &path, &mixed), 400, "bad_request");
    let mixed = json!([{"partition": 0, "value": "a"}, {"partition": 1, "value": "y".repeat(1600)}]);
    expect(post_json(&broker.http, &path, &mixed), 413, "payload_too_large");
    assert_eq!(log_ends(&broker, &topic), vec![0, 0]);

    // Reads.
    let body = expect(get(&broker.http, &format!("{path}?offset=5")), 416, "offset_out_of_range");
    assert_eq!((body["log_start"].as_i64(), body["high_watermark"].as_i64()), (Some(0), Some(0)));
    expect(get(&broker.http, &format!("{path}?offset=-1")), 416, "offset_out_of_range");
    expect(get(&broker.http, &format!("{path}?offset=abc")), 400, "bad_request");
    expect(get(&broker.http, &format!("{path}?limit=0")), 400, "bad_request");
    expect(get(&broker.http, &format!("{path}?limit=1000000")), 400, "bad_request");
    expect(get(&broker.http, &format!("{path}?format=hex")), 400, "bad_request");
    expect(get(&broker.http, &format!("{path}?partition=9")), 404, "unknown_partition");
    expect(get(&broker.http, "/events/no-such-topic"), 404, "unknown_topic");
    expect(get(&broker.http, "/no/such/route"), 404, "not_found");

    // Offsets and lag.
    let commit = |body: Value| post_json(&broker.http, "/consumers/g/offsets", &body);
    expect(commit(json!({"offsets": [{"topic": topic, "partition": 0, "offset": -3}]})), 400, "bad_request");
    expect(commit(json!({"offsets": [{"topic": "no-such-topic", "partition": 0, "offset": 1}]})), 404, "unknown_topic");
    expect(commit(json!({"offsets": [{"topic": topic, "partition": 5, "offset": 1}]})), 404, "unknown_partition");
    expect(commit(json!({"offsets": []})), 400, "bad_request");
    expect(
        request(&broker.http, "POST", "/consumers/g/offsets", Some("text/plain"), b"{}"),
        415,
        "unsupported_media_type",
    );
    expect(get(&broker.http, "/consumers/lag"), 400, "bad_request");
    expect(get(&broker.http, "/consumers/lag?group_id=never-seen"), 404, "not_found");
    expect(get(&broker.http, "/consumers/never-seen/offsets"), 404, "not_found");

    // And after all that, a good write starts at offset 0.
    let ok = post_json(&broker.http, &path, &json!({"partition": 1, "value": "first"}));
    assert_eq!((ok.status, ok.json()["offset"].as_i64()), (200, Some(0)));
    assert_eq!(log_ends(&broker, &topic), vec![0, 1]);

    // Compacted topics need keys, over HTTP as over Kafka.
    let compacted = unique_topic("http-compacted");
    create_topic(&broker, &compacted, 1, &[("cleanup.policy", "compact")]).await;
    expect(post_json(&broker.http, &format!("/events/{compacted}"), &json!({"value": "v"})), 400, "bad_request");
    let keyed = post_json(&broker.http, &format!("/events/{compacted}"), &json!({"key": "k", "value": "v"}));
    assert_eq!(keyed.status, 200, "{}", keyed.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_offsets_and_lag_agree_with_the_kafka_protocol() {
    let broker = TestBroker::start(&[]);
    let topic = unique_topic("http-lag");
    create_topic(&broker, &topic, 2, &[]).await;
    let records: Vec<Value> =
        (0..14).map(|i| json!({"partition": i32::from(i >= 10), "value": format!("r{i}")})).collect();
    assert_eq!(post_json(&broker.http, &format!("/events/{topic}"), &json!(records)).status, 200);

    // Committed over HTTP, seen by a Kafka client.
    let commit = json!({"offsets": [
        {"topic": topic, "partition": 0, "offset": 4, "metadata": "from http"},
        {"topic": topic, "partition": 1, "offset": 4}
    ]});
    let response = post_json(&broker.http, "/consumers/http-group/offsets", &commit);
    assert_eq!(response.status, 200, "{}", response.text());
    let fetched = get(&broker.http, "/consumers/http-group/offsets").json();
    assert_eq!(fetched["offsets"][0]["offset"], 4);
    assert_eq!(fetched["offsets"][0]["metadata"], "from http");
    let lag = get(&broker.http, "/consumers/lag?group_id=http-group").json();
    assert_eq!(lag["total_lag"], 6);
    assert_eq!(lag["partitions"][0]["lag"], 6);
    assert_eq!(lag["partitions"][1]["lag"], 0);
    let consumer: BaseConsumer = broker.client_config().set("group.id", "http-group").create().expect("consumer");
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(&topic, 0);
    wanted.add_partition(&topic, 1);
    let committed = consumer.committed_offsets(wanted, Duration::from_secs(30)).expect("committed");
    let offsets: Vec<Offset> = committed.elements().iter().map(|e| e.offset()).collect();
    assert_eq!(offsets, vec![Offset::Offset(4), Offset::Offset(4)]);

    // Committed by a Kafka client, seen over HTTP.
    let kafka: BaseConsumer = broker.client_config().set("group.id", "kafka-group").create().expect("consumer");
    let mut commit = TopicPartitionList::new();
    commit.add_partition_offset(&topic, 0, Offset::Offset(7)).expect("offset");
    kafka.commit(&commit, CommitMode::Sync).expect("commit");
    let lag = get(&broker.http, "/consumers/lag?group_id=kafka-group").json();
    assert_eq!(lag["total_lag"], 3);
    assert_eq!(lag["partitions"][0]["committed_offset"], 7);
    assert_eq!(lag["partitions"][0]["log_end_offset"], 10);

    // While Kafka consumers own a group, HTTP commits are refused rather than mixed in.
    let member: Member = Member::new(
        broker
            .client_config()
            .set("group.id", "live-group")
            .set("session.timeout.ms", "6000")
            .create()
            .expect("consumer"),
    );
    member.subscribe(&[&topic]).expect("subscribe");
    let deadline = Instant::now() + WAIT_MAX;
    while member.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the member never got partitions");
        let _ = member.poll(Duration::from_millis(100));
    }
    let refused = post_json(
        &broker.http,
        "/consumers/live-group/offsets",
        &json!({"offsets": [{"topic": topic, "partition": 0, "offset": 1}]}),
    );
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert_eq!(refused.json()["error"], "conflict");
}

/// The value of the series `name{labels}` in a metrics scrape (labels as they are printed).
fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name_and_labels)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_admin_views_show_the_traffic() {
    let broker = TestBroker::start(&["--auto-create-topics", "false"]);
    let topic = unique_topic("http-metrics");
    create_topic(&broker, &topic, 2, &[]).await;
    let producer: FutureProducer = broker.producer(&[]);
    for i in 0..5 {
        let value = format!("value-{i}");
        let record = FutureRecord::<str, str>::to(&topic).partition(0).payload(&value);
        producer.send(record, Timeout::After(WAIT_MAX)).await.map_err(|(e, _)| e).expect("sent");
    }
    consume(&broker, &topic, &[0], 5);
    // A Metadata request for a topic that does not exist (auto-creation is off).
    let _ = producer.client().fetch_metadata(Some("no-such-topic"), Duration::from_secs(10));
    let commit = json!({"offsets": [{"topic": topic, "partition": 0, "offset": 2}]});
    assert_eq!(post_json(&broker.http, "/consumers/watchers/offsets", &commit).status, 200);
    // A live member, for the groups view.
    let member: Member = Member::new(
        broker
            .client_config()
            .set("group.id", "members")
            .set("client.id", "console-member")
            .create()
            .expect("consumer"),
    );
    member.subscribe(&[&topic]).expect("subscribe");
    let deadline = Instant::now() + WAIT_MAX;
    while member.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the member never got partitions");
        let _ = member.poll(Duration::from_millis(100));
    }

    let live = get(&broker.http, "/health/live");
    assert_eq!((live.status, live.text().as_str()), (200, "ok\n"));
    let ready = get(&broker.http, "/health/ready");
    assert_eq!((ready.status, ready.text().as_str()), (200, "ready\n"));
    let topics = get(&broker.http, "/admin/topics").json();
    let listed =
        topics["topics"].as_array().expect("topics").iter().find(|t| t["name"] == topic.as_str()).expect("listed");
    assert_eq!(
        listed["partitions"][0],
        json!({"partition": 0, "log_start_offset": 0, "log_end_offset": 5, "records": 5})
    );
    assert_eq!(listed["partitions"][1]["log_end_offset"], 0);
    let groups = get(&broker.http, "/admin/groups").json();
    let list = groups["groups"].as_array().expect("groups");
    let watchers = list.iter().find(|g| g["group_id"] == "watchers").expect("watchers");
    assert_eq!(watchers["total_lag"], 3);
    assert_eq!(watchers["state"], "Empty");
    let members = list.iter().find(|g| g["group_id"] == "members").expect("members");
    assert_eq!(members["state"], "Stable");
    assert_eq!(members["members"][0]["client_id"], "console-member");

    let response = get(&broker.http, "/metrics");
    assert_eq!(response.status, 200);
    assert!(response.header("content-type").is_some_and(|t| t.starts_with("application/openmetrics-text")));
    let text = response.text();
    let t = topic.as_str();
    let value = |series_name: &str| series(&text, series_name).unwrap_or_else(|| panic!("no {series_name} in\n{text}"));
    assert_eq!(value(&format!("kafka_server_brokertopicmetrics_messages_in_total{{topic=\"{t}\"}}")), 5.0);
    assert!(value(&format!("kafka_server_brokertopicmetrics_bytes_in_total{{topic=\"{t}\"}}")) > 5.0 * 7.0);
    assert!(value(&format!("kafka_server_brokertopicmetrics_messages_out_total{{topic=\"{t}\"}}")) >= 5.0);
    assert!(value(&format!("kafka_server_brokertopicmetrics_bytes_out_total{{topic=\"{t}\"}}")) > 0.0);
    assert!(value("kafka_network_requestmetrics_requests_total{request=\"Produce\"}") >= 1.0);
    assert!(value("kafka_network_requestmetrics_requests_total{request=\"Fetch\"}") >= 1.0);
    assert!(value("kafka_network_requestmetrics_total_time_seconds_count{request=\"Produce\"}") >= 1.0);
    assert!(value("kafka_network_requestmetrics_total_time_seconds_bucket{le=\"+Inf\",request=\"Metadata\"}") >= 1.0);
    assert!(
        value("kafka_network_requestmetrics_errors_total{request=\"Metadata\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"}")
            >= 1.0
    );
    assert!(value("kafka_server_socketservermetrics_connection_count") >= 1.0);
    assert!(value("kafka_server_socketservermetrics_connection_creation_total") >= 1.0);
    assert_eq!(value(&format!("kafka_log_log_log_end_offset{{topic=\"{t}\",partition=\"0\"}}")), 5.0);
    assert_eq!(value(&format!("kafka_log_log_log_start_offset{{topic=\"{t}\",partition=\"0\"}}")), 0.0);
    assert_eq!(
        value(&format!("kafka_consumergroup_lag{{consumergroup=\"watchers\",topic=\"{t}\",partition=\"0\"}}")),
        3.0
    );
    assert_eq!(
        value(&format!(
            "kafka_consumergroup_current_offset{{consumergroup=\"watchers\",topic=\"{t}\",partition=\"0\"}}"
        )),
        2.0
    );
    assert_eq!(value("kafka_consumergroup_members{consumergroup=\"members\",state=\"Stable\"}"), 1.0);
    assert!(value("kafka_server_replicamanager_partition_count") >= 2.0);
    assert!(value("zombi_rocksdb_memtable_bytes{column_family=\"batches\"}") > 0.0);
    assert!(value("zombi_rocksdb_memtable_bytes{column_family=\"groups\"}") > 0.0);
    assert!(value("zombi_rocksdb_live_sst_bytes{column_family=\"batches\"}") >= 0.0);
    assert!(value("zombi_rocksdb_total_sst_bytes{column_family=\"meta\"}") >= 0.0);
    assert!(value("zombi_rocksdb_pending_compaction_bytes{column_family=\"batches\"}") >= 0.0);
    assert!(value("zombi_rocksdb_block_cache_usage_bytes") >= 0.0);
    assert_eq!(value("zombi_rocksdb_write_stopped"), 0.0);
    assert_eq!(value("zombi_rocksdb_delayed_write_rate_bytes_per_second"), 0.0);
    assert!(value("process_resident_memory_bytes") > 1_000_000.0);
    assert!(value("process_cpu_seconds_total") > 0.0);
    assert!(value("process_open_fds") > 0.0);
    assert!(value("zombi_http_requests_total{route=\"/admin/topics\",status=\"200\"}") >= 1.0);
    assert!(value("zombi_http_requests_total{route=\"/consumers/{group_id}/offsets\",status=\"200\"}") >= 1.0);
    assert!(text.ends_with("# EOF\n"));
    assert_deploy_files_use_only_exported_metrics(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_v3_produce_route_writes_records() {
    let broker = TestBroker::start(&[]);
    let topic = unique_topic("http-v3");
    create_topic(&broker, &topic, 1, &[]).await;
    let cluster_id = get(&broker.http, "/admin/topics").json()["cluster_id"].as_str().expect("cluster id").to_string();
    let path = format!("/v3/clusters/{cluster_id}/topics/{topic}/records");
    let one = json!({
        "partition_id": 0,
        "headers": [{"name": "h", "value": "aGk="}, {"name": "h", "value": null}],
        "key": {"type": "STRING", "data": "k"},
        "value": {"type": "JSON", "data": {"a": [1, 2]}}
    });
    let response = post_json(&broker.http, &path, &one);
    assert_eq!(response.status, 200, "{}", response.text());
    let answer = response.json();
    assert_eq!(answer["error_code"], 200);
    assert_eq!(answer["cluster_id"], cluster_id.as_str());
    assert_eq!(answer["topic_name"], topic.as_str());
    assert_eq!((answer["partition_id"].as_i64(), answer["offset"].as_i64()), (Some(0), Some(0)));
    assert_eq!(answer["key"], json!({"type": "STRING", "size": 1}));
    assert_eq!(answer["value"], json!({"type": "JSON", "size": 11}));
    assert!(answer["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    // Streaming mode: concatenated objects, one result each.
    let stream = r#"{"value": {"type": "BINARY", "data": "AAE="}} {"value": {"type": "STRING", "data": "s"}}"#;
    let response = request(&broker.http, "POST", &path, Some("application/json"), stream.as_bytes());
    assert_eq!(response.status, 200, "{}", response.text());
    let offsets: Vec<i64> = response
        .text()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("json")["offset"].as_i64().expect("offset"))
        .collect();
    assert_eq!(offsets, vec![1, 2]);
    let wrong_cluster = post_json(&broker.http, &format!("/v3/clusters/nope/topics/{topic}/records"), &one);
    assert_eq!(wrong_cluster.status, 404);
    let bad_type = json!({"value": {"type": "AVRO", "data": "x"}});
    assert_eq!(post_json(&broker.http, &path, &bad_type).status, 400);

    let received = consume(&broker, &topic, &[0], 3);
    assert_eq!(received[0].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(received[0].value.as_deref(), Some(&br#"{"a":[1,2]}"#[..]));
    assert_eq!(received[0].headers, headers(&[("h", Some(b"hi")), ("h", None)]));
    assert_eq!(received[1].value.as_deref(), Some(&[0u8, 1][..]));
    assert_eq!(received[2].value.as_deref(), Some(&b"s"[..]));
}

/// Every metric the Grafana dashboard and the alert rules in deploy/ query is one the broker
/// exports: a series name in `scrape` (taken with traffic behind every family: families without a
/// series are left out of a scrape). Only `kafka_`, `zombi_` and `process_` names are matched, so
/// Prometheus's own `up` is not.
fn assert_deploy_files_use_only_exported_metrics(scrape: &str) {
    let mut exported = std::collections::HashSet::new();
    for line in scrape.lines() {
        let Some(declaration) = line.strip_prefix("# TYPE ") else { continue };
        let mut parts = declaration.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
        match kind {
            "counter" => exported.extend([format!("{name}_total")]),
            "histogram" => exported.extend(["_bucket", "_sum", "_count"].map(|suffix| format!("{name}{suffix}"))),
            _ => exported.extend([name.to_string()]),
        }
    }
    for file in ["deploy/grafana/zombi.json", "deploy/prometheus/alerts.yml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let content = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let used: std::collections::BTreeSet<&str> = content
            .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .filter(|token| ["kafka_", "zombi_", "process_"].iter().any(|prefix| token.starts_with(prefix)))
            .collect();
        assert!(used.len() >= 5, "{file} names almost no metrics: {used:?}");
        for name in used {
            assert!(exported.contains(name), "{file} queries {name}, which zombi does not export");
        }
    }
    let dashboard =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/zombi.json"))
            .expect("dashboard");
    let dashboard: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() > 10));
}

/// Records written over HTTP, uploaded by the flusher and trimmed from the hot tier, read back over
/// HTTP from the object store; the tiering series follow the flusher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiered_records_read_over_http_and_tiering_metrics_follow_the_flusher() {
    let broker = TestBroker::start(&[
        "--remote-log-manager-task-interval-ms",
        "50",
        "--log-segment-bytes",
        "65536",
        "--log-roll-ms",
        "300",
        "--log-local-retention-ms",
        "0",
    ]);
    let topic = unique_topic("http-tiered");
    create_topic(&broker, &topic, 1, &[]).await;
    for chunk in 0..3 {
        let records: Vec<Value> = (0..100)
            .map(|i| json!({"partition": 0, "key": format!("k{}", chunk * 100 + i), "value": "v".repeat(1000)}))
            .collect();
        let response = post_json(&broker.http, &format!("/events/{topic}"), &json!(records));
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let view = get(&broker.http, "/admin/tiering").json();
        let partition = view["topics"]
            .as_array()
            .and_then(|topics| topics.iter().find(|t| t["topic"] == topic.as_str()))
            .map(|t| t["partitions"][0].clone())
            .expect("the topic is in the tiering view");
        if partition["remote_end_offset"] == 300 && partition["local_start_offset"] == 300 {
            break;
        }
        assert!(Instant::now() < deadline, "never uploaded and trimmed: {partition}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let read = get(&broker.http, &format!("/events/{topic}?offset=0&limit=1000"));
    assert_eq!(read.status, 200, "{}", read.text());
    let keys: Vec<String> = read.json()["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["key"].as_str().expect("key").to_string())
        .collect();
    assert_eq!(keys, (0..300).map(|i| format!("k{i}")).collect::<Vec<_>>());

    let text = get(&broker.http, "/metrics").text();
    let t = topic.as_str();
    let value = |name: &str| {
        series(&text, &format!("{name}{{topic=\"{t}\",partition=\"0\"}}"))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert_eq!(value("zombi_tiering_remote_end_offset"), 300.0);
    assert_eq!(value("zombi_tiering_local_start_offset"), 300.0);
    assert!(value("kafka_server_brokertopicmetrics_remote_copy_bytes_total") > 300_000.0);
    assert!(value("kafka_server_brokertopicmetrics_remote_log_size_bytes") > 300_000.0);
    assert!(value("kafka_server_brokertopicmetrics_remote_log_metadata_count") >= 1.0);
    assert!(value("zombi_tiering_uploaded_segments_total") >= 1.0);
    assert_eq!(value("kafka_server_brokertopicmetrics_remote_copy_errors_total"), 0.0);
    assert!(series(&text, "zombi_object_store_requests_total{operation=\"put\"}").is_some_and(|v| v >= 1.0));
    assert!(series(&text, "zombi_object_store_requests_total{operation=\"get\"}").is_some_and(|v| v >= 1.0));
    assert_eq!(series(&text, "zombi_object_store_request_errors_total"), Some(0.0));
}

/// The Iceberg sink's series follow its commits: records produced over HTTP reach the table, and
/// /metrics then shows them written, the commits and files, lag 0 in records and seconds, and
/// zero failures; a sink whose catalog cannot be opened shows the records lag, a lag in seconds
/// that grows, and the catalog as unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iceberg_sink_metrics_follow_the_commits() {
    let broker = TestBroker::start(&["--iceberg-commit-interval-ms", "100", "--log-retention-ms=-1"]);
    let topic = unique_topic("http-iceberg-metrics");
    create_topic(&broker, &topic, 2, &[]).await;
    for (partition, count) in [(0, 7), (1, 3)] {
        let records: Vec<Value> =
            (0..count).map(|i| json!({"partition": partition, "value": format!("v{i}")})).collect();
        let response = post_json(&broker.http, &format!("/events/{topic}"), &json!(records));
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let t = topic.as_str();
    let deadline = Instant::now() + WAIT_MAX;
    let text = loop {
        let text = get(&broker.http, "/metrics").text();
        if series(&text, &format!("zombi_iceberg_records_written_total{{topic=\"{t}\"}}")) == Some(10.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "the sink never wrote the 10 records:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let value = |name: &str| series(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"));
    let partition = |name: &str, p: i32| value(&format!("{name}{{topic=\"{t}\",partition=\"{p}\"}}"));
    assert_eq!(partition("zombi_iceberg_committed_offset", 0), 7.0);
    assert_eq!(partition("zombi_iceberg_committed_offset", 1), 3.0);
    assert_eq!(partition("zombi_iceberg_records_lag", 0), 0.0);
    assert_eq!(partition("zombi_iceberg_records_lag", 1), 0.0);
    let topic_series = |name: &str| value(&format!("{name}{{topic=\"{t}\"}}"));
    assert_eq!(topic_series("zombi_iceberg_lag_seconds"), 0.0);
    assert!(topic_series("zombi_iceberg_commits_total") >= 1.0);
    assert!(topic_series("zombi_iceberg_data_files_written_total") >= 1.0);
    assert!(topic_series("zombi_iceberg_data_files_written_bytes_total") > 100.0);
    let now_seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    let last_commit = topic_series("zombi_iceberg_last_commit_timestamp_seconds");
    assert!(last_commit > now_seconds - 3600.0 && last_commit <= now_seconds + 1.0, "{last_commit}");
    for zero in [
        "zombi_iceberg_errors_total",
        "zombi_iceberg_skipped_below_log_start_total",
        "zombi_iceberg_control_records_total",
        "zombi_iceberg_header_keys_replaced_total",
        "zombi_iceberg_timestamps_out_of_range_total",
        "zombi_iceberg_compactions_total",
        "zombi_iceberg_compaction_files_rewritten_total",
        "zombi_iceberg_compaction_files_written_total",
        "zombi_iceberg_snapshots_expired_total",
        "zombi_iceberg_orphan_files_deleted_total",
    ] {
        assert_eq!(topic_series(zero), 0.0, "{zero}");
    }
    assert_eq!(value("zombi_iceberg_catalog_unavailable"), 0.0);
    let view = get(&broker.http, "/admin/iceberg").json();
    let table = view["topics"].as_array().and_then(|all| all.iter().find(|entry| entry["topic"] == t)).cloned();
    let table = table.expect("the topic is in the admin view");
    assert_eq!((table["records_behind"].as_i64(), table["lag_seconds"].as_f64()), (Some(0), Some(0.0)), "{table}");
    assert!(table["caught_up_at_ms"].is_i64(), "{table}");
    assert_eq!(table["compactions"], 0);

    // A catalog that cannot be opened: the table falls behind and the series say so.
    let broken = TestBroker::start(&[
        "--iceberg-catalog",
        "sqlite:///proc/zombi-no-such-dir/catalog.db",
        "--iceberg-commit-interval-ms",
        "50",
    ]);
    let topic = unique_topic("http-iceberg-behind");
    create_topic(&broken, &topic, 1, &[]).await;
    let response = post_json(&broken.http, &format!("/events/{topic}"), &json!([{"value": "a"}, {"value": "b"}]));
    assert_eq!(response.status, 200, "{}", response.text());
    let t = topic.as_str();
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let text = get(&broken.http, "/metrics").text();
        let lag = series(&text, &format!("zombi_iceberg_lag_seconds{{topic=\"{t}\"}}"));
        if series(&text, "zombi_iceberg_catalog_unavailable") == Some(1.0) && lag.is_some_and(|s| s > 0.0) {
            assert_eq!(
                series(&text, &format!("zombi_iceberg_records_lag{{topic=\"{t}\",partition=\"0\"}}")),
                Some(2.0)
            );
            assert_eq!(series(&text, &format!("zombi_iceberg_commits_total{{topic=\"{t}\"}}")), Some(0.0));
            break;
        }
        assert!(Instant::now() < deadline, "the sink's lag never showed:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Bytes no text encoding survives: a protobuf message with 0x00 and 0xff in it.
const PROTOBUF: &[u8] = b"\x08\x96\x01\x12\x04\x00\xff\x00\x01\x1a\x03abc\xff";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_body_is_one_record_and_a_first_write_creates_the_topic() {
    let broker = TestBroker::start(&[]);
    // Nobody created this topic: the first write does, with the broker's defaults (1 partition).
    let topic = unique_topic("http-raw");
    let path = format!("/events/{topic}");
    let types = [
        Some("application/x-protobuf"),
        Some("application/vnd.google.protobuf"),
        Some("application/avro"),
        Some("text/plain"),
        Some("application/octet-stream"),
        None,
    ];
    for (offset, content_type) in types.iter().enumerate() {
        let written = request(&broker.http, "POST", &path, *content_type, PROTOBUF);
        assert_eq!(written.status, 200, "{content_type:?}: {}", written.text());
        let answer = written.json();
        assert_eq!(answer["topic"], topic.as_str());
        assert_eq!((answer["partition"].as_i64(), answer["offset"].as_i64()), (Some(0), Some(offset as i64)));
        assert!(answer["timestamp"].as_i64().is_some_and(|t| t > 0), "{answer}");
    }
    // A key from the query string; the body is still the value, byte for byte.
    let keyed =
        request(&broker.http, "POST", &format!("{path}?key=device-7"), Some("application/x-protobuf"), PROTOBUF);
    assert_eq!(keyed.json()["offset"], 6, "{}", keyed.text());
    // A JSON body under a structured-syntax type is still record objects.
    let json_typed = request(
        &broker.http,
        "POST",
        &path,
        Some("application/cloudevents+json; charset=utf-8"),
        json!({"value": "as json"}).to_string().as_bytes(),
    );
    assert_eq!(json_typed.json()["offset"], 7, "{}", json_typed.text());

    // The plan's read, literally: non-UTF-8 values come back as value_base64.
    let read = get(&broker.http, &format!("{path}?offset=0&limit=10")).json();
    let records = read["records"].as_array().expect("records");
    assert_eq!(records.len(), 8, "{read}");
    for (offset, record) in records.iter().take(7).enumerate() {
        assert_eq!(record["offset"], offset as i64);
        assert_eq!(record["value"], Value::Null, "{record}");
        let value = BASE64.decode(record["value_base64"].as_str().expect("value_base64")).expect("base64");
        assert_eq!(value, PROTOBUF);
    }
    assert_eq!(records[5]["key"], Value::Null);
    assert_eq!(records[6]["key"], "device-7");
    assert_eq!(records[7]["value"], "as json");

    // And a Kafka consumer reads the same bytes.
    let consumed = consume(&broker, &topic, &[0], 8);
    for record in &consumed[..7] {
        assert_eq!(record.value.as_deref(), Some(PROTOBUF), "offset {}", record.offset);
        assert!(record.headers.is_empty());
    }
    assert_eq!(consumed[6].key.as_deref(), Some(&b"device-7"[..]));
    assert_eq!(consumed[7].value.as_deref(), Some(&b"as json"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_under_an_idempotency_key_gets_the_first_offsets_even_after_kill_9() {
    let mut broker = TestBroker::start(&[]);
    let topic = unique_topic("http-idem");
    create_topic(&broker, &topic, 3, &[]).await;
    let path = format!("/events/{topic}");
    let post = |broker: &TestBroker, key: &str, content_type: &str, body: &[u8]| {
        let response = crate::http_client::request_with(
            &broker.http,
            "POST",
            &path,
            &[("Content-Type", content_type), ("Idempotency-Key", key)],
            body,
        );
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()
    };

    let first = post(&broker, "order-1", "application/x-protobuf", PROTOBUF);
    assert_eq!(post(&broker, "order-1", "application/x-protobuf", PROTOBUF), first);
    // The key belongs to the request, whatever the retry's body: the first answer stands.
    assert_eq!(post(&broker, "order-1", "text/plain", b"something else"), first);
    assert_eq!(log_ends(&broker, &topic).iter().sum::<i64>(), 1);

    // A request over several partitions, its key as a field; the header form retries it.
    let batch = json!([
        {"partition": 0, "value": "a", "idempotency_key": "batch-7"},
        {"partition": 2, "value": "b", "idempotency_key": "batch-7"},
        {"partition": 0, "value": "c", "idempotency_key": "batch-7"},
    ]);
    let answered = post_json(&broker.http, &path, &batch);
    assert_eq!(answered.status, 200, "{}", answered.text());
    let answered = answered.json();
    let offsets: Vec<(i64, i64)> = answered["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| (o["partition"].as_i64().expect("partition"), o["offset"].as_i64().expect("offset")))
        .collect();
    let first_on_0 = if first["partition"] == 0 { 1 } else { 0 };
    let first_on_2 = if first["partition"] == 2 { 1 } else { 0 };
    assert_eq!(offsets, vec![(0, first_on_0), (2, first_on_2), (0, first_on_0 + 1)]);
    assert_eq!(post(&broker, "batch-7", "application/json", batch.to_string().as_bytes()), answered);
    let ends = log_ends(&broker, &topic);
    assert_eq!(ends.iter().sum::<i64>(), 4);

    // Keys are durable: after kill -9, the retries still get the first answers and write nothing.
    broker.kill_and_restart();
    assert_eq!(post(&broker, "order-1", "application/x-protobuf", PROTOBUF), first);
    assert_eq!(post(&broker, "batch-7", "application/json", batch.to_string().as_bytes()), answered);
    assert_eq!(log_ends(&broker, &topic), ends);
    // A new key writes.
    let next =
        post(&broker, "order-2", "application/json", json!({"partition": 1, "value": "x"}).to_string().as_bytes());
    assert_eq!(next["offset"], ends[1]);
    let values: Vec<Vec<u8>> = consume(&broker, &topic, &[0, 1, 2], 5).into_iter().filter_map(|r| r.value).collect();
    assert_eq!(values.iter().filter(|v| v.as_slice() == PROTOBUF).count(), 1, "written once");

    // Bad keys.
    let refused = |headers: &[(&str, &str)], body: &Value| {
        let response =
            crate::http_client::request_with(&broker.http, "POST", &path, headers, body.to_string().as_bytes());
        assert_eq!(response.status, 400, "{}", response.text());
        assert_eq!(response.json()["error"], "bad_request");
    };
    let json_type = ("Content-Type", "application/json");
    refused(&[json_type, ("Idempotency-Key", "a")], &json!({"value": "v", "idempotency_key": "b"}));
    refused(&[json_type], &json!([{"value": "v", "idempotency_key": "a"}, {"value": "w", "idempotency_key": "b"}]));
    refused(&[json_type, ("Idempotency-Key", &"k".repeat(257))], &json!({"value": "v"}));
    refused(&[json_type], &json!({"value": "v", "idempotency_key": ""}));
    assert_eq!(log_ends(&broker, &topic).iter().sum::<i64>(), 5);
}
