//! A switch that retries: a callin whose answer was lost hears the same decision again, and an
//! event reported twice is pushed once.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::receiver::{cdrs, events_of, Receiver};
use crate::support::{TestServer, AXB_APP};

const A: &str = "+8613800000001";
const B: &str = "+8613900000002";
const X: &str = "+8617000000001";

fn retries_counted(metrics: &str, request: &str) -> u64 {
    let series = format!("privnum_switch_retries_total{{request=\"{request}\"}} ");
    metrics.lines().find_map(|line| line.strip_prefix(series.as_str())).and_then(|n| n.parse().ok()).unwrap_or(0)
}

async fn metrics(server: &TestServer) -> String {
    reqwest::get(format!("{}/metrics", server.base)).await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn a_retried_callin_hears_its_decision_again_and_another_call_is_refused_the_id() {
    let server = TestServer::start().await;
    server
        .bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B, "userData": "ride-7"}))
        .await
        .expect(200, "0");
    let callin = json!({"caller": A, "called": X, "sessionId": "lost-answer"});
    let first = server.switch(Method::POST, "/calls", &callin).await;
    assert_eq!((first.status.as_u16(), first.body["action"].as_str()), (200, Some("connect")), "{first:?}");

    // The binding changes before the retry: the retry still hears what the call was decided.
    server
        .call(AXB_APP, Method::DELETE, &format!("{}?relationNum=%2B8617000000001", crate::support::AXB_PATH), None)
        .await;
    let retried = server.switch(Method::POST, "/calls", &callin).await;
    assert_eq!((retried.status.as_u16(), &retried.body), (200, &first.body), "the same decision, byte for byte");

    let other = json!({"caller": "+8613700000009", "called": X, "sessionId": "lost-answer"});
    server.switch(Method::POST, "/calls", &other).await.expect(409, "1010002");
    let session = server.state().switchboard.sessions().get("lost-answer").unwrap();
    assert_eq!(session.callee.as_deref(), Some(B), "the refused call changed nothing");

    // A released call's retry hears the release, and its CDR is not made twice.
    let stranger = json!({"caller": "+8613700000001", "called": X, "sessionId": "released"});
    let release = server.switch(Method::POST, "/calls", &stranger).await;
    assert_eq!(release.body["action"], "release", "{release:?}");
    assert_eq!(server.switch(Method::POST, "/calls", &stranger).await.body, release.body);
    assert_eq!(retries_counted(&metrics(&server).await, "callin"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_reported_twice_is_pushed_once_and_the_call_gets_one_cdr() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    let server = TestServer::builder().pushing_to(&receiver).cdr_flush_ms(20).start().await;
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    server.switch(Method::POST, "/calls", &json!({"caller": A, "called": X, "sessionId": "twice"})).await;
    let events = [
        json!({"event": "callout", "time": "2026-11-24T08:00:01Z"}),
        json!({"event": "alerting", "time": "2026-11-24T08:00:02Z"}),
        json!({"event": "answer", "time": "2026-11-24T08:00:04Z"}),
        json!({"event": "disconnect", "time": "2026-11-24T08:01:00Z", "releaseSide": "caller", "stateCode": 0}),
    ];
    for event in &events {
        for _ in 0..2 {
            let answer = server.switch(Method::POST, "/calls/twice/events", event).await;
            assert_eq!(answer.status, 200, "a retry is acknowledged like the first report: {answer:?}");
        }
    }
    // Another alerting at another time is news, not a retry.
    let again = json!({"event": "alerting", "time": "2026-11-24T08:00:03Z"});
    assert_eq!(server.switch(Method::POST, "/calls/twice/events", &again).await.status, 200);

    let received = receiver
        .wait_for(Duration::from_secs(10), |received| {
            events_of(received, "twice").iter().any(|e| e == "disconnect") && !cdrs(received).is_empty()
        })
        .await;
    // Give a duplicate, were one queued, time to arrive before counting.
    let settled = receiver.wait_for(Duration::from_millis(300), |r| r.len() > received.len()).await;
    assert_eq!(
        events_of(&settled, "twice"),
        ["callin", "callout", "alerting", "answer", "disconnect"],
        "each event once, in order; the late alerting came after the call ended and is kept, not pushed"
    );
    assert_eq!(cdrs(&settled).len(), 1);
    assert_eq!(retries_counted(&metrics(&server).await, "event"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_lost_at_a_crash_is_rebuilt_from_an_event_that_names_it() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    let server = TestServer::builder().pushing_to(&receiver).cdr_flush_ms(20).start().await;
    server
        .bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B, "userData": "ride-9"}))
        .await
        .expect(200, "0");
    // As after a kill -9 right after the connect's answer: privnum has no session "lost".
    let bare = json!({"event": "answer", "time": "2026-11-24T08:00:04Z"});
    server.switch(Method::POST, "/calls/lost/events", &bare).await.expect(404, "1010002");
    let half = json!({"event": "answer", "caller": A});
    server.switch(Method::POST, "/calls/lost/events", &half).await.expect(400, "1010002");

    let named = |event: serde_json::Value| {
        let mut event = event;
        event["caller"] = json!(A);
        event["called"] = json!(X);
        event["callTime"] = json!("2026-11-24T08:00:00Z");
        event
    };
    let answer = named(json!({"event": "answer", "time": "2026-11-24T08:00:04Z"}));
    assert_eq!(server.switch(Method::POST, "/calls/lost/events", &answer).await.status, 200);
    let session = server.state().switchboard.sessions().get("lost").expect("rebuilt");
    assert_eq!((session.callee.as_deref(), session.user_data.as_deref()), (Some(B), Some("ride-9")));
    let end =
        named(json!({"event": "disconnect", "time": "2026-11-24T08:01:00Z", "releaseSide": "caller", "stateCode": 0}));
    assert_eq!(server.switch(Method::POST, "/calls/lost/events", &end).await.status, 200);

    let received = receiver.wait_for(Duration::from_secs(10), |received| !cdrs(received).is_empty()).await;
    assert_eq!(events_of(&received, "lost"), ["callin", "answer", "disconnect"]);
    let cdr = &cdrs(&received)[0];
    let parties = (cdr["callerNum"].as_str(), cdr["fwdDstNum"].as_str(), cdr["callInTime"].as_str());
    assert_eq!(parties, (Some(A), Some(B), Some("2026-11-24 08:00:00")), "{cdr}");
    let metrics = metrics(&server).await;
    assert!(metrics.contains("privnum_calls_rebuilt_total 1\n"), "{metrics}");
}
