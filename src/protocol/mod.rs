//! The Kafka wire format: request headers, version checks, response framing. No I/O, no state.
//!
//! Message bodies are decoded and encoded by the `kafka-protocol` crate; this module decides which
//! APIs and versions the broker answers (the table in [`apis`]) and turns frames into requests and
//! responses into frames.

pub mod apis;
mod error_counts;
pub mod frame;
pub mod legacy_produce;
pub mod throttle;

pub use error_counts::{CountErrors, ErrorCounts};
pub use frame::Frame;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    /// The API's row in the table: its key and the handler family that answers it.
    pub api: &'static apis::Api,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    pub body: Body,
}

/// Moved once per request, so the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Body {
    Kind(RequestKind),
    /// Produce v0–v2, which the broker advertises (librdkafka needs it) but refuses.
    LegacyProduce(legacy_produce::LegacyProduce),
    /// ApiVersions at a version above ours: answered at v0 with UNSUPPORTED_VERSION (KIP-511).
    UnsupportedApiVersions,
}

/// A frame that cannot be answered: Apache Kafka closes the connection for these.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("request frame too short for a header")]
    Truncated,
    #[error("unknown or unsupported API key {0}")]
    UnknownApiKey(i16),
    #[error("unsupported version {version} of API {api_key:?}")]
    UnsupportedVersion { api_key: ApiKey, version: i16 },
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed { api_key: ApiKey, version: i16, reason: String },
}

/// Decodes one request frame (without its 4-byte size prefix).
pub fn decode(mut frame: Bytes) -> Result<Request, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::Truncated);
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| DecodeError::UnknownApiKey(raw_key))?;
    let api = apis::find(api_key).ok_or(DecodeError::UnknownApiKey(raw_key))?;
    if api_key == ApiKey::ApiVersions && version > api.max_version {
        // Answered at v0, the one version every client can read (KIP-511).
        return Ok(Request { api, version: 0, correlation_id, client_id: None, body: Body::UnsupportedApiVersions });
    }
    if version < api.min_version || version > api.max_version {
        return Err(DecodeError::UnsupportedVersion { api_key, version });
    }
    let malformed = |reason: String| DecodeError::Malformed { api_key, version, reason };
    if api_key == ApiKey::Produce && version <= legacy_produce::VERSION_MAX {
        let header = RequestHeader::decode(&mut frame, 1).map_err(|e| malformed(e.to_string()))?;
        let body = legacy_produce::decode(frame).map_err(|e| malformed(e.to_string()))?;
        return Ok(Request {
            api,
            version,
            correlation_id,
            client_id: header.client_id.map(|s| s.to_string()),
            body: Body::LegacyProduce(body),
        });
    }
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version).map_err(|e| malformed(e.to_string()))?;
    let body = RequestKind::decode(api_key, &mut frame, version).map_err(|e| malformed(e.to_string()))?;
    if frame.has_remaining() {
        // Apache Kafka ignores bytes after the body, and librdkafka 2.x sends some (Metadata v13
        // for all topics carries three), so they are ignored here too.
        tracing::debug!(api = ?api_key, version, bytes = frame.remaining(), "ignoring bytes after the request body");
    }
    Ok(Request {
        api,
        version,
        correlation_id,
        client_id: header.client_id.map(|s| s.to_string()),
        body: Body::Kind(body),
    })
}

#[derive(Debug, thiserror::Error)]
#[error("cannot encode {api_key:?} v{version} response: {reason}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub version: i16,
    pub reason: String,
}

/// Encodes a response with its header and 4-byte size prefix. A Fetch response's record sets
/// are parts of the frame, not copies (`frame`).
pub fn encode(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<Frame, EncodeError> {
    let error = |e: anyhow::Error| EncodeError { api_key, version, reason: e.to_string() };
    let header_version = api_key.response_header_version(version);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let size = header.compute_size(header_version).map_err(error)? + response_size(response, version).map_err(error)?;
    if let ResponseKind::Fetch(fetch) = response {
        let shared: Vec<Bytes> =
            fetch.responses.iter().flat_map(|t| &t.partitions).filter_map(|p| p.records.clone()).collect();
        let shared_bytes: usize = shared.iter().map(Bytes::len).sum();
        let mut out = frame::Splicing::new(shared, (4 + size).saturating_sub(shared_bytes));
        out.put_i32(size as i32);
        header.encode(&mut out, header_version).map_err(error)?;
        fetch.encode(&mut out, version).map_err(error)?;
        return Ok(out.finish());
    }
    let mut out = BytesMut::with_capacity(4 + size);
    out.put_i32(size as i32);
    header.encode(&mut out, header_version).map_err(error)?;
    response.encode(&mut out, version).map_err(error)?;
    Ok(Frame { parts: vec![out.freeze()] })
}

/// Encodes raw body bytes (already encoded) behind a v0 response header.
pub fn frame_v0(correlation_id: i32, body: &[u8]) -> Frame {
    let mut out = BytesMut::with_capacity(8 + body.len());
    out.put_i32(4 + body.len() as i32);
    out.put_i32(correlation_id);
    out.put_slice(body);
    Frame { parts: vec![out.freeze()] }
}

/// A bare SASL token: its size, then its bytes (no header), as the server answers tokens after a
/// SaslHandshake v0.
pub fn frame_sasl_token(token: &[u8]) -> Frame {
    let mut out = BytesMut::with_capacity(4 + token.len());
    out.put_i32(token.len() as i32);
    out.put_slice(token);
    Frame { parts: vec![out.freeze()] }
}

fn response_size(response: &ResponseKind, version: i16) -> anyhow::Result<usize> {
    // ResponseKind has no size method of its own; encoding into a scratch buffer would copy records.
    macro_rules! sizes {
        ($($variant:ident),*) => {
            match response {
                $(ResponseKind::$variant(body) => body.compute_size(version),)*
                _ => {
                    let mut scratch = BytesMut::new();
                    response.encode(&mut scratch, version)?;
                    Ok(scratch.len())
                }
            }
        };
    }
    sizes!(Produce, Fetch, ListOffsets, Metadata, ApiVersions, CreateTopics, DeleteTopics)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// The same property as fuzz/request_decode, on every test run: no input panics.
        #[test]
        fn arbitrary_frames_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(Bytes::from(bytes));
        }

        /// Valid headers of every advertised API and version with random bodies.
        #[test]
        fn random_bodies_of_real_apis_never_panic(
            key in 0i16..70,
            version in 0i16..20,
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut frame = BytesMut::new();
            frame.put_i16(key);
            frame.put_i16(version);
            frame.put_i32(1);
            frame.put_i16(-1);
            frame.put_u8(0);
            frame.put_slice(&body);
            let _ = decode(frame.freeze());
        }
    }
}
