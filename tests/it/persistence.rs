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
        .bind_axb(json!({"areaCode": "0755", "callerNum": "+8613800000001", "calleeNum": "+8613900000001",
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
pub struct Process(Child);

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

pub async fn signed_request(client: &reqwest::Client, method: Method, url: String, body: Option<&Value>) -> Value {
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

/// Sends one signed request with the headers given, as a client replaying captured headers would.
async fn send_with(client: &reqwest::Client, url: &str, signed: &auth::SignedHeaders, body: &Value) -> Value {
    let request = client
        .post(url)
        .header("Authorization", signed.authorization.clone())
        .header(signed.token_name, signed.token.clone())
        .json(body);
    request.send().await.expect("request").json().await.expect("json answer")
}

#[tokio::test]
async fn a_bind_replayed_after_kill_9_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = format!("scripts_dir = {:?}\n", crate::support::scripts_dir().display().to_string());
    std::fs::write(dir.path().join("privnum.toml"), format!("{scripts}{CONFIG}")).unwrap();
    let client = reqwest::Client::new();
    let (process, base) = spawn_server(dir.path());
    let url = format!("{base}{AXB_PATH}");
    let signed = auth::sign(Scheme::Aksk, "demo-app", "demo-secret", &auth::new_nonce(), chrono::Utc::now());
    let body = json!({"areaCode": "0755", "callerNum": "+8613800000077", "calleeNum": "+8613900000077"});
    let first = send_with(&client, &url, &signed, &body).await;
    assert_eq!(first["resultcode"], "0", "{first}");
    // SIGKILL at once, before the sweeper's once-a-second write of new nonces.
    drop(process);

    let (_process, base) = spawn_server(dir.path());
    let replayed = send_with(&client, &format!("{base}{AXB_PATH}"), &signed, &body).await;
    assert_eq!(replayed["resultcode"], "1010010", "the replay must be refused as a replay: {replayed}");
}

/// The release binary with its config pointing pushes at `receiver`, in `dir`.
pub fn spawn_pushing_server(dir: &std::path::Path, receiver: &crate::receiver::Receiver) -> (Process, String) {
    spawn_pushing_server_with(dir, receiver, "")
}

/// [`spawn_pushing_server`] with more top-level settings (TOML lines).
pub fn spawn_pushing_server_with(
    dir: &std::path::Path,
    receiver: &crate::receiver::Receiver,
    settings: &str,
) -> (Process, String) {
    let config = format!(
        "scripts_dir = {:?}\npush_retry_schedule = [\"300ms\", \"500ms\", \"1s\", \"2s\", \"3s\", \"5s\"]\ncdr_flush_ms = 100\n{settings}\n{}\ncall_event_url = \"{}/events\"\ncdr_url = \"{}/cdr\"\n",
        crate::support::scripts_dir().display().to_string(),
        CONFIG.trim_end(),
        receiver.base,
        receiver.base
    );
    std::fs::write(dir.join("privnum.toml"), config).unwrap();
    spawn_server(dir)
}

/// The release binary pushing to `receiver`, in a new directory, with A (+8613800000001) and
/// B (+8613900000001) bound on X +8617000000001.
async fn bound_pushing_server(
    receiver: &crate::receiver::Receiver,
) -> (tempfile::TempDir, reqwest::Client, Process, String) {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (process, base) = spawn_pushing_server(dir.path(), receiver);
    let body = json!({"relationNum": "+8617000000001", "callerNum": "+8613800000001", "calleeNum": "+8613900000001"});
    let bound = signed_request(&client, Method::POST, format!("{base}{AXB_PATH}"), Some(&body)).await;
    assert_eq!(bound["resultcode"], "0", "{bound}");
    (dir, client, process, base)
}

pub async fn switch_post(client: &reqwest::Client, url: String, body: Value) -> Value {
    let response = client.post(url).bearer_auth("dev-switch-token").json(&body).send().await.expect("switch request");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cdr_arrives_through_failures_an_outage_and_kill_9() {
    let receiver = crate::receiver::Receiver::start(&[("demo-app", "demo-secret")]).await;
    receiver.fail_next(3);
    let (dir, client, process, base) = bound_pushing_server(&receiver).await;

    let calls = 10;
    for i in 0..calls {
        let session = format!("k-{i}");
        let call = json!({"caller": "+8613800000001", "called": "+8617000000001", "sessionId": session});
        let decision = switch_post(&client, format!("{base}/v1/switch/calls"), call).await;
        assert_eq!(decision["action"], "connect", "{decision}");
        for event in ["callout", "alerting", "answer", "disconnect"] {
            let body = json!({"event": event, "stateCode": 0, "releaseSide": "caller"});
            switch_post(&client, format!("{base}/v1/switch/calls/{session}/events"), body).await;
        }
        if i == calls / 2 {
            // The customer goes down for a while.
            receiver.fail_next(1_000_000);
        }
    }
    // Killed while pushes wait for their retries; started again; the customer comes back.
    drop(process);
    let (_process, _base) = spawn_pushing_server(dir.path(), &receiver);
    receiver.fail_next(0);
    let received = receiver
        .wait_for(Duration::from_secs(30), |r| {
            let ids: std::collections::HashSet<_> =
                crate::receiver::cdrs(r).iter().map(|c| c["sessionId"].to_string()).collect();
            let ended =
                (0..calls).all(|i| crate::receiver::events_of(r, &format!("k-{i}")).iter().any(|e| e == "disconnect"));
            ids.len() == calls && ended
        })
        .await;
    let cdrs = crate::receiver::cdrs(&received);
    let mut icids = std::collections::HashMap::new();
    for cdr in &cdrs {
        let previous = icids.insert(cdr["sessionId"].to_string(), cdr["icid"].clone());
        if let Some(previous) = previous {
            assert_eq!(previous, cdr["icid"], "a duplicate CDR must carry the same icid");
        }
    }
    assert_eq!(icids.len(), calls, "every call's CDR arrived: {cdrs:?}");
    for i in 0..calls {
        let events = crate::receiver::events_of(&received, &format!("k-{i}"));
        let first_of_each: Vec<_> = ["callin", "callout", "alerting", "answer", "disconnect"]
            .iter()
            .map(|kind| events.iter().position(|e| e == kind).unwrap_or(usize::MAX))
            .collect();
        assert!(first_of_each.windows(2).all(|w| w[0] < w[1]), "k-{i} events out of order or missing: {events:?}");
    }
}

/// The switch's events name their call (`caller`, `called`), so a call whose connect was answered
/// just before a `kill -9`, with its session not yet on disk, is rebuilt and still gets its CDR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_connected_just_before_kill_9_still_get_their_cdr() {
    let receiver = crate::receiver::Receiver::start(&[("demo-app", "demo-secret")]).await;
    let (dir, client, process, base) = bound_pushing_server(&receiver).await;
    let call_of = |session: &str| json!({"caller": "+8613800000001", "called": "+8617000000001", "sessionId": session});

    // Connects answered back to back, the last within microseconds of the kill: whether a given
    // session reached the disk is up to timing (`retries.rs` loses one on purpose); either way,
    // each call must end with its CDR.
    let calls = 40;
    for i in 0..calls {
        let decision = switch_post(&client, format!("{base}/v1/switch/calls"), call_of(&format!("c-{i}"))).await;
        assert_eq!(decision["action"], "connect", "{decision}");
    }
    drop(process);
    let (_process, base) = spawn_pushing_server(dir.path(), &receiver);
    for i in 0..calls {
        let session = format!("c-{i}");
        for event in ["answer", "disconnect"] {
            let mut body = call_of(&session);
            body["event"] = json!(event);
            body["stateCode"] = json!(0);
            body.as_object_mut().unwrap().remove("sessionId");
            switch_post(&client, format!("{base}/v1/switch/calls/{session}/events"), body).await;
        }
    }
    let received = receiver
        .wait_for(Duration::from_secs(30), |r| {
            let ids: std::collections::HashSet<_> =
                crate::receiver::cdrs(r).iter().map(|c| c["sessionId"].to_string()).collect();
            ids.len() == calls
        })
        .await;
    let ids: std::collections::HashSet<_> =
        crate::receiver::cdrs(&received).iter().map(|c| c["sessionId"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(ids.len(), calls, "every connected call got its CDR: {ids:?}");
}
