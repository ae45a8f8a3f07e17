//! `openapi.json` against the router, both ways, so that neither drifts from the other:
//! the document's operations are exactly `http::ROUTES`; each of those is routed by the real
//! server and every other method of its path is 405; every `.route(` in `src/http/` names a
//! path of `ROUTES`. A route added without documenting it fails here. (`.ci/schemathesis`
//! checks the answers themselves against the document's schemas.)

use std::collections::BTreeSet;
use std::path::PathBuf;

use privnum::http::{self, OPENAPI_JSON, ROUTES};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::TestServer;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

fn document() -> Value {
    serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON")
}

/// The document's operations as (METHOD, path).
fn documented() -> BTreeSet<(String, String)> {
    let doc = document();
    let paths = doc["paths"].as_object().expect("openapi.json has paths");
    let mut operations = BTreeSet::new();
    for (path, item) in paths {
        for key in item.as_object().expect("a path item is an object").keys() {
            let method = key.to_ascii_uppercase();
            if METHODS.contains(&method.as_str()) || ["HEAD", "OPTIONS", "TRACE"].contains(&method.as_str()) {
                operations.insert((method, path.clone()));
            }
        }
    }
    operations
}

fn routes() -> BTreeSet<(String, String)> {
    ROUTES.iter().map(|(method, path)| ((*method).to_owned(), (*path).to_owned())).collect()
}

#[test]
fn the_document_has_exactly_the_routers_operations() {
    let (documented, routes) = (documented(), routes());
    assert_eq!(routes.len(), ROUTES.len(), "http::ROUTES lists an operation twice");
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routes).collect();
    assert!(undocumented.is_empty(), "routed but not in openapi.json: {undocumented:?}");
    assert!(unrouted.is_empty(), "in openapi.json but not in http::ROUTES: {unrouted:?}");
}

#[test]
fn the_document_is_openapi_3_1_and_names_each_path_parameter() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, item) in doc["paths"].as_object().unwrap() {
        let placeholders: BTreeSet<&str> =
            path.split('/').filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}')).collect();
        let shared = item["parameters"].as_array().cloned().unwrap_or_default();
        for (method, operation) in item.as_object().unwrap().iter().filter(|(key, _)| *key != "parameters") {
            let own = operation["parameters"].as_array().cloned().unwrap_or_default();
            let named: BTreeSet<&str> = shared
                .iter()
                .chain(own.iter())
                .filter(|parameter| parameter["in"] == "path")
                .filter_map(|parameter| parameter["name"].as_str())
                .collect();
            assert_eq!(named, placeholders, "{method} {path}: path parameters");
            assert!(operation["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}: responses");
            assert!(operation["security"].is_array(), "{method} {path}: security");
        }
    }
}

/// A request path for a route template, with a sample value in each `{…}`.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{app_key}" => "probe-app",
            "{number}" => "%2B8617000000001",
            "{file_name}" => "probe.wav",
            "{id}" => "1",
            "{session_id}" => "probe-session",
            "{version}" => "v1",
            other if other.starts_with('{') => panic!("no sample value for {other} in {path}"),
            other => other,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_route_is_served_and_every_other_method_is_405() {
    let server = TestServer::start().await;
    let paths: BTreeSet<&str> = ROUTES.iter().map(|(_, path)| *path).collect();
    for path in paths {
        let url = concrete(path);
        for method in METHODS {
            let routed = ROUTES.contains(&(method, path));
            let answer = server.send(Method::from_bytes(method.as_bytes()).unwrap(), &url, &[], None).await;
            let fallback = answer.status == StatusCode::NOT_FOUND
                && answer.body["resultdesc"].as_str().is_some_and(|desc| desc.starts_with("no API at"));
            if routed {
                assert!(
                    answer.status != StatusCode::METHOD_NOT_ALLOWED && !fallback,
                    "{method} {path} is in http::ROUTES but not routed: {} {}",
                    answer.status,
                    answer.body
                );
            } else {
                assert_eq!(
                    answer.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is routed but not in http::ROUTES (and openapi.json): {}",
                    answer.body
                );
            }
        }
    }
}

/// Every path the source of `src/http/` routes, read from its `.route(` lines (`admin.rs` and
/// `switch.rs` are nested under their prefixes).
#[test]
fn every_route_in_the_source_is_in_routes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let constants = [
        ("AXB_PATH", http::AXB_PATH),
        ("AX_PATH", http::AX_PATH),
        ("AX_CALLEE_PATH", http::AX_CALLEE_PATH),
        ("AXE_PATH", http::AXE_PATH),
        ("AXE_CURSOR_PATH", http::AXE_CURSOR_PATH),
        ("calls::STOP_PATH", http::calls::STOP_PATH),
        ("calls::RECORD_PATH", http::calls::RECORD_PATH),
        ("data::DATA_PATH", http::data::DATA_PATH),
        ("ruleset::RULESET_PATH", http::ruleset::RULESET_PATH),
        ("ruleset::RULESET_ACTIVE_PATH", http::ruleset::RULESET_ACTIVE_PATH),
    ];
    let mut found = BTreeSet::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let prefix = match name.as_str() {
            "admin.rs" => "/v1/admin",
            "switch.rs" => "/v1/switch",
            _ => "",
        };
        let source = std::fs::read_to_string(&file).unwrap();
        for (number, line) in source.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with(".nest(") {
                assert!(
                    name == "mod.rs" && (line.contains("\"/v1/admin\"") || line.contains("\"/v1/switch\"")),
                    "{name}:{}: a nested router this test does not know: {line}",
                    number + 1
                );
            }
            let Some(rest) = line.strip_prefix(".route(") else { continue };
            let argument = rest.split(',').next().unwrap().trim();
            let path = match argument.strip_prefix('"').and_then(|quoted| quoted.strip_suffix('"')) {
                Some(literal) => format!("{prefix}{literal}"),
                None => match constants.iter().find(|(constant, _)| *constant == argument) {
                    Some((_, value)) => format!("{prefix}{value}"),
                    None => panic!("{name}:{}: a route at {argument}, which this test cannot read", number + 1),
                },
            };
            found.insert(path);
        }
    }
    let listed: BTreeSet<String> = ROUTES.iter().map(|(_, path)| (*path).to_owned()).collect();
    let missing: Vec<_> = found.difference(&listed).collect();
    assert!(missing.is_empty(), "routed in src/http/ but not in http::ROUTES (and openapi.json): {missing:?}");
    let stale: Vec<_> = listed.difference(&found).collect();
    assert!(stale.is_empty(), "in http::ROUTES but routed nowhere in src/http/: {stale:?}");
}

#[tokio::test]
async fn the_document_is_served_as_it_is_without_a_token() {
    let server = TestServer::start().await;
    let response = reqwest::get(format!("{}/openapi.json", server.base)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    assert_eq!(response.text().await.unwrap(), OPENAPI_JSON);
}
