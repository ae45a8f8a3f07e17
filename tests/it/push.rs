//! Call events and CDRs delivered to a real receiver: order, fields, merging, retries, outages
//! and restarts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::receiver::{cdrs, events_of, Receiver};
use crate::support::{eventually, TestServer, AXB_APP};

const A: &str = "+8613800000001";
const B: &str = "+8613900000002";
const X: &str = "+8617000000001";

/// A server whose AXB app pushes to `receiver`, with fast retries and CDR merging.
async fn server_pushing_to(receiver: &Receiver, retries: &[&str], flush_ms: u64) -> TestServer {
    let server = TestServer::builder()
        .pushing_to(receiver)
        .retries(retries)
        .cdr_flush_ms(flush_ms)
        .close_hint_tone("close.wav")
        .start()
        .await;
    server.approve_tones(AXB_APP.0, &["close.wav"]).await;
    server
}

async fn event(server: &TestServer, session: &str, body: Value) {
    let answer = server.switch(Method::POST, &format!("/calls/{session}/events"), &body).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

async fn call(server: &TestServer, caller: &str, session: &str) -> Value {
    let answer =
        server.switch(Method::POST, "/calls", &json!({"caller": caller, "called": X, "sessionId": session})).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_outcome_gets_its_events_in_order_and_one_cdr() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    let server = server_pushing_to(&receiver, &["100ms"], 50).await;
    server
        .bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B, "userData": "order-9", "recordFlag": true}))
        .await
        .expect(200, "0");

    // Answered: A calls, B answers, A hangs up.
    call(&server, A, "answered").await;
    for e in ["callout", "alerting", "answer"] {
        event(&server, "answered", json!({"event": e})).await;
    }
    let recording = json!({"objectName": "rec-1.wav", "startTime": "2026-11-24 08:00:05"});
    event(
        &server,
        "answered",
        json!({"event": "disconnect", "releaseSide": "caller", "stateCode": 0, "recording": recording}),
    )
    .await;
    // Busy: B calls A, A is busy (only a Q.850 cause): 8102 by release.rhai.
    call(&server, B, "busy").await;
    event(&server, "busy", json!({"event": "callout"})).await;
    event(&server, "busy", json!({"event": "disconnect", "q850": 17, "releaseSide": "callee"})).await;
    // Rejected at routing: a stranger gets 8014.
    call(&server, "+8613700000009", "stranger").await;
    // No answer after ringing (Q.850 19): 8101. The caller gives up while it rings: 7502.
    call(&server, A, "no-answer").await;
    event(&server, "no-answer", json!({"event": "alerting"})).await;
    event(&server, "no-answer", json!({"event": "disconnect", "q850": 19})).await;
    call(&server, A, "gave-up").await;
    event(&server, "gave-up", json!({"event": "alerting"})).await;
    event(&server, "gave-up", json!({"event": "disconnect", "releaseSide": "caller"})).await;
    // The switch ends a call at its maximum duration: 8010.
    call(&server, A, "too-long").await;
    event(&server, "too-long", json!({"event": "answer"})).await;
    event(&server, "too-long", json!({"event": "disconnect", "stateCode": 8010, "releaseSide": "platform"})).await;

    let sessions = ["answered", "busy", "stranger", "no-answer", "gave-up", "too-long"];
    let received = receiver
        .wait_for(Duration::from_secs(10), |r| {
            cdrs(r).len() >= 6 && sessions.iter().all(|s| events_of(r, s).last().is_some_and(|e| e == "disconnect"))
        })
        .await;
    assert_eq!(events_of(&received, "answered"), ["callin", "callout", "alerting", "answer", "disconnect"]);
    assert_eq!(events_of(&received, "busy"), ["callin", "callout", "disconnect"]);
    assert_eq!(events_of(&received, "stranger"), ["callin", "disconnect"]);
    assert!(
        received.iter().all(|r| r.signed_by.as_deref() == Some(AXB_APP.0)),
        "every push is signed with the app's key"
    );

    let callin = received
        .iter()
        .find(|r| r.body["eventType"] == "callin" && r.body["statusInfo"]["sessionId"] == "answered")
        .unwrap();
    assert_eq!(
        (callin.body["statusInfo"]["caller"].as_str(), callin.body["statusInfo"]["called"].as_str()),
        (Some(A), Some(X))
    );
    assert_eq!(callin.body["statusInfo"]["userData"], "order-9");
    let busy_end = received
        .iter()
        .find(|r| r.body["eventType"] == "disconnect" && r.body["statusInfo"]["sessionId"] == "busy")
        .unwrap();
    assert_eq!(busy_end.body["statusInfo"]["stateCode"], 8102);
    assert_eq!(
        (busy_end.body["statusInfo"]["caller"].as_str(), busy_end.body["statusInfo"]["called"].as_str()),
        (Some(X), Some(A))
    );

    let all = cdrs(&received);
    assert_eq!(all.len(), 6, "one CDR per call: {all:?}");
    let by_session = |id: &str| all.iter().find(|c| c["sessionId"] == id).unwrap().clone();
    let answered = by_session("answered");
    for (field, value) in [
        ("direction", json!(1)),
        ("appKey", json!(AXB_APP.0)),
        ("bindNum", json!(X)),
        ("callerNum", json!(A)),
        ("calleeNum", json!(X)),
        ("fwdDisplayNum", json!(X)),
        ("fwdDstNum", json!(B)),
        ("ulFailReason", json!(0)),
        ("recordFlag", json!(1)),
        ("recordObjectName", json!("rec-1.wav")),
        ("serviceType", json!("004")),
        ("userData", json!("order-9")),
    ] {
        assert_eq!(answered[field], value, "answered CDR {field}: {answered}");
    }
    assert!(
        !answered["fwdAnswerTime"].as_str().unwrap().is_empty()
            && answered["icid"].as_str().is_some_and(|i| !i.is_empty())
    );
    let busy = by_session("busy");
    assert_eq!(
        (busy["direction"].clone(), busy["ulFailReason"].clone(), busy["fwdUnaswRsn"].clone()),
        (json!(0), json!(8102), json!(17))
    );
    for (session, code) in [("no-answer", 8101), ("gave-up", 7502), ("too-long", 8010)] {
        assert_eq!(by_session(session)["ulFailReason"], code, "{session}");
    }
    let stranger = by_session("stranger");
    assert_eq!(
        (stranger["direction"].clone(), stranger["ulFailReason"].clone(), stranger["subscriptionId"].clone()),
        (json!(2), json!(8014), json!(""))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_twenty_calls_ending_together_push_cdrs_in_fifties() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    // A merge window long enough for 120 calls on a busy 2-core machine.
    let server = Arc::new(server_pushing_to(&receiver, &["100ms"], 5000).await);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..120 {
        let server = server.clone();
        calls.spawn(async move { call(&server, &format!("+86137{i:08}"), &format!("c-{i}")).await });
    }
    while calls.join_next().await.is_some() {}
    let received = receiver.wait_for(Duration::from_secs(15), |r| cdrs(r).len() >= 120).await;
    let sizes: Vec<usize> =
        received.iter().filter(|r| r.path == "/cdr").map(|r| r.body["feeLst"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [50, 50, 20], "CDR pushes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pushes_are_retried_then_kept_for_redelivery() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    let server = server_pushing_to(&receiver, &["100ms", "100ms"], 50).await;
    receiver.fail_next(2);
    call(&server, "+8613700000001", "retried").await;
    let received = receiver.wait_for(Duration::from_secs(5), |r| cdrs(r).len() == 1).await;
    assert_eq!(events_of(&received, "retried"), ["callin", "disconnect"], "delivered in order after two failures");

    // Down for longer than the schedule: the push is kept and listed, and can be sent again.
    receiver.fail_next(1000);
    call(&server, "+8613700000002", "buried").await;
    let listed = eventually(Duration::from_secs(5), || async {
        let dead = server.admin(Method::GET, "/pushes/dead", None).await;
        let events =
            dead.body["pushes"].as_array().and_then(|p| p.iter().find(|push| push["lane"] == "events").cloned());
        events
    })
    .await
    .expect("a push is listed after its last retry");
    let first = &listed;
    assert_eq!((first["lane"].as_str(), first["attempts"].as_u64()), (Some("events"), Some(3)), "{listed:?}");
    receiver.fail_next(0);
    let id = first["id"].as_u64().unwrap();
    server.admin(Method::POST, &format!("/pushes/dead/{id}/redeliver"), None).await.expect(200, "0");
    let received =
        receiver.wait_for(Duration::from_secs(5), |r| events_of(r, "buried").contains(&"callin".to_owned())).await;
    assert!(events_of(&received, "buried").contains(&"callin".to_owned()));
    server.admin(Method::POST, &format!("/pushes/dead/{id}/redeliver"), None).await.expect(404, "1012007");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_does_not_delay_decisions() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    let server = server_pushing_to(&receiver, &["1s"], 50).await;
    receiver.hang(true);
    for i in 0..20 {
        let start = Instant::now();
        call(&server, "+8613700000003", &format!("h-{i}")).await;
        // The receiver never answers (pushes time out after 10 s); decisions must not wait for it.
        assert!(start.elapsed() < Duration::from_millis(500), "decision {i} waited {:?}", start.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_direction_is_rejected_at_routing_with_its_cdr() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    let server = server_pushing_to(&receiver, &["100ms"], 50).await;
    server
        .bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B, "callDirection": 1}))
        .await
        .expect(200, "0");
    let decision = call(&server, B, "blocked").await;
    assert_eq!(decision["stateCode"], 8016);
    let received = receiver.wait_for(Duration::from_secs(5), |r| cdrs(r).len() == 1).await;
    assert_eq!(events_of(&received, "blocked"), ["callin", "disconnect"]);
    let cdr = &cdrs(&received)[0];
    assert_eq!((cdr["ulFailReason"].clone(), cdr["direction"].clone()), (json!(8016), json!(0)), "{cdr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_call_loses_nothing() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    let server = server_pushing_to(&receiver, &["100ms"], 50).await;
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    call(&server, A, "across").await;
    event(&server, "across", json!({"event": "answer"})).await;
    let server = server.restart().await;
    event(&server, "across", json!({"event": "disconnect", "stateCode": 0})).await;
    let received = receiver.wait_for(Duration::from_secs(5), |r| cdrs(r).len() == 1).await;
    assert_eq!(events_of(&received, "across"), ["callin", "answer", "disconnect"]);
    assert!(
        !cdrs(&received)[0]["fwdAnswerTime"].as_str().unwrap().is_empty(),
        "the answer before the restart is in the CDR"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_switch_never_ends_is_closed_with_a_cdr_that_says_so() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    let server = TestServer::builder().pushing_to(&receiver).session_timeout_secs(600).start().await;
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    call(&server, A, "forgotten").await;
    event(&server, "forgotten", json!({"event": "answer"})).await;
    server.clock.advance(600);
    // The sweeper runs every second.
    let received = receiver.wait_for(Duration::from_secs(5), |r| cdrs(r).len() == 1).await;
    let cdr = &cdrs(&received)[0];
    assert_eq!(cdr["ulFailReason"], 8020, "{cdr}");
    assert!(cdr["closedBy"].as_str().is_some_and(|reason| reason.contains("session_timeout_secs")), "{cdr}");
    assert_eq!(events_of(&received, "forgotten").last().map(String::as_str), Some("disconnect"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_payload_is_set_aside_at_once() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    let server = server_pushing_to(&receiver, &["1h", "1h"], 50).await;
    receiver.reject_next(1);
    call(&server, "+8613700000001", "refused").await;
    let listed = eventually(Duration::from_secs(5), || async {
        let dead = server.admin(Method::GET, "/pushes/dead", None).await;
        dead.body["pushes"].as_array().and_then(|p| p.first().cloned())
    })
    .await
    .expect("a 400 answer sets the push aside without waiting an hour for a retry");
    assert_eq!(listed["attempts"], 1, "{listed}");
    assert!(listed["last_error"].as_str().unwrap().contains("400"), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reports_of_one_call_end_it_once() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    let server = Arc::new(server_pushing_to(&receiver, &["100ms"], 50).await);
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    call(&server, A, "racy").await;
    let mut reports = tokio::task::JoinSet::new();
    for i in 0..12 {
        let server = server.clone();
        // A switch that repeats its disconnect while also reporting alerting.
        let body =
            if i % 3 == 0 { json!({"event": "disconnect", "stateCode": 0}) } else { json!({"event": "alerting"}) };
        reports.spawn(async move { event(&server, "racy", body).await });
    }
    while reports.join_next().await.is_some() {}
    let received = receiver
        .wait_for(Duration::from_secs(5), |r| {
            cdrs(r).len() == 1 && events_of(r, "racy").contains(&"disconnect".to_owned())
        })
        .await;
    let events = events_of(&received, "racy");
    assert_eq!(events.iter().filter(|e| *e == "disconnect").count(), 1, "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("disconnect"), "nothing is pushed after the end: {events:?}");
    assert_eq!(cdrs(&received).len(), 1);
}
