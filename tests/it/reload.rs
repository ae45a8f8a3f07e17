//! Hot reload on a copy of `scripts/`: good edits go live, bad ones are refused with their
//! location while the running version keeps answering, rollback works, and reloads under load
//! never fail a call or answer it from a half-loaded version.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{eventually, TestServer, AXB_APP};

const A: &str = "+8613800000001";
const B: &str = "+8613900000002";
const X: &str = "+8617000000001";

fn axb_script(scripts: &Path) -> std::path::PathBuf {
    scripts.join("modes/axb.rhai")
}

/// Rewrites axb.rhai so every connect also carries `wait_voice = tag` (which the cases do not
/// check), the way an editor saves: write a temporary file, then rename it over the original.
pub fn save_with_wait_voice(scripts: &Path, tag: &str) {
    let path = axb_script(scripts);
    let original = std::fs::read_to_string(&path).unwrap();
    let marker = "    decision.record = binding.record;";
    let base = original.lines().filter(|line| !line.contains("wait_voice")).collect::<Vec<_>>().join("\n");
    let edited = base.replace(marker, &format!("    decision.wait_voice = \"{tag}\";\n{marker}"));
    assert_ne!(edited, base, "the marker line is in axb.rhai");
    save(&path, &edited);
}

fn save(path: &Path, text: &str) {
    let temporary = path.with_extension("rhai.tmp~");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

async fn wait_voice(server: &TestServer) -> Value {
    server.switch_call(A, X).await.body["waitVoice"].clone()
}

async fn scripts_status(server: &TestServer) -> Value {
    server.admin(Method::GET, "/scripts", None).await.body["scripts"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_edit_is_live_within_two_seconds_and_can_be_rolled_back() {
    let server = TestServer::builder().scripts_copy().start().await;
    let scripts = server.scripts_dir().to_owned();
    server.approve_tones(AXB_APP.0, &["v2.wav"]).await;
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    assert_eq!(wait_voice(&server).await, Value::Null);

    save_with_wait_voice(&scripts, "v2.wav");
    let took =
        eventually(Duration::from_secs(2), || async { (wait_voice(&server).await == "v2.wav").then_some(()) }).await;
    assert!(took.is_some(), "the edit was not live within 2 s");
    let status = scripts_status(&server).await;
    assert!(status["active"].as_str().unwrap().starts_with("v2-"), "{status}");
    // Reading the files must not look like an edit: one save, one reload, then quiet. The wait is
    // an observation window (several debounce periods), not synchronisation.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(scripts_status(&server).await["attempts"], 1, "a reload triggered another");

    let rolled = server.admin(Method::POST, "/scripts/rollback", None).await;
    rolled.expect(200, "0");
    assert!(rolled.body["version"].as_str().unwrap().starts_with("v1-"), "{rolled:?}");
    assert_eq!(wait_voice(&server).await, Value::Null, "the rolled-back version answers again");
    server.admin(Method::POST, "/scripts/rollback", None).await.expect(409, "1010002");
}

/// Saves `text` as axb.rhai and waits for the refusal to be reported; returns the error.
async fn refused(server: &TestServer, scripts: &Path, text: &str) -> String {
    let before = scripts_status(server).await["rejected"].as_u64().unwrap();
    save(&axb_script(scripts), text);
    let reported = eventually(Duration::from_secs(3), || async {
        (scripts_status(server).await["rejected"].as_u64().unwrap() > before).then_some(())
    })
    .await;
    assert!(reported.is_some(), "the bad edit was not reported");
    scripts_status(server).await["last_error"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_edits_are_refused_with_their_location_and_the_old_version_keeps_answering() {
    let server = TestServer::builder().scripts_copy().start().await;
    let scripts = server.scripts_dir().to_owned();
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    let original = std::fs::read_to_string(axb_script(&scripts)).unwrap();
    let active = scripts_status(&server).await["active"].clone();

    let syntax =
        refused(&server, &scripts, &original.replace("connect(binding.callee_num)", "connect(binding.callee_num"))
            .await;
    assert!(syntax.contains("modes/axb.rhai:20:"), "syntax error with line and column: {syntax}");
    let runtime = refused(
        &server,
        &scripts,
        &original.replace("decision.record = binding.record;", "decision.record = no_such_variable;"),
    )
    .await;
    assert!(
        runtime.contains("modes/axb.rhai:23:") && runtime.contains("axb.cases/"),
        "runtime error in a case: {runtime}"
    );
    let missing = refused(&server, &scripts, &original.replace("fn on_callin(callin)", "fn on_call(callin)")).await;
    assert!(missing.contains("modes/axb.rhai") && missing.contains("on_callin"), "missing handler: {missing}");
    std::fs::remove_file(axb_script(&scripts)).unwrap();
    let gone = eventually(Duration::from_secs(3), || async {
        let error = scripts_status(&server).await["last_error"].as_str().map(str::to_owned);
        error.filter(|e| e.contains("missing: privnum needs this script"))
    })
    .await;
    assert!(gone.is_some(), "a deleted script is a failed reload, not 'no scripts'");

    assert_eq!(scripts_status(&server).await["active"], active, "the running version stayed");
    assert_eq!(server.switch_call(A, X).await.body["callee"], B, "and it still answers");
    let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("privnum_script_last_reload_failed 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_fail_no_call_and_mix_no_versions() {
    let server = TestServer::builder().scripts_copy().start().await;
    let scripts = server.scripts_dir().to_owned();
    let server = Arc::new(server);
    let tags: Vec<String> = (0..20).map(|round| format!("round-{round}.wav")).collect();
    server.approve_tones(AXB_APP.0, &tags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (server, stop) = (server.clone(), stop.clone());
        callers.spawn(async move {
            let mut answers = Vec::new();
            // Bounded: stops when told, or after 20 000 calls.
            while !stop.load(Ordering::Relaxed) && answers.len() < 20_000 {
                let answer = server.switch_call(A, X).await;
                assert_eq!(answer.status, 200, "a call failed during reloads: {answer:?}");
                answers.push(answer.body);
            }
            answers
        });
    }
    // Each version tags its connects with its own waitVoice; remember which version had which tag.
    let mut tags = HashMap::new();
    for round in 0..20 {
        let tag = format!("round-{round}.wav");
        save_with_wait_voice(&scripts, &tag);
        let reload = server.admin(Method::POST, "/scripts/reload", None).await;
        // The watcher may have loaded this save first; then the answer names the same version.
        assert!(matches!(reload.body["outcome"].as_str(), Some("reloaded" | "unchanged")), "{reload:?}");
        tags.insert(reload.body["version"].as_str().unwrap().to_owned(), tag);
    }
    stop.store(true, Ordering::Relaxed);
    let mut checked = 0;
    while let Some(answers) = callers.join_next().await {
        for answer in answers.unwrap() {
            // The session remembers the version that decided; its tag must be the one the answer has.
            let session = server.state().ledger.sessions.get(answer["sessionId"].as_str().unwrap()).unwrap();
            let version = session.script_version.unwrap();
            let expected = tags.get(&version).map_or(Value::Null, |tag| Value::from(tag.as_str()));
            assert_eq!(answer["waitVoice"], expected, "version {version} answered {answer}");
            checked += 1;
        }
    }
    assert!(checked > 0, "no calls were made during the reloads");
    assert_eq!(scripts_status(&server).await["reloads"], 20);
}
