//! The admin API: a running server gains an app and numbers without a restart; changes that would
//! orphan bindings are refused; health and metrics need no token.

use reqwest::Method;
use serde_json::json;

use crate::support::{with, TestServer, AXB_APP, AXB_PATH};

#[tokio::test]
async fn a_running_server_gains_an_app_and_binds_on_it() {
    let server = TestServer::start().await;
    let app = json!({"mode": "AXB", "app_secret": "fresh-secret", "scenario": "delivery", "recording": false,
        "numbers": [{"number": "+8617400000001", "area_code": "020"}]});
    let saved = server.admin(Method::PUT, "/apps/fresh-app", Some(&app)).await;
    saved.expect(200, "0");
    assert!(saved.body["app"].get("app_secret").is_none(), "secrets are not echoed: {saved:?}");
    let warnings = saved.body["warnings"].as_array().map(Vec::len);
    assert_eq!(warnings, Some(2), "no call_event_url and no cdr_url: ops are told: {saved:?}");
    let with_urls =
        with(app.clone(), json!({"call_event_url": "http://127.0.0.1:9/events", "cdr_url": "http://127.0.0.1:9/cdr"}));
    let resaved = server.admin(Method::PUT, "/apps/fresh-app", Some(&with_urls)).await;
    assert!(resaved.body.get("warnings").is_none(), "{resaved:?}");
    server
        .admin(Method::PUT, "/apps/fresh-app/numbers/+8617400000002", Some(&json!({"area_code": "020"})))
        .await
        .expect(200, "0");

    let listed = server.admin(Method::GET, "/apps/fresh-app/numbers", None).await;
    assert_eq!(listed.body["numbers"].as_array().unwrap().len(), 2, "{listed:?}");
    let body = json!({"areaCode": "020", "callerNum": "+8613800000001", "calleeNum": "+8613900000001"});
    let bound = server.call(("fresh-app", "fresh-secret"), Method::POST, AXB_PATH, Some(&body)).await;
    bound.expect(200, "0");
    let shown = server.admin(Method::GET, "/apps/fresh-app", None).await;
    assert_eq!(shown.body["numbers"][0]["bindings"], 1, "{shown:?}");
}

#[tokio::test]
async fn admin_input_is_validated_and_named() {
    let server = TestServer::start().await;
    let cases = [
        (json!({"mode": "AXB"}), "app_secret"),
        (json!({"mode": "AXYB", "app_secret": "s"}), "AXYB"),
        (json!({"mode": "AXB", "app_secret": "s", "colour": "red"}), "colour"),
        (json!({"mode": "AXB", "app_secret": "s", "sms": true}), "sms_scenario"),
        (json!({"mode": "AXB", "app_secret": "s", "app_key": "other"}), "app_key"),
        (json!({"mode": "AXB", "app_secret": "s", "memory_callback_minutes": 10}), "AX apps only"),
        (json!({"mode": "AX", "app_secret": "s", "memory_callback_minutes": 43_201}), "0 to 43200"),
        (
            json!({"mode": "AXB", "app_secret": "s", "numbers": [{"number": "170", "area_code": "020"}]}),
            "numbers[0].number",
        ),
    ];
    for (body, named) in cases {
        let answer = server.admin(Method::PUT, "/apps/new-app", Some(&body)).await;
        answer.expect(403, "1010002");
        assert!(answer.desc().contains(named), "{named}: {answer:?}");
    }
    server.admin(Method::GET, "/apps/new-app", None).await.expect(404, "1012007");
    // A number of another app cannot be taken over.
    let steal =
        json!({"mode": "AXB", "app_secret": "s", "numbers": [{"number": "+8617000000001", "area_code": "0755"}]});
    server.admin(Method::PUT, "/apps/new-app", Some(&steal)).await.expect(409, "1010002");
    server
        .admin(
            Method::PUT,
            "/apps/axb-app/numbers/+8617000000001",
            Some(&json!({"area_code": "0755", "status": "gone"})),
        )
        .await
        .expect(403, "1010002");
}

#[tokio::test]
async fn changes_that_would_orphan_bindings_are_refused() {
    let server = TestServer::start().await;
    let body = json!({"relationNum": "+8617000000001", "callerNum": "+8613800000001", "calleeNum": "+8613900000001"});
    server.call(AXB_APP, Method::POST, AXB_PATH, Some(&body)).await.expect(200, "0");
    server.admin(Method::DELETE, "/apps/axb-app/numbers/+8617000000001", None).await.expect(409, "1010002");
    server.admin(Method::DELETE, "/apps/axb-app", None).await.expect(409, "1010002");
    let to_ax = json!({"mode": "AX", "app_secret": "axb-secret"});
    server.admin(Method::PUT, "/apps/axb-app", Some(&to_ax)).await.expect(409, "1010002");
    // A number without bindings can go.
    server.admin(Method::DELETE, "/apps/axb-app/numbers/+8617000000006", None).await.expect(200, "0");
    server.admin(Method::DELETE, "/apps/axb-app/numbers/+8617000000006", None).await.expect(404, "1012007");
}

#[tokio::test]
async fn health_and_metrics_need_no_token() {
    let server = TestServer::start().await;
    let health = server.send(Method::GET, "/healthz", &[], None).await;
    assert_eq!((health.status.as_u16(), health.body["status"].as_str()), (200, Some("ok")));
    server.call(AXB_APP, Method::GET, &format!("{AXB_PATH}?subscriptionId=x"), None).await.expect(403, "1012007");
    let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("privnum_requests_total{surface=\"provisioning\",resultcode=\"1012007\"} 1"), "{metrics}");
    // No call yet: the call log holds its 8-byte header and nothing live.
    for line in
        ["privnum_call_log_bytes 8\n", "privnum_call_log_live_bytes 0\n", "privnum_call_log_compactions_total 0\n"]
    {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    let unknown = server.send(Method::GET, "/rest/nothing/here", &[], None).await;
    unknown.expect(404, "1010002");
    let bad_path = server.admin(Method::GET, "/apps/%FF%FE", None).await;
    bad_path.expect(400, "1010002");
}
