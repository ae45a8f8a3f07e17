//! `[tls]`: the listener speaks HTTPS only, with a certificate made at test time. Signed
//! provisioning over HTTPS is `reference_client.rs` (`both_clients_drive_the_axb_lifecycle_over_https`);
//! here: the switch over HTTPS, plain HTTP told to use `https://`, handshakes bounded in time and
//! under the connection cap, and certificate problems named at start; and pushes to a receiver
//! over HTTPS, trusted through `push_ca_file`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use privnum::clock::ManualClock;
use privnum::config::TlsConfig;
use reqwest::Method;
use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::support::{self, eventually, TestServer};

/// Longer than every timeout these tests configure, so that a test fails rather than hangs when
/// a limit is not enforced.
const PATIENCE: Duration = Duration::from_secs(8);

async fn read_until_closed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    support::read_until_closed(stream, PATIENCE).await
}

fn address(server: &TestServer) -> &str {
    server.base.trim_start_matches("https://")
}

/// Waits until `/metrics` counts `count` failed handshakes for `reason` (a failure is counted
/// just after its connection closes).
async fn assert_counted(server: &TestServer, reason: &str, count: u64) {
    let line = format!("privnum_tls_handshakes_failed_total{{reason=\"{reason}\"}} {count}");
    let last = std::sync::Mutex::new(String::new());
    let found = eventually(PATIENCE, || {
        let request = server.client.get(format!("{}/metrics", server.base)).send();
        let (last, line) = (&last, &line);
        async move {
            let text = request.await.ok()?.text().await.ok()?;
            let found = text.lines().any(|found| found == line);
            *last.lock().unwrap() = text;
            found.then_some(())
        }
    })
    .await;
    assert!(found.is_some(), "expected {line:?} in:\n{}", last.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_and_the_switch_are_served_over_https() {
    let server = TestServer::builder().tls().start().await;
    assert!(server.base.starts_with("https://127.0.0.1:"), "{}", server.base);
    let body = json!({"relationNum": "+8617000000001", "callerNum": "+8613800000001", "calleeNum": "+8613900000001"});
    let bound = server.bind_axb(body).await;
    bound.expect(200, "0");
    let decision = server.switch_call("+8613800000001", "+8617000000001").await;
    assert_eq!(decision.status, 200, "{decision:?}");
    assert_eq!(decision.body["action"], "connect", "{decision:?}");
    assert_eq!(decision.body["callee"], "+8613900000001", "{decision:?}");
    server.admin(Method::GET, "/apps", None).await.expect(200, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_is_refused_and_told_to_use_https() {
    let server = TestServer::builder().tls().start().await;
    let plain = reqwest::Client::new();
    let response = plain
        .post(format!("http://{}{}", address(&server), support::AXB_PATH))
        .json(&json!({"areaCode": "0755"}))
        .send()
        .await
        .expect("a plain-HTTP client gets an answer it can read");
    assert_eq!(response.status(), 400);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["resultcode"], "1010002", "{answer}");
    assert!(answer["resultdesc"].as_str().unwrap_or_default().contains("https://"), "{answer}");

    // Bytes that are neither TLS nor HTTP: closed unanswered.
    let mut garbage = TcpStream::connect(address(&server)).await.unwrap();
    garbage.write_all(&[0x01, 0x02, 0x03, 0x04, 0x05]).await.unwrap();
    let sent = read_until_closed(&mut garbage).await.expect("closed");
    assert!(!String::from_utf8_lossy(&sent).contains("HTTP/1.1 200"), "{sent:?}");

    assert_counted(&server, "plain_http", 1).await;
    assert_counted(&server, "refused", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_never_completes_is_closed_after_its_timeout_and_frees_its_place() {
    let server = TestServer::builder()
        .tls()
        .configure(|config| {
            config.max_connections = 2;
            config.http_idle_timeout_secs = 30; // so that only the handshake's timeout can close them
            if let Some(tls) = &mut config.tls {
                tls.handshake_timeout_secs = 1;
            }
        })
        .start()
        .await;
    // One connection says nothing; the other starts a TLS record and stalls (slowloris).
    let mut silent = TcpStream::connect(address(&server)).await.unwrap();
    let mut stalled = TcpStream::connect(address(&server)).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x00]).await.unwrap();
    let started = Instant::now();

    // Both hold the two places: a third client is refused at once, over TLS, with 503.
    let refused = eventually(PATIENCE, || async {
        let answer = server.send(Method::GET, "/healthz", &[], None).await;
        (answer.status == 503).then_some(answer)
    })
    .await
    .expect("a client over the cap is answered 503 over TLS while the two handshakes hold their places");
    assert_eq!(refused.code(), "1010001", "{refused:?}");

    assert_eq!(read_until_closed(&mut silent).await, Some(Vec::new()), "a silent connection is closed, unanswered");
    assert!(read_until_closed(&mut stalled).await.is_some(), "a stalled handshake is closed");
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the timeout: {:?}", started.elapsed());
    assert!(started.elapsed() < PATIENCE, "{:?}", started.elapsed());

    let served = eventually(PATIENCE, || async {
        let answer = server.send(Method::GET, "/healthz", &[], None).await;
        answer.status.is_success().then_some(answer)
    })
    .await;
    assert!(served.is_some(), "the places the handshakes held are served again");
    assert_counted(&server, "timeout", 2).await;
}

async fn start_error(tls: TlsConfig) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::test_config(dir.path().join("data"));
    config.tls = Some(tls);
    let clock = ManualClock::new(chrono::Utc::now().timestamp());
    match privnum::server::start(config, Arc::new(clock)).await {
        Ok(_) => panic!("the server started"),
        Err(err) => format!("{err:#}"),
    }
}

#[tokio::test]
async fn a_missing_or_unusable_certificate_or_key_stops_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let write_pair = |name: &str| {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let (cert, key) = (dir.path().join(format!("{name}-cert.pem")), dir.path().join(format!("{name}-key.pem")));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
        (cert, key)
    };
    let (cert, key) = write_pair("one");
    let (_, other_key) = write_pair("two");
    let missing = dir.path().join("nowhere.pem");

    let err = start_error(TlsConfig::new(&missing, &key)).await;
    assert!(err.contains("tls.cert") && err.contains("nowhere.pem"), "{err}");
    let err = start_error(TlsConfig::new(&cert, &missing)).await;
    assert!(err.contains("tls.key") && err.contains("nowhere.pem"), "{err}");
    let err = start_error(TlsConfig::new(&key, &key)).await;
    assert!(err.contains("tls.cert") && err.contains("one-key.pem") && err.contains("BEGIN CERTIFICATE"), "{err}");
    let err = start_error(TlsConfig::new(&cert, &cert)).await;
    assert!(err.contains("tls.key") && err.contains("one-cert.pem") && err.contains("no usable private key"), "{err}");
    let err = start_error(TlsConfig::new(&cert, &other_key)).await;
    assert!(err.contains("two-key.pem") && err.contains("does not serve the certificate in"), "{err}");
}

/// A self-signed certificate for 127.0.0.1, written to `dir`: (certificate PEM, key PEM, the
/// certificate's path).
fn self_signed(dir: &std::path::Path) -> (String, String, std::path::PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (made.cert.pem(), made.key_pair.serialize_pem());
    let path = dir.join("receiver-ca.pem");
    std::fs::write(&path, &cert).unwrap();
    (cert, key, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_reach_an_https_receiver_whose_ca_is_trusted_and_no_other() {
    use crate::receiver::{cdrs, events_of, Receiver};
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca_file) = self_signed(dir.path());
    let receiver = Receiver::start_tls(&[support::AXB_APP], &cert, &key).await;
    let (x, a, b) = ("+8617000000001", "+8613800000001", "+8613900000002");
    for trusted in [true, false] {
        let ca_file = ca_file.clone();
        let server = TestServer::builder()
            .pushing_to(&receiver)
            .retries(&["100ms"])
            .cdr_flush_ms(50)
            .configure(move |config| config.push_ca_file = trusted.then_some(ca_file))
            .start()
            .await;
        server.bind_axb(json!({"relationNum": x, "callerNum": a, "calleeNum": b})).await.expect(200, "0");
        let session = format!("over-https-{trusted}");
        let answer =
            server.switch(Method::POST, "/calls", &json!({"caller": a, "called": x, "sessionId": session})).await;
        assert_eq!(answer.body["action"], "connect", "{answer:?}");
        let answer =
            server.switch(Method::POST, &format!("/calls/{session}/events"), &json!({"event": "disconnect"})).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        if trusted {
            let received = receiver.wait_for(PATIENCE, |r| cdrs(r).len() == 1).await;
            assert_eq!(events_of(&received, &session), ["callin", "disconnect"]);
            assert!(received.iter().all(|push| push.signed_by.as_deref() == Some(support::AXB_APP.0)));
        } else {
            // Without the CA the handshake fails: the pushes wait for their retries, undelivered.
            let dead = eventually(PATIENCE, || async {
                let lanes = server.admin(Method::GET, "/pushes", None).await;
                let retried: u64 = lanes.body["pushes"].as_array()?.iter().filter_map(|l| l["retried"].as_u64()).sum();
                (retried >= 1).then_some(())
            })
            .await;
            assert!(dead.is_some(), "an untrusted receiver's push was not retried");
            assert!(events_of(&receiver.received(), &session).is_empty());
        }
    }
}

#[tokio::test]
async fn a_missing_or_empty_push_ca_file_stops_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let start_error = |ca: std::path::PathBuf| {
        let mut config = support::test_config(dir.path().join("data"));
        config.push_ca_file = Some(ca);
        async move {
            let clock = ManualClock::new(chrono::Utc::now().timestamp());
            match privnum::server::start(config, Arc::new(clock)).await {
                Ok(_) => panic!("the server started"),
                Err(err) => format!("{err:#}"),
            }
        }
    };
    let err = start_error(dir.path().join("nowhere.pem")).await;
    assert!(err.contains("push_ca_file") && err.contains("nowhere.pem"), "{err}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = start_error(empty).await;
    assert!(err.contains("push_ca_file") && err.contains("empty.pem") && err.contains("no certificate"), "{err}");
}
