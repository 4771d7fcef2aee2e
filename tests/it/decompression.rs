//! A batch that is small on the wire but decompresses past `--record-batch-decompressed-max-bytes`
//! (a "zip bomb": here 150 kB of zeros, zstd-compressed to a few hundred bytes) is refused by every
//! reader that decompresses, instead of taking memory without bound: the HTTP read answers 500 and
//! names the flag, the Iceberg sink reports a failed round, and a compacted topic's produce gets
//! MESSAGE_TOO_LARGE. Kafka consumers still get the stored bytes (fetch never decompresses).

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use serde_json::Value;

use crate::common::{TestBroker, WAIT_MAX, consume, unique_topic};
use crate::http::create_topic;
use crate::http_client::get;

const LIMIT_BYTES: &str = "100000";
const VALUE_BYTES: usize = 150_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_that_decompress_past_the_limit_are_refused_not_allocated() {
    let broker = TestBroker::start(&[
        "--message-max-bytes",
        LIMIT_BYTES,
        "--record-batch-decompressed-max-bytes",
        LIMIT_BYTES,
        "--iceberg-commit-interval-ms",
        "100",
        "--log-retention-ms=-1",
    ]);
    let topic = unique_topic("bomb");
    let compacted = unique_topic("bomb-compacted");
    create_topic(&broker, &topic, 1, &[]).await;
    create_topic(&broker, &compacted, 1, &[("cleanup.policy", "compact")]).await;
    let producer = broker.producer(&[("compression.codec", "zstd")]);
    let zeros = vec![0u8; VALUE_BYTES];
    let record = FutureRecord::to(&topic).partition(0).key("k").payload(&zeros);
    producer.send(record, Timeout::After(WAIT_MAX)).await.map_err(|(e, _)| e).expect("stored: small on the wire");

    // Kafka consumers get it: fetch returns the stored bytes without decompressing them.
    let consumed = consume(&broker, &topic, &[0], 1);
    assert_eq!(consumed[0].value.as_ref().map(Vec::len), Some(VALUE_BYTES));

    let read = get(&broker.http, &format!("/events/{topic}?offset=0"));
    assert_eq!(read.status, 500, "{}", read.text());
    assert!(read.json()["message"].as_str().is_some_and(|m| m.contains("--record-batch-decompressed-max-bytes")));

    // The sink fails the round (and retries) rather than skip the record or decompress it whole.
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let view = get(&broker.http, "/admin/iceberg").json();
        let table =
            view["topics"].as_array().and_then(|all| all.iter().find(|t| t["topic"] == topic.as_str())).cloned();
        let table = table.unwrap_or(Value::Null);
        if table["last_error"].as_str().is_some_and(|e| e.contains("--record-batch-decompressed-max-bytes")) {
            assert_eq!(table["records_written"], 0, "{table}");
            assert_eq!(table["records_behind"], 1, "{table}");
            assert!(table["errors"].as_u64().is_some_and(|e| e >= 1), "{table}");
            break;
        }
        assert!(Instant::now() < deadline, "the sink never reported the batch: {table}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A compacted topic decompresses on produce to check keys: the batch is refused there.
    let record = FutureRecord::to(&compacted).partition(0).key("k").payload(&zeros);
    let refused = producer.send(record, Timeout::After(WAIT_MAX)).await.map_err(|(e, _)| e);
    assert!(
        matches!(refused, Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge))),
        "{refused:?}"
    );
}
