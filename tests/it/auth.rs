//! Authentication over real HTTP: both signing schemes, each header fault's code, skew and replay.

use privnum::auth::Scheme;
use reqwest::Method;
use serde_json::json;

use crate::support::{TestServer, AXB_APP, AXB_PATH, AX_APP};

const QUERY: &str = "/rest/caas/relationnumber/partners/v1.0?subscriptionId=none";

#[tokio::test]
async fn both_schemes_are_accepted_and_a_wrong_secret_is_not() {
    let server = TestServer::start().await;
    for scheme in [Scheme::Aksk, Scheme::Wsse] {
        let headers = server.signed(AXB_APP, scheme);
        // A well-signed query for a binding that does not exist gets past authentication.
        server.send(Method::GET, QUERY, &headers, None).await.expect(403, "1012007");
        let wrong = server.signed((AXB_APP.0, "not-the-secret"), scheme);
        server.send(Method::GET, QUERY, &wrong, None).await.expect(401, "1010010");
    }
    let unknown_app = server.signed(("nobody", "whatever"), Scheme::Aksk);
    server.send(Method::GET, QUERY, &unknown_app, None).await.expect(401, "1010010");
}

type Headers = Vec<(String, String)>;

/// Replaces `from` with `to` in the named header of a signed set.
fn edit(headers: &[(String, String)], name: &str, from: &str, to: &str) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| (n.clone(), if n == name { v.replacen(from, to, 1) } else { v.clone() })).collect()
}

fn without(headers: &[(String, String)], name: &str) -> Vec<(String, String)> {
    headers.iter().filter(|(n, _)| n != name).cloned().collect()
}

#[tokio::test]
async fn every_header_fault_has_its_code() {
    let server = TestServer::start().await;
    let aksk = server.signed(AXB_APP, Scheme::Aksk);
    let wsse = server.signed(AXB_APP, Scheme::Wsse);
    let cases: Vec<(&str, Headers, &str)> = vec![
        ("no Authorization", without(&aksk, "Authorization"), "1023006"),
        ("no realm", edit(&aksk, "Authorization", "realm=\"SDP\",", ""), "1023007"),
        ("no profile", edit(&aksk, "Authorization", "profile=\"UsernameToken\",", ""), "1023008"),
        ("realm not SDP", edit(&aksk, "Authorization", "\"SDP\"", "\"XYZ\""), "1023009"),
        ("profile wrong", edit(&aksk, "Authorization", "\"UsernameToken\"", "\"Token\""), "1023010"),
        ("type wrong", edit(&aksk, "Authorization", "\"Appkey\"", "\"User\""), "1023011"),
        ("no type", edit(&aksk, "Authorization", ",type=\"Appkey\"", ""), "1023012"),
        ("scheme neither AKSK nor WSSE", edit(&aksk, "Authorization", "AKSK", "Digest"), "1023013"),
        ("no X-WSSE", without(&wsse, "X-WSSE"), "1023026"),
        ("WSSE no Username", edit(&wsse, "X-WSSE", "Username=", "User="), "1023027"),
        ("WSSE no Nonce", edit(&wsse, "X-WSSE", "Nonce=", "Once="), "1023028"),
        ("WSSE no Created", edit(&wsse, "X-WSSE", "Created=", "Made="), "1023029"),
        ("WSSE no digest", edit(&wsse, "X-WSSE", "PasswordDigest=", "Digest="), "1023030"),
        ("Created without a zone", edit(&aksk, "X-AKSK", "Z\"", "\""), "1023031"),
        ("no X-AKSK", without(&aksk, "X-AKSK"), "1023033"),
        ("AKSK no Username", edit(&aksk, "X-AKSK", "Username=", "User="), "1023034"),
        ("AKSK no Nonce", edit(&aksk, "X-AKSK", "Nonce=", "Once="), "1023035"),
        ("AKSK no Created", edit(&aksk, "X-AKSK", "Created=", "Made="), "1023036"),
        ("AKSK no digest", edit(&aksk, "X-AKSK", "PasswordDigest=", "Digest="), "1023037"),
    ];
    for (name, headers, code) in cases {
        let answer = server.send(Method::GET, QUERY, &headers, None).await;
        assert_eq!((answer.status.as_u16(), answer.code()), (400, code), "{name}: {answer:?}");
    }
}

#[tokio::test]
async fn created_outside_the_skew_window_is_refused() {
    let server = TestServer::start().await;
    let headers = server.signed(AXB_APP, Scheme::Aksk);
    server.clock.advance(901);
    server.send(Method::GET, QUERY, &headers, None).await.expect(401, "1010013");
    // A client whose clock runs ahead is refused the same way.
    let ahead = server.signed(AXB_APP, Scheme::Wsse);
    server.clock.advance(-2000);
    server.send(Method::GET, QUERY, &ahead, None).await.expect(401, "1010013");
}

#[tokio::test]
async fn a_replayed_nonce_is_refused_and_changes_nothing() {
    let server = TestServer::start().await;
    let headers = server.signed(AXB_APP, Scheme::Aksk);
    let body = json!({"areaCode": "0755", "callerNum": "+8613800000001", "calleeNum": "+8613900000001"});
    server.send(Method::POST, AXB_PATH, &headers, Some(&body)).await.expect(200, "0");
    let second = json!({"areaCode": "0755", "callerNum": "+8613800000002", "calleeNum": "+8613900000002"});
    let replay = server.send(Method::POST, AXB_PATH, &headers, Some(&second)).await;
    replay.expect(401, "1010010");
    assert!(replay.desc().contains("Nonce"), "{replay:?}");
    let query = "/rest/caas/relationnumber/partners/v1.0?relationNum=%2B8617000000001&callerNum=%2B8613800000002";
    server.call(AXB_APP, Method::GET, query, None).await.expect(403, "1012007");
}

#[tokio::test]
async fn an_app_may_only_call_its_own_modes_api() {
    let server = TestServer::start().await;
    let answer = server.call(AX_APP, Method::GET, QUERY, None).await;
    answer.expect(403, "1010040");
    assert!(answer.desc().contains("AX"), "{answer:?}");
    // The mode is checked before the body is read: a wrong-mode app hears about its mode first.
    let headers = server.signed(AX_APP, Scheme::Aksk);
    let response = server
        .client
        .post(format!("{}{AXB_PATH}", server.base))
        .header(&headers[0].0, &headers[0].1)
        .header(&headers[1].0, &headers[1].1)
        .body("{not json")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["resultcode"], "1010040", "{body}");
}

#[tokio::test]
async fn sloppy_but_clear_headers_are_accepted() {
    let server = TestServer::start().await;
    let headers = server.signed(AXB_APP, Scheme::Aksk);
    // Spaces after commas, as some clients send them.
    let spaced: Vec<_> = headers.iter().map(|(n, v)| (n.clone(), v.replace("\",", "\", "))).collect();
    server.send(Method::GET, QUERY, &spaced, None).await.expect(403, "1012007");
}

#[tokio::test]
async fn the_admin_api_needs_its_token() {
    let server = TestServer::start().await;
    let none = server.send(Method::GET, "/v1/admin/apps", &[], None).await;
    none.expect(401, "1010010");
    let wrong = vec![("Authorization".to_owned(), "Bearer nope".to_owned())];
    server.send(Method::GET, "/v1/admin/apps", &wrong, None).await.expect(401, "1010010");
    server.admin(Method::GET, "/apps", None).await.expect(200, "0");
}

#[tokio::test]
async fn failed_authentication_is_limited_per_address_then_allowed_again() {
    // Three failures at once, then one more a tenth of a second.
    let server = TestServer::builder()
        .configure(|config| {
            config.auth_failures_burst = 3;
            config.auth_failures_per_minute = 600;
        })
        .start()
        .await;
    let wrong = server.signed((AXB_APP.0, "not-the-secret"), Scheme::Aksk);
    for _ in 0..3 {
        server.send(Method::GET, QUERY, &wrong, None).await.expect(401, "1010010");
    }
    let blocked = server.send(Method::GET, QUERY, &server.signed(AX_APP, Scheme::Aksk), None).await;
    blocked.expect(429, "1010010");
    assert!(blocked.desc().contains("Too many failed authentications"), "{blocked:?}");
    let admin_blocked = server.admin(Method::GET, "/apps", None).await;
    admin_blocked.expect(429, "1010010");

    let allowed = crate::support::eventually(std::time::Duration::from_secs(5), || async {
        let answer = server.send(Method::GET, QUERY, &server.signed(AXB_APP, Scheme::Aksk), None).await;
        (answer.status.as_u16() == 403).then_some(answer)
    })
    .await;
    allowed.expect("the address may try again once its allowance refilled").expect(403, "1012007");
}
