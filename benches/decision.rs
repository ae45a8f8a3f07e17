//! The in-process callin decision: store lookup (number, app, binding) plus the AXB script, on
//! real sled with 10 000 bindings; and the store operations behind provisioning and calls (a
//! bind's transaction, a session save through the committer), without the disk flush their HTTP
//! answers also wait for; and the same decisions with a customer rule set (`on_decision` on an
//! AXB call, `on_x_callin` reading customer data for an X-mode call). Run:
//! `cargo bench --bench decision`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use privnum::calls::route::{decide_callin, CallIn, Customer};
use privnum::config::{AppConfig, NumberConfig};
use privnum::domain::axb::{AxbBindRequest, AxbChanges, AxbUnbind};
use privnum::domain::XSelection;
use privnum::domain::{Mode, NumberStatus};
use privnum::script::{Limits, ScriptHost};
use privnum::store::Store;
use privnum::telemetry::Metrics;

const BINDINGS: u64 = 10_000;
const NUMBERS: u64 = 10;

fn setup(runtime: &tokio::runtime::Runtime, dir: &std::path::Path) -> Store {
    let _guard = runtime.enter();
    let store = Store::open(dir).expect("store opens");
    let numbers = (0..NUMBERS)
        .map(|i| NumberConfig {
            number: format!("+86170{i:08}"),
            area_code: "0755".into(),
            sms: true,
            status: NumberStatus::Normal,
        })
        .collect();
    let mut app = AppConfig::new("bench-app", "s", Mode::Axb);
    app.recording = true;
    app.record_hint_tone = "notice.wav".into();
    app.close_hint_tone = "close.wav".into();
    app.numbers = numbers;
    let (app, numbers) = app.into_parts();
    store.apps().upsert(&app, &numbers).expect("app saved");
    // The app's tones are approved, as in production, so calls see them.
    for tone in ["notice.wav", "close.wav"] {
        let audio = privnum::tone::wav::write_alaw(&[0xD5; 800]);
        store.tones().upload("bench-app", tone, &audio, 0.1, false, 0).expect("tone uploaded");
        store.tones().review("bench-app", tone, &privnum::domain::tone::Review::Approve, None, 0).expect("approved");
    }
    for i in 0..BINDINGS {
        let request = AxbBindRequest {
            x: XSelection::Area { area_code: "0755".into(), lenient: false },
            caller_num: format!("+86138{i:08}"),
            callee_num: format!("+86139{i:08}"),
            settings: AxbChanges {
                max_duration_min: Some(30),
                user_data: Some(Some("order".into())),
                ..AxbChanges::default()
            },
        };
        store.bindings().axb_bind(&app, &request, 1_700_000_000, 5000).expect("bind");
    }
    store
}

/// The pusher `decide_callin` takes (the AXB benches never push), and what keeps it running.
fn pusher(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
) -> (Arc<privnum::push::Pusher>, tokio::sync::watch::Sender<bool>) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let config = Arc::new(privnum::config::Config::default());
    let _runtime = runtime.enter();
    let client = privnum::push::client(&config).expect("http client");
    (privnum::push::Pusher::new(store.calls().clone(), store.apps().clone(), config, client, stopped), stop)
}

/// A call from a bound caller to its X (found by a lookup on each X).
fn bound_call(store: &Store) -> CallIn {
    let caller = "+8613800004242".to_owned();
    let x = (0..NUMBERS)
        .map(|i| format!("+86170{i:08}"))
        .find(|x| store.bindings().axb_for_call(x, &caller, 1_700_000_000).ok().flatten().is_some())
        .expect("the caller is bound somewhere");
    CallIn { session_id: "bench".into(), caller, called: x, time: 1_700_000_000 }
}

fn decision(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = setup(&runtime, dir.path());
    let scripts =
        ScriptHost::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts"), Limits::default())
            .expect("scripts load");
    let scripts = Arc::new(scripts);
    let metrics = Metrics::default();
    let store = Arc::new(store);
    // AXB never asks the customer; the pusher is only what `decide_callin` takes.
    let (pusher, _stop) = pusher(&runtime, &store);
    let customer = Customer { pusher: &pusher, timeout: std::time::Duration::from_secs(3) };
    let decide = |call: &CallIn| {
        runtime.block_on(decide_callin(&store, &scripts, &metrics, customer, call, 1_700_000_000)).expect("decided")
    };
    let call = bound_call(&store);
    let x = call.called.clone();
    c.bench_function("callin decision: lookup + axb.rhai (connect)", |b| b.iter(|| decide(&call)));
    let stranger =
        CallIn { session_id: "bench".into(), caller: "+8613700000000".into(), called: x, time: 1_700_000_000 };
    c.bench_function("callin decision: lookup + axb.rhai (release 8014)", |b| b.iter(|| decide(&stranger)));
    let lookup = CallIn { ..call.clone() };
    c.bench_function("binding lookup alone (sled)", |b| {
        b.iter(|| store.bindings().axb_for_call(&lookup.called, &lookup.caller, lookup.time).expect("lookup"))
    });
}

/// Caps a connect at 10 minutes with a last-minute voice and tags it; releases nothing.
const CAP: &str = r#"
fn on_decision(event, decision) {
    if decision.action != "connect" { return (); }
    let most = decision.maxDuration;
    if most == () || most > 10 { decision.maxDuration = 10; }
    decision.userData = "capped";
    decision
}
"#;

/// Connects the caller's trip partner, as the customer's server stored it.
const TRIP: &str = include_str!("../examples/rulesets/trip-partner.rhai");

/// `data_get` on the store, as a call's run reads it.
struct BenchReads(privnum::store::Data);

impl privnum::script::ruleset::Reads for BenchReads {
    fn data(&self, key: &str) -> Result<Option<String>, String> {
        Ok(self.0.get("bench-x", key, 1_700_000_000).map_err(|e| e.to_string())?.map(|item| item.value))
    }

    fn answered(&self, _a: &str, _b: &str, _since: i64) -> Result<i64, String> {
        Ok(0)
    }
}

fn rulesets(c: &mut Criterion) {
    use privnum::domain::data::DataItem;
    use privnum::domain::ruleset::Handler;
    use privnum::script::ruleset::compile;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = setup(&runtime, dir.path());
    let mut x_app = AppConfig::new("bench-x", "s", Mode::X);
    x_app.numbers = vec![NumberConfig {
        number: "+8617500000001".into(),
        area_code: "0755".into(),
        sms: true,
        status: NumberStatus::Normal,
    }];
    let (x_app, x_numbers) = x_app.into_parts();
    store.apps().upsert(&x_app, &x_numbers).expect("X app saved");
    let trip = DataItem { key: "trip:+8613800000001".into(), value: "+8613900000002".into(), expires_at: None };
    store.data().put("bench-x", &[trip], 1000).expect("data stored");
    let scripts =
        ScriptHost::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts"), Limits::default())
            .expect("scripts load");
    let settings = privnum::domain::RulesetSettings::default();
    let engine = scripts.ruleset_engine();
    scripts.set_ruleset("bench-app", Some(compile(engine, "bench-app", "v1", CAP, settings).expect("CAP compiles")));
    scripts.set_ruleset("bench-x", Some(compile(engine, "bench-x", "v1", TRIP, settings).expect("TRIP compiles")));
    let scripts = Arc::new(scripts);
    let metrics = Metrics::default();
    let store = Arc::new(store);
    let (pusher, _stop) = pusher(&runtime, &store);
    let customer = Customer { pusher: &pusher, timeout: std::time::Duration::from_secs(3) };
    let decide = |call: &CallIn| {
        runtime.block_on(decide_callin(&store, &scripts, &metrics, customer, call, 1_700_000_000)).expect("decided")
    };
    let call = bound_call(&store);
    let routed = decide(&call);
    assert_eq!((routed.decision.max_duration, routed.ruleset_version.as_deref()), (10, Some("v1")), "the rule set ran");
    c.bench_function("callin decision with a rule set: lookup + axb.rhai + on_decision (connect)", |b| {
        b.iter(|| decide(&call))
    });
    let x_call = CallIn {
        session_id: "bench-x".into(),
        caller: "+8613800000001".into(),
        called: "+8617500000001".into(),
        time: 1_700_000_000,
    };
    let routed = decide(&x_call);
    assert_eq!(routed.decision.callee.as_deref(), Some("+8613900000002"), "on_x_callin decided: {routed:?}");
    // The rule set's own run, on this thread: what the pool hop above adds to is this.
    let engine = scripts.ruleset_engine();
    let reads = || -> privnum::script::ruleset::DataLookup { Box::new(BenchReads(store.data().clone())) };
    let trip_set = compile(engine, "bench-x", "v1", TRIP, settings).expect("TRIP compiles");
    let event = serde_json::json!({"appKey": "bench-x", "caller": "+8613800000001", "called": "+8617500000001", "now": 1_700_000_000});
    c.bench_function("rule set alone: on_x_callin reading data (this thread)", |b| {
        b.iter(|| {
            let stop_at = std::time::Instant::now() + std::time::Duration::from_millis(5);
            privnum::script::ruleset::call(engine, &trip_set, Handler::XCallin, (&event, None), reads(), stop_at)
                .expect("ran")
        })
    });
    let cap_set = compile(engine, "bench-app", "v1", CAP, settings).expect("CAP compiles");
    let decision = serde_json::json!({"action": "connect", "callee": "+8613900004242", "display": "+8617000000001", "maxDuration": 30, "userData": "order"});
    c.bench_function("rule set alone: on_decision on an AXB connect (this thread)", |b| {
        b.iter(|| {
            let stop_at = std::time::Instant::now() + std::time::Duration::from_millis(5);
            privnum::script::ruleset::call(
                engine,
                &cap_set,
                Handler::Decision,
                (&event, Some(&decision)),
                reads(),
                stop_at,
            )
            .expect("ran")
        })
    });
    c.bench_function("X-mode callin decided by on_x_callin reading data (no Block push) + x.rhai", |b| {
        b.iter(|| decide(&x_call))
    });
}

fn store_ops(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = setup(&runtime, dir.path());
    let app = store.apps().get("bench-app").expect("read").expect("the app exists");
    let mut n = 0u64;
    // Bind and unbind, so the pool never fills however many iterations criterion runs.
    c.bench_function("store: AXB bind + unbind (two transactions, no flush)", |b| {
        b.iter(|| {
            n += 1;
            let request = AxbBindRequest {
                x: XSelection::Area { area_code: "0755".into(), lenient: false },
                caller_num: format!("+86136{n:08}"),
                callee_num: format!("+86137{n:08}"),
                settings: AxbChanges::default(),
            };
            let binding = store.bindings().axb_bind(&app, &request, 1_700_000_000, 5000).expect("bind");
            let target = AxbUnbind::Subscription(binding.subscription_id);
            store.bindings().axb_unbind(&app, &target, 1_700_000_000).expect("unbind")
        })
    });
    let session = serde_json::json!({"sessionId": "bench", "caller": "+8613800000001", "events": []});
    c.bench_function("store: session save through the committer (no flush)", |b| {
        b.iter(|| store.calls().save_session("bench", &session, &[], None).expect("saved"))
    });
}

criterion_group!(benches, decision, rulesets, store_ops);
criterion_main!(benches);
