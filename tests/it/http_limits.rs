//! The HTTP listener's limits against a real broker over raw TCP: a request header that never
//! completes and a body that stops arriving are cut off by their timeouts, and connections beyond
//! `--http-connections-max` are answered 503 and closed while the others keep being served.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{TestBroker, WAIT_MAX};
use crate::http_client::get;

/// Reads until the peer closes (EOF or reset), within `WAIT_MAX`; returns what arrived.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
    let deadline = Instant::now() + WAIT_MAX;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(Instant::now() < deadline, "the server never closed the connection; got {received:?}");
        match stream.read(&mut buf) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
                return received;
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// Sends a keep-alive `GET /health/live` and reads its whole answer, leaving the connection open.
fn live_on(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET /health/live HTTP/1.1\r\nHost: zombi\r\n\r\n").expect("send");
    stream.set_read_timeout(Some(WAIT_MAX)).expect("read timeout");
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    while !received.ends_with(b"ok\n") {
        let n = stream.read(&mut buf).expect("an answer");
        assert!(n > 0, "closed before answering: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&received).into_owned()
}

pub(crate) fn metric(broker: &TestBroker, series: &str) -> f64 {
    let text = get(&broker.http, "/metrics").text();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[test]
fn half_a_header_and_a_stalled_body_are_cut_off() {
    // The idle timeout is ten times the header one, so that each connection below is closed by
    // the timeout it is about (a half header also moves no bytes).
    let broker = TestBroker::start(&["--http-header-read-timeout-ms", "300", "--http-idle-timeout-ms", "3000"]);
    // Slowloris: the request line and one header, never the blank line that ends the header.
    let mut slow = TcpStream::connect(&broker.http).expect("connect");
    slow.write_all(b"GET /health/live HTTP/1.1\r\nHost: zombi\r\n").expect("send half a header");
    let answer = read_until_closed(&mut slow);
    assert!(!String::from_utf8_lossy(&answer).contains("ok\n"), "the half request was not served: {answer:?}");

    // A body announced as 1000 bytes that stops after 10: the idle timeout ends it.
    let mut stalled = TcpStream::connect(&broker.http).expect("connect");
    stalled
        .write_all(b"POST /events/t HTTP/1.1\r\nHost: zombi\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n0123456789")
        .expect("send part of a body");
    let answer = read_until_closed(&mut stalled);
    assert!(!String::from_utf8_lossy(&answer).contains(" 200 "), "the stalled request was not served: {answer:?}");

    // A client that sends its request at once is still served.
    let live = get(&broker.http, "/health/live");
    assert_eq!((live.status, live.text().as_str()), (200, "ok\n"));
    assert!(metric(&broker, "zombi_http_connections_timed_out_total{timeout=\"header_read\"}") >= 1.0);
    assert!(metric(&broker, "zombi_http_connections_timed_out_total{timeout=\"idle\"}") >= 1.0);
}

#[test]
fn connections_beyond_the_cap_get_503_and_the_served_ones_carry_on() {
    // A long header read timeout: the kept-alive connections below must not be closed as idle.
    let broker = TestBroker::start(&["--http-connections-max", "2", "--http-header-read-timeout-ms", "600000"]);
    // Two kept-alive connections, each answered once: both hold a slot from now on.
    let mut first = TcpStream::connect(&broker.http).expect("connect");
    let mut second = TcpStream::connect(&broker.http).expect("connect");
    assert!(live_on(&mut first).starts_with("HTTP/1.1 200"));
    assert!(live_on(&mut second).starts_with("HTTP/1.1 200"));

    // A third is answered 503 at once, with a JSON error, and closed.
    let mut third = TcpStream::connect(&broker.http).expect("the kernel still completes the connect");
    third.write_all(b"GET /health/live HTTP/1.1\r\nHost: zombi\r\n\r\n").expect("send");
    let refused = String::from_utf8_lossy(&read_until_closed(&mut third)).into_owned();
    assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");
    assert!(refused.to_ascii_lowercase().contains("retry-after: 1\r\n"), "{refused}");
    assert!(refused.contains(r#""error":"unavailable""#), "{refused}");

    // The connections inside the cap keep being served.
    assert!(live_on(&mut first).starts_with("HTTP/1.1 200"));

    // Once one closes, its slot serves a new connection (the server notices the close when it
    // reads the end of the stream, so poll).
    drop(second);
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let mut next = TcpStream::connect(&broker.http).expect("connect");
        next.write_all(b"GET /metrics HTTP/1.1\r\nHost: zombi\r\nConnection: close\r\n\r\n").expect("send");
        let answer = String::from_utf8_lossy(&read_until_closed(&mut next)).into_owned();
        if answer.starts_with("HTTP/1.1 200") {
            let refusals = answer
                .lines()
                .find_map(|line| line.strip_prefix("zombi_http_connections_refused_total "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .expect("the refusal counter is exported");
            assert!(refusals >= 1.0, "{answer}");
            assert!(answer.contains("zombi_http_connection_count 2"), "first and this one are open: {answer}");
            break;
        }
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert!(Instant::now() < deadline, "the closed connection's slot was never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}
