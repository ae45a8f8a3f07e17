//! Untrusted text stays in its place: the switch's numbers and ids are checked, names cannot walk
//! paths, a WAV must have something to play, and recordings are each app's own.

use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TestServer, ADMIN_TOKEN, AXB_APP, AX_APP};

const A: &str = "+8613800000001";
const B: &str = "+8613900000002";
const X: &str = "+8617000000001";

#[tokio::test]
async fn the_switch_sends_numbers_ids_and_file_names_or_is_refused() {
    let server = TestServer::start().await;
    for (caller, why) in [("13800000001", "no country code"), ("+86138\u{1b}[31m", "a terminal escape"), ("", "empty")]
    {
        let answer = server.switch(Method::POST, "/calls", &json!({"caller": caller, "called": X})).await;
        answer.expect(400, "1010002");
        assert!(answer.desc().contains("caller"), "{why}: {answer:?}");
    }
    for session_id in ["a\r\nINFO forged", "tab\there", "", "é"] {
        let answer =
            server.switch(Method::POST, "/calls", &json!({"caller": A, "called": X, "sessionId": session_id})).await;
        answer.expect(400, "1010002");
        assert!(answer.desc().contains("sessionId"), "{session_id:?}: {answer:?}");
    }
    // The same checks hold for an id in the path, once percent-decoded.
    let forged = server.switch(Method::POST, "/calls/a%0D%0AINFO%20forged/events", &json!({"event": "answer"})).await;
    forged.expect(400, "1010002");

    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    server.switch(Method::POST, "/calls", &json!({"caller": A, "called": X, "sessionId": "rec"})).await;
    for object_name in ["../../etc/passwd", "..", "a b.wav", ""] {
        let recording = json!({"objectName": object_name, "startTime": "2026-11-24T08:00:05Z"});
        let answer =
            server.switch(Method::POST, "/calls/rec/events", &json!({"event": "answer", "recording": recording})).await;
        answer.expect(400, "1010002");
        assert!(answer.desc().contains("recording.objectName"), "{object_name:?}: {answer:?}");
    }
    let session = server.state().switchboard.sessions().get("rec").unwrap();
    assert!(session.events.is_empty() && session.recording.is_none(), "nothing refused was recorded");
}

/// Sends one request exactly as written (clients resolve `.` and `..` segments before sending).
async fn raw(server: &TestServer, head: &str, body: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://")).await.unwrap();
    let request = format!(
        "{head} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: audio/wav\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn tone_names_that_are_directories_and_wavs_with_nothing_to_play_are_refused() {
    let server = TestServer::start().await;
    let wav = crate::support::silence_wav();
    for name in [".", ".."] {
        let answer = raw(&server, &format!("PUT /v1/admin/apps/{}/tones/{name}", AXB_APP.0), &wav).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "the envelope of an invalid field: {name}: {answer}");
        assert!(answer.contains("fileName"), "{name}: {answer}");
    }
    let empty = server.upload_tone(AXB_APP.0, "empty.wav", privnum::tone::wav::write_alaw(&[])).await;
    empty.expect(403, "1010002");
    assert!(empty.desc().contains("no samples"), "{empty:?}");
    let mut zero_rate = crate::support::silence_wav();
    zero_rate[24..28].copy_from_slice(&0u32.to_le_bytes());
    let zero = server.upload_tone(AXB_APP.0, "zero.wav", zero_rate).await;
    zero.expect(403, "1010002");
    assert!(zero.desc().contains("0 Hz"), "{zero:?}");
    let tones = server.admin(Method::GET, &format!("/apps/{}/tones", AXB_APP.0), None).await;
    assert_eq!(tones.body["tones"].as_array().map(Vec::len), Some(0), "nothing refused was kept: {tones:?}");
}

async fn link(server: &TestServer, app: (&str, &str), file_name: &str) -> (u16, String) {
    let headers = server.signed(app, privnum::auth::Scheme::Aksk);
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let path = format!("/rest/provision/voice/record/v1.0?recordDomain=rec.example.com&fileName={file_name}");
    let mut request = client.get(format!("{}{path}", server.base));
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let location = response.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
    (response.status().as_u16(), location)
}

async fn record(server: &TestServer, caller: &str, called: &str, session: &str, object_name: &str) {
    let callin =
        server.switch(Method::POST, "/calls", &json!({"caller": caller, "called": called, "sessionId": session})).await;
    assert_eq!(callin.body["action"], "connect", "{callin:?}");
    let recording = json!({"objectName": object_name, "startTime": "2026-11-24T08:00:05Z"});
    let end = json!({"event": "disconnect", "stateCode": 0, "recording": recording});
    assert_eq!(server.switch(Method::POST, &format!("/calls/{session}/events"), &end).await.status, 200);
}

#[tokio::test]
async fn recordings_are_each_apps_own_and_links_sign_the_app() {
    let server = TestServer::start().await;
    let ax_x = "+8617200000001";
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    server
        .call(AX_APP, Method::POST, crate::support::AX_PATH, Some(&json!({"origNum": A, "privateNum": ax_x})))
        .await
        .expect(200, "0");
    record(&server, A, X, "axb-call", "same.wav").await;
    record(&server, A, X, "axb-call-2", "axb-only.wav").await;
    assert_eq!(link(&server, AX_APP, "axb-only.wav").await.0, 403, "another app's recording is not linked");

    // The AX app's call reports the same name: it files its own, and moves nothing.
    record(&server, "+8613700000009", ax_x, "ax-call", "same.wav").await;
    let (axb_status, axb_link) = link(&server, AXB_APP, "same.wav").await;
    let (ax_status, ax_link) = link(&server, AX_APP, "same.wav").await;
    assert_eq!((axb_status, ax_status), (301, 301));
    assert!(axb_link.contains("appKey=axb-app") && ax_link.contains("appKey=ax-app"), "{axb_link} {ax_link}");

    // The signature covers the app: the AXB link re-aimed at the AX app does not verify.
    let expires: i64 = axb_link.split("expires=").nth(1).unwrap().split('&').next().unwrap().parse().unwrap();
    let signature = axb_link.split("signature=").nth(1).unwrap();
    let sign = privnum::domain::recording::signature;
    assert_eq!(signature, sign(AXB_APP.1, AXB_APP.0, "rec.example.com", "same.wav", expires));
    assert_ne!(signature, sign(AXB_APP.1, AX_APP.0, "rec.example.com", "same.wav", expires));
}
