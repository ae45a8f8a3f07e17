//! AX over real HTTP and the real `scripts/modes/ax.rhai`: provisioning with every result code it
//! produces, allocation and capacity, the temporary callee and its expiry on the manual clock,
//! routing, and the events and CDRs of AX calls.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::receiver::{cdrs, events_of, Receiver};
use crate::support::{Answer, TestServer, AXB_APP, AX_APP, AX_CALLEE_PATH, AX_PATH};

const A: &str = "+8613800000001";
const C: &str = "+8613900000002";
const STRANGER: &str = "+8613700000009";
const X: &str = "+8617200000001";

async fn ax(server: &TestServer, method: Method, params: &str, body: Option<&Value>) -> Answer {
    let path = if params.is_empty() { AX_PATH.to_owned() } else { format!("{AX_PATH}?{params}") };
    server.call(AX_APP, method, &path, body).await
}

async fn set_callee(server: &TestServer, body: Value) -> Answer {
    server.call(AX_APP, Method::PUT, AX_CALLEE_PATH, Some(&body)).await
}

#[tokio::test]
async fn bind_query_modify_and_unbind_follow_the_reference() {
    let server = TestServer::start().await;
    server.approve_tones(AX_APP.0, &["rec.wav", "last.wav", "to-a.wav"]).await;
    let answer = server
        .bind_ax(json!({"origNum": A, "privateNum": X, "areaCode": "010", "privateNumType": "mobile-virtual",
            "calleeNumDisplay": "0", "recordFlag": "true", "recordHintTone": "rec.wav", "userData": "shop-1",
            "maxDuration": 30, "lastMinVoice": "last.wav", "preVoice": {"calleeHintTone": "to-a.wav"}}))
        .await;
    answer.expect(200, "0");
    assert_eq!(
        (answer.body["origNum"].as_str(), answer.body["privateNum"].as_str()),
        (Some(A), Some(X)),
        "privateNum wins over areaCode"
    );
    let id = answer.body["subscriptionId"].as_str().unwrap().to_owned();

    // Precedence: subscriptionId > origNum > privateNum.
    let by_id = ax(&server, Method::GET, &format!("subscriptionId={id}&origNum=%2B8613000000000"), None).await;
    by_id.expect(200, "0");
    let item = &by_id.body["privateNumList"][0];
    assert_eq!((item["recordFlag"].as_str(), item["userData"].as_str()), (Some("true"), Some("shop-1")));
    assert_eq!(item["preVoice"]["calleeHintTone"], "to-a.wav");
    ax(&server, Method::GET, &format!("origNum=%2B8613000000000&privateNum={X}"), None).await.expect(403, "1012007");
    ax(&server, Method::GET, &format!("origNum={A}"), None).await.expect(200, "0");
    ax(&server, Method::GET, &format!("privateNum={X}"), None).await.expect(200, "0");

    let modify = json!({"subscriptionId": id, "recordFlag": false, "userData": "", "maxDuration": 0});
    let modified = ax(&server, Method::PUT, "", Some(&modify)).await;
    modified.expect(200, "0");
    assert_eq!(modified.body["recordFlag"], "false");
    assert_eq!(modified.body["userData"], Value::Null, "cleared with \"\"");
    assert_eq!(modified.body["lastMinVoice"], Value::Null, "lastMinVoice needs a maxDuration");
    // A modify by numbers checks origNum; an unbind does not parse it.
    let wrong_a = json!({"privateNum": X, "origNum": STRANGER, "userData": "x"});
    ax(&server, Method::PUT, "", Some(&wrong_a)).await.expect(403, "1012007");
    let removed = ax(&server, Method::DELETE, &format!("privateNum={X}&origNum=%2B8613000000000"), None).await;
    removed.expect(200, "0");
    assert_eq!(removed.body["subscriptionId"], id.as_str());
    ax(&server, Method::GET, &format!("subscriptionId={id}"), None).await.expect(403, "1012007");
    ax(&server, Method::DELETE, &format!("subscriptionId={id}"), None).await.expect(403, "1012007");
}

#[tokio::test]
async fn allocation_by_area_code_and_the_capacity_rules() {
    let server = TestServer::start().await;
    // One X per A... three 0755 numbers for three different A numbers, then none.
    let mut given = Vec::new();
    for n in 1..=3 {
        let answer = server.bind_ax(json!({"origNum": format!("+86138000000{n:02}"), "areaCode": "0755"})).await;
        answer.expect(200, "0");
        given.push(answer.body["privateNum"].as_str().unwrap().to_owned());
    }
    assert_eq!(given, ["+8617200000001", "+8617200000002", "+8617200000003"]);
    let full = server.bind_ax(json!({"origNum": "+8613800000004", "areaCode": "755"})).await;
    full.expect(403, "1011002");
    assert!(full.desc().contains("0755") || full.desc().contains("755"), "{full:?}");
    // Lenient matching takes the nearest area (0756 shares "75").
    let lenient = server.bind_ax(json!({"origNum": "+8613800000004", "areaCode": "0755", "areaMatchMode": "1"})).await;
    lenient.expect(200, "0");
    assert_eq!(lenient.body["privateNum"], "+8617200000004");
    // An X already bound to an A: 1011005.
    server.bind_ax(json!({"origNum": "+8613800000009", "privateNum": "+8617200000001"})).await.expect(403, "1011005");

    // One A holds at most five X numbers: 1011003, checked before any X is looked for.
    let server = TestServer::start().await;
    for n in 1..=5 {
        server.bind_ax(json!({"origNum": A, "privateNum": format!("+861720000000{n}")})).await.expect(200, "0");
    }
    // An area with no X at all: looking for an X first would answer 1011002 instead.
    let sixth = server.bind_ax(json!({"origNum": A, "areaCode": "0999"})).await;
    sixth.expect(403, "1011003");
    assert_eq!(ax(&server, Method::GET, &format!("origNum={A}"), None).await.body["totalCount"], 5);
    // Unbinding one frees room for A and the X for anyone.
    ax(&server, Method::DELETE, "privateNum=%2B8617200000005", None).await.expect(200, "0");
    server.bind_ax(json!({"origNum": A, "areaCode": "010"})).await.expect(200, "0");
}

#[tokio::test]
async fn every_refusal_names_its_reason() {
    let server = TestServer::start().await;
    for (body, field) in [
        (json!({"areaCode": "0755"}), "origNum"),
        (json!({"origNum": A}), "privateNum"),
        (json!({"origNum": "13800000001", "areaCode": "0755"}), "origNum"),
        (json!({"origNum": A, "areaCode": "0755", "calleeNumDisplay": "1"}), "calleeNumDisplay"),
        (json!({"origNum": A, "areaCode": "0755", "privateNumType": "fixed-line"}), "privateNumType"),
        (json!({"origNum": A, "areaCode": "0755", "maxDuration": 1441}), "maxDuration"),
        (json!({"origNum": A, "areaCode": "0755", "recordHintTone": "bad name.wav"}), "recordHintTone"),
        (
            json!({"origNum": A, "areaCode": "0755", "preVoice": {"callerHintTone": "../x.wav"}}),
            "preVoice.callerHintTone",
        ),
        (json!({"origNum": A, "areaCode": "0755", "userData": "{}"}), "userData"),
        (json!({"origNum": A, "privateNum": A}), "privateNum"),
    ] {
        let answer = server.bind_ax(body.clone()).await;
        answer.expect(403, "1010002");
        assert!(answer.desc().starts_with(&format!("Invalid request.{field} ")), "{field}: {body} → {answer:?}");
    }
    // X of another app, or of none: 1012001. A paused X: 1012102.
    server.bind_ax(json!({"origNum": A, "privateNum": "+8617000000001"})).await.expect(403, "1012001");
    server.bind_ax(json!({"origNum": A, "privateNum": "+8617999999999"})).await.expect(403, "1012001");
    let paused = json!({"area_code": "0755", "status": "paused"});
    server.admin(Method::PUT, "/apps/ax-app/numbers/+8617200000002", Some(&paused)).await.expect(200, "0");
    server.bind_ax(json!({"origNum": A, "privateNum": "+8617200000002"})).await.expect(403, "1012102");
    // Recording on an app that does not record: 1012012.
    let quiet = json!({"mode": "AX", "app_secret": AX_APP.1, "recording": false});
    server.admin(Method::PUT, "/apps/ax-app", Some(&quiet)).await.expect(200, "0");
    server.bind_ax(json!({"origNum": A, "privateNum": X, "recordFlag": true})).await.expect(403, "1012012");
    // Another mode's app: 1010040, before its body is read.
    server.call(AXB_APP, Method::POST, AX_PATH, Some(&json!({"origNum": A}))).await.expect(403, "1010040");
    server.call(AXB_APP, Method::PUT, AX_CALLEE_PATH, Some(&json!({}))).await.expect(403, "1010040");
    // Unbind and query need something to go by.
    ax(&server, Method::DELETE, "", None).await.expect(403, "1010002");
    ax(&server, Method::GET, "", None).await.expect(403, "1010002");

    // The temporary callee.
    server.bind_ax(json!({"origNum": A, "privateNum": X})).await.expect(200, "0");
    for (body, field) in [
        (json!({"origNum": A, "privateNum": X}), "calleeNum"),
        (json!({"origNum": A, "privateNum": X, "calleeNum": A}), "calleeNum"),
        (json!({"origNum": A, "privateNum": X, "calleeNum": C, "duration": 0}), "duration"),
        (json!({"origNum": A, "privateNum": X, "calleeNum": C, "duration": 259_201}), "duration"),
        (json!({"privateNum": X, "calleeNum": C}), "origNum"),
    ] {
        let answer = set_callee(&server, body.clone()).await;
        answer.expect(403, "1010002");
        assert!(answer.desc().starts_with(&format!("Invalid request.{field} ")), "{field}: {body} → {answer:?}");
    }
    let not_as_a = set_callee(&server, json!({"origNum": STRANGER, "privateNum": X, "calleeNum": C})).await;
    not_as_a.expect(403, "1012007");
}

#[tokio::test]
async fn others_reach_a_and_a_reaches_its_temporary_callee_until_it_expires() {
    let server = TestServer::start().await;
    server.approve_tones(AX_APP.0, &["to-c.wav", "to-a.wav"]).await;
    // No binding on X: 8018.
    let unbound = server.switch_call(STRANGER, X).await;
    assert_eq!((unbound.body["action"].as_str(), unbound.body["stateCode"].as_u64()), (Some("release"), Some(8018)));

    let id = server
        .bind_ax(json!({"origNum": A, "privateNum": X, "userData": "shop-1",
            "preVoice": {"callerHintTone": "to-c.wav", "calleeHintTone": "to-a.wav"}}))
        .await
        .expect(200, "0")
        .field("subscriptionId");
    let from_stranger = server.switch_call(STRANGER, X).await;
    let expected = json!({"action": "connect", "callee": A, "display": X, "subscriptionId": id, "userData": "shop-1",
        "preVoice": "to-a.wav"});
    for (field, value) in expected.as_object().unwrap() {
        assert_eq!(&from_stranger.body[field], value, "{field}: {from_stranger:?}");
    }
    let no_callee = server.switch_call(A, X).await;
    assert_eq!(no_callee.body["stateCode"], 8013, "{no_callee:?}");

    // The default lifetime is 60 s, on the server's clock.
    let set =
        set_callee(&server, json!({"origNum": A, "privateNum": X, "calleeNum": "+8695555", "userData": "call-1"}))
            .await;
    set.expect(200, "0");
    let from_a = server.switch_call(A, X).await;
    assert_eq!(
        (from_a.body["callee"].as_str(), from_a.body["display"].as_str(), from_a.body["preVoice"].as_str()),
        (Some("+8695555"), Some(X), Some("to-c.wav")),
        "a service number is a valid temporary callee: {from_a:?}"
    );
    assert_eq!(from_a.body["userData"], "call-1", "the temporary callee's own userData");
    server.clock.advance(59);
    assert_eq!(server.switch_call(A, X).await.body["action"], "connect");
    server.clock.advance(1);
    assert_eq!(server.switch_call(A, X).await.body["stateCode"], 8013, "expired after 60 s");

    // A new temporary callee replaces the old one, for as long as asked (up to three days).
    set_callee(&server, json!({"origNum": A, "privateNum": X, "calleeNum": C, "duration": 259_200}))
        .await
        .expect(200, "0");
    server.clock.advance(259_199);
    assert_eq!(server.switch_call(A, X).await.body["callee"], C);
    server.clock.advance(1);
    assert_eq!(server.switch_call(A, X).await.body["stateCode"], 8013);

    // After an unbind, X is unbound again.
    ax(&server, Method::DELETE, &format!("subscriptionId={id}"), None).await.expect(200, "0");
    assert_eq!(server.switch_call(STRANGER, X).await.body["stateCode"], 8018);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ax_calls_push_their_events_and_one_cdr_with_service_type_003() {
    let receiver = Receiver::start(&[AX_APP]).await;
    let server = TestServer::builder().pushing_to(&receiver).cdr_flush_ms(50).start().await;
    let id = server
        .bind_ax(json!({"origNum": A, "privateNum": X, "userData": "shop-1"}))
        .await
        .expect(200, "0")
        .field("subscriptionId");
    set_callee(&server, json!({"origNum": A, "privateNum": X, "calleeNum": C})).await.expect(200, "0");

    let call = |caller: &str, session: &str| json!({"caller": caller, "called": X, "sessionId": session});
    server.switch(Method::POST, "/calls", &call(STRANGER, "inbound")).await;
    for event in ["callout", "alerting", "answer"] {
        server.switch(Method::POST, "/calls/inbound/events", &json!({"event": event})).await;
    }
    server.switch(Method::POST, "/calls/inbound/events", &json!({"event": "disconnect", "stateCode": 0})).await;
    server.switch(Method::POST, "/calls", &call(A, "outbound")).await;
    server.switch(Method::POST, "/calls/outbound/events", &json!({"event": "disconnect", "q850": 17})).await;
    server.clock.advance(60);
    server.switch(Method::POST, "/calls", &call(A, "no-callee")).await;
    let unbound = json!({"caller": STRANGER, "called": "+8617200000002", "sessionId": "unbound"});
    server.switch(Method::POST, "/calls", &unbound).await;

    let received = receiver.wait_for(Duration::from_secs(10), |r| cdrs(r).len() >= 4).await;
    assert_eq!(events_of(&received, "inbound"), ["callin", "callout", "alerting", "answer", "disconnect"]);
    assert_eq!(events_of(&received, "no-callee"), ["callin", "disconnect"]);
    let by_session = |session: &str| cdrs(&received).into_iter().find(|cdr| cdr["sessionId"] == session).unwrap();
    let inbound = by_session("inbound");
    assert_eq!(
        (inbound["serviceType"].as_str(), inbound["direction"].as_u64(), inbound["fwdDstNum"].as_str()),
        (Some("003"), Some(0), Some(A)),
        "{inbound}"
    );
    assert_eq!((inbound["subscriptionId"].as_str(), inbound["userData"].as_str()), (Some(id.as_str()), Some("shop-1")));
    let outbound = by_session("outbound");
    assert_eq!((outbound["direction"].as_u64(), outbound["fwdDstNum"].as_str()), (Some(1), Some(C)), "{outbound}");
    assert_eq!(outbound["ulFailReason"], 8102);
    let no_callee = by_session("no-callee");
    assert_eq!((no_callee["direction"].as_u64(), no_callee["ulFailReason"].as_u64()), (Some(1), Some(8013)));
    // An X of the app with no binding: abnormal (2), no subscription.
    let unbound = by_session("unbound");
    assert_eq!(
        (unbound["direction"].as_u64(), unbound["subscriptionId"].as_str(), unbound["ulFailReason"].as_u64()),
        (Some(2), Some(""), Some(8018))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_reaches_past_the_binding_gets_the_fallback() {
    let server = TestServer::builder().scripts_copy().start().await;
    let scripts = server.scripts_dir().to_owned();
    server.bind_ax(json!({"origNum": A, "privateNum": X})).await.expect(200, "0");
    // A script that sends every call to a number the binding does not allow; without its cases,
    // it loads, and the host's invariant check must catch it.
    std::fs::remove_dir_all(scripts.join("modes/ax.cases")).unwrap();
    std::fs::write(scripts.join("modes/ax.rhai"), "fn on_callin(callin) { connect(\"+8613300000000\") }\n").unwrap();
    let reload = server.admin(Method::POST, "/scripts/reload", None).await;
    assert_eq!(reload.body["outcome"], "reloaded", "{reload:?}");
    let call = server.switch_call(STRANGER, X).await;
    assert_eq!((call.body["action"].as_str(), call.body["stateCode"].as_u64()), (Some("release"), Some(8020)));
    let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("privnum_script_runtime_errors_total 1"), "{metrics}");
}

#[tokio::test]
async fn an_unbind_does_not_read_orig_num() {
    let server = TestServer::start().await;
    server.bind_ax(json!({"origNum": A, "privateNum": X})).await.expect(200, "0");
    let answer = ax(&server, Method::DELETE, &format!("privateNum=%2B{}&origNum=abc", &X[1..]), None).await;
    answer.expect(200, "0");
}

/// A's call when the stranger's call is remembered (the record is written with the stranger's
/// session, queued: poll until it has landed).
async fn calls_back(server: &TestServer) -> Value {
    let connected = crate::support::eventually(Duration::from_secs(5), || async {
        let answer = server.switch_call(A, X).await;
        (answer.body["action"] == "connect").then_some(answer.body)
    })
    .await;
    connected.expect("A's call reaches the last party who called it")
}

#[tokio::test]
async fn memory_callback_reaches_the_last_caller_within_its_window() {
    let server = TestServer::builder()
        .configure(|config| {
            let app = config.apps.iter_mut().find(|app| app.app_key == AX_APP.0).unwrap();
            app.memory_callback_minutes = 10;
        })
        .start()
        .await;
    let id = server.bind_ax(json!({"origNum": A, "privateNum": X})).await.expect(200, "0").field("subscriptionId");
    assert_eq!(server.switch_call(A, X).await.body["stateCode"], 8013, "no one has called A yet");
    assert_eq!(server.switch_call(STRANGER, X).await.body["callee"], A);
    let back = calls_back(&server).await;
    assert_eq!((back["callee"].as_str(), back["display"].as_str()), (Some(STRANGER), Some(X)), "{back}");
    assert_eq!(back["subscriptionId"], id.as_str());

    // The latest caller wins; A's own calls are not remembered.
    assert_eq!(server.switch_call(C, X).await.body["callee"], A);
    crate::support::eventually(Duration::from_secs(5), || async {
        (server.switch_call(A, X).await.body["callee"] == C).then_some(())
    })
    .await
    .expect("the latest caller is called back");

    // A valid temporary callee comes first.
    set_callee(&server, json!({"origNum": A, "privateNum": X, "calleeNum": "+8695555"})).await.expect(200, "0");
    assert_eq!(server.switch_call(A, X).await.body["callee"], "+8695555");
    server.clock.advance(60);

    // The record survives a restart, and lasts the app's window.
    let server = server.restart().await;
    assert_eq!(server.switch_call(A, X).await.body["callee"], C, "kept across a restart");
    server.clock.advance(9 * 60 - 1);
    assert_eq!(server.switch_call(A, X).await.body["callee"], C);
    server.clock.advance(1);
    assert_eq!(server.switch_call(A, X).await.body["stateCode"], 8013, "the window is over");

    // An unbind removes it: a new binding of X starts with no one to call back.
    assert_eq!(server.switch_call(STRANGER, X).await.body["callee"], A);
    calls_back(&server).await;
    ax(&server, Method::DELETE, &format!("subscriptionId={id}"), None).await.expect(200, "0");
    server.bind_ax(json!({"origNum": A, "privateNum": X})).await.expect(200, "0");
    assert_eq!(server.switch_call(A, X).await.body["stateCode"], 8013, "a new binding remembers no one");
}
