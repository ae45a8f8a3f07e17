//! X mode through a real server and a real customer server on loopback: the Block callin and
//! its reply decide each call (connect as an object or an array, close with its tone), every
//! invalid reply is 8014, an unapproved tone 8006, no reply in time, a 500 and a refused
//! connection 8020 within about `x_callin_timeout_ms`; callins wait side by side; a customer that
//! fails every callin is failed fast; the later events are Notify pushes and the CDR carries the
//! X-mode fields.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use reqwest::Method;
use serde_json::{json, Value};

use crate::receiver::{cdrs, events_of, Receiver};
use crate::support::{TestServer, X_APP};

const X: &str = "+8617500000001";
const A: &str = "+8613800000001";
const B: &str = "+8613900000002";
/// Short, so the failure tests are quick; long enough for a loaded machine's loopback.
const TIMEOUT_MS: u64 = 600;

/// How the customer answers one caller: after `delay_ms`, with `status` and `body`.
#[derive(Clone)]
struct Answer {
    delay_ms: u64,
    status: u16,
    body: String,
}

/// A customer's server: answers each Block callin as told for its caller (200 `{}` otherwise)
/// and keeps what it received with whether its signature verified.
#[derive(Clone, Default)]
struct Customer {
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    received: Arc<Mutex<Vec<(Value, bool)>>>,
    /// Callins being answered now, and the most at once.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    most: Arc<std::sync::atomic::AtomicUsize>,
    base: String,
}

async fn answer(State(customer): State<Customer>, headers: HeaderMap, body: axum::Json<Value>) -> (StatusCode, String) {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let verified = privnum::auth::parse(text("authorization"), text)
        .is_ok_and(|credentials| credentials.app_key == X_APP.0 && credentials.verify(X_APP.1));
    let caller = body.0["statusInfo"]["caller"].as_str().unwrap_or_default().to_owned();
    customer.received.lock().unwrap().push((body.0, verified));
    let told = customer.answers.lock().unwrap().get(&caller).cloned();
    let told = told.unwrap_or(Answer { delay_ms: 0, status: 200, body: "{}".into() });
    use std::sync::atomic::Ordering::SeqCst;
    let now = customer.in_flight.fetch_add(1, SeqCst) + 1;
    customer.most.fetch_max(now, SeqCst);
    tokio::time::sleep(Duration::from_millis(told.delay_ms)).await;
    customer.in_flight.fetch_sub(1, SeqCst);
    (StatusCode::from_u16(told.status).unwrap(), told.body)
}

impl Customer {
    async fn start() -> Customer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let customer = Customer { base: format!("http://{}", listener.local_addr().unwrap()), ..Customer::default() };
        let router = axum::Router::new().fallback(axum::routing::post(answer)).with_state(customer.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        customer
    }

    fn tell(&self, caller: &str, status: u16, delay_ms: u64, body: Value) {
        let answer = Answer { delay_ms, status, body: body.to_string() };
        self.answers.lock().unwrap().insert(caller.to_owned(), answer);
    }

    fn most_at_once(&self) -> usize {
        self.most.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn received(&self) -> Vec<(Value, bool)> {
        self.received.lock().unwrap().clone()
    }
}

/// A server whose X-mode app asks `customer` (its `callin_url`) and pushes its events and CDRs to
/// `receiver`; `close.wav`, `wait.wav` and `last.wav` are approved tones of the app.
async fn x_server(customer: &Customer, receiver: &Receiver) -> TestServer {
    x_server_from(TestServer::builder(), customer, receiver, TIMEOUT_MS).await
}

async fn x_server_from(
    builder: crate::support::TestServerBuilder,
    customer: &Customer,
    receiver: &Receiver,
    timeout_ms: u64,
) -> TestServer {
    let (callin_url, events, cdr) =
        (format!("{}/callin", customer.base), format!("{}/events", receiver.base), format!("{}/cdr", receiver.base));
    let server = builder
        .retries(&["100ms"])
        .cdr_flush_ms(50)
        .configure(move |config| {
            config.x_callin_timeout_ms = timeout_ms;
            let app = config.apps.iter_mut().find(|app| app.app_key == X_APP.0).unwrap();
            app.callin_url = callin_url;
            app.call_event_url = events;
            app.cdr_url = cdr;
        })
        .start()
        .await;
    server.approve_tones(X_APP.0, &["close.wav", "wait.wav", "last.wav"]).await;
    server
}

async fn callin(server: &TestServer, caller: &str, session: &str) -> Value {
    let answer =
        server.switch(Method::POST, "/calls", &json!({"caller": caller, "called": X, "sessionId": session})).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customers_reply_connects_or_closes_and_the_call_reports_as_x_mode() {
    let (customer, receiver) = (Customer::start().await, Receiver::start(&[X_APP]).await);
    let server = x_server(&customer, &receiver).await;
    let connect = json!({"operation": "connect", "connectInfo": {"calleeNum": B, "displayCalleeNum": X,
        "maxDuration": 10, "waitVoice": "wait.wav", "lastMinVoice": "last.wav", "userData": "order-7"}});
    customer.tell(A, 200, 0, connect);
    let decision = callin(&server, A, "x-connect").await;
    assert_eq!(decision["action"], "connect", "{decision}");
    assert_eq!((decision["callee"].as_str(), decision["display"].as_str()), (Some(B), Some(X)), "{decision}");
    assert_eq!((decision["maxDuration"].as_i64(), decision["waitVoice"].as_str()), (Some(10), Some("wait.wav")));
    assert_eq!(decision["userData"], "order-7", "{decision}");
    let (block, verified) = customer.received()[0].clone();
    assert!(verified, "the Block callin is signed with the app's key: {block}");
    assert_eq!(block["eventType"], "callin");
    let info = &block["statusInfo"];
    assert_eq!(
        (info["notifyMode"].as_str(), info["caller"].as_str(), info["called"].as_str()),
        (Some("Block"), Some(A), Some(X))
    );
    assert_eq!(info["sessionId"], "x-connect");

    // The one-element array of the Huawei demo connects the same way.
    let caller = "+8613800000002";
    customer.tell(caller, 200, 0, json!({"operation": "connect", "connectInfo": [{"calleeNum": B}]}));
    let decision = callin(&server, caller, "x-array").await;
    assert_eq!((decision["action"].as_str(), decision["callee"].as_str()), (Some("connect"), Some(B)), "{decision}");

    // A close plays its tone and ends the call (8014).
    let caller = "+8613800000003";
    customer.tell(
        caller,
        200,
        0,
        json!({"operation": "close", "closeInfo": {"closeHintTone": "close.wav", "userData": "no-order"}}),
    );
    let decision = callin(&server, caller, "x-close").await;
    assert_eq!(
        (decision["stateCode"].as_i64(), decision["tone"].as_str()),
        (Some(8014), Some("close.wav")),
        "{decision}"
    );

    for event in ["callout", "alerting", "answer"] {
        server.switch(Method::POST, "/calls/x-connect/events", &json!({"event": event})).await;
    }
    let hang_up = json!({"event": "disconnect", "releaseSide": "callee", "stateCode": 0});
    server.switch(Method::POST, "/calls/x-connect/events", &hang_up).await;
    let received = receiver.wait_for(Duration::from_secs(5), |r| cdrs(r).len() == 2).await;
    assert_eq!(
        events_of(&received, "x-connect"),
        ["callout", "alerting", "answer", "disconnect"],
        "no Notify callin again"
    );
    assert_eq!(events_of(&received, "x-close"), ["disconnect"]);
    let disconnect = received
        .iter()
        .find(|r| r.body["eventType"] == "disconnect" && r.body["statusInfo"]["sessionId"] == "x-connect")
        .unwrap();
    let info = &disconnect.body["statusInfo"];
    assert_eq!((info["notifyMode"].as_str(), info["userData"].as_str()), (Some("Notify"), Some("order-7")), "{info}");
    assert_eq!(info["callRelDirection"], 2, "{info}");
    assert!(received.iter().all(|r| r.signed_by.as_deref() == Some(X_APP.0)));
    let cdr = cdrs(&received).into_iter().find(|cdr| cdr["sessionId"] == "x-connect").unwrap();
    assert_eq!((cdr["notifyMode"].as_str(), cdr["userData"].as_str()), (Some("Notify"), Some("order-7")), "{cdr}");
    assert_eq!((cdr["serviceType"].as_str(), cdr["callRelDirection"].as_i64()), (Some("004"), Some(2)), "{cdr}");
    assert_eq!((cdr["direction"].as_i64(), cdr["fwdDstNum"].as_str()), (Some(0), Some(B)), "{cdr}");
    assert_eq!((cdr["areaCode"].as_str(), cdr["callOutUnaswRsn"].as_i64()), (Some("0755"), Some(0)), "{cdr}");
    let closed = cdrs(&received).into_iter().find(|cdr| cdr["sessionId"] == "x-close").unwrap();
    assert_eq!(
        (closed["ulFailReason"].as_i64(), closed["userData"].as_str()),
        (Some(8014), Some("no-order")),
        "{closed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_reply_is_8014_and_an_unapproved_tone_8006() {
    let (customer, receiver) = (Customer::start().await, Receiver::start(&[X_APP]).await);
    let server = x_server(&customer, &receiver).await;
    let invalid = [
        json!({"operation": "transfer"}),
        json!({"connectInfo": {"calleeNum": B}}),
        json!({"operation": "connect"}),
        json!({"operation": "connect", "connectInfo": {"calleeNum": "13900000002"}}),
        json!({"operation": "connect", "connectInfo": {"calleeNum": B, "maxDuration": 7200}}),
        json!({"operation": "connect", "connectInfo": {"calleeNum": B, "displayCalleeNum": "+8617500000009"}}),
        json!({"operation": "connect", "connectInfo": {"calleeNum": B, "lastMinVoice": "last.wav"}}),
        json!({"operation": "connect", "connectInfo": {"calleeNum": B, "userData": "{\"x\":1}"}}),
        json!({"operation": "connect", "connectInfo": [{"calleeNum": B}, {"calleeNum": B}]}),
        json!({"operation": "connect", "connectInfo": {"calleeNum": X}}),
        json!("connect"),
    ];
    for (n, reply) in invalid.iter().enumerate() {
        let caller = format!("+86138000001{n:02}");
        customer.tell(&caller, 200, 0, reply.clone());
        let decision = callin(&server, &caller, &format!("invalid-{n}")).await;
        assert_eq!(
            (decision["action"].as_str(), decision["stateCode"].as_i64()),
            (Some("release"), Some(8014)),
            "{reply}: {decision}"
        );
    }
    customer.tell(
        A,
        200,
        0,
        json!({"operation": "connect", "connectInfo": {"calleeNum": B, "waitVoice": "never-approved.wav"}}),
    );
    assert_eq!(callin(&server, A, "tone").await["stateCode"], 8006);
    customer.tell(A, 200, 0, json!({"operation": "close", "closeInfo": {"closeHintTone": "never-approved.wav"}}));
    assert_eq!(callin(&server, A, "close-tone").await["stateCode"], 8006);
    let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(&format!(
            "privnum_x_callin_failures_total{{app=\"{}\",kind=\"invalid\"}} {}",
            X_APP.0,
            invalid.len()
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("privnum_x_callin_failures_total{{app=\"{}\",kind=\"tone\"}} 2", X_APP.0)),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reply_in_time_a_500_or_no_connection_is_8020_within_the_timeout() {
    let (customer, receiver) = (Customer::start().await, Receiver::start(&[X_APP]).await);
    let server = x_server(&customer, &receiver).await;
    let connect = json!({"operation": "connect", "connectInfo": {"calleeNum": B}});
    customer.tell("+8613800000010", 200, 5_000, connect.clone());
    customer.tell("+8613800000011", 500, 0, connect);
    for (caller, least) in [("+8613800000010", TIMEOUT_MS), ("+8613800000011", 0)] {
        let started = Instant::now();
        let decision = callin(&server, caller, &format!("fail-{caller}")).await;
        let took = started.elapsed();
        assert_eq!(decision["stateCode"], 8020, "{decision}");
        assert!(
            took >= Duration::from_millis(least) && took < Duration::from_millis(TIMEOUT_MS + 900),
            "{caller}: {took:?}"
        );
    }
    // Nothing listens where the app asks: refused at once.
    let refused = TestServer::builder()
        .configure(|config| {
            config.x_callin_timeout_ms = TIMEOUT_MS;
            let app = config.apps.iter_mut().find(|app| app.app_key == X_APP.0).unwrap();
            app.callin_url = "http://127.0.0.1:9/callin".into();
        })
        .start()
        .await;
    let started = Instant::now();
    assert_eq!(callin(&refused, A, "refused").await["stateCode"], 8020);
    assert!(started.elapsed() < Duration::from_millis(TIMEOUT_MS + 900), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_callins_wait_side_by_side_on_a_slow_customer() {
    let (customer, receiver) = (Customer::start().await, Receiver::start(&[X_APP]).await);
    // A timeout far above the customer's 400 ms: a loaded machine must not turn a wait into 8020.
    let server = Arc::new(x_server_from(TestServer::builder(), &customer, &receiver, 5_000).await);
    let callers: Vec<String> = (0..40).map(|n| format!("+86138000002{n:02}")).collect();
    for caller in &callers {
        customer.tell(caller, 200, 400, json!({"operation": "connect", "connectInfo": {"calleeNum": B}}));
    }
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for (n, caller) in callers.into_iter().enumerate() {
        let server = server.clone();
        calls.spawn(async move { callin(&server, &caller, &format!("side-{n}")).await });
    }
    while let Some(decision) = calls.join_next().await {
        assert_eq!(decision.unwrap()["action"], "connect");
    }
    // One after another would take 16 s; side by side, about one customer answer (0.4 s), with
    // room for a loaded machine.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "40 callins took {took:?}");
    assert!(customer.most_at_once() >= 20, "the customer had at most {} callins at once", customer.most_at_once());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_that_fails_every_callin_is_not_waited_for() {
    let (customer, receiver) = (Customer::start().await, Receiver::start(&[X_APP]).await);
    let server = x_server(&customer, &receiver).await;
    // A customer that never answers in time: each of the first callins waits the whole timeout.
    customer.tell(A, 200, 5_000, json!({}));
    for n in 0..privnum::push::FAIL_FAST_AFTER {
        assert_eq!(callin(&server, A, &format!("down-{n}")).await["stateCode"], 8020);
    }
    let asked = customer.received().len();
    let started = Instant::now();
    assert_eq!(callin(&server, A, "fast").await["stateCode"], 8020);
    assert!(started.elapsed() < Duration::from_millis(TIMEOUT_MS), "decided at once: {:?}", started.elapsed());
    assert_eq!(customer.received().len(), asked, "the paused customer was not asked");
    let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("privnum_x_callin_failing_fast{{app=\"{}\"}} 1", X_APP.0)), "{metrics}");
    assert!(
        metrics.contains(&format!("privnum_x_callin_failures_total{{app=\"{}\",kind=\"failing_fast\"}} 1", X_APP.0)),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_x_mode_app_cannot_use_the_binding_apis() {
    let server = TestServer::start().await;
    let body = json!({"relationNum": X, "callerNum": A, "calleeNum": B});
    server.call(X_APP, Method::POST, crate::support::AXB_PATH, Some(&body)).await.expect(403, "1010040");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_of_x_rhai_goes_live() {
    let (customer, receiver) = (Customer::start().await, Receiver::start(&[X_APP]).await);
    let server = x_server_from(TestServer::builder().scripts_copy(), &customer, &receiver, TIMEOUT_MS).await;
    customer.tell(A, 200, 0, json!({"operation": "connect", "connectInfo": {"calleeNum": B, "userData": "vip"}}));
    assert_eq!(callin(&server, A, "before-edit").await["waitVoice"], Value::Null);
    // Ops give the customer's VIP calls a ring-back tone of their own.
    let path = server.scripts_dir().join("modes/x.rhai");
    let original = std::fs::read_to_string(&path).unwrap();
    let marker = "    decision.wait_voice = reply.wait_voice;\n";
    assert!(original.contains(marker), "x.rhai changed: update this test");
    let vip = "    if reply.user_data == \"vip\" { decision.wait_voice = \"wait.wav\"; }\n";
    std::fs::write(&path, original.replacen(marker, &format!("{marker}{vip}"), 1)).unwrap();
    let mut n = 0;
    let live = crate::support::eventually(Duration::from_secs(5), || {
        n += 1;
        let session = format!("after-edit-{n}");
        let server = &server;
        async move { (callin(server, A, &session).await["waitVoice"] == "wait.wav").then_some(()) }
    })
    .await;
    assert!(live.is_some(), "the edit of x.rhai was not live within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callin_retried_while_the_customer_decides_waits_for_that_decision() {
    let (customer, receiver) = (Customer::start().await, Receiver::start(&[X_APP]).await);
    let server = Arc::new(x_server_from(TestServer::builder(), &customer, &receiver, 5_000).await);
    customer.tell(A, 200, 400, json!({"operation": "connect", "connectInfo": {"calleeNum": B}}));
    // The switch gives up on its first request and sends it again while the customer thinks.
    let first = {
        let server = server.clone();
        tokio::spawn(async move { callin(&server, A, "retried").await })
    };
    asked(&customer, 1).await;
    let retry = callin(&server, A, "retried").await;
    let first = first.await.unwrap();
    assert_eq!((first["action"].clone(), retry["action"].clone()), (json!("connect"), json!("connect")));
    assert_eq!(first, retry, "the retry hears the first decision");
    assert_eq!(customer.received().len(), 1, "the customer was asked once about the call");
    // Another call with the same sessionId, meanwhile, is refused as before.
    customer.tell("+8613800000099", 200, 400, json!({"operation": "connect", "connectInfo": {"calleeNum": B}}));
    let other = {
        let server = server.clone();
        tokio::spawn(async move { callin(&server, "+8613800000099", "taken").await })
    };
    asked(&customer, 2).await;
    let answer = server.switch(Method::POST, "/calls", &json!({"caller": A, "called": X, "sessionId": "taken"})).await;
    assert_eq!(answer.status, 409, "{answer:?}");
    assert_eq!(other.await.unwrap()["action"], "connect");
}

/// Waits until the customer has been asked `count` times.
async fn asked(customer: &Customer, count: usize) {
    let reached = crate::support::eventually(Duration::from_secs(5), || {
        std::future::ready((customer.received().len() >= count).then_some(()))
    });
    assert!(reached.await.is_some(), "the customer was asked {} times, not {count}", customer.received().len());
}
