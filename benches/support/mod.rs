//! What the benchmarks share: record batches built with kafka-protocol's encoder.
// Each bench uses only some of these helpers.
#![allow(dead_code)]

pub mod broker;
pub mod producer;
pub mod security;

/// Client settings every librdkafka client of the run takes (a secured listener's).
static CLIENT_SETTINGS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

/// Sets the client settings of the run, once, before any client is made.
pub fn set_client_settings(settings: Vec<(String, String)>) {
    CLIENT_SETTINGS.set(settings).expect("client settings are set once");
}

/// A client config for `bootstrap` with the run's client settings.
pub fn client(bootstrap: &str) -> rdkafka::ClientConfig {
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in CLIENT_SETTINGS.get().map(Vec::as_slice).unwrap_or_default() {
        config.set(key, value);
    }
    config
}

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

/// One uncompressed magic v2 batch of `records` records of `record_bytes` bytes each, stamped
/// `timestamp + i`.
pub fn make_batch(records: usize, record_bytes: usize, timestamp: i64) -> Bytes {
    let records: Vec<Record> = (0..records)
        .map(|i| {
            let value = Bytes::from(vec![b'b'; record_bytes]);
            record(i as i64, timestamp + i as i64, None, Some(value), IndexMap::new())
        })
        .collect();
    encode(&records, Compression::None)
}

/// A plain (not transactional, not control) record at `offset` of its batch.
pub fn record(
    offset: i64,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: IndexMap<StrBytes, Option<Bytes>>,
) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        // kafka-protocol starts a new batch whenever offset - sequence changes.
        sequence: offset as i32,
        timestamp,
        key,
        value,
        headers,
    }
}

/// `records` as one magic v2 batch.
pub fn encode(records: &[Record], compression: Compression) -> Bytes {
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression };
    RecordBatchEncoder::encode(&mut out, records, &options).expect("encode");
    out.freeze()
}

/// A number from the environment, or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
