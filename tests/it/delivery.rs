//! How pushes are delivered under load and failure, through a real server and a real receiver:
//! in order per call, in parallel across calls, one failing call holding up only itself, a
//! receiver down (probes, not a flood) and back, a restart and `kill -9` with pushes waiting.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::receiver::{cdrs, events_of, Received, Receiver};
use crate::support::{eventually, TestServer, AXB_APP};

const A: &str = "+8613800000001";
const B: &str = "+8613900000002";
const X: &str = "+8617000000001";

/// What a complete call's events are, in order.
const CALL: [&str; 5] = ["callin", "callout", "alerting", "answer", "disconnect"];

async fn server_pushing_to(receiver: &Receiver, retries: &[&str]) -> TestServer {
    let server = TestServer::builder().pushing_to(receiver).retries(retries).cdr_flush_ms(50).start().await;
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    server
}

/// One complete call from A through X: the callin, then its four events, each acknowledged.
async fn complete_call(server: &TestServer, session: &str) {
    let answer = server.switch(Method::POST, "/calls", &json!({"caller": A, "called": X, "sessionId": session})).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["action"], "connect", "{answer:?}");
    for event in &CALL[1..] {
        let body = json!({"event": event, "stateCode": 0, "releaseSide": "caller"});
        let answer = server.switch(Method::POST, &format!("/calls/{session}/events"), &body).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
}

/// `count` complete calls `{prefix}-{i}`, all at once.
async fn complete_calls(server: &Arc<TestServer>, prefix: &str, count: usize) -> Vec<String> {
    let sessions: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    let mut calls = tokio::task::JoinSet::new();
    for session in sessions.clone() {
        let server = server.clone();
        calls.spawn(async move { complete_call(&server, &session).await });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap();
    }
    sessions
}

/// Whether every session's five events and its CDR have arrived.
fn all_arrived(received: &[Received], sessions: &[String]) -> bool {
    let cdrs = cdrs(received);
    sessions.iter().all(|session| {
        events_of(received, session).len() >= CALL.len() && cdrs.iter().any(|cdr| cdr["sessionId"] == session.as_str())
    })
}

/// Each session's events arrived exactly once each, in order, and its CDR after its disconnect.
fn assert_in_order(received: &[Received], sessions: &[String]) {
    for session in sessions {
        assert_eq!(events_of(received, session), CALL, "{session}: its events, in arrival order");
        let disconnect = received.iter().position(|r| {
            r.path == "/events"
                && r.body["statusInfo"]["sessionId"] == session.as_str()
                && r.body["eventType"] == "disconnect"
        });
        let cdr = received.iter().position(|r| {
            r.path == "/cdr"
                && r.body["feeLst"]
                    .as_array()
                    .is_some_and(|items| items.iter().any(|c| c["sessionId"] == session.as_str()))
        });
        assert!(cdr > disconnect, "{session}: its CDR ({cdr:?}) arrives after its disconnect ({disconnect:?})");
    }
}

/// The admin API's report of one app's lane.
async fn lane(server: &TestServer, kind: &str) -> Value {
    let answer = server.admin(Method::GET, "/pushes", None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let lanes = answer.body["pushes"].as_array().cloned().unwrap_or_default();
    lanes.into_iter().find(|l| l["app_key"] == AXB_APP.0 && l["kind"] == kind).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_calls_get_their_events_in_order_and_in_parallel() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    // A receiver that takes its time: one push at a time would need 40 × 5 × 30 ms = 6 s.
    receiver.delay_ms(30);
    let server = Arc::new(server_pushing_to(&receiver, &["100ms"]).await);
    let sessions = complete_calls(&server, "mix", 40).await;
    let received = receiver.wait_for(Duration::from_secs(30), |r| all_arrived(r, &sessions)).await;
    assert_in_order(&received, &sessions);
    assert!(
        receiver.most_in_flight() > 1,
        "pushes of different calls go out at once (the receiver answered {} at most)",
        receiver.most_in_flight()
    );
    assert!(received.iter().all(|r| r.signed_by.as_deref() == Some(AXB_APP.0)), "every push is signed");
    let events = lane(&server, "events").await;
    assert_eq!(events["delivered"], 200, "{events}");
    assert_eq!(events["waiting"], 0, "{events}");
    assert_eq!(events["in_flight"], 0, "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_answered_500_holds_up_only_its_own_call() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    let server = Arc::new(server_pushing_to(&receiver, &["200ms"; 30]).await);
    receiver.fail_session(Some("stuck"));
    complete_call(&server, "stuck").await;
    let others = complete_calls(&server, "flowing", 10).await;
    let received = receiver.wait_for(Duration::from_secs(20), |r| all_arrived(r, &others)).await;
    assert_in_order(&received, &others);
    assert!(
        events_of(&received, "stuck").is_empty(),
        "the failing call's events wait: {:?}",
        events_of(&received, "stuck")
    );
    assert!(cdrs(&received).iter().all(|cdr| cdr["sessionId"] != "stuck"), "its CDR waits for its events");
    let events = lane(&server, "events").await;
    assert!(events["retried"].as_u64().unwrap_or(0) >= 1, "{events}");
    assert_eq!(events["waiting"], 5, "the stuck call's five events wait: {events}");

    // Its receiver's bug is fixed: its events follow, in order.
    receiver.fail_session(None);
    let stuck = vec!["stuck".to_owned()];
    let received = receiver.wait_for(Duration::from_secs(20), |r| all_arrived(r, &stuck)).await;
    assert_in_order(&received, &stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_gets_probes_and_everything_once_it_is_back() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    // Retries far apart: only the back-off's recovery can deliver within the test's time.
    let server = Arc::new(server_pushing_to(&receiver, &["1h"]).await);
    receiver.down(true);
    let sessions = complete_calls(&server, "outage", 20).await;
    let backing_off = eventually(Duration::from_secs(10), || async {
        let events = lane(&server, "events").await;
        (events["backing_off"] == true).then_some(events)
    })
    .await;
    let events = backing_off.expect("the app backs off while its receiver fails every push");
    assert_eq!(events["waiting"], 100, "{events}");
    let text = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains(&format!("privnum_pushes_backing_off{{app=\"{}\",kind=\"events\"}} 1", AXB_APP.0)), "{text}");
    assert!(text.contains(&format!("privnum_pushes_waiting{{app=\"{}\",kind=\"events\"}} 100", AXB_APP.0)), "{text}");

    // While it is down, privnum sends it a probe now and then, not a flood.
    let before = receiver.attempts();
    tokio::time::sleep(Duration::from_secs(2)).await; // measuring a rate over a fixed window
    let probes = receiver.attempts() - before;
    assert!(probes <= 8, "{probes} pushes in 2 s to a receiver that is down");

    receiver.down(false);
    let received = receiver.wait_for(Duration::from_secs(20), |r| all_arrived(r, &sessions)).await;
    assert_in_order(&received, &sessions);
    let recovered = eventually(Duration::from_secs(5), || async {
        let events = lane(&server, "events").await;
        (events["backing_off"] == false && events["waiting"] == 0).then_some(events)
    })
    .await;
    assert!(recovered.is_some(), "the back-off ends and nothing waits: {}", lane(&server, "events").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_waiting_through_a_restart_are_all_delivered_in_order() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    let server = Arc::new(server_pushing_to(&receiver, &["200ms"; 30]).await);
    receiver.down(true);
    let sessions = complete_calls(&server, "restart", 15).await;
    let server = Arc::into_inner(server).expect("no call holds the server").restart().await;
    receiver.down(false);
    let received = receiver.wait_for(Duration::from_secs(20), |r| all_arrived(r, &sessions)).await;
    assert_in_order(&received, &sessions);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_waiting_through_kill_9_are_all_delivered_in_order_per_call() {
    pushes_through_kill_9("", 12, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spilled_pushes_through_kill_9_are_all_delivered_in_order_per_call() {
    // Windows of 16 and no memory budget: most events spill, and the kill may fall in a move.
    pushes_through_kill_9("push_window = 16\npush_memory_budget_mb = 0", 30, true).await;
}

/// `calls` complete calls with the receiver down, SIGKILL (once some pushes are spilled, if
/// `spilled`), a start on the same directory, the receiver back: every call's events arrive in
/// order, and its CDR.
async fn pushes_through_kill_9(settings: &str, calls: usize, spilled: bool) {
    use crate::persistence::{signed_request, spawn_pushing_server_with, switch_post};
    let receiver = Receiver::start(&[("demo-app", "demo-secret")]).await;
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (process, base) = spawn_pushing_server_with(dir.path(), &receiver, settings);
    let body = json!({"relationNum": X, "callerNum": A, "calleeNum": B});
    let bound = signed_request(&client, Method::POST, format!("{base}{}", crate::support::AXB_PATH), Some(&body)).await;
    assert_eq!(bound["resultcode"], "0", "{bound}");
    receiver.down(true);
    let sessions: Vec<String> = (0..calls).map(|i| format!("killed-{i}")).collect();
    let mut calls = tokio::task::JoinSet::new();
    for session in sessions.clone() {
        let (client, base) = (client.clone(), base.clone());
        calls.spawn(async move {
            let call = json!({"caller": A, "called": X, "sessionId": session});
            switch_post(&client, format!("{base}/v1/switch/calls"), call).await;
            for event in &CALL[1..] {
                let body = json!({"event": event, "stateCode": 0, "releaseSide": "caller"});
                switch_post(&client, format!("{base}/v1/switch/calls/{session}/events"), body).await;
            }
        });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap();
    }
    if spilled {
        let metrics = format!("{base}/metrics");
        let spilling = eventually(Duration::from_secs(10), || async {
            let text = client.get(&metrics).send().await.ok()?.text().await.ok()?;
            let line = text
                .lines()
                .find(|line| line.starts_with("privnum_pushes_spilled{app=\"demo-app\",kind=\"events\"}"))?;
            (line.rsplit(' ').next()?.parse::<f64>().ok()? > 0.0).then_some(())
        })
        .await;
        assert!(spilling.is_some(), "events spill within the watch's second");
    }
    // SIGKILL with every push waiting; started again; the customer comes back.
    drop(process);
    let (_process, _base) = spawn_pushing_server_with(dir.path(), &receiver, settings);
    receiver.down(false);
    let received = receiver
        .wait_for(Duration::from_secs(30), |r| {
            let cdrs = cdrs(r);
            sessions.iter().all(|s| {
                events_of(r, s).iter().any(|e| e == "disconnect") && cdrs.iter().any(|c| c["sessionId"] == s.as_str())
            })
        })
        .await;
    for session in &sessions {
        // At least once: a push being sent when the process died may come twice, never out of order.
        let mut events = events_of(&received, session);
        events.dedup();
        assert_eq!(events, CALL, "{session}: its events, in order");
        assert!(cdrs(&received).iter().any(|c| c["sessionId"] == session.as_str()), "{session}: its CDR");
    }
}

/// A gauge's value from `/metrics`.
async fn gauge(server: &TestServer, name: &str) -> Option<f64> {
    let text = server.client.get(format!("{}/metrics", server.base)).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_beyond_the_memory_budget_wait_on_disk_and_are_read_back_in_order() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    // No memory for bodies at all: every waiting push's body is on disk only.
    let server = TestServer::builder()
        .pushing_to(&receiver)
        .retries(&["200ms"; 30])
        .cdr_flush_ms(50)
        .configure(|config| config.push_memory_budget_mb = 0)
        .start()
        .await;
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    let server = Arc::new(server);
    receiver.down(true);
    let sessions = complete_calls(&server, "budget", 12).await;
    let on_disk = gauge(&server, "privnum_call_log_pushes_on_disk").await;
    assert_eq!(on_disk, Some(72.0), "12 calls' 60 events and 12 CDRs wait with their bodies on disk");
    assert_eq!(gauge(&server, "privnum_call_log_push_memory_bytes").await, Some(0.0));
    // Through a restart too: replayed, they stay on disk.
    let server = Arc::into_inner(server).expect("no call holds the server").restart().await;
    assert_eq!(gauge(&server, "privnum_call_log_pushes_on_disk").await, Some(72.0), "after the restart");
    receiver.down(false);
    let received = receiver.wait_for(Duration::from_secs(20), |r| all_arrived(r, &sessions)).await;
    assert_in_order(&received, &sessions);
    let drained = eventually(Duration::from_secs(5), || async {
        (gauge(&server, "privnum_call_log_pushes_on_disk").await == Some(0.0)).then_some(())
    })
    .await;
    assert!(drained.is_some(), "delivered pushes leave the disk too");
}

/// Each session's event types in arrival order, in one pass over what was received.
fn events_by_session(received: &[Received]) -> std::collections::HashMap<String, Vec<String>> {
    let mut by_session: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for r in received.iter().filter(|r| r.path == "/events") {
        let session = r.body["statusInfo"]["sessionId"].as_str().unwrap_or("?").to_owned();
        by_session.entry(session).or_default().push(r.body["eventType"].as_str().unwrap_or("?").to_owned());
    }
    by_session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_beyond_the_window_spills_to_disk_and_drains_in_order_after_a_restart() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    // No memory budget, and windows of 64: what the events window does not hold spills, key and
    // all.
    let server = TestServer::builder()
        .pushing_to(&receiver)
        .retries(&["200ms"; 30])
        .cdr_flush_ms(50)
        .configure(|config| {
            config.push_memory_budget_mb = 0;
            config.push_window = 64;
        })
        .start()
        .await;
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    let server = Arc::new(server);
    receiver.down(true);
    let calls = 60;
    let sessions = complete_calls(&server, "spill", calls).await;
    let spilled = eventually(Duration::from_secs(10), || async {
        let events = lane(&server, "events").await;
        (events["spilled"].as_u64().unwrap_or(0) > 0).then_some(events)
    })
    .await
    .expect("the events beyond the window spill within the watch's second");
    assert_eq!(spilled["waiting"], 5 * calls as u64, "{spilled}: every event still waits, spilled or not");
    let metric = format!("privnum_pushes_spilled{{app=\"{}\",kind=\"events\"}}", AXB_APP.0);
    assert!(gauge(&server, &metric).await.is_some_and(|n| n > 0.0), "/metrics reports {metric}");

    // Through a restart: the spill is found again, and nothing is lost or doubled.
    let server = Arc::into_inner(server).expect("no call holds the server").restart().await;
    let events = lane(&server, "events").await;
    assert_eq!(events["waiting"], 5 * calls as u64, "after the restart: {events}");
    receiver.down(false);
    let received = receiver
        .wait_for(Duration::from_secs(60), |r| {
            r.iter().filter(|r| r.path == "/events").count() >= 5 * calls && cdrs(r).len() >= calls
        })
        .await;
    let by_session = events_by_session(&received);
    for session in &sessions {
        assert_eq!(by_session.get(session).map(Vec::as_slice), Some(&CALL.map(String::from)[..]), "{session}");
    }
    assert_eq!(cdrs(&received).len(), calls, "one CDR per call");
    let drained = eventually(Duration::from_secs(5), || async {
        let events = lane(&server, "events").await;
        (events["waiting"] == 0 && events["spilled"] == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "the spill is empty once everything is delivered: {}", lane(&server, "events").await);
}
