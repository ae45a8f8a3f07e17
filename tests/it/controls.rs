//! The customer's call controls: stopping a live call through the switch, recording links, and
//! the CDR the virtual switch prints.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::receiver::Receiver;
use crate::support::{TestServer, AXB_APP, QUIET_APP};

const A: &str = "+8613800000001";
const X: &str = "+8617000000001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_call_is_stopped_through_the_switch() {
    let receiver = Receiver::start(&[]).await;
    let server = TestServer::builder().switch_control(&receiver).start().await;
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": "+8613900000002"})).await.expect(200, "0");
    server.switch(Method::POST, "/calls", &json!({"caller": A, "called": X, "sessionId": "live"})).await;

    let stop = json!({"sessionid": "live", "signal": "call_stop"});
    server.call(AXB_APP, Method::POST, "/rest/httpsessions/callStop/v2.0", Some(&stop)).await.expect(200, "0");
    let received = receiver.wait_for(Duration::from_secs(3), |r| !r.is_empty()).await;
    assert_eq!(
        (received[0].path.as_str(), &received[0].body),
        ("/control", &json!({"sessionId": "live", "command": "stop"}))
    );

    // Another app's call, an unknown one, and an ended one are refused.
    let other = server.call(QUIET_APP, Method::POST, "/rest/httpsessions/callStop/v2.0", Some(&stop)).await;
    other.expect(403, "1010002");
    let unknown = json!({"sessionid": "nope", "signal": "call_stop"});
    server.call(AXB_APP, Method::POST, "/rest/httpsessions/callStop/v2.0", Some(&unknown)).await.expect(403, "1010002");
    server.switch(Method::POST, "/calls/live/events", &json!({"event": "disconnect", "stateCode": 0})).await;
    server.call(AXB_APP, Method::POST, "/rest/httpsessions/callStop/v2.0", Some(&stop)).await.expect(403, "1010002");
    let wrong_signal = json!({"sessionid": "live", "signal": "hangup"});
    let answer = server.call(AXB_APP, Method::POST, "/rest/httpsessions/callStop/v2.0", Some(&wrong_signal)).await;
    answer.expect(403, "1010002");
    assert!(answer.desc().contains("signal"), "{answer:?}");
}

#[tokio::test]
async fn without_a_switch_control_url_a_stop_is_an_internal_error() {
    let server = TestServer::start().await;
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": "+8613900000002"})).await.expect(200, "0");
    server.switch(Method::POST, "/calls", &json!({"caller": A, "called": X, "sessionId": "live"})).await;
    let stop = json!({"sessionid": "live", "signal": "call_stop"});
    server.call(AXB_APP, Method::POST, "/rest/httpsessions/callStop/v2.0", Some(&stop)).await.expect(500, "1010001");
}

#[tokio::test]
async fn a_recording_link_is_a_signed_expiring_redirect() {
    let server = TestServer::start().await;
    // The switch reports a recording of one of the app's calls.
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": "+8613900000002"})).await.expect(200, "0");
    server.switch(Method::POST, "/calls", &json!({"caller": A, "called": X, "sessionId": "recorded"})).await;
    let recording = json!({"objectName": "call-1.wav", "startTime": "2026-11-24T08:00:05Z"});
    let end = json!({"event": "disconnect", "stateCode": 0, "recording": recording});
    assert_eq!(server.switch(Method::POST, "/calls/recorded/events", &end).await.status, 200);
    let headers = server.signed(AXB_APP, privnum::auth::Scheme::Aksk);
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut request = client.get(format!(
        "{}/rest/provision/voice/record/v1.0?recordDomain=rec.example.com&fileName=call-1.wav",
        server.base
    ));
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 301);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("https://rec.example.com/call-1.wav?appKey=axb-app&expires="), "{location}");
    let expires: i64 = location.split("expires=").nth(1).unwrap().split('&').next().unwrap().parse().unwrap();
    assert_eq!(expires, server.clock_now() + 3 * 24 * 3600);
    let signature = location.split("signature=").nth(1).unwrap();
    let expected =
        privnum::domain::recording::signature(AXB_APP.1, AXB_APP.0, "rec.example.com", "call-1.wav", expires);
    assert_eq!(signature, expected);

    let missing =
        server.call(AXB_APP, Method::GET, "/rest/provision/voice/record/v1.0?recordDomain=rec.example.com", None).await;
    missing.expect(403, "1010002");
    let bad_host = "/rest/provision/voice/record/v1.0?recordDomain=evil/path&fileName=a.wav";
    server.call(AXB_APP, Method::GET, bad_host, None).await.expect(403, "1010002");
}

#[tokio::test]
async fn the_cdr_of_an_ended_call_can_be_read_by_the_switch() {
    let server = TestServer::start().await;
    server.switch(Method::POST, "/calls", &json!({"caller": "+8613700000001", "called": X, "sessionId": "gone"})).await;
    let cdr = server.switch(Method::GET, "/calls/gone/cdr", &json!({})).await;
    assert_eq!((cdr.status.as_u16(), cdr.body["ulFailReason"].as_u64()), (200, Some(8014)), "{cdr:?}");
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": "+8613900000002"})).await.expect(200, "0");
    server.switch(Method::POST, "/calls", &json!({"caller": A, "called": X, "sessionId": "on"})).await;
    server.switch(Method::GET, "/calls/on/cdr", &json!({})).await.expect(409, "1010002");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_record_domain_the_cdr_carries_a_signed_link_to_its_recording() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    let server = TestServer::builder()
        .pushing_to(&receiver)
        .cdr_flush_ms(20)
        .configure(|config| config.record_domain = "rec.example.com".into())
        .start()
        .await;
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": "+8613900000002"})).await.expect(200, "0");
    for session in ["recorded", "silent"] {
        server.switch(Method::POST, "/calls", &json!({"caller": A, "called": X, "sessionId": session})).await;
    }
    let recording = json!({"objectName": "call-1.wav", "startTime": "2026-11-24T08:00:05Z"});
    let end = json!({"event": "disconnect", "stateCode": 0, "recording": recording});
    assert_eq!(server.switch(Method::POST, "/calls/recorded/events", &end).await.status, 200);
    let ended_at = server.clock_now();
    let end = json!({"event": "disconnect", "stateCode": 0});
    assert_eq!(server.switch(Method::POST, "/calls/silent/events", &end).await.status, 200);

    let received = receiver.wait_for(Duration::from_secs(10), |r| crate::receiver::cdrs(r).len() >= 2).await;
    let cdrs = crate::receiver::cdrs(&received);
    let cdr = |id: &str| cdrs.iter().find(|c| c["sessionId"] == id).cloned().unwrap_or_default();
    let recorded = cdr("recorded");
    assert_eq!(recorded["recordDomain"], "rec.example.com", "{recorded}");
    let expires = ended_at + 3 * 24 * 3600;
    let signature =
        privnum::domain::recording::signature(AXB_APP.1, AXB_APP.0, "rec.example.com", "call-1.wav", expires);
    let link =
        format!("https://rec.example.com/call-1.wav?appKey={}&expires={expires}&signature={signature}", AXB_APP.0);
    assert_eq!(recorded["recordFileDownloadUrl"], link.as_str(), "three days from the call's end, signed by its app");
    let silent = cdr("silent");
    assert!(silent.get("recordFileDownloadUrl").is_none() && silent.get("recordDomain").is_none(), "{silent}");
    // The switch's copy of the CDR is the same.
    let read = server.switch(Method::GET, "/calls/recorded/cdr", &json!({})).await;
    assert_eq!(read.body["recordFileDownloadUrl"], link.as_str(), "{read:?}");
}
