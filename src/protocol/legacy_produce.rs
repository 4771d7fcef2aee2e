//! Produce v0–v2: decoded only so that the broker can refuse it properly.
//!
//! Apache Kafka 4 advertises Produce from v0, because librdkafka will not produce otherwise, and
//! answers v0–v2 with UNSUPPORTED_VERSION. The `kafka-protocol` crate starts at v3, so the bodies are
//! read here: v0–v2 requests are v3 requests without the transactional id.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::protocol::Decodable;

/// The last Produce version decoded here; later ones are the crate's.
pub const VERSION_MAX: i16 = 2;

/// The topic and partition indexes of a refused produce request, to answer each with an error.
#[derive(Debug)]
pub struct LegacyProduce {
    pub acks: i16,
    pub topics: Vec<(String, Vec<i32>)>,
}

pub fn decode(body: Bytes) -> anyhow::Result<LegacyProduce> {
    let mut as_v3 = BytesMut::with_capacity(body.len() + 2);
    as_v3.put_i16(-1); // null transactional id
    as_v3.put_slice(&body);
    let request = ProduceRequest::decode(&mut as_v3.freeze(), 3)?;
    Ok(LegacyProduce {
        acks: request.acks,
        topics: request
            .topic_data
            .into_iter()
            .map(|topic| (topic.name.0.to_string(), topic.partition_data.iter().map(|p| p.index).collect()))
            .collect(),
    })
}

/// Encodes the response body of v0–v2 with `error_code` for every partition.
pub fn encode_error(request: &LegacyProduce, version: i16, error_code: i16) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i32(request.topics.len() as i32);
    for (name, partitions) in &request.topics {
        out.put_i16(name.len() as i16);
        out.put_slice(name.as_bytes());
        out.put_i32(partitions.len() as i32);
        for &partition in partitions {
            out.put_i32(partition);
            out.put_i16(error_code);
            out.put_i64(-1); // base offset
            if version >= 2 {
                out.put_i64(-1); // log append time
            }
        }
    }
    if version >= 1 {
        out.put_i32(0); // throttle time
    }
    out.freeze()
}
