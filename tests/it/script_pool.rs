//! The script pool: a script that loops for one caller holds a script thread, not the server.
//! Other callers of the same app and other apps' callers are answered about as fast as without
//! it (compared as a ratio to the same calls measured just before, never as an absolute time);
//! the hostile caller gets the fallback, and its deadline hits are counted per script and
//! location in `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{eventually, TestServer, AXB_PATH, QUIET_APP};

const X: &str = "+8617000000001";
/// The quiet app's X: another app, running the same `axb.rhai`.
const QUIET_X: &str = "+8617100000001";
const HOSTILE: &str = "+8613666666601";
/// Endless, and slow per operation (each pads an array to 1,000 items), so the deadline stops
/// it rather than the operations limit.
const SLOW_LOOP: &str = "let n = 0; loop { let a = []; a.pad(1000, n); n += 1; }";
const BOUND: &str = "+8613800000001";
const QUIET_BOUND: &str = "+8613800000002";

/// Median latency of `rounds` callins from `caller` to `x`. Each must be a connect, but for a few
/// that a machine loaded by other work answered late (the fallback): at most a fifth.
async fn median_callin(server: &TestServer, caller: &str, x: &str, rounds: usize) -> Duration {
    let mut took = Vec::with_capacity(rounds);
    let mut late = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        let answer = server.switch_call(caller, x).await;
        took.push(start.elapsed());
        if answer.body["action"] != "connect" {
            late.push(format!("after {:?}: {answer:?}", start.elapsed()));
        }
    }
    assert!(late.len() <= rounds / 5, "{caller} → {x}: {} of {rounds} not connected: {late:?}", late.len());
    took.sort();
    took[rounds / 2]
}

async fn metrics(server: &TestServer) -> String {
    server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_script_for_one_caller_does_not_delay_other_callers_or_apps() {
    let server = Arc::new(TestServer::builder().scripts_copy().start().await);
    let path = server.scripts_dir().join("modes/axb.rhai");
    let original = std::fs::read_to_string(&path).unwrap();
    let anchor = "    let binding = callin.binding;";
    let hostile =
        original.replacen(anchor, &format!("    if callin.caller == \"{HOSTILE}\" {{ {SLOW_LOOP} }}\n{anchor}"), 1);
    assert_ne!(hostile, original, "the anchor line is in axb.rhai");
    let loop_line = hostile.lines().position(|line| line.contains(HOSTILE)).unwrap() + 1;
    std::fs::write(&path, hostile).unwrap();
    let reload = server.admin(reqwest::Method::POST, "/scripts/reload", None).await;
    assert_eq!(reload.body["outcome"], "reloaded", "{reload:?}");
    server
        .bind_axb(json!({"relationNum": X, "callerNum": BOUND, "calleeNum": "+8613900000001"}))
        .await
        .expect(200, "0");
    let quiet = json!({"relationNum": QUIET_X, "callerNum": QUIET_BOUND, "calleeNum": "+8613900000002"});
    server.call(QUIET_APP, reqwest::Method::POST, AXB_PATH, Some(&quiet)).await.expect(200, "0");

    // Warm, then the baseline: the same calls with no hostile caller.
    median_callin(&server, BOUND, X, 5).await;
    let alone_same_app = median_callin(&server, BOUND, X, 25).await;
    let alone_other_app = median_callin(&server, QUIET_BOUND, QUIET_X, 25).await;

    // Four clients call from the hostile number back to back (each bounded in count).
    let stop = Arc::new(AtomicBool::new(false));
    let hammers: Vec<_> = (0..4)
        .map(|_| {
            let (server, stop) = (server.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for _ in 0..400 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let start = Instant::now();
                    let answer = server.switch_call(HOSTILE, X).await;
                    answers.push((start.elapsed(), answer.status.as_u16(), answer.body["stateCode"].clone()));
                }
                answers
            })
        })
        .collect();
    // Once the hostile input is known (its first runs were stopped), it runs apart.
    let apart = eventually(Duration::from_secs(10), || async {
        metrics(&server).await.contains("privnum_script_suspect_inputs 1").then_some(())
    })
    .await;
    let during_same_app = median_callin(&server, BOUND, X, 25).await;
    let during_other_app = median_callin(&server, QUIET_BOUND, QUIET_X, 25).await;
    stop.store(true, Ordering::Relaxed);
    let mut hostile_answers = Vec::new();
    for hammer in hammers {
        hostile_answers.extend(hammer.await.unwrap());
    }
    assert!(apart.is_some(), "the hostile input was never kept apart: {}", metrics(&server).await);

    // Run on the async workers, four looping callers held both workers 20 ms at a time and every
    // other call waited behind them (a ratio of 10 or more); on the pool they barely notice.
    let ratio = |during: Duration, alone: Duration| during.as_secs_f64() / alone.as_secs_f64().max(1e-6);
    let (same, other) = (ratio(during_same_app, alone_same_app), ratio(during_other_app, alone_other_app));
    assert!(
        same < 5.0 && other < 5.0,
        "median callin beside the hostile caller: same app {during_same_app:?} vs {alone_same_app:?} alone ({same:.2} ×), \
         other app {during_other_app:?} vs {alone_other_app:?} ({other:.2} ×)"
    );

    // The hostile caller always got the fallback, and never much later than the deadline.
    assert!(!hostile_answers.is_empty());
    for (took, status, code) in &hostile_answers {
        assert_eq!((*status, code), (200, &json!(8020)), "the fallback is a service-exception release");
        assert!(*took < Duration::from_secs(1), "a hostile call answered after {took:?}");
    }
    let text = metrics(&server).await;
    // Rhai gives the statement's line:column when it has one; for a stop by the deadline it gives
    // none here, and the location is the handler.
    let prefix = "privnum_script_strikes_total{script=\"modes/axb.rhai\",location=";
    let deadline_hits: u64 = text
        .lines()
        .filter(|line| {
            line.starts_with(prefix)
                && line.contains("kind=\"deadline\"")
                && (line.contains(&format!("location=\"{loop_line}:")) || line.contains("location=\"on_callin\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(deadline_hits >= 1, "no deadline strike for modes/axb.rhai (line {loop_line} or on_callin):\n{text}");
    assert!(text.contains("privnum_script_deadline_overrun_max_seconds"), "{text}");
}
