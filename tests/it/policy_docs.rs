//! Every ```rhai example in policy-docs/script-api.md runs, and ends in `true`.

use std::sync::Arc;

use privnum::config::AppConfig;
use privnum::domain::ax::AxBindRequest;
use privnum::domain::axb::AxbBindRequest;
use privnum::domain::axe::AxeBindRequest;
use privnum::domain::Fields;
use privnum::domain::{Binding, Mode};
use privnum::script::api::{Call, Release};
use privnum::script::{engine, Limits};
use rhai::{Dynamic, Scope};
use serde_json::json;

fn sample_call() -> Call {
    let mut app = AppConfig::new("demo-app", "", Mode::Axb);
    app.scenario = "ride-hailing".into();
    app.recording = true;
    app.close_hint_tone = "close.wav".into();
    let (app, _) = app.into_parts();
    // The binding as a bind request makes it: A to B through X, with both pre-answer tones.
    let request = json!({"relationNum": "+8617000000001", "callerNum": "+8613800000001", "calleeNum": "+8613900000002",
        "preVoice": {"callerHintTone": "to-b.wav", "calleeHintTone": "to-a.wav"}});
    let request = AxbBindRequest::parse(&Fields::new(request.as_object().unwrap())).unwrap();
    let binding = request.to_binding("sub-1".into(), "demo-app", "+8617000000001", 0);
    let mut call = Call::new("+8613800000001", "+8617000000001", "doc-session", 1_700_000_000, Arc::new(app));
    call.binding = Some(Binding::Axb(Arc::new(binding)));
    call
}

/// An AX call: a stranger calls A's X; A has a temporary callee.
fn sample_ax_call() -> Call {
    let mut app = AppConfig::new("demo-ax", "", Mode::Ax);
    app.close_hint_tone = "close.wav".into();
    let (app, _) = app.into_parts();
    let request = json!({"origNum": "+8613800000001", "privateNum": "+8617200000001",
        "preVoice": {"calleeHintTone": "to-a.wav"}});
    let request = AxBindRequest::parse(&Fields::new(request.as_object().unwrap())).unwrap();
    let binding = request.to_binding("sub-ax".into(), "demo-ax", "+8617200000001", 0);
    let mut call = Call::new("+8613700000009", "+8617200000001", "doc-ax", 1_700_000_000, Arc::new(app));
    call.binding = Some(Binding::Ax(Arc::new(binding)));
    call.temporary_callee = "+8613900000002".into();
    call
}

/// An AXE call: A calls its X; its last caller was +8613700000009.
fn sample_axe_call() -> Call {
    let mut app = AppConfig::new("demo-axe", "", Mode::Axe);
    app.extension_prompt = "ext.wav".into();
    let (app, _) = app.into_parts();
    let request = json!({"bindNum": "+8613800000001", "virtualNum": "+8617300000001", "callbackNum": "+8613900000002"});
    let request = AxeBindRequest::parse(&Fields::new(request.as_object().unwrap()), 4).unwrap();
    let binding = request.to_binding("sub-axe".into(), "demo-axe", "+8617300000001", "0001", 1, 0).unwrap();
    let mut call = Call::new("+8613800000001", "+8617300000001", "doc-axe", 1_700_000_000, Arc::new(app));
    call.binding = Some(Binding::Axe(Arc::new(binding)));
    call.callback = "+8613700000009".into();
    call.x_bindings = 1;
    call
}

#[test]
fn every_script_api_example_runs_and_holds() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policy-docs/script-api.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let engine = engine::build(&Limits::default());
    let mut examples = 0;
    for (index, block) in text.split("```rhai\n").skip(1).enumerate() {
        let code = block.split("```").next().unwrap();
        let mut scope = Scope::new();
        scope.push("callin", sample_call());
        scope.push("ax_callin", sample_ax_call());
        scope.push("axe_callin", sample_axe_call());
        let busy = Release { q850: Some(17), release_side: "callee".into(), ..Release::default() };
        scope.push("release", busy);
        let result = engine.eval_with_scope::<Dynamic>(&mut scope, code);
        match result {
            Ok(value) => assert_eq!(value.as_bool().ok(), Some(true), "example {} is not true:\n{code}", index + 1),
            Err(err) => panic!("example {} fails: {err}\n{code}", index + 1),
        }
        examples += 1;
    }
    assert!(examples >= 8, "expected the examples of {}, found {examples}", path.display());
}
