//! Hostile scripts: a loop, endless recursion, a huge string and a huge array are stopped by the
//! sandbox; each such call still gets the fallback decision fast, and the server keeps serving.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::TestServer;

const X: &str = "+8617000000001";

/// Hostile branches for callers the cases never use, so the script loads and misbehaves live.
const HOSTILE: &str = r#"
fn deeper(n) { deeper(n + 1) }

fn hostile(callin) {
    if callin.caller == "+8613666666601" { loop { } }
    if callin.caller == "+8613666666602" { deeper(0); }
    if callin.caller == "+8613666666603" { let s = "x"; loop { s += s; } }
    if callin.caller == "+8613666666604" { let a = []; loop { a.push(a.len()); } }
    if callin.caller == "+8613666666605" { return connect("+8613999999999"); }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_scripts_are_stopped_and_the_call_still_gets_an_answer() {
    let server = TestServer::builder().scripts_copy().start().await;
    let scripts = server.scripts_dir().to_owned();
    let path = scripts.join("modes/axb.rhai");
    let original = std::fs::read_to_string(&path).unwrap();
    let hostile = original
        .replace("    let binding = callin.binding;", "    let h = hostile(callin);\n    if type_of(h) == \"Decision\" { return h; }\n    let binding = callin.binding;");
    std::fs::write(&path, format!("{hostile}\n{HOSTILE}")).unwrap();
    let reload = server.admin(reqwest::Method::POST, "/scripts/reload", None).await;
    assert_eq!(reload.body["outcome"], "reloaded", "{reload:?}");
    server
        .bind_axb(json!({"relationNum": X, "callerNum": "+8613800000001", "calleeNum": "+8613900000002"}))
        .await
        .expect(200, "0");

    // The fifth breaks a platform invariant instead: it connects to a number that is no party.
    for caller in ["+8613666666601", "+8613666666602", "+8613666666603", "+8613666666604", "+8613666666605"] {
        let start = Instant::now();
        let answer = server.switch_call(caller, X).await;
        let took = start.elapsed();
        assert!(took < Duration::from_millis(100), "{caller}: answered after {took:?}");
        assert_eq!(
            (answer.status.as_u16(), answer.body["action"].as_str()),
            (200, Some("release")),
            "{caller}: {answer:?}"
        );
        assert_eq!(answer.body["stateCode"], 8020, "{caller}: the fallback is a service-exception release");
    }
    let healthy = server.send(reqwest::Method::GET, "/healthz", &[], None).await;
    assert_eq!(healthy.status, 200);
    let normal = server.switch_call("+8613800000001", X).await;
    assert_eq!(normal.body["callee"], "+8613900000002", "other calls are decided as before: {normal:?}");
    let status = server.admin(reqwest::Method::GET, "/scripts", None).await;
    assert_eq!(status.body["scripts"]["runtime_errors"], 5, "{status:?}");
    let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("privnum_switch_decisions_total{action=\"fallback\"} 5"), "{metrics}");
}
