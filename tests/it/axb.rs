//! AXB provisioning over real HTTP: every result code this API produces, from requests a client
//! could really send, and the Huawei API's ranges, precedence and capacity rules.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{self, TestServer, AXB_APP, AXB_PATH, QUIET_APP};

fn pair(a: u32, b: u32) -> Value {
    json!({"areaCode": "0755", "callerNum": format!("+86138{a:08}"), "calleeNum": format!("+86139{b:08}")})
}

fn with(mut body: Value, extra: Value) -> Value {
    for (key, value) in extra.as_object().expect("object") {
        body[key] = value.clone();
    }
    body
}

async fn query(server: &TestServer, params: &str) -> support::Answer {
    server.call(AXB_APP, Method::GET, &format!("{AXB_PATH}?{params}"), None).await
}

#[tokio::test]
async fn bind_answers_with_the_x_and_a_subscription_id() {
    let server = TestServer::start().await;
    server.approve_tones(AXB_APP.0, &["r.wav"]).await;
    let answer = server
        .bind_axb(with(pair(1, 1), json!({"userData": "order-1", "recordFlag": true, "recordHintTone": "r.wav"})))
        .await;
    answer.expect(200, "0");
    assert_eq!(answer.body["relationNum"], "+8617000000001", "the emptiest 0755 number, lowest first");
    let id = answer.body["subscriptionId"].as_str().expect("subscriptionId");
    let found = query(&server, &format!("subscriptionId={id}")).await;
    found.expect(200, "0");
    let item = &found.body["relationNumList"][0];
    assert_eq!(found.body["totalCount"], 1);
    assert_eq!(item["callerNum"], "+8613800000001");
    assert_eq!(item["recordFlag"], "true");
    assert_eq!(item["recordHintTone"], "r.wav");
    assert_eq!(item["userData"], "order-1");
    assert_eq!(item["privateSms"], "true", "absent privateSms means supported");
    assert_eq!(item["callDirection"], 0);
}

#[tokio::test]
async fn invalid_fields_are_named_in_1010002() {
    let server = TestServer::start().await;
    let cases = [
        (json!({"areaCode": "0755", "calleeNum": "+8613900000001"}), "callerNum"),
        (with(pair(1, 1), json!({"callerNum": "13800000001"})), "callerNum"),
        (with(pair(1, 1), json!({"calleeNum": "+8613800000001"})), "calleeNum"),
        (json!({"callerNum": "+8613800000001", "calleeNum": "+8613900000001"}), "relationNum"),
        (with(pair(1, 1), json!({"callDirection": 3})), "callDirection"),
        (with(pair(1, 1), json!({"duration": 7_776_001})), "duration"),
        (with(pair(1, 1), json!({"duration": -1})), "duration"),
        (with(pair(1, 1), json!({"maxDuration": 1441})), "maxDuration"),
        (with(pair(1, 1), json!({"recordFlag": "yes"})), "recordFlag"),
        (with(pair(1, 1), json!({"recordHintTone": "bad name.wav"})), "recordHintTone"),
        (with(pair(1, 1), json!({"preVoice": {"callerHintTone": "x/y.wav"}})), "preVoice.callerHintTone"),
        (with(pair(1, 1), json!({"userData": "{\"json\":1}"})), "userData"),
        (with(pair(1, 1), json!({"userData": "x".repeat(257)})), "userData"),
        (with(pair(1, 1), json!({"areaMatchMode": "2"})), "areaMatchMode"),
        (with(pair(1, 1), json!({"callerNum": 8613800000001u64})), "callerNum"),
        (with(pair(1, 1), json!({"relationNum": "+8613800000001"})), "relationNum"),
    ];
    for (body, field) in cases {
        let answer = server.bind_axb(body.clone()).await;
        answer.expect(403, "1010002");
        assert!(answer.desc().starts_with(&format!("Invalid request.{field} ")), "{field}: {body} → {answer:?}");
    }
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused_cleanly() {
    let server = TestServer::start().await;
    let headers = server.signed(AXB_APP, privnum::auth::Scheme::Aksk);
    let response = server
        .client
        .post(format!("{}{AXB_PATH}", server.base))
        .header(&headers[0].0, &headers[0].1)
        .header(&headers[1].0, &headers[1].1)
        .header("content-type", "application/json")
        .body("{\"areaCode\": \"0755\",")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["resultcode"], "1010002");
    assert!(body["resultdesc"].as_str().unwrap().contains("not valid JSON"), "{body}");

    let huge = with(pair(1, 1), json!({"padding": "x".repeat(70_000)}));
    server.bind_axb(huge).await.expect(413, "1010002");
    server.bind_axb(json!([1, 2])).await.expect(403, "1010002");
    // A chunked body has no Content-Length to refuse up front: it is cut off at 64 KiB.
    let status_line = chunked_post(&server, 70_000).await;
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    // A method the API does not have answers in the envelope too.
    let patch = server.call(AXB_APP, Method::PATCH, AXB_PATH, Some(&pair(1, 1))).await;
    patch.expect(405, "1010002");
    // Nothing was stored by any of these.
    query(&server, "relationNum=%2B8617000000001").await.expect(403, "1012007");
}

#[tokio::test]
async fn relation_num_must_be_in_the_apps_pool_and_usable() {
    let server = TestServer::start().await;
    let other_apps_x = with(pair(1, 1), json!({"relationNum": "+8617100000001"}));
    server.bind_axb(other_apps_x).await.expect(403, "1012001");
    let nobodys_x = with(pair(1, 1), json!({"relationNum": "+8617999999999"}));
    server.bind_axb(nobodys_x).await.expect(403, "1012001");

    let paused = json!({"area_code": "0755", "status": "paused"});
    server.admin(Method::PUT, "/apps/axb-app/numbers/+8617000000004", Some(&paused)).await.expect(200, "0");
    let on_paused = with(pair(1, 1), json!({"relationNum": "+8617000000004"}));
    server.bind_axb(on_paused).await.expect(403, "1012102");

    // A frozen X takes no new bindings, but the ones it has keep working.
    server.bind_axb(with(pair(2, 2), json!({"relationNum": "+8617000000003"}))).await.expect(200, "0");
    let frozen = json!({"area_code": "0755", "status": "frozen"});
    server.admin(Method::PUT, "/apps/axb-app/numbers/+8617000000003", Some(&frozen)).await.expect(200, "0");
    server.bind_axb(with(pair(3, 3), json!({"relationNum": "+8617000000003"}))).await.expect(403, "1012102");
    let call = server.switch_call("+8613800000002", "+8617000000003").await;
    assert_eq!(call.body["callee"], "+8613900000002", "{call:?}");
}

#[tokio::test]
async fn a_user_number_appears_once_per_x() {
    let server = TestServer::start().await;
    let x = json!({"relationNum": "+8617000000001"});
    server.bind_axb(with(pair(1, 1), x.clone())).await.expect(200, "0");
    // Same A (as A), same B (as A), and the exact duplicate: all refused on this X.
    let a_again = server.bind_axb(with(pair(1, 2), x.clone())).await;
    a_again.expect(403, "1012010");
    assert!(a_again.desc().contains("+8613800000001"), "{a_again:?}");
    let b_as_a = json!({"relationNum": "+8617000000001", "callerNum": "+8613900000001", "calleeNum": "+8613800000099"});
    server.bind_axb(b_as_a).await.expect(403, "1012010");
    server.bind_axb(with(pair(1, 1), x.clone())).await.expect(403, "1012010");
    // A-X-B and C-X-D coexist; A-Y-C is fine on another X.
    server.bind_axb(with(pair(3, 4), x)).await.expect(200, "0");
    let elsewhere = server.bind_axb(pair(1, 5)).await;
    elsewhere.expect(200, "0");
    assert_ne!(elsewhere.body["relationNum"], "+8617000000001");
}

#[tokio::test]
async fn capacity_per_x_and_area_exhaustion() {
    let server = TestServer::builder().axb_max_pairs_per_x(2).start().await;
    let x = json!({"relationNum": "+8617000000005"});
    server.bind_axb(with(pair(1, 1), x.clone())).await.expect(200, "0");
    server.bind_axb(with(pair(2, 2), x.clone())).await.expect(200, "0");
    server.bind_axb(with(pair(3, 3), x)).await.expect(403, "1012009");

    // Area 0756 has only that (now full) number: strict allocation fails, lenient finds another.
    let strict = with(pair(4, 4), json!({"areaCode": "0756"}));
    server.bind_axb(strict.clone()).await.expect(403, "1012008");
    let lenient = server.bind_axb(with(strict, json!({"areaMatchMode": "1"}))).await;
    lenient.expect(200, "0");
    assert!(
        lenient.body["relationNum"].as_str().unwrap().starts_with("+861700000000"),
        "lenient falls back to 0755 (shares '75' with 756) before 010: {lenient:?}"
    );
    assert_ne!(lenient.body["relationNum"], "+8617000000006", "010 shares no digits with 0756");
    // Expired pairs give their room back as soon as they expire, before the periodic sweep.
    let short = json!({"relationNum": "+8617000000006", "duration": 30});
    server.bind_axb(with(pair(6, 6), short.clone())).await.expect(200, "0");
    server.bind_axb(with(pair(7, 7), short.clone())).await.expect(200, "0");
    server.bind_axb(with(pair(8, 8), short.clone())).await.expect(403, "1012009");
    server.clock.advance(30);
    server.bind_axb(with(pair(8, 8), short)).await.expect(200, "0");
    // An unknown area code with strict matching has nothing to offer.
    server.bind_axb(with(pair(5, 5), json!({"areaCode": "0999"}))).await.expect(403, "1012008");
}

#[tokio::test]
async fn recording_needs_it_enabled_on_the_app() {
    let server = TestServer::start().await;
    let body =
        json!({"areaCode": "0755", "callerNum": "+8613800000001", "calleeNum": "+8613900000001", "recordFlag": "true"});
    server.call(QUIET_APP, Method::POST, AXB_PATH, Some(&body)).await.expect(403, "1012012");
    // Recording without a recordHintTone is accepted (real clients omit it) and counted.
    server.bind_axb(body).await.expect(200, "0");
    let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("privnum_compliance_warnings_total{kind=\"record_without_notice\",on=\"binding\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn modify_keeps_absent_fields_restarts_the_clock_and_checks_numbers() {
    let server = TestServer::start().await;
    let bound = server
        .bind_axb(with(pair(1, 1), json!({"duration": 100, "userData": "u1", "relationNum": "+8617000000001"})))
        .await;
    let id = bound.body["subscriptionId"].as_str().unwrap().to_owned();
    server.bind_axb(with(pair(2, 2), json!({"relationNum": "+8617000000001"}))).await.expect(200, "0");

    server.clock.advance(90);
    let modify = json!({"subscriptionId": id, "duration": "100", "calleeNum": "+8613900000077"});
    let modified = server.call(AXB_APP, Method::PUT, AXB_PATH, Some(&modify)).await;
    modified.expect(200, "0");
    assert_eq!(modified.body["userData"], "u1");
    assert_eq!(modified.body["calleeNum"], "+8613900000077");

    // The clock restarted at the modify: still alive 90 s after the original expiry.
    server.clock.advance(99);
    query(&server, &format!("subscriptionId={id}")).await.expect(200, "0");
    // The old B is free again on this X; the other pair's A is not available as a new B.
    let taken = json!({"subscriptionId": id, "calleeNum": "+8613800000002"});
    server.call(AXB_APP, Method::PUT, AXB_PATH, Some(&taken)).await.expect(403, "1012010");
    server.bind_axb(with(pair(3, 1), json!({"relationNum": "+8617000000001"}))).await.expect(200, "0");

    let unknown = json!({"subscriptionId": "no-such-binding", "userData": "x"});
    server.call(AXB_APP, Method::PUT, AXB_PATH, Some(&unknown)).await.expect(403, "1012007");
    let start_recording = json!({"subscriptionId": id, "recordFlag": true});
    server.call(AXB_APP, Method::PUT, AXB_PATH, Some(&start_recording)).await.expect(200, "0");
    server.call(AXB_APP, Method::PUT, AXB_PATH, Some(&json!({"userData": "x"}))).await.expect(403, "1010002");
}

#[tokio::test]
async fn bindings_expire_with_the_injected_clock() {
    let server = TestServer::start().await;
    let bound = server.bind_axb(with(pair(1, 1), json!({"duration": 60, "relationNum": "+8617000000001"}))).await;
    let id = bound.body["subscriptionId"].as_str().unwrap().to_owned();
    let permanent = server.bind_axb(with(pair(2, 2), json!({"duration": 0, "relationNum": "+8617000000001"}))).await;
    permanent.expect(200, "0");

    server.clock.advance(59);
    query(&server, &format!("subscriptionId={id}")).await.expect(200, "0");
    server.clock.advance(1);
    query(&server, &format!("subscriptionId={id}")).await.expect(403, "1012007");
    let on_x = query(&server, "relationNum=%2B8617000000001").await;
    assert_eq!(on_x.body["totalCount"], 1, "only the permanent binding is listed: {on_x:?}");
    // The expired pair's numbers are free again on that X, before any sweep.
    server.bind_axb(with(pair(1, 1), json!({"relationNum": "+8617000000001"}))).await.expect(200, "0");

    // The sweeper frees what expired.
    server.bind_axb(with(pair(5, 5), json!({"duration": 10, "relationNum": "+8617000000002"}))).await.expect(200, "0");
    server.clock.advance(10);
    let swept = server.state().store.bindings().axb_sweep_expired(server.clock_now(), 100).unwrap();
    assert_eq!(swept, 1);
    assert_eq!(server.state().store.bindings().pairs_on("+8617000000002").unwrap(), 0);
}

#[tokio::test]
async fn unbind_by_subscription_or_by_x_and_subscription_id_wins() {
    let server = TestServer::start().await;
    let x = json!({"relationNum": "+8617000000003"});
    let first = server.bind_axb(with(pair(1, 1), x.clone())).await.body["subscriptionId"].as_str().unwrap().to_owned();
    server.bind_axb(with(pair(2, 2), x.clone())).await.expect(200, "0");
    server.bind_axb(with(pair(3, 3), json!({"relationNum": "+8617000000004"}))).await.expect(200, "0");

    // Both given: only the subscription goes.
    let both = format!("{AXB_PATH}?subscriptionId={first}&relationNum=%2B8617000000004");
    server.call(AXB_APP, Method::DELETE, &both, None).await.expect(200, "0");
    assert_eq!(query(&server, "relationNum=%2B8617000000004").await.body["totalCount"], 1);
    server.call(AXB_APP, Method::DELETE, &both, None).await.expect(403, "1012007");

    // relationNum alone removes everything on that X; a raw '+' is read as a plus.
    let all = format!("{AXB_PATH}?relationNum=+8617000000003");
    server.call(AXB_APP, Method::DELETE, &all, Some(&json!({"relationNum": "ignored"}))).await.expect(200, "0");
    query(&server, "relationNum=%2B8617000000003").await.expect(403, "1012007");
    server.call(AXB_APP, Method::DELETE, AXB_PATH, None).await.expect(403, "1010002");
}

#[tokio::test]
async fn query_pages_and_filters() {
    let server = TestServer::start().await;
    for i in 0..55 {
        server.bind_axb(with(pair(i, i), json!({"relationNum": "+8617000000002"}))).await.expect(200, "0");
    }
    let first = query(&server, "relationNum=%2B8617000000002&pageSize=10").await;
    assert_eq!(first.body["totalCount"], 55);
    assert_eq!(first.body["relationNumList"].as_array().unwrap().len(), 10);
    let sixth = query(&server, "relationNum=%2B8617000000002&pageSize=10&pageIndex=6").await;
    assert_eq!(sixth.body["relationNumList"].as_array().unwrap().len(), 5);
    let default = query(&server, "relationNum=%2B8617000000002&pageSize=500").await;
    assert_eq!(default.body["relationNumList"].as_array().unwrap().len(), 50, "out-of-range pageSize means 50");
    let second = query(&server, "relationNum=%2B8617000000002&pageIndex=2").await;
    assert_eq!(second.body["relationNumList"].as_array().unwrap().len(), 5, "absent pageSize means 50");

    let by_a = query(&server, "relationNum=%2B8617000000002&callerNum=%2B8613800000007").await;
    assert_eq!(by_a.body["totalCount"], 1);
    assert_eq!(by_a.body["relationNumList"][0]["calleeNum"], "+8613900000007");
    let by_ab =
        query(&server, "relationNum=%2B8617000000002&callerNum=%2B8613800000007&calleeNum=%2B8613900000008").await;
    by_ab.expect(403, "1012007");
    // B given as callerNum is not the A of any binding.
    query(&server, "relationNum=%2B8617000000002&callerNum=%2B8613900000007").await.expect(403, "1012007");
    query(&server, "callerNum=%2B8613800000007").await.expect(403, "1010002");
}

#[tokio::test]
async fn get_and_delete_bodies_are_ignored() {
    let server = TestServer::start().await;
    let bound = server.bind_axb(pair(1, 1)).await;
    let id = bound.body["subscriptionId"].as_str().unwrap();
    let junk = json!({"subscriptionId": "something-else", "relationNum": 5});
    let found = server.call(AXB_APP, Method::GET, &format!("{AXB_PATH}?subscriptionId={id}"), Some(&junk)).await;
    found.expect(200, "0");
}

/// Sends a signed bind with a chunked body of `size` bytes over a raw socket; returns the status line.
async fn chunked_post(server: &TestServer, size: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let headers = server.signed(AXB_APP, privnum::auth::Scheme::Aksk);
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request = format!("POST {AXB_PATH} HTTP/1.1\r\nHost: {address}\r\nTransfer-Encoding: chunked\r\n");
    for (name, value) in &headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Type: application/json\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let chunk = "x".repeat(8192);
    let mut sent = 0;
    while sent < size {
        // The server may answer and close before everything is sent; that is the point.
        if stream.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes()).await.is_err() {
            break;
        }
        sent += chunk.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = vec![0; 1024];
    let read = stream.read(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer[..read]).lines().next().unwrap_or_default().to_owned()
}
