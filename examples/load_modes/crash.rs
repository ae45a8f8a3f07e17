//! `load crash`: the crash loop. Runs the `privnum serve` binary (release by default) on a
//! temporary data directory, drives AXB binds and whole calls at it from several clients while
//! a receiver in this process takes its pushes, kills it with SIGKILL every `--kill-every-ms`
//! and starts it again on the same directory. At the end (server up, pushes drained) it checks
//! what privnum acknowledged:
//!
//! - every acknowledged bind is still there (queried by its `subscriptionId`);
//! - every call whose `disconnect` was acknowledged has exactly one CDR (one `icid`) at the
//!   receiver; the same CDR received again is counted as a redelivery, allowed (delivery is at
//!   least once: a push in flight at a kill is sent again after the restart);
//! - each call's events arrived in order (callin, callout, alerting, answer, disconnect);
//! - connected calls lost: a call answered `connect` whose later event was refused 404 or that
//!   never got its CDR (fails the run unless `--require-no-lost-connects false`).
//!
//! Like a switch, a client retries a request that got no answer (the server was down) until it
//! gets one; a request answered is never repeated. Events name their call (caller, called,
//! callTime), so privnum can rebuild a call a crash lost.
//!
//! Run: `cargo build --release && cargo run --release --example load -- crash --seconds 60 --kill-every-ms 3000`

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{ArgAction, Args};
use privnum::auth::{self, Scheme};
use serde_json::{json, Value};

const APP_KEY: &str = "crash-app";
const APP_SECRET: &str = "crash-secret";
const SWITCH_TOKEN: &str = "crash-switch-token";
const X_NUMBERS: u64 = 40;
const FIRST_X: u64 = 8_617_000_000_000;
/// The events of an answered call, in the order privnum must push them (after its `callin`).
const EVENTS: [&str; 4] = ["callout", "alerting", "answer", "disconnect"];
/// How long one request is retried while the server is down, before the run gives up on it.
const RETRY_FOR: Duration = Duration::from_secs(30);

#[derive(Args)]
pub(crate) struct CrashArgs {
    /// How long load runs (and the server is killed), in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// How often the server is killed with SIGKILL, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    kill_every_ms: u64,
    /// Clients sending binds.
    #[arg(long, default_value_t = 4)]
    binders: usize,
    /// Clients making whole calls.
    #[arg(long, default_value_t = 4)]
    callers: usize,
    /// The privnum binary to run (default: target/release/privnum of this repository).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Fail when a connected call was lost (its later event refused 404, or no CDR).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    require_no_lost_connects: bool,
}

/// What the receiver got for one call.
#[derive(Debug, Default)]
struct Pushed {
    events: Vec<String>,
    /// The `icid` of every CDR received (a redelivery repeats one).
    cdrs: Vec<String>,
}

/// The customer's endpoint: records every event and CDR per session, answers 200.
#[derive(Clone, Default)]
struct Receiver {
    calls: Arc<Mutex<HashMap<String, Pushed>>>,
}

impl Receiver {
    async fn start(&self) -> anyhow::Result<String> {
        let calls = self.calls.clone();
        let router = axum::Router::new().fallback(axum::routing::post(move |body: axum::Json<Value>| {
            let calls = calls.clone();
            async move {
                let mut calls = calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if let Some(items) = body.0["feeLst"].as_array() {
                    for item in items {
                        let session = item["sessionId"].as_str().unwrap_or("?").to_owned();
                        let icid = item["icid"].as_str().unwrap_or("?").to_owned();
                        calls.entry(session).or_default().cdrs.push(icid);
                    }
                } else if let Some(session) = body.0["statusInfo"]["sessionId"].as_str() {
                    let event = body.0["eventType"].as_str().unwrap_or("?").to_owned();
                    calls.entry(session.to_owned()).or_default().events.push(event);
                }
                axum::http::StatusCode::OK
            }
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the receiver")?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(base)
    }

    fn cdrs_of(&self, sessions: &[String]) -> usize {
        let calls = self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sessions.iter().filter(|session| calls.get(*session).is_some_and(|pushed| !pushed.cdrs.is_empty())).count()
    }
}

/// The `privnum serve` child and how to start it again.
struct Privnum {
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Privnum {
    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.binary)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("kill -9")?;
            child.wait().context("waiting for the killed server")?;
        }
        Ok(())
    }

    /// Waits until `/healthz` answers; `false` if the server exited or took over 30 s.
    async fn wait_up(&mut self, client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < RETRY_FOR {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("privnum exited with {status} at start; see {}", self.log.display());
                }
            }
            if client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("privnum did not answer within {RETRY_FOR:?}; see {}", self.log.display())
    }
}

/// What the clients saw.
#[derive(Default)]
struct Ledger {
    /// subscriptionId → caller, of every bind answered `0`.
    binds: Vec<(String, String)>,
    bind_requests: u64,
    /// Bound (caller, X) pairs the callers dial.
    pairs: Vec<(String, String)>,
    calls_connected: u64,
    /// Sessions whose `disconnect` was acknowledged.
    ended: Vec<String>,
    /// Sessions answered `connect` whose later event was refused 404.
    lost_connects: Vec<String>,
    /// Requests that never got an answer within [`RETRY_FOR`].
    gave_up: u64,
    first_error: Option<String>,
}

type Shared = Arc<Mutex<Ledger>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Ledger> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sends a request until it is answered (any status), as a switch retries one that got no answer.
async fn until_answered(make: impl Fn() -> reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, Value), String> {
    let started = Instant::now();
    loop {
        match make().send().await {
            Ok(response) => {
                let status = response.status();
                let body = response.json().await.unwrap_or(Value::Null);
                return Ok((status, body));
            }
            Err(err) if started.elapsed() > RETRY_FOR => return Err(err.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn binder(client: reqwest::Client, base: String, shared: Shared, next: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let url = format!("{base}{}", privnum::http::AXB_PATH);
    while !stop.load(Ordering::Relaxed) {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let (caller, callee) = (format!("+86138{n:08}"), format!("+86139{n:08}"));
        let body = json!({"areaCode": "0755", "callerNum": caller, "calleeNum": callee});
        // One request, signed once: a bind that got no answer is not sent again (a new bind
        // would need new numbers; its fate is unknown, so it is neither counted nor checked).
        let headers = auth::sign(Scheme::Aksk, APP_KEY, APP_SECRET, &auth::new_nonce(), chrono::Utc::now());
        let sent = client
            .post(&url)
            .header("Authorization", headers.authorization)
            .header(headers.token_name, headers.token)
            .json(&body)
            .send()
            .await;
        lock(&shared).bind_requests += 1;
        let Ok(response) = sent else { continue };
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        {
            let mut ledger = lock(&shared);
            match (status.as_u16(), answer["resultcode"].as_str(), answer["subscriptionId"].as_str()) {
                (200, Some("0"), Some(id)) => {
                    ledger.binds.push((id.to_owned(), caller.clone()));
                    let x = answer["relationNum"].as_str().unwrap_or_default().to_owned();
                    ledger.pairs.push((caller, x));
                }
                _ => {
                    ledger.first_error.get_or_insert_with(|| format!("bind: HTTP {status}: {answer}"));
                }
            }
        }
        if !status.is_success() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn caller(client: reqwest::Client, base: String, shared: Shared, next: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let url = format!("{base}/v1/switch/calls");
    while !stop.load(Ordering::Relaxed) {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let pair = {
            let ledger = lock(&shared);
            (!ledger.pairs.is_empty()).then(|| ledger.pairs[n as usize % ledger.pairs.len()].clone())
        };
        let Some((from, x)) = pair else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let session = format!("crash-{n}-{}", std::process::id());
        let call_time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let callin = json!({"caller": from, "called": x, "sessionId": session});
        let answered = until_answered(|| client.post(&url).bearer_auth(SWITCH_TOKEN).json(&callin)).await;
        let decision = match answered {
            Ok((status, body)) if status.is_success() && body["action"] == "connect" => body,
            Ok((status, body)) => {
                lock(&shared).first_error.get_or_insert_with(|| format!("callin: HTTP {status}: {body}"));
                continue;
            }
            Err(_) => {
                lock(&shared).gave_up += 1;
                continue;
            }
        };
        drop(decision);
        lock(&shared).calls_connected += 1;
        let events_url = format!("{url}/{session}/events");
        for event in EVENTS {
            let mut body = json!({"event": event, "caller": from, "called": x, "callTime": call_time,
                "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)});
            if event == "disconnect" {
                body["releaseSide"] = json!("caller");
                body["stateCode"] = json!(0);
            }
            match until_answered(|| client.post(&events_url).bearer_auth(SWITCH_TOKEN).json(&body)).await {
                Ok((status, _)) if status.is_success() => {
                    if event == "disconnect" {
                        lock(&shared).ended.push(session.clone());
                    }
                }
                Ok((status, answer)) => {
                    let mut ledger = lock(&shared);
                    if status == reqwest::StatusCode::NOT_FOUND {
                        ledger.lost_connects.push(session.clone());
                    }
                    ledger.first_error.get_or_insert_with(|| format!("{event}: HTTP {status}: {answer}"));
                    break;
                }
                Err(_) => {
                    lock(&shared).gave_up += 1;
                    break;
                }
            }
        }
    }
}

fn config_text(dir: &std::path::Path, port: u16, receiver: &str) -> String {
    let scripts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let numbers: Vec<String> =
        (0..X_NUMBERS).map(|i| format!("{{ number = \"+{}\", area_code = \"0755\" }}", FIRST_X + i)).collect();
    format!(
        r#"listen = "127.0.0.1:{port}"
data_dir = {data:?}
scripts_dir = {scripts:?}
switch_token = "{SWITCH_TOKEN}"
cdr_flush_ms = 100
push_retry_schedule = ["100ms", "200ms", "500ms", "1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s"]
auth_failures_burst = 100000

[[apps]]
app_key = "{APP_KEY}"
app_secret = "{APP_SECRET}"
mode = "AXB"
scenario = "crash loop"
call_event_url = "{receiver}/events"
cdr_url = "{receiver}/cdr"
numbers = [{numbers}]
"#,
        data = dir.join("data").display().to_string(),
        scripts = scripts.display().to_string(),
        numbers = numbers.join(", "),
    )
}

pub(crate) async fn run(args: CrashArgs) -> anyhow::Result<()> {
    if args.kill_every_ms == 0 || args.seconds == 0 || args.binders + args.callers == 0 {
        bail!("--seconds, --kill-every-ms and the clients must be above 0");
    }
    let binary =
        args.binary.clone().unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/privnum"));
    if !binary.exists() {
        bail!("{} does not exist: build it first (cargo build --release)", binary.display());
    }
    let dir = tempfile::tempdir()?;
    let receiver = Receiver::default();
    let receiver_base = receiver.start().await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = dir.path().join("privnum.toml");
    std::fs::write(&config, config_text(dir.path(), port, &receiver_base))?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().no_proxy().tcp_nodelay(true).timeout(Duration::from_secs(10)).build()?;
    let mut server = Privnum { binary, config, log: dir.path().join("privnum.log"), child: None };
    server.spawn()?;
    server.wait_up(&client, &base).await?;
    println!(
        "crash loop: {} s, kill -9 every {} ms, {} binders, {} callers; privnum {}",
        args.seconds,
        args.kill_every_ms,
        args.binders,
        args.callers,
        server.binary.display()
    );

    let shared = Shared::default();
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.binders {
        tasks.push(tokio::spawn(binder(client.clone(), base.clone(), shared.clone(), next.clone(), stop.clone())));
    }
    for _ in 0..args.callers {
        tasks.push(tokio::spawn(caller(client.clone(), base.clone(), shared.clone(), next.clone(), stop.clone())));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut crashes = 0u64;
    let mut restart_times = Vec::new();
    loop {
        let wake = Instant::now() + Duration::from_millis(args.kill_every_ms);
        if wake >= deadline {
            tokio::time::sleep_until(deadline.into()).await;
            break;
        }
        tokio::time::sleep_until(wake.into()).await;
        server.kill()?;
        crashes += 1;
        let restart = Instant::now();
        server.spawn()?;
        server.wait_up(&client, &base).await?;
        restart_times.push(restart.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.context("a client task panicked")?;
    }
    let load_seconds = started.elapsed().as_secs_f64();

    // Drain: every acknowledged call end's CDR (bounded wait), then check the binds.
    let ledger = std::mem::take(&mut *lock(&shared));
    let drain = Instant::now();
    while receiver.cdrs_of(&ledger.ended) < ledger.ended.len() && drain.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain_seconds = drain.elapsed().as_secs_f64();
    let mut binds_lost = Vec::new();
    for (id, caller) in &ledger.binds {
        let url = format!("{base}{}?subscriptionId={id}", privnum::http::AXB_PATH);
        let headers = auth::sign(Scheme::Aksk, APP_KEY, APP_SECRET, &auth::new_nonce(), chrono::Utc::now());
        let make = || {
            client
                .get(&url)
                .header("Authorization", headers.authorization.clone())
                .header(headers.token_name, headers.token.clone())
        };
        let found = match until_answered(make).await {
            Ok((status, body)) => {
                status.is_success()
                    && body["resultcode"] == "0"
                    && body["relationNumList"][0]["callerNum"].as_str() == Some(caller.as_str())
            }
            Err(_) => false,
        };
        if !found {
            binds_lost.push(id.clone());
        }
    }
    server.kill()?;

    // The receiver's view of every call.
    let calls = receiver.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let rank = |event: &str| match event {
        "callin" => Some(0),
        other => EVENTS.iter().position(|known| *known == other).map(|p| p + 1),
    };
    let mut one_cdr = 0u64;
    let mut no_cdr = Vec::new();
    let mut duplicate_cdrs = 0u64;
    let mut redelivered_cdrs = 0u64;
    let mut out_of_order = Vec::new();
    let mut duplicate_events = 0u64;
    for session in &ledger.ended {
        // One CDR is one icid; the same icid again is that CDR delivered again (at least once:
        // a batch in flight at a kill is sent again after the restart).
        let icids = calls.get(session).map_or(&[][..], |pushed| &pushed.cdrs[..]);
        let distinct: std::collections::BTreeSet<&String> = icids.iter().collect();
        redelivered_cdrs += (icids.len() - distinct.len()) as u64;
        match distinct.len() {
            0 => no_cdr.push(session.clone()),
            1 => one_cdr += 1,
            more => duplicate_cdrs += more as u64 - 1,
        }
    }
    for (session, pushed) in calls.iter() {
        let ranks: Vec<Option<usize>> = pushed.events.iter().map(|event| rank(event)).collect();
        if ranks.windows(2).any(|pair| pair[0] > pair[1] || pair[0].is_none()) {
            out_of_order.push(format!("{session}: {:?}", pushed.events));
        }
        duplicate_events += ranks.windows(2).filter(|pair| pair[0] == pair[1]).count() as u64;
    }
    let mut lost_connects: BTreeMap<String, &str> =
        ledger.lost_connects.iter().map(|session| (session.clone(), "an event refused 404")).collect();
    for session in &no_cdr {
        lost_connects.entry(session.clone()).or_insert("no CDR");
    }

    println!("load {load_seconds:.1} s, then {drain_seconds:.1} s draining pushes");
    let mut sorted = restart_times.clone();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).map_or(0.0, Duration::as_secs_f64);
    let slowest = sorted.last().map_or(0.0, Duration::as_secs_f64);
    println!("crashes (kill -9): {crashes}; restart to serving: median {median:.2} s, max {slowest:.2} s");
    println!(
        "binds: {} sent, {} acknowledged, {} acknowledged and lost",
        ledger.bind_requests,
        ledger.binds.len(),
        binds_lost.len()
    );
    println!(
        "calls: {} connected, {} ended (disconnect acknowledged), {} with exactly one CDR, {} without, {} duplicate CDRs (another icid), {} CDRs delivered again (same icid)",
        ledger.calls_connected,
        ledger.ended.len(),
        one_cdr,
        no_cdr.len(),
        duplicate_cdrs,
        redelivered_cdrs
    );
    println!("events: {} calls out of order, {} pushed twice in a row", out_of_order.len(), duplicate_events);
    println!("connected calls lost: {} (required 0: {})", lost_connects.len(), args.require_no_lost_connects);
    println!("requests given up after {RETRY_FOR:?} without an answer: {}", ledger.gave_up);
    if let Some(error) = &ledger.first_error {
        println!("first refusal: {error}");
    }
    for (session, why) in lost_connects.iter().take(5) {
        println!("  lost connect {session}: {why}");
    }
    for line in out_of_order.iter().take(5) {
        println!("  out of order {line}");
    }

    let mut failures = Vec::new();
    if !binds_lost.is_empty() {
        failures.push(format!("{} acknowledged binds lost (first {})", binds_lost.len(), binds_lost[0]));
    }
    if !no_cdr.is_empty() {
        failures.push(format!("{} acknowledged call ends without a CDR", no_cdr.len()));
    }
    if duplicate_cdrs > 0 {
        failures.push(format!("{duplicate_cdrs} duplicate CDRs"));
    }
    if !out_of_order.is_empty() {
        failures.push(format!("{} calls' events out of order", out_of_order.len()));
    }
    if args.require_no_lost_connects && !lost_connects.is_empty() {
        failures.push(format!("{} connected calls lost", lost_connects.len()));
    }
    if crashes == 0 || ledger.binds.is_empty() || ledger.ended.is_empty() {
        failures.push(format!(
            "the loop proved nothing: {crashes} crashes, {} binds, {} calls ended",
            ledger.binds.len(),
            ledger.ended.len()
        ));
    }
    if failures.is_empty() {
        println!("crash loop: passed");
        Ok(())
    } else {
        bail!("crash loop failed: {}; privnum's log: {}", failures.join("; "), dir.keep().join("privnum.log").display())
    }
}
