//! Storage faults (README, "Storage faults"): a full disk refuses changes at once, reports itself
//! unhealthy, releases callins it cannot record, and recovers by itself once space returns,
//! keeping everything acknowledged — with failures injected where the disk's errors surface
//! (always), and on a real filesystem that fills up (a small tmpfs, where mounting is allowed).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use privnum::store::StorePart;

use crate::support::{eventually, TestServer, AXB_APP, AXB_PATH};

const X: &str = "+8617000000001";

async fn bind(server: &TestServer, a: &str, b: &str) -> crate::support::Answer {
    server.bind_axb(json!({"relationNum": X, "callerNum": a, "calleeNum": b})).await
}

async fn found(server: &TestServer, subscription_id: &str) -> bool {
    let path = format!("{AXB_PATH}?subscriptionId={subscription_id}");
    let answer = server.call(AXB_APP, Method::GET, &path, None).await;
    answer.status == 200 && answer.code() == "0"
}

async fn health(server: &TestServer) -> (u16, Value) {
    let response = server.client.get(format!("{}/healthz", server.base)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn metrics(server: &TestServer) -> String {
    server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap()
}

/// Waits until `/healthz` answers `status`.
async fn health_becomes(server: &TestServer, status: u16, limit: Duration) -> bool {
    eventually(limit, || async { (health(server).await.0 == status).then_some(()) }).await.is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_at_once_releases_callins_and_recovers_by_itself_keeping_what_was_acknowledged() {
    let server = TestServer::start().await;
    let before = bind(&server, "+8613800000001", "+8613900000001").await.expect(200, "0").field("subscriptionId");
    let call = json!({"caller": "+8613800000001", "called": X, "sessionId": "s-before"});
    assert_eq!(server.switch(Method::POST, "/calls", &call).await.body["action"], "connect");
    let answered = server.switch(Method::POST, "/calls/s-before/events", &json!({"event": "answer"})).await;
    assert_eq!(answered.status, 200, "{answered:?}");

    let store = server.state().store.clone();
    store.inject_write_failures(StorePart::Sled, true);
    store.inject_write_failures(StorePart::CallLog, true);
    // The first failed write faults the store; from then on every change is refused at once.
    for n in 0..3 {
        let started = Instant::now();
        let refused = bind(&server, &format!("+861380000010{n}"), &format!("+861390000010{n}")).await;
        refused.expect(503, "1010001");
        assert!(refused.desc().contains("storage cannot make changes durable"), "{refused:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "refused at once, not after a timeout: {:?}",
            started.elapsed()
        );
    }
    let (status, body) = health(&server).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "store faulted");
    assert!(body["error"].as_str().is_some_and(|error| error.contains("No space left on device")), "{body}");
    let text = metrics(&server).await;
    assert!(text.contains("privnum_store_healthy 0"), "{text}");

    let app = json!({"mode": "AXB", "app_secret": AXB_APP.1, "recording": false});
    server.admin(Method::PUT, "/apps/axb-app", Some(&app)).await.expect(503, "1010001");
    // A callin cannot be recorded: released with 8011, and no session is kept for it.
    let during = json!({"caller": "+8613800000001", "called": X, "sessionId": "s-during"});
    let released = server.switch(Method::POST, "/calls", &during).await;
    assert_eq!(released.status, 200, "{released:?}");
    assert_eq!((released.body["action"].as_str(), released.body["stateCode"].as_u64()), (Some("release"), Some(8011)));
    assert!(server.state().switchboard.sessions().get("s-during").is_none());
    // An event of a call under way is refused; the switch tries again.
    let hangup = json!({"event": "disconnect", "releaseSide": "caller"});
    server.switch(Method::POST, "/calls/s-before/events", &hangup).await.expect(503, "1010001");
    let text = metrics(&server).await;
    assert!(text.contains("privnum_callins_released_store_fault_total 1"), "{text}");

    store.inject_write_failures(StorePart::Sled, false);
    store.inject_write_failures(StorePart::CallLog, false);
    drop(store); // the restart below opens the store again
    assert!(health_becomes(&server, 200, Duration::from_secs(10)).await, "{:?}", health(&server).await);
    let after = bind(&server, "+8613800000002", "+8613900000002").await.expect(200, "0").field("subscriptionId");
    let hung_up = server.switch(Method::POST, "/calls/s-before/events", &hangup).await;
    assert_eq!(hung_up.status, 200, "the switch's retry is taken: {hung_up:?}");
    assert_eq!(server.switch(Method::POST, "/calls", &call).await.body["action"], "connect", "a call retried");
    let text = metrics(&server).await;
    for line in [
        "privnum_store_healthy 1",
        "privnum_store_faults_total{part=\"sled\"} 1",
        "privnum_store_recoveries_total{part=\"sled\"} 1",
        "privnum_store_recoveries_total{part=\"call_log\"} 1",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert!(found(&server, &before).await && found(&server, &after).await);

    let server = server.restart().await;
    assert!(found(&server, &before).await, "acknowledged before the fault, kept after a restart");
    assert!(found(&server, &after).await, "acknowledged after the recovery, kept after a restart");
    let ended = server.state().switchboard.sessions().get("s-before");
    assert!(ended.is_some_and(|session| session.ended_at.is_some()), "the event acknowledged after recovery is kept");
}

/// A tmpfs of a few MiB mounted for one test, unmounted when dropped.
struct SmallFilesystem {
    path: PathBuf,
}

impl SmallFilesystem {
    /// `None` (with the reason) where mounting is not permitted: not root, or a container
    /// without the capability.
    fn mount(path: &Path, size: &str) -> Result<SmallFilesystem, String> {
        std::fs::create_dir_all(path).map_err(|err| err.to_string())?;
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "privnum-test", &path.to_string_lossy()])
            .output()
            .map_err(|err| format!("cannot run mount: {err}"))?;
        if !output.status.success() {
            return Err(format!("mount -t tmpfs failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
        }
        Ok(SmallFilesystem { path: path.to_owned() })
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the filesystem at `dir` with one file until it is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![1u8; 64 << 10];
    // Bounded: the filesystem is a few MiB.
    for _ in 0..10_000 {
        if file.write_all(&chunk).and_then(|()| file.sync_data()).is_err() {
            break;
        }
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filesystem_that_fills_up_faults_the_store_and_it_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("small");
    let filesystem = match SmallFilesystem::mount(&mount, "16m") {
        Ok(filesystem) => filesystem,
        Err(reason) => {
            eprintln!(
                "skipped: a real full filesystem needs a tmpfs mount ({reason}); the injected test covers the rest"
            );
            return;
        }
    };
    let data = filesystem.path.join("data");
    let server = TestServer::builder().configure(|config| config.data_dir = data.clone()).start().await;
    let before = bind(&server, "+8613800000001", "+8613900000001").await.expect(200, "0").field("subscriptionId");
    let filler = fill(&filesystem.path);

    // Changes until one is refused: sled or the call log runs out of room.
    let mut refused = None;
    for n in 0..400 {
        let answer = bind(&server, &format!("+86135{n:08}"), &format!("+86136{n:08}")).await;
        if answer.status != 200 {
            refused = Some(answer);
            break;
        }
        let call = json!({"caller": format!("+86135{n:08}"), "called": X, "sessionId": format!("s-{n}")});
        let answer = server.switch(Method::POST, "/calls", &call).await;
        if answer.body["action"] != "connect" {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("a full filesystem refuses a change");
    assert!(refused.status == 503 || refused.body["stateCode"] == 8011, "{refused:?}");
    assert!(health_becomes(&server, 503, Duration::from_secs(5)).await, "/healthz reports the fault");
    bind(&server, "+8613700000001", "+8613700000002").await.expect(503, "1010001");

    std::fs::remove_file(filler).unwrap();
    assert!(health_becomes(&server, 200, Duration::from_secs(15)).await, "recovered: {:?}", health(&server).await);
    let after = bind(&server, "+8613400000001", "+8613400000002").await.expect(200, "0").field("subscriptionId");
    assert!(found(&server, &before).await && found(&server, &after).await);

    let server = server.restart().await;
    assert!(found(&server, &before).await, "acknowledged before the fault, kept after a restart");
    assert!(found(&server, &after).await, "acknowledged after the recovery, kept after a restart");
    drop(server);
}
