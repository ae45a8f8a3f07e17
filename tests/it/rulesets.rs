//! Customer rule sets through a real server: each refusal at submission (syntax with
//! line:column, no handler, a failing case, the invariant probe, the budget), review by ops and
//! `auto`, activation, rollback and turn-off with their audit log, `on_x_callin` deciding from
//! data without a Block push, `()` falling through to it, `on_x_fallback` when it got no
//! answer, `on_decision` tightening and unable to reroute, a looping rule set contained while
//! another app's calls are answered, isolation between apps, and a restart.

use std::time::{Duration, Instant};

use privnum::domain::ruleset::Review;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{TestServer, AXB_APP, QUIET_APP, X_APP};

const PATH: &str = "/rest/privnum/ruleset/v1.0";
const ACTIVE: &str = "/rest/privnum/ruleset/v1.0/active";
const DATA: &str = "/rest/privnum/data/v1.0";
const X: &str = "+8617500000001";
const AXB_X: &str = "+8617000000001";
const A: &str = "+8613800000001";
const B: &str = "+8613900000002";

/// A server whose apps' checked rule sets are active at once.
async fn auto_server() -> TestServer {
    TestServer::builder()
        .configure(|config| {
            for app in &mut config.apps {
                app.ruleset_review = Review::Auto;
            }
        })
        .start()
        .await
}

async fn submit(server: &TestServer, app: (&str, &str), body: Value) -> crate::support::Answer {
    server.call(app, Method::POST, PATH, Some(&body)).await
}

async fn put_data(server: &TestServer, app: (&str, &str), key: &str, value: &str) {
    let items = json!({"items": [{"key": key, "value": value}]});
    server.call(app, Method::PUT, DATA, Some(&items)).await.expect(200, "0");
}

/// Connects the trip's callee when the customer's server stored one for the caller.
const TRIP: &str = include_str!("../../examples/rulesets/trip-partner.rhai");

#[tokio::test]
async fn each_refusal_names_why_and_keeps_nothing_but_its_audit_entry() {
    let server = TestServer::start().await;
    let refusals = [
        (json!({"source": "fn on_decision(event, decision) {\n    let x = ;\n}"}), "2:13"),
        (json!({"source": "fn helper(x) { x }"}), "defines no handler"),
        (json!({"source": "fn on_x_callin(event) { () }"}), "AXB app calls only on_decision"),
        (
            json!({"source": "fn on_decision(event, decision) { () }",
                "cases": [{"description": "strangers are released", "handler": "on_decision",
                    "decision": {"action": "connect", "callee": B}, "expect": {"action": "release"}}]}),
            "case \"strangers are released\"",
        ),
        (
            json!({"source": r#"fn on_decision(event, decision) { if data_get("vip") != () { decision.callee = "+8613700000000"; } decision }"#}),
            "probe",
        ),
        (json!({"source": "fn on_decision(event, decision) { loop { } }"}), "operations"),
        (
            json!({"source": "fn on_decision(e, d) { () }", "cases": [{"handler": "on_call", "expect": null}]}),
            "cases[0].handler",
        ),
    ];
    for (body, named) in &refusals {
        let refused = submit(&server, AXB_APP, body.clone()).await;
        refused.expect(403, "1010002");
        assert!(refused.desc().contains(named), "{named}: {refused:?}");
    }
    let listed = server.call(AXB_APP, Method::GET, PATH, None).await;
    listed.expect(200, "0");
    assert_eq!((listed.body["active"].as_str(), listed.body["versions"].as_array().map(Vec::len)), (Some(""), Some(0)));
    // The six that reached the check are in the audit log (the malformed body never did).
    let audit = server.admin(Method::GET, "/rulesets/audit?app=axb-app", None).await;
    let entries = audit.body["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 6, "{audit:?}");
    assert!(entries.iter().all(|e| e["action"] == "refused" && e["actor"] == "app:axb-app"), "{entries:?}");
    assert!(entries.iter().any(|e| e["detail"].as_str().is_some_and(|d| d.contains("2:13"))));
}

#[tokio::test]
async fn ops_review_activates_rejects_with_a_reason_and_the_customer_rolls_back() {
    let server = TestServer::start().await;
    let cap = |minutes: u32| {
        let source = format!(
            "fn on_decision(event, decision) {{
                let most = decision.maxDuration;
                if decision.action == \"connect\" && (most == () || most > {minutes}) {{ decision.maxDuration = {minutes}; }}
                decision
            }}"
        );
        json!({"source": source,
            "note": format!("{minutes}-minute cap")})
    };
    let first = submit(&server, AXB_APP, cap(10)).await;
    first.expect(200, "0");
    assert_eq!((first.field("version"), first.field("state")), ("v1".into(), "pending".into()));
    assert!(first.body["probeCalls"].as_u64().unwrap_or(0) > 0, "{first:?}");
    // A pending version cannot be made active by the customer.
    let early = server.call(AXB_APP, Method::PUT, ACTIVE, Some(&json!({"version": "v1"}))).await;
    early.expect(403, "1010002");
    assert!(early.desc().contains("waits for ops' review"), "{early:?}");

    let pending = server.admin(Method::GET, "/rulesets/pending", None).await;
    let waiting = pending.body["rulesets"].as_array().cloned().unwrap_or_default();
    assert_eq!(waiting.len(), 1);
    assert_eq!((waiting[0]["appKey"].as_str(), waiting[0]["note"].as_str()), (Some("axb-app"), Some("10-minute cap")));
    assert!(waiting[0]["source"].as_str().is_some_and(|s| s.contains("maxDuration = 10")), "ops read the source");

    // A rejection needs a reason, which the customer reads.
    let review = |version: &str| format!("/apps/axb-app/rulesets/{version}/review");
    server.admin(Method::POST, &review("v1"), Some(&json!({"approve": false}))).await.expect(403, "1010002");
    let rejected = server
        .admin(Method::POST, &review("v1"), Some(&json!({"approve": false, "reason": "10 minutes is too short"})))
        .await;
    rejected.expect(200, "0");
    let listed = server.call(AXB_APP, Method::GET, PATH, None).await;
    assert_eq!(listed.body["versions"][0]["state"], "rejected");
    assert_eq!(listed.body["versions"][0]["reviewReason"], "10 minutes is too short");
    assert!(listed.body["versions"][0].get("source").is_none(), "the customer's listing has no sources");
    server.admin(Method::POST, &review("v1"), Some(&json!({"approve": true}))).await.expect(409, "1010002");

    // Approval activates.
    submit(&server, AXB_APP, cap(30)).await.expect(200, "0");
    let approved = server.admin(Method::POST, &review("v2"), Some(&json!({"approve": true}))).await;
    approved.expect(200, "0");
    assert_eq!(approved.body["active"], "v2");
    submit(&server, AXB_APP, cap(20)).await.expect(200, "0");
    server.admin(Method::POST, &review("v3"), Some(&json!({"approve": true}))).await.expect(200, "0");
    server.bind_axb(json!({"relationNum": AXB_X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    let call = server.switch_call(A, AXB_X).await;
    assert_eq!(
        (call.body["action"].as_str(), call.body["maxDuration"].as_i64()),
        (Some("connect"), Some(20)),
        "{call:?}"
    );

    // The customer rolls back to v2, then turns the rule set off.
    let back = server.call(AXB_APP, Method::PUT, ACTIVE, Some(&json!({"version": "v2"}))).await;
    back.expect(200, "0");
    assert_eq!((back.field("active"), back.field("previous")), ("v2".into(), "v3".into()));
    let call = server.switch_call(A, AXB_X).await;
    assert_eq!(call.body["maxDuration"], 30, "{call:?}");
    server.call(AXB_APP, Method::PUT, ACTIVE, Some(&json!({"version": ""}))).await.expect(200, "0");
    let call = server.switch_call(A, AXB_X).await;
    assert_eq!(call.body["maxDuration"], 0, "off: the binding's decision, untouched (no limit): {call:?}");
    server.call(AXB_APP, Method::PUT, ACTIVE, Some(&json!({"version": "v9"}))).await.expect(403, "1012007");

    let audit = server.admin(Method::GET, "/rulesets/audit?app=axb-app", None).await;
    let actions: Vec<&str> =
        audit.body["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "turned_off",
            "rolled_back",
            "activated",
            "approved",
            "submitted",
            "activated",
            "approved",
            "submitted",
            "rejected",
            "submitted"
        ],
        "{audit:?}"
    );
}

#[tokio::test]
async fn on_x_callin_decides_from_data_without_asking_the_customer_and_falls_back_when_told() {
    // The X app has no callin URL: a Block push fails at once (unreachable).
    let server = auto_server().await;
    let cases = json!([
        {"description": "a trip connects its driver", "handler": "on_x_callin",
         "event": {"caller": A, "called": X}, "data": {format!("trip:{A}"): B},
         "expect": {"operation": "connect", "connectInfo": {"calleeNum": B, "maxDuration": 10}}},
        {"description": "no trip: ask the customer", "handler": "on_x_callin", "event": {"caller": A, "called": X}, "expect": null},
    ]);
    let kept = submit(&server, X_APP, json!({"source": TRIP, "cases": cases})).await;
    kept.expect(200, "0");
    assert_eq!((kept.field("state"), kept.body["casesPassed"].as_u64()), ("active".into(), Some(2)));

    put_data(&server, X_APP, &format!("trip:{A}"), B).await;
    let started = Instant::now();
    let call = server.switch_call(A, X).await;
    assert_eq!((call.body["action"].as_str(), call.body["callee"].as_str()), (Some("connect"), Some(B)), "{call:?}");
    assert_eq!(call.body["maxDuration"], 10);
    assert!(started.elapsed() < Duration::from_secs(2), "decided without waiting for a customer");
    let live = server.admin(Method::GET, "/calls?app=x-app", None).await;
    assert_eq!(live.body["calls"][0]["rulesetVersion"], "v1", "{live:?}");

    // No trip: `()` leaves the call to the Block push, which fails: 8020.
    let stranger = server.switch_call("+8613700000003", X).await;
    assert_eq!(
        (stranger.body["action"].as_str(), stranger.body["stateCode"].as_i64()),
        (Some("release"), Some(8020)),
        "{stranger:?}"
    );

    // on_x_fallback closes such calls instead: the customer's close, as x.rhai makes it (8014).
    let fallback = format!("{TRIP}\nfn on_x_fallback(event) {{ if event.failure.kind == \"unreachable\" {{ #{{operation: \"close\"}} }} else {{ () }} }}");
    submit(&server, X_APP, json!({"source": fallback, "cases": cases})).await.expect(200, "0");
    let closed = server.switch_call("+8613700000003", X).await;
    assert_eq!(
        (closed.body["action"].as_str(), closed.body["stateCode"].as_i64()),
        (Some("release"), Some(8014)),
        "{closed:?}"
    );
    let session = closed.field("sessionId");
    let cdr = server.switch(Method::GET, &format!("/calls/{session}/cdr"), &json!({})).await;
    assert_eq!(cdr.body["rulesetVersion"], "v2", "{cdr:?}");

    let body = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(body.contains(r#"privnum_ruleset_runs_total{app="x-app",version="v1",outcome="decided"} 1"#), "{body}");
    assert!(body.contains(r#"privnum_ruleset_runs_total{app="x-app",version="v2",outcome="decided"} 1"#), "{body}");
}

#[tokio::test]
async fn on_decision_tightens_but_a_reroute_at_run_time_leaves_the_call_as_it_was() {
    let server = auto_server().await;
    // Reroutes only for a data value the probe cannot guess: the check passes, the run refuses.
    let source = r#"
        fn on_decision(event, decision) {
            if decision.action != "connect" { return (); }
            if data_get("reroute") == "please" { decision.callee = "+8613700000000"; return decision; }
            let most = decision.maxDuration;
            if most == () || most > 5 { decision.maxDuration = 5; }
            decision.userData = "capped";
            decision
        }"#;
    submit(&server, AXB_APP, json!({"source": source})).await.expect(200, "0");
    server
        .bind_axb(json!({"relationNum": AXB_X, "callerNum": A, "calleeNum": B, "maxDuration": 60}))
        .await
        .expect(200, "0");
    let call = server.switch_call(A, AXB_X).await;
    assert_eq!((call.body["callee"].as_str(), call.body["maxDuration"].as_i64()), (Some(B), Some(5)), "{call:?}");
    assert_eq!(call.body["userData"], "capped");

    put_data(&server, AXB_APP, "reroute", "please").await;
    let call = server.switch_call(A, AXB_X).await;
    assert_eq!(
        (call.body["callee"].as_str(), call.body["maxDuration"].as_i64()),
        (Some(B), Some(60)),
        "as without the rule set: {call:?}"
    );
    let body = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(body.contains(r#"privnum_ruleset_runs_total{app="axb-app",version="v1",outcome="invariant"} 1"#), "{body}");

    // A stranger's release stays a release; the rule set returned () for it.
    let stranger = server.switch_call("+8613700000009", AXB_X).await;
    assert_eq!(stranger.body["stateCode"], 8014, "{stranger:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_rule_set_is_stopped_and_another_apps_calls_are_answered_meanwhile() {
    let server = TestServer::builder()
        .configure(|config| {
            for app in &mut config.apps {
                app.ruleset_review = Review::Auto;
                app.ruleset_deadline_ms = 5;
            }
        })
        .start()
        .await;
    let spin =
        r#"fn on_decision(event, decision) { if data_get("spin") == "yes" { let n = 0; while true { n += 1; } } () }"#;
    submit(&server, AXB_APP, json!({"source": spin})).await.expect(200, "0");
    put_data(&server, AXB_APP, "spin", "yes").await;
    server.bind_axb(json!({"relationNum": AXB_X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    let quiet_x = "+8617100000001";
    let bound = server
        .call(
            QUIET_APP,
            Method::POST,
            crate::support::AXB_PATH,
            Some(&json!({"relationNum": quiet_x, "callerNum": A, "calleeNum": B})),
        )
        .await;
    bound.expect(200, "0");

    let spinning: Vec<_> = (0..40)
        .map(|_| {
            let (client, base) = (server.client.clone(), server.base.clone());
            tokio::spawn(async move {
                let body = json!({"caller": A, "called": AXB_X});
                client
                    .post(format!("{base}/v1/switch/calls"))
                    .bearer_auth(crate::support::SWITCH_TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        let quiet = server.switch_call(A, quiet_x).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(quiet.body["action"], "connect", "{quiet:?}");
    }
    for call in spinning {
        let answer = call.await.unwrap();
        assert_eq!(
            (answer["action"].as_str(), answer["callee"].as_str()),
            (Some("connect"), Some(B)),
            "stopped, then as without: {answer}"
        );
    }
    // Generous for a loaded debug build: what matters is not waiting behind 40 runs of 5 ms.
    assert!(slowest < Duration::from_millis(150), "the quiet app's slowest call took {slowest:?}");
    let body = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(
        body.contains(r#"app="axb-app",version="v1",outcome="limit""#)
            || body.contains(r#"app="axb-app",version="v1",outcome="deadline""#),
        "{body}"
    );
}

#[tokio::test]
async fn apps_see_only_their_own_versions_and_the_active_one_survives_a_restart() {
    let server = auto_server().await;
    let source = r#"fn on_decision(event, decision) { let most = decision.maxDuration; if decision.action == "connect" && (most == () || most > 7) { decision.maxDuration = 7; } decision }"#;
    submit(&server, AXB_APP, json!({"source": source})).await.expect(200, "0");
    let other = server.call(QUIET_APP, Method::GET, PATH, None).await;
    assert_eq!(other.body["versions"].as_array().map(Vec::len), Some(0), "{other:?}");
    server.call(QUIET_APP, Method::PUT, ACTIVE, Some(&json!({"version": "v1"}))).await.expect(403, "1012007");

    let server = server.restart().await;
    server.bind_axb(json!({"relationNum": AXB_X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    let call = server.switch_call(A, AXB_X).await;
    assert_eq!(call.body["maxDuration"], 7, "{call:?}");
    let listed = server.call(AXB_APP, Method::GET, PATH, None).await;
    assert_eq!(listed.body["active"], "v1");
    assert_eq!(listed.body["versions"][0]["sha256"].as_str().map(str::len), Some(64));
}

/// An example rule set of `examples/rulesets/`, as `privnum ruleset submit` sends it: its source
/// and its cases.
fn example(name: &str) -> Value {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rulesets").join(name);
    let source = std::fs::read_to_string(dir.join("ruleset.rhai")).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(dir.join("ruleset.cases")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let cases: Vec<Value> =
        files.iter().map(|file| serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()).collect();
    json!({"source": source, "cases": cases, "note": name})
}

/// A call of the AXB app the switch connects, answers and hangs up: its decision, once the call
/// is counted (the count is queued behind the call's end, not waited for by the switch).
async fn answered_call(server: &TestServer, caller: &str, x: &str) -> Value {
    let decided = server.switch_call(caller, x).await;
    if decided.body["action"] == "connect" {
        let (session, callee) = (decided.field("sessionId"), decided.field("callee"));
        let calls = server.state().store.calls().clone();
        let count = || calls.answered_between(AXB_APP.0, (caller, &callee), 0).unwrap();
        let before = count();
        for event in [json!({"event": "answer"}), json!({"event": "disconnect", "releaseSide": "caller"})] {
            server
                .switch(Method::POST, &format!("/calls/{session}/events"), &event)
                .await
                .expect(200, "<no resultcode>");
        }
        let counted = crate::support::eventually(Duration::from_secs(5), || async { (count() > before).then_some(()) });
        assert!(counted.await.is_some(), "the answered call is counted");
    }
    decided.body
}

#[tokio::test]
async fn the_ride_hailing_example_calls_only_during_the_trip_and_its_grace_for_ten_minutes() {
    let server = auto_server().await;
    server.approve_tones(AXB_APP.0, &["last-minute.wav"]).await;
    let kept = submit(&server, AXB_APP, example("ride-hailing")).await;
    kept.expect(200, "0");
    assert_eq!(kept.body["casesPassed"], 6, "{kept:?}");
    let bind = json!({"relationNum": AXB_X, "callerNum": A, "calleeNum": B, "userData": "trip-7"});
    server.bind_axb(bind).await.expect(200, "0");

    let before = server.switch_call(A, AXB_X).await;
    assert_eq!(
        (before.body["action"].as_str(), before.body["stateCode"].as_i64()),
        (Some("release"), Some(8018)),
        "no trip yet: {before:?}"
    );
    put_data(&server, AXB_APP, "trip:trip-7", "active").await;
    let during = server.switch_call(B, AXB_X).await;
    assert_eq!(
        (during.body["callee"].as_str(), during.body["maxDuration"].as_i64()),
        (Some(A), Some(10)),
        "{during:?}"
    );
    assert_eq!(during.body["lastMinVoice"], "last-minute.wav");
    put_data(&server, AXB_APP, "trip:trip-7", &format!("ended:{}", server.clock_now())).await;
    server.clock.advance(29 * 60);
    assert_eq!(server.switch_call(A, AXB_X).await.body["action"], "connect", "within the grace");
    server.clock.advance(2 * 60);
    assert_eq!(server.switch_call(A, AXB_X).await.body["stateCode"], 8018, "past the grace");
}

#[tokio::test]
async fn the_real_estate_example_allows_two_answered_calls_a_day_in_office_hours() {
    let server = auto_server().await;
    server.approve_tones(AXB_APP.0, &["office-hours.wav"]).await;
    // 2026-06-01 10:00 China time.
    server.clock.set(1_780_279_200);
    submit(&server, AXB_APP, example("real-estate")).await.expect(200, "0");
    server.bind_axb(json!({"relationNum": AXB_X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");

    assert_eq!(answered_call(&server, A, AXB_X).await["action"], "connect");
    // Unanswered calls do not count.
    let unanswered = server.switch_call(B, AXB_X).await;
    let session = unanswered.field("sessionId");
    let hangup = json!({"event": "disconnect", "releaseSide": "caller"});
    server.switch(Method::POST, &format!("/calls/{session}/events"), &hangup).await;
    let counted = server.state().store.calls().answered_between(AXB_APP.0, (A, B), 0).unwrap();
    assert_eq!(counted, 1, "only the answered call is counted");
    assert_eq!(answered_call(&server, B, AXB_X).await["action"], "connect", "the second, the other way round");
    let third = server.switch_call(A, AXB_X).await;
    assert_eq!(
        (third.body["action"].as_str(), third.body["stateCode"].as_i64()),
        (Some("release"), Some(8047)),
        "{third:?}"
    );
    // Another client of the same agent is counted apart.
    let (other, other_x) = ("+8613700000005", "+8617000000002");
    server.bind_axb(json!({"relationNum": other_x, "callerNum": other, "calleeNum": B})).await.expect(200, "0");
    assert_eq!(server.switch_call(other, other_x).await.body["action"], "connect");

    // 21:30: closed after the tone; the next day at 09:00 the count starts again.
    server.clock.set(1_780_320_600);
    let late = server.switch_call(A, AXB_X).await;
    assert_eq!(
        (late.body["stateCode"].as_i64(), late.body["tone"].as_str()),
        (Some(8050), Some("office-hours.wav")),
        "{late:?}"
    );
    server.clock.set(1_780_362_000);
    assert_eq!(server.switch_call(A, AXB_X).await.body["action"], "connect", "a new day");
}

#[tokio::test]
async fn on_decision_may_not_change_the_display_and_rule_sets_read_only_their_apps_data() {
    let server = auto_server().await;
    let display = r#"fn on_decision(event, decision) {
        if decision.action == "connect" && data_get("show") == "me" { decision.display = event.caller; }
        decision.userData = data_get("tag");
        decision
    }"#;
    submit(&server, AXB_APP, json!({"source": display})).await.expect(200, "0");
    server.bind_axb(json!({"relationNum": AXB_X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    // The quiet app stores the data the AXB app's rule set reads: it does not see it.
    put_data(&server, QUIET_APP, "tag", "quiet's").await;
    put_data(&server, QUIET_APP, "show", "me").await;
    let call = server.switch_call(A, AXB_X).await;
    assert_eq!((call.body["display"].as_str(), call.body.get("userData")), (Some(AXB_X), None), "{call:?}");
    put_data(&server, AXB_APP, "tag", "mine").await;
    assert_eq!(server.switch_call(A, AXB_X).await.body["userData"], "mine");
    put_data(&server, AXB_APP, "show", "me").await;
    let call = server.switch_call(A, AXB_X).await;
    assert_eq!((call.body["display"].as_str(), call.body.get("userData")), (Some(AXB_X), None), "as without: {call:?}");
    let body = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(body.contains(r#"privnum_ruleset_runs_total{app="axb-app",version="v1",outcome="invariant"} 1"#), "{body}");
}

#[tokio::test]
async fn eval_is_refused_and_a_deleted_app_leaves_no_rule_set_on() {
    let server = TestServer::start().await;
    let refused =
        submit(&server, AXB_APP, json!({"source": r#"fn on_decision(e, d) { eval(data_get("code")) }"#})).await;
    refused.expect(403, "1010002");
    assert!(refused.desc().contains("does not compile"), "{refused:?}");

    let temp = ("temp-app", "temp-secret");
    let app = json!({"mode": "AXB", "app_secret": temp.1, "ruleset_review": "auto"});
    server.admin(Method::PUT, "/apps/temp-app", Some(&app)).await.expect(200, "0");
    submit(&server, temp, json!({"source": "fn on_decision(e, d) { () }"})).await.expect(200, "0");
    assert_eq!(server.call(temp, Method::GET, PATH, None).await.body["active"], "v1");
    server.admin(Method::DELETE, "/apps/temp-app", None).await.expect(200, "0");
    server.admin(Method::PUT, "/apps/temp-app", Some(&app)).await.expect(200, "0");
    let listed = server.call(temp, Method::GET, PATH, None).await;
    assert_eq!((listed.body["active"].as_str(), listed.body["versions"].as_array().map(Vec::len)), (Some(""), Some(1)));
    let audit = server.admin(Method::GET, "/rulesets/audit?app=temp-app&limit=1", None).await;
    assert_eq!(
        (audit.body["entries"][0]["action"].as_str(), audit.body["entries"][0]["detail"].as_str()),
        (Some("turned_off"), Some("ops: the app was deleted"))
    );
}
