//! The in-process callin decision: store lookup (number, app, binding) plus the AXB script, on
//! real sled with 10 000 bindings; and the store operations behind provisioning and calls (a
//! bind's transaction, a session save through the committer), without the disk flush their HTTP
//! answers also wait for. Run: `cargo bench --bench decision`.

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
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let config = Arc::new(privnum::config::Config::default());
    let pusher = {
        let _runtime = runtime.enter();
        let client = privnum::push::client(&config).expect("http client");
        privnum::push::Pusher::new(store.calls().clone(), store.apps().clone(), config, client, stopped)
    };
    let customer = Customer { pusher: &pusher, timeout: std::time::Duration::from_secs(3) };
    // A bound caller: find its X through a decision first.
    let caller = "+8613800004242".to_owned();
    let x = (0..NUMBERS)
        .map(|i| format!("+86170{i:08}"))
        .find(|x| store.bindings().axb_for_call(x, &caller, 1_700_000_000).ok().flatten().is_some())
        .expect("the caller is bound somewhere");
    let call = CallIn { session_id: "bench".into(), caller, called: x.clone(), time: 1_700_000_000 };
    c.bench_function("callin decision: lookup + axb.rhai (connect)", |b| {
        b.iter(|| {
            runtime
                .block_on(decide_callin(&store, &scripts, &metrics, customer, &call, 1_700_000_000))
                .expect("decided")
        })
    });
    let stranger =
        CallIn { session_id: "bench".into(), caller: "+8613700000000".into(), called: x, time: 1_700_000_000 };
    c.bench_function("callin decision: lookup + axb.rhai (release 8014)", |b| {
        b.iter(|| {
            runtime
                .block_on(decide_callin(&store, &scripts, &metrics, customer, &stranger, 1_700_000_000))
                .expect("decided")
        })
    });
    let lookup = CallIn { ..call.clone() };
    c.bench_function("binding lookup alone (sled)", |b| {
        b.iter(|| store.bindings().axb_for_call(&lookup.called, &lookup.caller, lookup.time).expect("lookup"))
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

criterion_group!(benches, decision, store_ops);
criterion_main!(benches);
