//! AXE over real HTTP and the real `scripts/modes/axe.rhai`: provisioning with every result code
//! it produces, extensions and their capacity, both queries, expiry on the manual clock, the
//! collect → digits → connect flow with callback records, and the events and CDRs of AXE calls.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::receiver::{cdrs, events_of, Receiver};
use crate::support::{self, Answer, TestServer, AXE1_APP, AXE_APP, AXE_CURSOR_PATH, AXE_PATH, AX_APP, SWITCH_TOKEN};

const A: &str = "+8613800000001";
const A2: &str = "+8613800000002";
const B: &str = "+8613700000009";
const X: &str = "+8617600000001";

async fn axe(server: &TestServer, method: Method, params: &str, body: Option<&Value>) -> Answer {
    let path = if params.is_empty() { AXE_PATH.to_owned() } else { format!("{AXE_PATH}?{params}") };
    server.call(AXE_APP, method, &path, body).await
}

/// A third party calls X; returns the session id after checking the collect decision.
async fn collect(server: &TestServer, caller: &str, session: &str) -> Value {
    let answer =
        server.switch(Method::POST, "/calls", &json!({"caller": caller, "called": X, "sessionId": session})).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

async fn digits(server: &TestServer, session: &str, digits: &str) -> Answer {
    server.switch(Method::POST, &format!("/calls/{session}/digits"), &json!({"digits": digits})).await
}

#[tokio::test]
async fn extensions_are_assigned_requested_and_refused_when_taken() {
    let server = TestServer::start().await;
    let answer = server.bind_axe(json!({"bindNum": A, "virtualNum": X, "userData": "agent-1"})).await;
    answer.expect(200, "0");
    assert_eq!(
        (answer.body["virtualNum"].as_str(), answer.body["extendNum"].as_str(), answer.body["bindNum"].as_str()),
        (Some(X), Some("0001"), Some(A))
    );
    assert!(answer.body["subscriptionId"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(
        server
            .bind_axe(json!({"bindNum": A2, "virtualNum": X, "extendNum": "0042"}))
            .await
            .expect(200, "0")
            .field("extendNum"),
        "0042"
    );
    assert_eq!(
        server
            .bind_axe(json!({"bindNum": "+8613800000003", "virtualNum": X}))
            .await
            .expect(200, "0")
            .field("extendNum"),
        "0002",
        "the lowest free one"
    );
    let taken = server.bind_axe(json!({"bindNum": "+8613800000004", "virtualNum": X, "extendNum": "0042"})).await;
    taken.expect(403, "1020167");
    assert!(taken.desc().contains("0042"), "{taken:?}");
    // One extension per A on an X.
    server.bind_axe(json!({"bindNum": A, "virtualNum": X})).await.expect(403, "1012010");
    // By area code: the X with the fewest bindings.
    let by_area = server.bind_axe(json!({"bindNum": A, "areaCode": "0755"})).await;
    by_area.expect(200, "0");
    assert_eq!(
        (by_area.body["virtualNum"].as_str(), by_area.body["extendNum"].as_str()),
        (Some("+8617600000002"), Some("0001"))
    );
    server.bind_axe(json!({"bindNum": A, "areaCode": "0999"})).await.expect(403, "1020167");
}

#[tokio::test]
async fn an_x_holds_as_many_extensions_as_its_digits_allow() {
    let server = TestServer::start().await;
    for n in 1..=9 {
        let answer = server
            .call(
                AXE1_APP,
                Method::POST,
                AXE_PATH,
                Some(&json!({"bindNum": format!("+86138000000{n:02}"), "areaCode": "021"})),
            )
            .await;
        answer.expect(200, "0");
        assert_eq!(answer.body["extendNum"], n.to_string());
    }
    let tenth = server
        .call(AXE1_APP, Method::POST, AXE_PATH, Some(&json!({"bindNum": "+8613800000010", "areaCode": "021"})))
        .await;
    tenth.expect(403, "1020167");
    let on_x = json!({"bindNum": "+8613800000010", "virtualNum": "+8617700000001"});
    server.call(AXE1_APP, Method::POST, AXE_PATH, Some(&on_x)).await.expect(403, "1020167");
    // A two-digit extension on a one-digit app is invalid.
    let two = json!({"bindNum": "+8613800000010", "virtualNum": "+8617700000001", "extendNum": "10"});
    let answer = server.call(AXE1_APP, Method::POST, AXE_PATH, Some(&two)).await;
    answer.expect(403, "1010002");
    assert!(answer.desc().starts_with("Invalid request.extendNum "), "{answer:?}");
    // The digit count cannot change under existing extensions.
    let four = json!({"mode": "AXE", "app_secret": AXE1_APP.1, "recording": true, "extension_digits": 4});
    server.admin(Method::PUT, "/apps/axe1-app", Some(&four)).await.expect(409, "1010002");
    // Unbinding one frees its extension.
    let unbind = format!("{AXE_PATH}?virtualNum=%2B8617700000001&extendNum=5");
    server.call(AXE1_APP, Method::DELETE, &unbind, None).await.expect(200, "0");
    let again = server
        .call(AXE1_APP, Method::POST, AXE_PATH, Some(&json!({"bindNum": "+8613800000010", "areaCode": "021"})))
        .await;
    assert_eq!(again.body["extendNum"], "5");
}

#[tokio::test]
async fn every_refusal_names_its_reason() {
    let server = TestServer::start().await;
    for (body, field) in [
        (json!({"virtualNum": X}), "bindNum"),
        (json!({"bindNum": A}), "virtualNum"),
        (json!({"bindNum": A, "virtualNum": X, "extendNum": "1"}), "extendNum"),
        (json!({"bindNum": A, "virtualNum": X, "extendNum": "0000"}), "extendNum"),
        (json!({"bindNum": A, "virtualNum": X, "displayNumMode": "1"}), "displayNumMode"),
        (json!({"bindNum": A, "virtualNum": X, "callbackNum": B, "callbackTone": "cb.wav"}), "callbackTone"),
        (json!({"bindNum": A, "virtualNum": X, "callbackNum": A}), "callbackNum"),
        (json!({"bindNum": A, "virtualNum": X, "callbackNum": X}), "callbackNum"),
        (json!({"bindNum": A, "virtualNum": X, "callbackTone": "bad tone.wav"}), "callbackTone"),
        (json!({"bindNum": A, "virtualNum": X, "timeUnit": "2"}), "timeUnit"),
        (json!({"bindNum": A, "virtualNum": X, "bindExpiredTime": 721}), "bindExpiredTime"),
        (json!({"bindNum": A, "virtualNum": X, "timeUnit": "1", "bindExpiredTime": 43_201}), "bindExpiredTime"),
        (json!({"bindNum": A, "virtualNum": X, "callbackExpiredTime": -1}), "callbackExpiredTime"),
        (json!({"bindNum": A, "virtualNum": X, "recordHintTone": "a/b.wav"}), "recordHintTone"),
        (json!({"bindNum": A, "virtualNum": X, "userData": "{x}"}), "userData"),
    ] {
        let answer = server.bind_axe(body.clone()).await;
        answer.expect(403, "1010002");
        assert!(answer.desc().starts_with(&format!("Invalid request.{field} ")), "{field}: {body} → {answer:?}");
    }
    server.bind_axe(json!({"bindNum": A, "virtualNum": "+8617200000001"})).await.expect(403, "1012001");
    let paused = json!({"area_code": "0755", "status": "paused"});
    server.admin(Method::PUT, "/apps/axe-app/numbers/+8617600000002", Some(&paused)).await.expect(200, "0");
    server.bind_axe(json!({"bindNum": A, "virtualNum": "+8617600000002"})).await.expect(403, "1012102");
    server.call(AX_APP, Method::POST, AXE_PATH, Some(&json!({"bindNum": A}))).await.expect(403, "1010040");
    server.call(AX_APP, Method::GET, AXE_CURSOR_PATH, None).await.expect(403, "1010040");
    axe(&server, Method::DELETE, &format!("virtualNum={X}"), None).await.expect(403, "1010002");
    axe(&server, Method::DELETE, &format!("virtualNum={X}&extendNum=0001"), None).await.expect(403, "1012007");
    axe(&server, Method::PUT, "", Some(&json!({"subscriptionId": "nope", "userData": "x"})))
        .await
        .expect(403, "1012007");
    let quiet = json!({"mode": "AXE", "app_secret": AXE_APP.1, "recording": false});
    server.admin(Method::PUT, "/apps/axe-app", Some(&quiet)).await.expect(200, "0");
    server.bind_axe(json!({"bindNum": A, "virtualNum": X, "recordFlag": "true"})).await.expect(403, "1012012");
}

#[tokio::test]
async fn modify_unbind_and_both_queries() {
    let server = TestServer::start().await;
    server.approve_tones(AXE_APP.0, &["cb.wav"]).await;
    for n in 1..=12 {
        server
            .bind_axe(json!({"bindNum": &format!("+86138000000{n:02}"), "virtualNum": X}))
            .await
            .expect(200, "0")
            .field("extendNum");
    }
    let page = axe(&server, Method::GET, &format!("virtualNum={X}&pageSize=10&pageIndex=2"), None).await;
    page.expect(200, "0");
    assert_eq!(page.body["totalCount"], 12);
    let list = page.body["extendNumList"].as_array().unwrap();
    assert_eq!(list.iter().map(|b| b["extendNum"].as_str().unwrap()).collect::<Vec<_>>(), ["0011", "0012"]);
    let one = axe(&server, Method::GET, &format!("virtualNum={X}&extendNum=0003"), None).await;
    assert_eq!(one.body["extendNumList"][0]["bindNum"], "+8613800000003");
    let id = one.body["extendNumList"][0]["subscriptionId"].as_str().unwrap().to_owned();

    // v2.0: pages of five by cursor, the cursor absent on the last one.
    let mut cursor = String::new();
    let mut seen = Vec::new();
    for expected in [5, 5, 2] {
        let params = if cursor.is_empty() { "limit=5".to_owned() } else { format!("limit=5&cursor={cursor}") };
        let answer = server.call(AXE_APP, Method::GET, &format!("{AXE_CURSOR_PATH}?{params}"), None).await;
        answer.expect(200, "0");
        let list = answer.body["extendNumList"].as_array().unwrap();
        assert_eq!(list.len(), expected, "{answer:?}");
        seen.extend(list.iter().map(|b| b["extendNum"].as_str().unwrap().to_owned()));
        cursor = answer.body["cursor"].as_str().unwrap_or_default().to_owned();
    }
    assert!(cursor.is_empty(), "no cursor after the last page");
    assert_eq!(seen.len(), 12);
    assert_eq!(seen.iter().collect::<std::collections::BTreeSet<_>>().len(), 12, "no binding twice");
    let bad = server.call(AXE_APP, Method::GET, &format!("{AXE_CURSOR_PATH}?cursor=12_x"), None).await;
    bad.expect(403, "1010002");
    assert!(bad.desc().starts_with("Invalid request.cursor "), "{bad:?}");

    // Modify: callbackTone replaces callbackNum; timeUnit needs both lifetimes.
    let server = &server;
    let modify = |body: Value| async move { axe(server, Method::PUT, "", Some(&body)).await };
    let first = modify(json!({"subscriptionId": id, "callbackNum": B})).await;
    first.expect(200, "0");
    assert_eq!(first.body["callbackNum"], B);
    let second = modify(json!({"virtualNum": X, "extendNum": "0003", "callbackTone": "cb.wav"})).await;
    second.expect(200, "0");
    assert_eq!((second.body["callbackTone"].as_str(), second.body["callbackNum"].as_str()), (Some("cb.wav"), None));
    modify(json!({"subscriptionId": id, "bindExpiredTime": 2, "callbackExpiredTime": 1})).await.expect(200, "0");
    // Hours set, then minutes: a lifetime not restated would change length silently.
    modify(json!({"subscriptionId": id, "timeUnit": "1", "bindExpiredTime": 30})).await.expect(403, "1010002");
    let minutes =
        modify(json!({"subscriptionId": id, "timeUnit": "1", "bindExpiredTime": 30, "callbackExpiredTime": 5})).await;
    minutes.expect(200, "0");
    assert_eq!((minutes.body["timeUnit"].as_str(), minutes.body["bindExpiredTime"].as_u64()), (Some("1"), Some(30)));
    // A new A must be free on X.
    modify(json!({"subscriptionId": id, "bindNum": "+8613800000004"})).await.expect(403, "1012010");
    modify(json!({"subscriptionId": id, "bindNum": "+8613800000099"})).await.expect(200, "0");

    axe(server, Method::DELETE, &format!("subscriptionId={id}&virtualNum={X}&extendNum=0001"), None)
        .await
        .expect(200, "0");
    axe(server, Method::GET, &format!("subscriptionId={id}"), None).await.expect(403, "1012007");
    assert_eq!(
        axe(server, Method::GET, &format!("virtualNum={X}&extendNum=0001"), None).await.code(),
        "0",
        "subscriptionId won"
    );
}

#[tokio::test]
async fn a_third_party_keys_an_extension_and_a_calls_back() {
    let server = TestServer::start().await;
    server.approve_tones(AXE_APP.0, &["ext.wav", "cb.wav"]).await;
    // No binding on X yet: the X is not in service.
    let empty = collect(&server, B, "before-any").await;
    assert_eq!((empty["action"].as_str(), empty["stateCode"].as_u64()), (Some("release"), Some(8025)));

    let ext = server
        .bind_axe(json!({"bindNum": A, "virtualNum": X, "userData": "agent-1", "callbackExpiredTime": 1}))
        .await
        .expect(200, "0")
        .field("extendNum");
    let asked = collect(&server, B, "s-1").await;
    assert_eq!(
        asked,
        json!({"sessionId": "s-1", "action": "collect", "prompt": "ext.wav", "maxDigits": 4, "timeoutMs": 10000})
    );
    let connected = digits(&server, "s-1", &format!("{ext}#")).await;
    assert_eq!(connected.status, 200, "{connected:?}");
    assert_eq!(
        (connected.body["action"].as_str(), connected.body["callee"].as_str(), connected.body["display"].as_str()),
        (Some("connect"), Some(A), Some(X))
    );
    assert_eq!(connected.body["userData"], "agent-1");
    // Digits once only.
    digits(&server, "s-1", &ext).await.expect(409, "1010002");
    digits(&server, "nope", &ext).await.expect(404, "1010002");
    digits(&server, "s-1", "12ab").await.expect(400, "1010002");

    // A calls X: back to B, while the callback record lives (one hour).
    let back = server.switch_call(A, X).await;
    assert_eq!((back.body["action"].as_str(), back.body["callee"].as_str()), (Some("connect"), Some(B)), "{back:?}");
    server.clock.advance(3600);
    let late = server.switch_call(A, X).await;
    assert_eq!(late.body["stateCode"], 8019, "the callback record expired: {late:?}");
    // callbackNum, then callbackTone, when there is no record.
    let id = axe(&server, Method::GET, &format!("virtualNum={X}&extendNum={ext}"), None).await.body["extendNumList"][0]
        ["subscriptionId"]
        .as_str()
        .unwrap()
        .to_owned();
    axe(&server, Method::PUT, "", Some(&json!({"subscriptionId": id, "callbackNum": "+8613900000002"})))
        .await
        .expect(200, "0");
    assert_eq!(server.switch_call(A, X).await.body["callee"], "+8613900000002");
    axe(&server, Method::PUT, "", Some(&json!({"subscriptionId": id, "callbackTone": "cb.wav"})))
        .await
        .expect(200, "0");
    let tone = server.switch_call(A, X).await;
    assert_eq!(
        (tone.body["action"].as_str(), tone.body["stateCode"].as_u64(), tone.body["tone"].as_str()),
        (Some("release"), Some(8019), Some("cb.wav"))
    );

    // A second caller's call is A's latest callback.
    collect(&server, "+8613700000008", "s-2").await;
    digits(&server, "s-2", &ext).await;
    assert_eq!(server.switch_call(A, X).await.body["callee"], "+8613700000008");

    // Wrong, empty and expired extensions.
    collect(&server, B, "s-3").await;
    assert_eq!(digits(&server, "s-3", "0999").await.body["stateCode"], 8022);
    collect(&server, B, "s-4").await;
    assert_eq!(digits(&server, "s-4", "").await.body["stateCode"], 8033);
    let short = server
        .bind_axe(json!({"bindNum": A2, "virtualNum": X, "timeUnit": "1", "bindExpiredTime": 1}))
        .await
        .expect(200, "0")
        .field("extendNum");
    collect(&server, B, "s-5").await;
    server.clock.advance(60);
    assert_eq!(digits(&server, "s-5", &short).await.body["stateCode"], 8022, "expired after a minute");
    // The sweeper frees the expired extension; a new bind may take it.
    let freed = support::eventually(Duration::from_secs(2), || async {
        let answer = server.bind_axe(json!({"bindNum": "+8613800000005", "virtualNum": X, "extendNum": short})).await;
        (answer.code() == "0").then_some(())
    })
    .await
    .is_some();
    assert!(freed, "the expired binding's extension is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axe_calls_push_collect_info_and_cdrs_with_service_type_005() {
    let receiver = Receiver::start(&[AXE_APP]).await;
    let server = TestServer::builder().pushing_to(&receiver).cdr_flush_ms(50).start().await;
    let ext = server
        .bind_axe(json!({"bindNum": A, "virtualNum": X, "userData": "agent-1"}))
        .await
        .expect(200, "0")
        .field("extendNum");

    collect(&server, B, "answered").await;
    digits(&server, "answered", &ext).await;
    for event in ["callout", "alerting", "answer"] {
        server.switch(Method::POST, "/calls/answered/events", &json!({"event": event})).await;
    }
    server.switch(Method::POST, "/calls/answered/events", &json!({"event": "disconnect", "stateCode": 0})).await;
    collect(&server, B, "hung-up").await;
    let hang_up = server
        .switch(Method::POST, "/calls/hung-up/events", &json!({"event": "disconnect", "releaseSide": "caller"}))
        .await;
    assert_eq!(hang_up.status, 200, "{hang_up:?}");
    digits(&server, "hung-up", &ext).await.expect(409, "1010002");
    collect(&server, B, "wrong").await;
    digits(&server, "wrong", "0999").await;
    let a_calls = json!({"caller": A, "called": X, "sessionId": "a-calls"});
    server.switch(Method::POST, "/calls", &a_calls).await;
    server.switch(Method::POST, "/calls/a-calls/events", &json!({"event": "disconnect", "stateCode": 0})).await;

    let received = receiver.wait_for(Duration::from_secs(10), |r| cdrs(r).len() >= 4).await;
    assert_eq!(
        events_of(&received, "answered"),
        ["callin", "collectInfo", "callout", "alerting", "answer", "disconnect"]
    );
    assert_eq!(events_of(&received, "hung-up"), ["callin", "disconnect"]);
    assert_eq!(events_of(&received, "wrong"), ["callin", "collectInfo", "disconnect"]);
    let collect_info = received
        .iter()
        .find(|r| r.body["eventType"] == "collectInfo" && r.body["statusInfo"]["sessionId"] == "answered")
        .unwrap();
    let info = &collect_info.body["statusInfo"];
    assert_eq!(
        (info["digitInfo"].as_str(), info["caller"].as_str(), info["called"].as_str()),
        (Some(ext.as_str()), Some(B), Some(X))
    );
    let callin = received
        .iter()
        .find(|r| r.body["eventType"] == "callin" && r.body["statusInfo"]["sessionId"] == "answered")
        .unwrap();
    assert!(callin.body["statusInfo"].get("subscriptionId").is_none(), "unknown until the extension is keyed");

    let by_session = |session: &str| cdrs(&received).into_iter().find(|cdr| cdr["sessionId"] == session).unwrap();
    let answered = by_session("answered");
    assert_eq!(
        (answered["serviceType"].as_str(), answered["direction"].as_u64(), answered["extendNum"].as_str()),
        (Some("005"), Some(0), Some(ext.as_str())),
        "{answered}"
    );
    assert_eq!((answered["fwdDstNum"].as_str(), answered["userData"].as_str()), (Some(A), Some("agent-1")));
    let hung_up = by_session("hung-up");
    assert_eq!((hung_up["ulFailReason"].as_u64(), hung_up["direction"].as_u64()), (Some(7516), Some(2)), "{hung_up}");
    let disconnect = received
        .iter()
        .find(|r| r.body["eventType"] == "disconnect" && r.body["statusInfo"]["sessionId"] == "hung-up")
        .unwrap();
    assert_eq!(disconnect.body["statusInfo"]["stateCode"], 7516);
    let wrong = by_session("wrong");
    assert_eq!((wrong["ulFailReason"].as_u64(), wrong["extendNum"].as_str()), (Some(8022), Some("0999")));
    let a_calls = by_session("a-calls");
    assert_eq!((a_calls["direction"].as_u64(), a_calls["fwdDstNum"].as_str()), (Some(1), Some(B)), "{a_calls}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privnum_call_with_digits_drives_an_axe_call_end_to_end() {
    let server = TestServer::start().await;
    let ext = server.bind_axe(json!({"bindNum": A, "virtualNum": X})).await.expect(200, "0").field("extendNum");
    let plan = |digits: Option<String>| privnum::cli::CallPlan {
        server: server.base.clone(),
        switch_token: SWITCH_TOKEN.into(),
        from: B.into(),
        to: X.into(),
        digits,
        answer_after: Some(2),
        talk: 10,
    };
    privnum::cli::call(plan(Some(ext.clone()))).await.expect("the call goes through");
    let sessions: Vec<privnum::calls::session::Session> = server.state().store.calls().sessions().unwrap();
    let call = sessions.iter().find(|s| s.extend_num.as_deref() == Some(ext.as_str())).expect("the call's session");
    assert_eq!((call.callee.as_deref(), call.ended_at.is_some()), (Some(A), true), "{call:?}");
    let refused = privnum::cli::call(plan(None)).await.expect_err("collect needs --digits");
    assert!(refused.to_string().contains("--digits"), "{refused}");
    let sessions: Vec<privnum::calls::session::Session> = server.state().store.calls().sessions().unwrap();
    let hung_up = sessions.iter().find(|s| s.extend_num.is_none()).expect("the second call's session");
    assert_eq!(hung_up.events.last().and_then(|e| e.state_code), Some(7516), "{hung_up:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_asked_for_its_extension_survives_a_restart() {
    let server = TestServer::start().await;
    let ext = server.bind_axe(json!({"bindNum": A, "virtualNum": X})).await.expect(200, "0").field("extendNum");
    collect(&server, B, "across").await;
    let server = server.restart().await;
    let connected = digits(&server, "across", &ext).await;
    assert_eq!((connected.body["action"].as_str(), connected.body["callee"].as_str()), (Some("connect"), Some(A)));
    // The callback record is on disk too.
    let server = server.restart().await;
    assert_eq!(server.switch_call(A, X).await.body["callee"], B);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_breaks_the_collect_or_callee_rules_gets_the_fallback() {
    let server = TestServer::builder().scripts_copy().start().await;
    let scripts = server.scripts_dir().to_owned();
    let ext = server.bind_axe(json!({"bindNum": A, "virtualNum": X})).await.expect(200, "0").field("extendNum");
    // Without its cases, a script that asks for 3 digits and sends keyed calls elsewhere loads;
    // the host's invariant checks must catch both.
    std::fs::remove_dir_all(scripts.join("modes/axe.cases")).unwrap();
    let script = "fn on_callin(callin) { collect(\"\", 3) }\nfn on_digits(callin) { connect(\"+8613300000000\") }\n";
    std::fs::write(scripts.join("modes/axe.rhai"), script).unwrap();
    let reload = server.admin(Method::POST, "/scripts/reload", None).await;
    assert_eq!(reload.body["outcome"], "reloaded", "{reload:?}");
    let asked = collect(&server, B, "bad-collect").await;
    assert_eq!((asked["action"].as_str(), asked["stateCode"].as_u64()), (Some("release"), Some(8020)));
    // A collect for A, who may not be asked, is refused as well.
    let for_a = server.switch_call(A, X).await;
    assert_eq!(for_a.body["stateCode"], 8020, "{for_a:?}");
    // Put back a script whose collect is right, so that the digits step can be reached.
    let script = "fn on_callin(callin) { collect(\"\", 4) }\nfn on_digits(callin) { connect(\"+8613300000000\") }\n";
    std::fs::write(scripts.join("modes/axe.rhai"), script).unwrap();
    server.admin(Method::POST, "/scripts/reload", None).await;
    assert_eq!(collect(&server, B, "bad-digits").await["action"], "collect");
    let connected = digits(&server, "bad-digits", &ext).await;
    assert_eq!(connected.body["stateCode"], 8020, "only the extension's A may be reached: {connected:?}");
}

#[tokio::test]
async fn a_modify_cannot_make_x_its_own_a_and_the_cursor_follows_the_store_order() {
    let server = TestServer::start().await;
    let ext = server.bind_axe(json!({"bindNum": A, "virtualNum": X})).await.expect(200, "0").field("extendNum");
    let modify = json!({"virtualNum": X, "extendNum": ext, "bindNum": X});
    let refused = axe(&server, Method::PUT, "", Some(&modify)).await;
    refused.expect(403, "1010002");
    assert!(refused.desc().contains("bindNum"), "{refused:?}");

    // Bindings come back from the cursor query in the order they were stored, each exactly once,
    // even when they share a creation second.
    server.bind_axe(json!({"bindNum": A2, "virtualNum": X})).await.expect(200, "0").field("extendNum");
    let page = server.call(AXE_APP, Method::GET, &format!("{AXE_CURSOR_PATH}?limit=1"), None).await;
    page.expect(200, "0");
    let first = page.body["cursor"].as_str().unwrap_or_else(|| panic!("{page:?}")).to_owned();
    let next = server.call(AXE_APP, Method::GET, &format!("{AXE_CURSOR_PATH}?cursor={first}&limit=5"), None).await;
    next.expect(200, "0");
    let items = next.body["extendNumList"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{next:?}");
    assert_eq!(items[0]["bindNum"], A2);
}
