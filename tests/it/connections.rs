//! The HTTP listener's limits, over raw sockets: slow and idle connections are closed, a short
//! body is refused after the body timeout, and connections over the cap are told so at once.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{self, eventually, TestServer, SWITCH_TOKEN};

/// Longer than every timeout these tests configure, so that a test fails rather than hangs when
/// a limit is not enforced.
const PATIENCE: Duration = Duration::from_secs(8);

/// What the server sent until it closed the connection, as text; `None` if it is still open
/// after [`PATIENCE`].
async fn read_until_closed(stream: &mut TcpStream) -> Option<String> {
    let received = support::read_until_closed(stream, PATIENCE).await?;
    Some(String::from_utf8_lossy(&received).into_owned())
}

async fn server(idle_secs: u64, body_secs: u64, max_connections: usize) -> TestServer {
    TestServer::builder()
        .configure(|config| {
            config.http_idle_timeout_secs = idle_secs;
            config.http_body_timeout_secs = body_secs;
            config.max_connections = max_connections;
        })
        .start()
        .await
}

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.base.trim_start_matches("http://")).await.unwrap()
}

fn echo_request(body: &str, keep_alive: bool) -> String {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!(
        "POST /v1/switch/echo HTTP/1.1\r\nhost: privnum\r\nauthorization: Bearer {SWITCH_TOKEN}\r\ncontent-type: application/json\r\nconnection: {connection}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_header_connections_are_closed_after_the_idle_timeout() {
    let server = server(1, 10, 100).await;
    let mut silent = connect(&server).await;
    let mut slow = connect(&server).await;
    slow.write_all(b"POST /v1/switch/echo HTTP/1.1\r\nhost: privnum\r\n").await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(read_until_closed(&mut silent).await.as_deref(), Some(""), "a silent connection is closed, unanswered");
    let slow_answer = read_until_closed(&mut slow).await.expect("a connection whose header never ends is closed");
    assert!(!slow_answer.contains("200 OK"), "{slow_answer}");
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the timeout: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_is_served_then_closed_once_idle() {
    let server = server(1, 10, 100).await;
    let mut stream = connect(&server).await;
    for n in 0..3 {
        let body = format!(r#"{{"n":{n}}}"#);
        stream.write_all(echo_request(&body, true).as_bytes()).await.unwrap();
        let mut buffer = vec![0u8; 4096];
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buffer)).await.unwrap().unwrap();
        let answer = String::from_utf8_lossy(&buffer[..read]);
        assert!(answer.starts_with("HTTP/1.1 200"), "request {n} on the same connection is served: {answer}");
        assert!(answer.ends_with(&body), "{answer}");
    }
    assert_eq!(read_until_closed(&mut stream).await.as_deref(), Some(""), "then closed when idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_shorter_than_its_content_length_is_refused_after_the_body_timeout() {
    let server = server(30, 1, 100).await;
    let mut stream = connect(&server).await;
    let head = format!(
        "POST /v1/switch/calls HTTP/1.1\r\nhost: privnum\r\nauthorization: Bearer {SWITCH_TOKEN}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"caller\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream).await.expect("the request is answered and the connection closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""resultcode":"1010002""#), "{answer}");
    assert!(answer.contains("did not arrive within 1 s"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_at_once_and_served_again_once_one_closes() {
    let server = server(30, 10, 3).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = connect(&server).await;
        // A full exchange proves the connection holds one of the three places.
        stream.write_all(echo_request("{}", true).as_bytes()).await.unwrap();
        let mut buffer = [0u8; 1024];
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buffer)).await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));
        open.push(stream);
    }
    let mut fourth = connect(&server).await;
    let refused = read_until_closed(&mut fourth).await.expect("the fourth connection is closed at once");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("Too many connections"), "{refused}");

    drop(open.pop());
    let served = eventually(PATIENCE, || async {
        let mut stream = connect(&server).await;
        stream.write_all(echo_request("{}", false).as_bytes()).await.ok()?;
        let answer = read_until_closed(&mut stream).await?;
        answer.starts_with("HTTP/1.1 200").then_some(answer)
    })
    .await;
    assert!(served.is_some(), "a place freed by a closed connection is served again");
    // The probe's place is freed just after its client saw the close: until then a new
    // connection may still be the one over the cap.
    let metrics = eventually(PATIENCE, || async {
        server.client.get(format!("{}/metrics", server.base)).send().await.ok()?.text().await.ok()
    })
    .await
    .expect("/metrics is served once the probe's place is free");
    assert!(
        metrics.lines().any(|line| line.starts_with("privnum_connections_refused_total ") && !line.ends_with(" 0")),
        "{metrics}"
    );
}
