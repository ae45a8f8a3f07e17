//! AXB routing through the switch adapter of a real server running the real `scripts/`.

use reqwest::Method;
use serde_json::json;

use crate::support::{TestServer, AXB_APP};

const A: &str = "+8613800000001";
const B: &str = "+8613900000002";
const X: &str = "+8617000000001";

async fn set_close_tone(server: &TestServer, tone: &str) {
    server.approve_tones(AXB_APP.0, &[tone]).await;
    let app = json!({"mode": "AXB", "app_secret": AXB_APP.1, "recording": true, "close_hint_tone": tone});
    server.admin(Method::PUT, "/apps/axb-app", Some(&app)).await.expect(200, "0");
}

#[tokio::test]
async fn a_reaches_b_and_b_reaches_a_showing_x() {
    let server = TestServer::start().await;
    server.approve_tones(AXB_APP.0, &["rec.wav", "last.wav", "to-b.wav", "to-a.wav"]).await;
    let id = server
        .bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B, "userData": "order-7",
            "recordFlag": "true", "recordHintTone": "rec.wav", "maxDuration": 30, "lastMinVoice": "last.wav",
            "preVoice": {"callerHintTone": "to-b.wav", "calleeHintTone": "to-a.wav"}}))
        .await
        .expect(200, "0")
        .field("subscriptionId");
    let from_a = server.switch_call(A, X).await;
    assert_eq!(from_a.status, 200, "{from_a:?}");
    let expected = json!({"action": "connect", "callee": B, "display": X, "subscriptionId": id, "userData": "order-7",
        "record": true, "recordHintTone": "rec.wav", "preVoice": "to-b.wav", "maxDuration": 30, "lastMinVoice": "last.wav"});
    for (field, value) in expected.as_object().unwrap() {
        assert_eq!(&from_a.body[field], value, "{field}: {from_a:?}");
    }
    assert!(from_a.body["sessionId"].as_str().is_some_and(|s| !s.is_empty()));

    let from_b = server.switch_call(B, X).await;
    assert_eq!(
        (from_b.body["callee"].as_str(), from_b.body["preVoice"].as_str()),
        (Some(A), Some("to-a.wav")),
        "{from_b:?}"
    );
    assert_eq!(from_b.body["display"], X);
}

#[tokio::test]
async fn strangers_expired_bindings_and_blocked_directions_are_released() {
    let server = TestServer::start().await;
    set_close_tone(&server, "close.wav").await;
    server
        .bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B, "callDirection": 1, "duration": 60}))
        .await
        .expect(200, "0");

    let stranger = server.switch_call("+8613700000009", X).await;
    assert_eq!((stranger.body["action"].as_str(), stranger.body["stateCode"].as_u64()), (Some("release"), Some(8014)));
    assert_eq!(stranger.body["tone"], "close.wav");
    let b_calls = server.switch_call(B, X).await;
    assert_eq!(b_calls.body["stateCode"], 8016, "callDirection 1 lets only A call: {b_calls:?}");
    assert_eq!(server.switch_call(A, X).await.body["action"], "connect");

    server.clock.advance(60);
    let expired = server.switch_call(A, X).await;
    assert_eq!(expired.body["stateCode"], 8014, "an expired binding is no binding: {expired:?}");
}

#[tokio::test]
async fn unknown_and_unusable_numbers_are_released_by_the_host() {
    let server = TestServer::start().await;
    let nobody = server.switch_call(A, "+8617999999999").await;
    assert_eq!((nobody.body["action"].as_str(), nobody.body["stateCode"].as_u64()), (Some("release"), Some(7100)));
    let paused = json!({"area_code": "0755", "status": "paused"});
    server.admin(Method::PUT, "/apps/axb-app/numbers/+8617000000002", Some(&paused)).await.expect(200, "0");
    assert_eq!(server.switch_call(A, "+8617000000002").await.body["stateCode"], 8055);
    // An X of an X-mode app with nowhere to ask (no callin_url, no call_event_url): 8020.
    assert_eq!(server.switch_call(A, "+8617500000001").await.body["stateCode"], 8020);
}

#[tokio::test]
async fn recording_without_its_own_notice_plays_the_apps() {
    let server = TestServer::start().await;
    let app = json!({"mode": "AXB", "app_secret": AXB_APP.1, "recording": true, "record_hint_tone": "notice.wav"});
    server.admin(Method::PUT, "/apps/axb-app", Some(&app)).await.expect(200, "0");
    server
        .bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B, "recordFlag": true}))
        .await
        .expect(200, "0");
    let unapproved = server.switch_call(A, X).await;
    assert_eq!(
        (unapproved.body["record"].as_bool(), unapproved.body.get("recordHintTone")),
        (Some(true), None),
        "a notice the switch cannot fetch is not played"
    );
    server.approve_tones(AXB_APP.0, &["notice.wav"]).await;
    let call = server.switch_call(A, X).await;
    assert_eq!((call.body["record"].as_bool(), call.body["recordHintTone"].as_str()), (Some(true), Some("notice.wav")));
}

#[tokio::test]
async fn the_switch_api_checks_its_token_bodies_and_sessions() {
    let server = TestServer::start().await;
    let no_token = server.send(Method::POST, "/v1/switch/calls", &[], Some(&json!({"caller": A, "called": X}))).await;
    no_token.expect(401, "1010010");
    let bad = server.switch(Method::POST, "/calls", &json!({"caller": A})).await;
    bad.expect(400, "1010002");
    assert!(bad.desc().contains("called"), "{bad:?}");
    let bad_number = server.switch(Method::POST, "/calls", &json!({"caller": A, "called": "17000000001"})).await;
    bad_number.expect(400, "1010002");
    let bad_time = server.switch(Method::POST, "/calls", &json!({"caller": A, "called": X, "time": "yesterday"})).await;
    bad_time.expect(400, "1010002");

    let first = server.switch(Method::POST, "/calls", &json!({"caller": A, "called": X, "sessionId": "s-1"})).await;
    assert_eq!(first.body["sessionId"], "s-1");
    let other_call = json!({"caller": "+8613700000009", "called": X, "sessionId": "s-1"});
    server.switch(Method::POST, "/calls", &other_call).await.expect(409, "1010002");

    let event = server.switch(Method::POST, "/calls/s-1/events", &json!({"event": "answer"})).await;
    assert_eq!((event.status.as_u16(), &event.body), (200, &json!({})));
    // Out of order is recorded, not refused.
    let early = json!({"event": "callout", "time": "2026-01-01T00:00:00Z"});
    assert_eq!(server.switch(Method::POST, "/calls/s-1/events", &early).await.status, 200);
    server.switch(Method::POST, "/calls/nope/events", &json!({"event": "answer"})).await.expect(404, "1010002");
    server.switch(Method::POST, "/calls/s-1/events", &json!({"event": "ringing"})).await.expect(400, "1010002");
    for (bad, field) in [
        (json!({"event": "disconnect", "stateCode": 1234}), "stateCode"),
        (json!({"event": "disconnect", "q850": 300}), "q850"),
        (json!({"event": "disconnect", "sipStatus": 99}), "sipStatus"),
        (json!({"event": "answer", "recording": {"objectName": "r.wav", "startTime": "noon"}}), "recording.startTime"),
    ] {
        let answer = server.switch(Method::POST, "/calls/s-1/events", &bad).await;
        answer.expect(400, "1010002");
        assert!(answer.desc().contains(field), "{field}: {answer:?}");
    }
    let session = server.state().switchboard.sessions().get("s-1").unwrap();
    assert_eq!(session.events.len(), 2);
    assert!(session.script_version.is_some());
}

#[tokio::test]
async fn a_release_reported_by_cause_gets_its_state_code_from_the_script() {
    let server = TestServer::start().await;
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    let cases = [
        (json!({"event": "disconnect", "q850": 17, "releaseSide": "callee"}), false, 8102),
        (json!({"event": "disconnect", "sipStatus": 404}), false, 8100),
        (json!({"event": "disconnect", "q850": 19}), true, 8101),
        (json!({"event": "disconnect", "releaseSide": "caller"}), true, 7502),
        (json!({"event": "disconnect", "q850": 17, "stateCode": 7503}), false, 7503),
    ];
    for (index, (disconnect, rang, expected)) in cases.into_iter().enumerate() {
        let session = format!("s-{index}");
        let call = json!({"caller": A, "called": X, "sessionId": session});
        server.switch(Method::POST, "/calls", &call).await;
        if rang {
            server.switch(Method::POST, &format!("/calls/{session}/events"), &json!({"event": "alerting"})).await;
        }
        let answer = server.switch(Method::POST, &format!("/calls/{session}/events"), &disconnect).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let recorded = server.state().switchboard.sessions().get(&session).unwrap();
        let code = recorded.events.last().unwrap().state_code;
        assert_eq!(code, Some(expected), "{disconnect} after ringing: {rang}");
    }
}
