//! A raw Kafka protocol client (kafka-protocol's encoders over a blocking socket), for checking
//! exact error codes and for sending what no well-behaved client would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

pub struct Raw {
    stream: TcpStream,
    correlation_id: i32,
    client_id: &'static str,
}

impl Raw {
    pub fn connect(address: &str) -> Raw {
        let stream = TcpStream::connect(address).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        Raw { stream, correlation_id: 0, client_id: "raw-test" }
    }

    /// The same connection, sending `client_id` in its request headers.
    pub fn with_client_id(self, client_id: &'static str) -> Raw {
        Raw { client_id, ..self }
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads one response frame; None when the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        if self.stream.read_exact(&mut size).is_err() {
            return None;
        }
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut frame).ok()?;
        Some(Bytes::from(frame))
    }

    /// True when the broker closed the connection (reads end) within the read timeout.
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0) | Err(_))
    }

    /// True when the broker closed the connection (end of stream or reset) within 10 s; false
    /// when it is still open and silent.
    pub fn closed_by_broker(&mut self) -> bool {
        use std::io::ErrorKind;
        self.stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(error) => matches!(
                error.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            ),
        }
    }

    pub fn frame<R: Request>(&mut self, version: i16, body: &R) -> BytesMut {
        self.correlation_id += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = self.correlation_id;
        header.client_id = Some(StrBytes::from_static_str(self.client_id));
        let mut payload = BytesMut::new();
        header.encode(&mut payload, R::header_version(version)).expect("header");
        body.encode(&mut payload, version).expect("body");
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&(payload.len() as i32).to_be_bytes());
        frame.extend_from_slice(&payload);
        frame
    }

    pub fn send<R: Request>(&mut self, version: i16, body: &R) {
        let frame = self.frame(version, body);
        self.send_bytes(&frame);
    }

    /// Sends a request and decodes its response.
    pub fn call<R: Request>(&mut self, version: i16, body: &R) -> R::Response {
        self.send(version, body);
        let mut frame = self.read_frame().expect("a response");
        let api_key = ApiKey::try_from(R::KEY).expect("api key");
        let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version)).expect("header");
        assert_eq!(header.correlation_id, self.correlation_id, "responses come back in order");
        R::Response::decode(&mut frame, version).expect("response body")
    }
}
