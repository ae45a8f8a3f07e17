//! Durability: what the API acknowledged is there after a restart, and after `kill -9`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use privnum::auth::{self, Scheme};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{TestServer, AXB_APP, AXB_PATH};

#[tokio::test]
async fn bindings_apps_and_numbers_survive_a_restart() {
    let server = TestServer::start().await;
    let bound = server
        .bind(json!({"areaCode": "0755", "callerNum": "+8613800000001", "calleeNum": "+8613900000001",
        "duration": 3600, "userData": "kept"}))
        .await;
    bound.expect(200, "0");
    let id = bound.body["subscriptionId"].as_str().unwrap().to_owned();
    let new_app =
        json!({"mode": "AXB", "app_secret": "s2", "numbers": [{"number": "+8617300000001", "area_code": "021"}]});
    server.admin(Method::PUT, "/apps/runtime-app", Some(&new_app)).await.expect(200, "0");

    // The restarted server is given no apps in its configuration: all must come from the store.
    let server = server.restart().await;
    let found = server.call(AXB_APP, Method::GET, &format!("{AXB_PATH}?subscriptionId={id}"), None).await;
    found.expect(200, "0");
    assert_eq!(found.body["relationNumList"][0]["userData"], "kept");
    let body = json!({"areaCode": "021", "callerNum": "+8613800000001", "calleeNum": "+8613900000001"});
    let on_new_app = server.call(("runtime-app", "s2"), Method::POST, AXB_PATH, Some(&body)).await;
    on_new_app.expect(200, "0");
    assert_eq!(on_new_app.body["relationNum"], "+8617300000001");
}

/// The release binary, killed with SIGKILL on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const CONFIG: &str = r#"
listen = "127.0.0.1:0"
data_dir = "data"
[[apps]]
app_key = "demo-app"
app_secret = "demo-secret"
mode = "AXB"
numbers = [ { number = "+8617000000001", area_code = "0755" }, { number = "+8617000000002", area_code = "0755" } ]
"#;

/// Starts `privnum serve` in `dir` and reads its address from the "listening" log line.
fn spawn_server(dir: &std::path::Path) -> (Process, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_privnum"))
        .args(["serve", "--config", "privnum.toml"])
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("privnum binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let process = Process(child);
    // Read the log on a thread, so a server that prints nothing fails the test instead of hanging it.
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = received.recv_timeout(left).expect("privnum reports its address within 30 s");
        if let Some(rest) = line.split("addr=").nth(1) {
            let addr = rest.split_whitespace().next().expect("address").to_owned();
            return (process, format!("http://{addr}"));
        }
    }
}

async fn signed_request(client: &reqwest::Client, method: Method, url: String, body: Option<&Value>) -> Value {
    let signed = auth::sign(Scheme::Aksk, "demo-app", "demo-secret", &auth::new_nonce(), chrono::Utc::now());
    let mut request = client
        .request(method, url)
        .header("Authorization", signed.authorization)
        .header(signed.token_name, signed.token);
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.expect("request").json().await.expect("json answer")
}

#[tokio::test]
async fn acknowledged_binds_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = format!("scripts_dir = {:?}\n", crate::support::scripts_dir().display().to_string());
    std::fs::write(dir.path().join("privnum.toml"), format!("{scripts}{CONFIG}")).unwrap();
    let client = reqwest::Client::new();
    let (process, base) = spawn_server(dir.path());
    // Concurrent binds, so several share one group flush.
    let mut binds = tokio::task::JoinSet::new();
    for i in 0..40 {
        let body =
            json!({"areaCode": "0755", "callerNum": format!("+86138{i:08}"), "calleeNum": format!("+86139{i:08}")});
        let (client, url) = (client.clone(), format!("{base}{AXB_PATH}"));
        binds.spawn(async move { signed_request(&client, Method::POST, url, Some(&body)).await });
    }
    let mut ids = Vec::new();
    while let Some(answer) = binds.join_next().await {
        let answer = answer.expect("bind task");
        assert_eq!(answer["resultcode"], "0", "{answer}");
        ids.push(answer["subscriptionId"].as_str().unwrap().to_owned());
    }
    // SIGKILL right after the last acknowledgement: no graceful flush.
    drop(process);

    let (_process, base) = spawn_server(dir.path());
    for id in ids {
        let answer = signed_request(&client, Method::GET, format!("{base}{AXB_PATH}?subscriptionId={id}"), None).await;
        assert_eq!(answer["resultcode"], "0", "binding {id} was acknowledged but lost: {answer}");
    }
}
