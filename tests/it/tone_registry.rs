//! The tone registry: ops upload any WAV, it is converted and waits for review; only approved
//! tones are served to the switch and may be named by bindings, apps and scripts; a replacement
//! never silences an approved tone; bad uploads and reviews are refused by name.

use std::io::Cursor;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{silence_wav, TestServer, AXB_APP};

const A: &str = "+8613800000001";
const B: &str = "+8613900000002";
const X: &str = "+8617000000001";

/// A second of a 440 Hz sine, 16-bit 44.1 kHz stereo: an ordinary recording, not carrier format.
fn studio_wav() -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut bytes = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut bytes, spec).unwrap();
    for n in 0..44_100 {
        let value = (8000.0 * (2.0 * std::f32::consts::PI * 440.0 * n as f32 / 44_100.0).sin()) as i16;
        writer.write_sample(value).unwrap();
        writer.write_sample(value).unwrap();
    }
    writer.finalize().unwrap();
    bytes.into_inner()
}

async fn review(server: &TestServer, file: &str, body: Value) -> crate::support::Answer {
    server.admin(Method::POST, &format!("/apps/{}/tones/{file}/review", AXB_APP.0), Some(&body)).await
}

/// What the switch gets for a tone of the AXB app: status and body.
async fn fetch(server: &TestServer, file: &str) -> (StatusCode, Vec<u8>) {
    fetch_of(server, AXB_APP.0, file).await
}

async fn fetch_of(server: &TestServer, app_key: &str, file: &str) -> (StatusCode, Vec<u8>) {
    let response = server
        .client
        .get(format!("{}/v1/switch/tones/{app_key}/{file}", server.base))
        .header("Authorization", format!("Bearer {}", crate::support::SWITCH_TOKEN))
        .send()
        .await
        .unwrap();
    (response.status(), response.bytes().await.unwrap().to_vec())
}

async fn tone_listed(server: &TestServer, file: &str) -> Value {
    let list = server.admin(Method::GET, &format!("/apps/{}/tones", AXB_APP.0), None).await;
    list.expect(200, "0");
    list.body["tones"].as_array().unwrap().iter().find(|tone| tone["fileName"] == file).cloned().unwrap_or_default()
}

fn bind_naming(tone: &str) -> Value {
    json!({"relationNum": X, "callerNum": A, "calleeNum": B, "recordFlag": true, "recordHintTone": tone})
}

#[tokio::test]
async fn an_upload_is_converted_reviewed_and_only_then_served_and_usable() {
    let server = TestServer::start().await;
    let uploaded = server.upload_tone(AXB_APP.0, "hint.wav", studio_wav()).await;
    uploaded.expect(200, "0");
    assert_eq!(
        (uploaded.body["fileName"].as_str(), uploaded.body["state"].as_str()),
        (Some("hint.wav"), Some("pending"))
    );
    assert_eq!((uploaded.body["converted"].as_bool(), uploaded.body["serving"].as_bool()), (Some(true), Some(false)));
    assert_eq!(uploaded.body["bytes"], 8000 + privnum::tone::wav::ALAW_HEADER_BYTES, "one second of A-law");

    assert_eq!(fetch(&server, "hint.wav").await.0, StatusCode::NOT_FOUND, "pending tones are not served");
    let refused = server.bind_axb(bind_naming("hint.wav")).await;
    refused.expect(403, "1010002");
    assert_eq!(
        refused.desc(),
        "Invalid request.hint.wav does not exist: it is uploaded and waiting for review",
        "the reference's words, and why"
    );

    // A reviewer can listen to the pending upload.
    let (status, pending) =
        server.admin_bytes(Method::GET, &format!("/apps/{}/tones/hint.wav", AXB_APP.0), vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let approved = review(&server, "hint.wav", json!({"approve": true})).await;
    approved.expect(200, "0");
    assert_eq!((approved.body["state"].as_str(), approved.body["serving"].as_bool()), (Some("approved"), Some(true)));

    let (status, served) = fetch(&server, "hint.wav").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served, pending, "the switch gets the audio that was reviewed");
    let inspection = privnum::tone::inspect(&served).unwrap();
    assert!(inspection.problems.is_empty(), "served in the carrier format: {inspection}");
    server.bind_axb(bind_naming("hint.wav")).await.expect(200, "0");
    let call = server.switch_call(A, X).await;
    assert_eq!(call.body["recordHintTone"], "hint.wav");

    // Approval survives a restart: the serving set is rebuilt from the store.
    let server = server.restart().await;
    assert_eq!(fetch(&server, "hint.wav").await.1, served);
    let modify = json!({"subscriptionId": call.body["subscriptionId"], "lastMinVoice": "other.wav", "maxDuration": 5});
    let refused = server.call(AXB_APP, Method::PUT, crate::support::AXB_PATH, Some(&modify)).await;
    refused.expect(403, "1010002");
    assert_eq!(refused.desc(), "Invalid request.other.wav does not exist", "a modify is checked too");
}

#[tokio::test]
async fn a_replacement_waits_for_review_while_the_approved_tone_keeps_playing() {
    let server = TestServer::start().await;
    server.approve_tones(AXB_APP.0, &["close.wav"]).await;
    let (_, original) = fetch(&server, "close.wav").await;

    let replaced = server.upload_tone(AXB_APP.0, "close.wav", studio_wav()).await;
    replaced.expect(200, "0");
    assert_eq!((replaced.body["state"].as_str(), replaced.body["serving"].as_bool()), (Some("pending"), Some(true)));
    assert_eq!(fetch(&server, "close.wav").await.1, original, "the approved audio plays until the new one is approved");
    server.bind_axb(bind_naming("close.wav")).await.expect(200, "0");

    let rejected = review(&server, "close.wav", json!({"approve": false, "reason": "clipped at the end"})).await;
    rejected.expect(200, "0");
    assert_eq!(
        (rejected.body["state"].as_str(), rejected.body["reason"].as_str()),
        (Some("rejected"), Some("clipped at the end"))
    );
    assert_eq!(fetch(&server, "close.wav").await.1, original, "a rejected replacement changes nothing played");
    let listed = tone_listed(&server, "close.wav").await;
    assert_eq!((listed["state"].as_str(), listed["serving"].as_bool()), (Some("rejected"), Some(true)), "{listed}");

    let again = review(&server, "close.wav", json!({"approve": true})).await;
    again.expect(409, "1010002");
    assert!(again.desc().contains("rejected"), "{again:?}");

    server.upload_tone(AXB_APP.0, "close.wav", studio_wav()).await.expect(200, "0");
    review(&server, "close.wav", json!({"approve": true})).await.expect(200, "0");
    let (_, now_playing) = fetch(&server, "close.wav").await;
    assert_ne!(now_playing, original, "an approved replacement is what plays next");
}

#[tokio::test]
async fn bad_uploads_and_reviews_are_refused_by_name_and_change_nothing() {
    let server = TestServer::start().await;
    let app = AXB_APP.0;
    let not_wav = server.upload_tone(app, "x.wav", b"ID3\x03 an mp3, really".to_vec()).await;
    not_wav.expect(403, "1010002");
    assert!(not_wav.desc().contains("x.wav") && not_wav.desc().contains("not a WAV"), "{not_wav:?}");
    let whole = studio_wav();
    let truncated = server.upload_tone(app, "cut.wav", whole[..whole.len() / 3].to_vec()).await;
    truncated.expect(403, "1010002");
    assert!(truncated.desc().contains("truncated"), "{truncated:?}");
    let bad_name = server.upload_tone(app, "a%20b.wav", silence_wav()).await;
    bad_name.expect(403, "1010002");
    assert!(bad_name.desc().contains("fileName"), "{bad_name:?}");
    let nobody = server.upload_tone("no-such-app", "x.wav", silence_wav()).await;
    nobody.expect(404, "1012007");

    // Over the upload limit: refused from Content-Length before anything is read.
    let huge = vec![0u8; privnum::http::tones::MAX_UPLOAD_BYTES + 1];
    let (status, body) = server.admin_bytes(Method::PUT, &format!("/apps/{app}/tones/big.wav"), huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(String::from_utf8_lossy(&body).contains("larger than"));

    // Over 2 MB after conversion: five minutes of 8-bit audio.
    let spec =
        hound::WavSpec { channels: 1, sample_rate: 8000, bits_per_sample: 8, sample_format: hound::SampleFormat::Int };
    let mut long = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut long, spec).unwrap();
    for _ in 0..8000 * 300 {
        writer.write_sample(0i8).unwrap();
    }
    writer.finalize().unwrap();
    let too_long = server.upload_tone(app, "long.wav", long.into_inner()).await;
    too_long.expect(403, "1010002");
    assert!(too_long.desc().contains("2097152"), "{too_long:?}");

    let list = server.admin(Method::GET, &format!("/apps/{app}/tones"), None).await;
    assert_eq!(list.body["tones"], json!([]), "no refused upload was stored");

    review(&server, "ghost.wav", json!({"approve": true})).await.expect(404, "1012007");
    server.upload_tone(app, "ok.wav", silence_wav()).await.expect(200, "0");
    let no_reason = review(&server, "ok.wav", json!({"approve": false})).await;
    no_reason.expect(403, "1010002");
    assert!(no_reason.desc().contains("reason"), "{no_reason:?}");
    review(&server, "ok.wav", json!({"approve": "maybe"})).await.expect(403, "1010002");
    assert_eq!(tone_listed(&server, "ok.wav").await["state"], "pending", "a refused review changes nothing");
    let (status, body) = fetch(&server, "a%20b.wav").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("fileName"), "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn a_review_names_the_revision_it_heard_so_a_later_upload_is_not_approved_unheard() {
    let server = TestServer::start().await;
    server.upload_tone(AXB_APP.0, "hold.wav", silence_wav()).await.expect(200, "0");
    let path = format!("/apps/{}/tones/hold.wav", AXB_APP.0);
    let response = server
        .client
        .get(format!("{}/v1/admin{path}", server.base))
        .header("Authorization", format!("Bearer {}", crate::support::ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    let heard = response.headers()["x-tone-revision"].to_str().unwrap().to_owned();
    assert_eq!((heard.as_str(), response.headers()["x-tone-state"].to_str().unwrap()), ("1", "pending"));

    let second = server.upload_tone(AXB_APP.0, "hold.wav", studio_wav()).await;
    assert_eq!(second.body["revision"], 2);
    let stale = review(&server, "hold.wav", json!({"approve": true, "revision": 1})).await;
    stale.expect(409, "1010002");
    assert!(stale.desc().contains("revision 2"), "{stale:?}");
    assert_eq!(fetch(&server, "hold.wav").await.0, StatusCode::NOT_FOUND, "nothing was approved");
    let approved = review(&server, "hold.wav", json!({"approve": true, "revision": 2})).await;
    approved.expect(200, "0");
    assert_eq!(approved.body["servingRevision"], 2);
}

#[tokio::test]
async fn pre_voice_tones_are_checked_and_deleting_an_app_deletes_its_tones() {
    let server = TestServer::start().await;
    server.approve_tones(AXB_APP.0, &["to-b.wav"]).await;
    let body = json!({"relationNum": X, "callerNum": A, "calleeNum": B,
        "preVoice": {"callerHintTone": "to-b.wav", "calleeHintTone": "to-a.wav"}});
    let refused = server.bind_axb(body).await;
    refused.expect(403, "1010002");
    assert_eq!(refused.desc(), "Invalid request.to-a.wav does not exist");

    let app = json!({"mode": "AXB", "app_secret": "s"});
    server.admin(Method::PUT, "/apps/brief-app", Some(&app)).await.expect(200, "0");
    server.approve_tones("brief-app", &["jingle.wav"]).await;
    server.admin(Method::DELETE, "/apps/brief-app", None).await.expect(200, "0");
    server.admin(Method::PUT, "/apps/brief-app", Some(&app)).await.expect(200, "0");
    let server = server.restart().await;
    let list = server.admin(Method::GET, "/apps/brief-app/tones", None).await;
    assert_eq!(list.body["tones"], json!([]), "a new app of the same key starts without tones");
    assert_eq!(fetch_of(&server, "brief-app", "jingle.wav").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_naming_an_unapproved_tone_gets_the_fallback_and_is_counted() {
    let server = TestServer::builder().scripts_copy().start().await;
    let scripts = server.scripts_dir().to_owned();
    server.bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B})).await.expect(200, "0");
    crate::reload::save_with_wait_voice(&scripts, "ringback.wav");
    let reload = server.admin(Method::POST, "/scripts/reload", None).await;
    assert!(matches!(reload.body["outcome"].as_str(), Some("reloaded" | "unchanged")), "{reload:?}");

    let call = server.switch_call(A, X).await;
    assert_eq!(
        (call.body["action"].as_str(), call.body["stateCode"].as_u64()),
        (Some("release"), Some(8020)),
        "{call:?}"
    );
    let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("privnum_switch_decisions_total{action=\"fallback\"} 1"), "{metrics}");
    assert!(metrics.contains("privnum_script_runtime_errors_total 1"), "{metrics}");

    server.approve_tones(AXB_APP.0, &["ringback.wav"]).await;
    let call = server.switch_call(A, X).await;
    assert_eq!(
        (call.body["action"].as_str(), call.body["waitVoice"].as_str()),
        (Some("connect"), Some("ringback.wav"))
    );
}

#[tokio::test]
async fn an_apps_unapproved_tones_are_not_played_and_are_counted() {
    let server = TestServer::start().await;
    let app = json!({"mode": "AXB", "app_secret": AXB_APP.1, "recording": true,
        "close_hint_tone": "sorry.wav", "record_hint_tone": "notice.wav"});
    server.admin(Method::PUT, &format!("/apps/{}", AXB_APP.0), Some(&app)).await.expect(200, "0");
    let stranger = server.switch_call(A, X).await;
    assert_eq!((stranger.body["stateCode"].as_u64(), stranger.body.get("tone")), (Some(8014), None), "{stranger:?}");
    server
        .bind_axb(json!({"relationNum": X, "callerNum": A, "calleeNum": B, "recordFlag": true}))
        .await
        .expect(200, "0");
    let recorded = server.switch_call(A, X).await;
    assert_eq!((recorded.body["record"].as_bool(), recorded.body.get("recordHintTone")), (Some(true), None));
    let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    for expected in [
        "privnum_app_tones_skipped_total{setting=\"close_hint_tone\"} 1",
        "privnum_app_tones_skipped_total{setting=\"record_hint_tone\"} 1",
        "privnum_compliance_warnings_total{kind=\"record_without_notice\",on=\"binding\"} 1",
    ] {
        assert!(metrics.contains(expected), "{expected} in {metrics}");
    }
    server.approve_tones(AXB_APP.0, &["sorry.wav"]).await;
    assert_eq!(server.switch_call("+8613700000009", X).await.body["tone"], "sorry.wav");
}

#[tokio::test]
async fn ax_and_axe_bindings_and_the_axe_prompt_need_approved_tones() {
    use crate::support::{AXE_APP, AXE_PATH, AX_APP, AX_PATH};
    let server = TestServer::start().await;
    let (ax_x, axe_x) = ("+8617200000001", "+8617600000001");
    let ax = json!({"origNum": A, "privateNum": ax_x, "recordFlag": "true", "recordHintTone": "shop.wav"});
    let refused = server.call(AX_APP, Method::POST, AX_PATH, Some(&ax)).await;
    refused.expect(403, "1010002");
    assert_eq!(refused.desc(), "Invalid request.shop.wav does not exist");
    let axe = json!({"bindNum": A, "virtualNum": axe_x, "callbackTone": "back.wav"});
    let refused = server.call(AXE_APP, Method::POST, AXE_PATH, Some(&axe)).await;
    refused.expect(403, "1010002");
    assert_eq!(refused.desc(), "Invalid request.back.wav does not exist");
    server.approve_tones(AX_APP.0, &["shop.wav"]).await;
    server.approve_tones(AXE_APP.0, &["back.wav"]).await;
    server.call(AX_APP, Method::POST, AX_PATH, Some(&ax)).await.expect(200, "0");
    server.call(AXE_APP, Method::POST, AXE_PATH, Some(&axe)).await.expect(200, "0");

    // The AXE app's extension prompt (ext.wav) is not approved: callers are asked without it.
    let asked = server.switch(Method::POST, "/calls", &json!({"caller": B, "called": axe_x})).await;
    assert_eq!((asked.body["action"].as_str(), asked.body.get("prompt")), (Some("collect"), None), "{asked:?}");
    let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("privnum_app_tones_skipped_total{setting=\"extension_prompt\"} 1"), "{metrics}");
    server.approve_tones(AXE_APP.0, &["ext.wav"]).await;
    let asked = server.switch(Method::POST, "/calls", &json!({"caller": B, "called": axe_x})).await;
    assert_eq!(asked.body["prompt"], "ext.wav");
}
