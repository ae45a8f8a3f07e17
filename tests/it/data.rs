//! Customer data over HTTP: stored with the app's own key, read and removed by key, expiring,
//! kept apart per app, bounded, durable.

use reqwest::Method;
use serde_json::json;

use crate::support::{TestServer, AXB_APP, QUIET_APP};

const PATH: &str = "/rest/privnum/data/v1.0";

/// The item's path; the keys these tests use need no escaping but `+` (a space in a query).
fn at(key: &str) -> String {
    format!("{PATH}?key={}", key.replace('+', "%2B"))
}

#[tokio::test]
async fn items_are_stored_read_replaced_and_removed_by_their_app_only() {
    let server = TestServer::start().await;
    let items = json!({"items": [
        {"key": "trip:+8613800000001", "value": "active", "ttl": 3600},
        {"key": "agent:42", "value": "{\"calls\":0}"},
    ]});
    let stored = server.call(AXB_APP, Method::PUT, PATH, Some(&items)).await;
    stored.expect(200, "0");
    assert_eq!(stored.body["stored"], 2, "{stored:?}");

    let read = server.call(AXB_APP, Method::GET, &at("trip:+8613800000001"), None).await;
    read.expect(200, "0");
    assert_eq!(read.body["value"], "active");
    let expire = privnum::domain::time::reference_time(server.clock_now() + 3600);
    assert_eq!(read.body["expireTime"], expire.as_str());
    let forever = server.call(AXB_APP, Method::GET, &at("agent:42"), None).await;
    assert_eq!((forever.body["value"].as_str(), forever.body.get("expireTime")), (Some("{\"calls\":0}"), None));

    // Another app sees none of it, and has its own namespace.
    server.call(QUIET_APP, Method::GET, &at("agent:42"), None).await.expect(403, "1012007");
    server.call(QUIET_APP, Method::DELETE, &at("agent:42"), None).await.expect(403, "1012007");
    let own = json!({"items": [{"key": "agent:42", "value": "quiet's"}]});
    server.call(QUIET_APP, Method::PUT, PATH, Some(&own)).await.expect(200, "0");
    let mine = server.call(AXB_APP, Method::GET, &at("agent:42"), None).await;
    assert_eq!(mine.body["value"], "{\"calls\":0}");

    // A put replaces; a delete removes; a second delete finds nothing.
    let replaced = json!({"items": [{"key": "agent:42", "value": "{\"calls\":1}", "ttl": 0}]});
    server.call(AXB_APP, Method::PUT, PATH, Some(&replaced)).await.expect(200, "0");
    assert_eq!(server.call(AXB_APP, Method::GET, &at("agent:42"), None).await.body["value"], "{\"calls\":1}");
    server.call(AXB_APP, Method::DELETE, &at("agent:42"), None).await.expect(200, "0");
    server.call(AXB_APP, Method::GET, &at("agent:42"), None).await.expect(403, "1012007");
    server.call(AXB_APP, Method::DELETE, &at("agent:42"), None).await.expect(403, "1012007");
    assert_eq!(server.call(QUIET_APP, Method::GET, &at("agent:42"), None).await.body["value"], "quiet's");
}

#[tokio::test]
async fn an_item_expires_at_its_ttl_and_survives_a_restart_until_then() {
    let server = TestServer::start().await;
    let items = json!({"items": [{"key": "k", "value": "v", "ttl": 60}]});
    server.call(AXB_APP, Method::PUT, PATH, Some(&items)).await.expect(200, "0");
    let server = server.restart().await;
    server.call(AXB_APP, Method::GET, &at("k"), None).await.expect(200, "0");
    server.clock.advance(59);
    server.call(AXB_APP, Method::GET, &at("k"), None).await.expect(200, "0");
    server.clock.advance(1);
    let gone = server.call(AXB_APP, Method::GET, &at("k"), None).await;
    gone.expect(403, "1012007");
    assert!(gone.desc().contains("expired"), "{gone:?}");
    // The sweeper removes it: the app's count goes back to 0.
    let swept = crate::support::eventually(std::time::Duration::from_secs(5), || async {
        (server.state().store.data().count(AXB_APP.0).ok()? == 0).then_some(())
    })
    .await;
    assert!(swept.is_some(), "the expired item is swept");
}

#[tokio::test]
async fn bad_items_are_named_and_the_app_limit_holds() {
    let server = TestServer::builder().configure(|config| config.data_max_items_per_app = 3).start().await;
    for (body, field) in [
        (json!({}), "items"),
        (json!({"items": [{"key": "k"}]}), "items[0].value"),
        (json!({"items": [{"key": "k", "value": "v"}, {"key": "", "value": "v"}]}), "items[1].key"),
        (json!({"items": [{"key": "k", "value": "x".repeat(4097)}]}), "items[0].value"),
        (json!({"items": [{"key": "k", "value": "v", "ttl": "soon"}]}), "items[0].ttl"),
    ] {
        let answer = server.call(AXB_APP, Method::PUT, PATH, Some(&body)).await;
        answer.expect(403, "1010002");
        assert!(answer.desc().contains(field), "{body}: {answer:?}");
    }
    server.call(AXB_APP, Method::GET, PATH, None).await.expect(403, "1010002");
    let three = json!({"items": [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}, {"key": "c", "value": "3"}]});
    server.call(AXB_APP, Method::PUT, PATH, Some(&three)).await.expect(200, "0");
    let fourth = json!({"items": [{"key": "a", "value": "again"}, {"key": "d", "value": "4"}]});
    let refused = server.call(AXB_APP, Method::PUT, PATH, Some(&fourth)).await;
    refused.expect(403, "1012009");
    assert!(refused.desc().contains("at most 3"), "{refused:?}");
    assert_eq!(
        server.call(AXB_APP, Method::GET, &at("a"), None).await.body["value"],
        "1",
        "a refused batch changes nothing"
    );
    // Replacing within the limit is fine.
    let again = json!({"items": [{"key": "a", "value": "again"}]});
    server.call(AXB_APP, Method::PUT, PATH, Some(&again)).await.expect(200, "0");
    // Unsigned requests are refused like every provisioning request.
    let unsigned = server.client.get(format!("{}{}", server.base, at("a"))).send().await.unwrap();
    assert_eq!(unsigned.status(), 400);
}
