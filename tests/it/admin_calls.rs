//! Calls left open: the admin API lists live calls and ends one (its `disconnect`, its CDR, and
//! a stop asked of the switch), and `privnum call` never leaves the call it started open.

use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::receiver::{cdrs, events_of, Receiver};
use crate::support::{TestServer, AXB_APP, AXB_PATH, QUIET_APP, SWITCH_TOKEN};

const A: &str = "+8613800000001";
const B: &str = "+8613900000002";
const X: &str = "+8617000000001";
const QUIET_X: &str = "+8617100000001";

async fn callin(server: &TestServer, caller: &str, called: &str, session_id: &str) -> Value {
    let answer = server
        .switch(Method::POST, "/calls", &json!({"caller": caller, "called": called, "sessionId": session_id}))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

async fn event(server: &TestServer, session_id: &str, body: Value) {
    let answer = server.switch(Method::POST, &format!("/calls/{session_id}/events"), &body).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

fn sessions(list: &Value) -> Vec<&str> {
    list["calls"].as_array().unwrap().iter().map(|call| call["sessionId"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_calls_are_listed_oldest_first_with_a_limit_and_by_app() {
    let server = TestServer::start().await;
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    let quiet = json!({"relationNum": QUIET_X, "callerNum": A, "calleeNum": B});
    server.call(QUIET_APP, Method::POST, AXB_PATH, Some(&quiet)).await.expect(200, "0");

    assert_eq!(callin(&server, A, X, "first").await["action"], "connect");
    server.clock.advance(10);
    callin(&server, B, X, "second").await;
    server.clock.advance(10);
    callin(&server, A, QUIET_X, "quiet").await;
    // Neither a call released at routing nor one that ended is live.
    assert_eq!(callin(&server, "+8613700000009", X, "stranger").await["action"], "release");
    callin(&server, A, X, "over").await;
    event(&server, "over", json!({"event": "disconnect", "stateCode": 0})).await;
    event(&server, "first", json!({"event": "callout"})).await;
    event(&server, "first", json!({"event": "answer"})).await;
    event(&server, "second", json!({"event": "alerting"})).await;

    let all = server.admin(Method::GET, "/calls", None).await;
    all.expect(200, "0");
    assert_eq!(sessions(&all.body), ["first", "second", "quiet"], "oldest first: {all:?}");
    assert_eq!((all.body["total"].as_u64(), all.body["limit"].as_u64()), (Some(3), Some(100)));
    let first = &all.body["calls"][0];
    assert_eq!(
        (&first["appKey"], &first["x"], &first["caller"], &first["callee"], &first["state"], &first["mode"]),
        (&json!("axb-app"), &json!(X), &json!(A), &json!(B), &json!("answered"), &json!("AXB")),
        "{first}"
    );
    assert!(first["startedAt"].as_str().is_some_and(|time| time.contains('T')), "{first}");
    assert_eq!(all.body["calls"][1]["state"], "alerting");
    assert_eq!(all.body["calls"][2]["state"], "connecting", "no event yet");

    let capped = server.admin(Method::GET, "/calls?limit=2", None).await;
    assert_eq!(sessions(&capped.body), ["first", "second"]);
    assert_eq!(capped.body["total"], 3, "the total counts what the limit leaves out");
    let quiet_only = server.admin(Method::GET, "/calls?app=quiet-app", None).await;
    assert_eq!((sessions(&quiet_only.body), &quiet_only.body["total"]), (vec!["quiet"], &json!(1)));

    for bad in ["limit=0", "limit=1001", "limit=ten", "state=live"] {
        let answer = server.admin(Method::GET, &format!("/calls?{bad}"), None).await;
        answer.expect(403, "1010002");
        let field = bad.split('=').next().unwrap();
        assert!(answer.desc().contains(field), "{bad}: {answer:?}");
    }
    let anonymous = server.send(Method::GET, "/v1/admin/calls", &[], None).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_call_asks_the_switch_then_pushes_its_disconnect_and_a_cdr() {
    let receiver = Receiver::start(&[AXB_APP]).await;
    let server = TestServer::builder().pushing_to(&receiver).switch_control(&receiver).cdr_flush_ms(50).start().await;
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    callin(&server, A, X, "left-open").await;
    event(&server, "left-open", json!({"event": "answer"})).await;

    let ended = server.admin(Method::POST, "/calls/left-open/end", None).await;
    ended.expect(200, "0");
    assert_eq!(
        (&ended.body["sessionId"], &ended.body["stateCode"], &ended.body["switch"]),
        (&json!("left-open"), &json!(8020), &json!("stopped")),
        "{ended:?}"
    );
    let received = receiver.wait_for(Duration::from_secs(5), |r| cdrs(r).len() == 1).await;
    let stop: Vec<_> = received.iter().filter(|r| r.path == "/control").map(|r| &r.body).collect();
    assert_eq!(stop, [&json!({"sessionId": "left-open", "command": "stop"})]);
    assert_eq!(events_of(&received, "left-open"), ["callin", "answer", "disconnect"]);
    let disconnect = received.iter().find(|r| r.body["eventType"] == "disconnect").unwrap();
    assert_eq!(disconnect.body["statusInfo"]["stateCode"], 8020, "{}", disconnect.body);
    let cdr = &cdrs(&received)[0];
    assert_eq!((&cdr["sessionId"], &cdr["ulFailReason"]), (&json!("left-open"), &json!(8020)), "{cdr}");
    assert!(cdr["closedBy"].as_str().is_some_and(|reason| reason.contains("ops")), "{cdr}");

    // Gone from the list; its CDR readable for the minute it is kept; it ends once.
    let list = server.admin(Method::GET, "/calls", None).await;
    assert_eq!(list.body["total"], 0, "{list:?}");
    let read = server.switch(Method::GET, "/calls/left-open/cdr", &json!({})).await;
    assert_eq!((read.status.as_u16(), &read.body["ulFailReason"]), (200, &json!(8020)), "{read:?}");
    server.admin(Method::POST, "/calls/left-open/end", None).await.expect(409, "1010002");
    server.admin(Method::POST, "/calls/no-such-call/end", None).await.expect(404, "1012007");
    // The switch's own disconnect, arriving after, is acknowledged and not pushed again.
    event(&server, "left-open", json!({"event": "disconnect", "stateCode": 0, "releaseSide": "caller"})).await;
    callin(&server, A, X, "later").await;
    event(&server, "later", json!({"event": "disconnect", "stateCode": 0})).await;
    let received = receiver.wait_for(Duration::from_secs(5), |r| cdrs(r).len() == 2).await;
    assert_eq!(events_of(&received, "left-open"), ["callin", "answer", "disconnect"]);
    assert_eq!(cdrs(&received).len(), 2, "one CDR per call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_ends_in_privnum_whether_or_not_a_switch_can_be_asked() {
    // No switch_control_url: the call ends in privnum, and the answer says the switch was not asked.
    let server = TestServer::start().await;
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    callin(&server, A, X, "unmanaged").await;
    let ended = server.admin(Method::POST, "/calls/unmanaged/end", None).await;
    ended.expect(200, "0");
    assert_eq!(ended.body["switch"], "not_configured", "{ended:?}");
    assert_eq!(server.admin(Method::GET, "/calls", None).await.body["total"], 0);

    // A switch that refuses the stop: still ended, and the answer says what the switch said.
    let control = Receiver::start(&[]).await;
    let server = TestServer::builder().switch_control(&control).start().await;
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    callin(&server, A, X, "stuck").await;
    control.reject_next(1);
    let ended = server.admin(Method::POST, "/calls/stuck/end", None).await;
    ended.expect(200, "0");
    assert_eq!(ended.body["switch"], "refused", "{ended:?}");
    assert!(ended.body["switchError"].as_str().is_some_and(|error| error.contains("HTTP 4")), "{ended:?}");
    let cdr = server.switch(Method::GET, "/calls/stuck/cdr", &json!({})).await;
    assert_eq!(cdr.status, 200, "{cdr:?}");
}

/// Runs `privnum call` against `server` with its standard output already closed, as when piped
/// into a `head` that has exited; its exit status and standard error.
async fn call_with_stdout_closed(server: &TestServer, args: &[&str]) -> (Option<i32>, String) {
    // A socket pair stands for the pipe: writing to it once its peer is closed fails with EPIPE.
    let (reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(reader);
    let writer = std::os::fd::OwnedFd::from(writer);
    let mut command = Command::new(env!("CARGO_BIN_EXE_privnum"));
    command.args(["call", "--server", &server.base, "--switch-token", SWITCH_TOKEN]).args(args);
    command.stdin(Stdio::null()).stdout(writer).stderr(Stdio::piped());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_virtual_switch_ends_its_call_when_its_output_is_closed() {
    let server = TestServer::start().await;
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    let (status, stderr) = call_with_stdout_closed(&server, &["--from", A, "--to", X, "--answer-after", "2"]).await;
    assert_eq!(status, Some(141), "a closed output is reported as SIGPIPE would be; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("broken pipe"), "{stderr}");
    let session = stderr
        .split_whitespace()
        .find(|word| word.starts_with("cli-"))
        .unwrap_or_else(|| panic!("stderr names the call it ended: {stderr}"));
    assert_eq!(server.admin(Method::GET, "/calls", None).await.body["total"], 0, "no call is left open");
    let cdr = server.switch(Method::GET, &format!("/calls/{session}/cdr"), &json!({})).await;
    assert_eq!((cdr.status.as_u16(), &cdr.body["callerNum"]), (200, &json!(A)), "{cdr:?}");

    // A refused callin opened nothing, and nothing is said about ending it.
    let (status, stderr) = call_with_stdout_closed(&server, &["--from", "not-a-number", "--to", X]).await;
    assert_eq!(status, Some(141), "{stderr}");
    assert!(!stderr.contains("may be left open"), "{stderr}");
}

/// A TCP relay to `server` that holds the first connection's second request: what the first
/// request's answer is relayed, nothing more the client sends on that connection reaches the
/// server (a switch API that hangs mid-call). Other connections are relayed as they are.
async fn relay_holding_the_second_request(server: &str) -> String {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let target = server.trim_start_matches("http://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((client, _)) = listener.accept().await {
            let upstream = tokio::net::TcpStream::connect(&target).await.unwrap();
            if !std::mem::take(&mut first) {
                tokio::spawn(async move {
                    let (mut client, mut upstream) = (client, upstream);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
                continue;
            }
            let answered = Arc::new(AtomicBool::new(false));
            let (mut client_read, mut client_write) = client.into_split();
            let (mut upstream_read, mut upstream_write) = upstream.into_split();
            let seen = answered.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0; 64 * 1024];
                while let Ok(read @ 1..) = upstream_read.read(&mut buffer).await {
                    // Set before the client can see the answer, so its next request is held.
                    seen.store(true, Ordering::SeqCst);
                    if client_write.write_all(&buffer[..read]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buffer = vec![0; 64 * 1024];
                while let Ok(read @ 1..) = client_read.read(&mut buffer).await {
                    if answered.load(Ordering::SeqCst) {
                        // Held: read and dropped, never answered.
                        continue;
                    }
                    if upstream_write.write_all(&buffer[..read]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_virtual_switch_ends_its_call_at_ctrl_c() {
    use std::io::BufRead as _;

    let server = TestServer::start().await;
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    let relay = relay_holding_the_second_request(&server.base).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_privnum"))
        .args(["call", "--server", &relay, "--switch-token", SWITCH_TOKEN, "--from", A, "--to", X])
        .args(["--answer-after", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // The callin's answer is printed; its callout is then held by the relay.
    let printed = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let found = lines.by_ref().map_while(Result::ok).any(|line| line.starts_with("← 200"));
        (found, lines)
    });
    let (found, rest) = printed.await.unwrap();
    assert!(found, "privnum call printed the callin's answer");
    let live = server.admin(Method::GET, "/calls", None).await;
    assert_eq!(live.body["total"], 1, "the call is open while its callout hangs: {live:?}");
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let output = tokio::task::spawn_blocking(move || {
        rest.for_each(drop);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "Ctrl-C exits as SIGINT would; stderr: {stderr}");
    assert!(stderr.contains("ended: the caller hung up"), "{stderr}");
    assert_eq!(server.admin(Method::GET, "/calls", None).await.body["total"], 0, "no call is left open");
}
