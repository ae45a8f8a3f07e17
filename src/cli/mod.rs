//! The command-line tools besides `serve`: checking and testing scripts, a virtual switch that
//! drives one call through a running server, inspecting and converting tones; customer rule
//! sets (`ruleset`) and the demo customer (`customer`) have modules of their own.

pub mod customer;
pub mod ruleset;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::script::set::ScriptSet;
use crate::script::{cases, engine, Limits};

/// `privnum check DIR`: compile, check handlers, run the cases. Errors are `file:line:column`.
pub fn check(dir: &Path) -> anyhow::Result<()> {
    let limits = Limits::default();
    let engine = engine::build(&limits);
    match ScriptSet::load(&engine, dir, 1, &limits) {
        Ok(set) => {
            println!(
                "{}: OK ({} scripts, {} cases passed, version {})",
                dir.display(),
                set.files().count(),
                set.cases_passed,
                set.version
            );
            Ok(())
        }
        Err(err) => {
            eprintln!("{err}");
            bail!("{}: {} problem(s); the running version would stay", dir.display(), err.0.len())
        }
    }
}

/// `privnum test DIR`: run every case and print one line per case and a summary.
pub fn test(dir: &Path) -> anyhow::Result<()> {
    let limits = Limits::default();
    let engine = engine::build(&limits);
    let set = ScriptSet::compile(&engine, dir, 1).map_err(|err| {
        eprintln!("{err}");
        anyhow::anyhow!("{}: the scripts do not compile", dir.display())
    })?;
    let report = cases::run_all(&engine, &set, &limits);
    for result in &report.results {
        let name = result.path.strip_prefix(dir).unwrap_or(&result.path).display();
        match &result.failure {
            None => println!("ok    {name}  {}", result.description),
            Some(failure) => println!("FAIL  {name}  {}\n      {failure}", result.description),
        }
    }
    let failed = report.failures.len();
    println!("cases: {} passed, {failed} failed", report.passed);
    if failed > 0 {
        bail!("{failed} case(s) failed");
    }
    Ok(())
}

/// `privnum tone inspect FILE`.
///
/// Fails (exit 1) when the WAV is not in the carrier's format, after saying why, so a script can
/// tell; `privnum tone convert` makes one that is.
pub fn tone_inspect(file: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let inspection = crate::tone::inspect(&bytes).with_context(|| file.display().to_string())?;
    println!("{}\n{inspection}", file.display());
    if !inspection.problems.is_empty() {
        anyhow::bail!(
            "{} is not in the carrier's format; privnum tone convert {} OUT.wav makes one that is (uploads are converted too)",
            file.display(),
            file.display()
        );
    }
    Ok(())
}

/// `privnum tone make --hz HZ --secs S OUT`: a sine tone in the carrier's format.
pub fn tone_make(hz: f64, seconds: f64, output: &Path) -> anyhow::Result<()> {
    let wav = crate::tone::make(hz, seconds).map_err(anyhow::Error::msg)?;
    std::fs::write(output, &wav).with_context(|| format!("writing {}", output.display()))?;
    println!("{}: {hz} Hz for {seconds} s (A-law, 8000 Hz, mono, {} bytes)", output.display(), wav.len());
    Ok(())
}

/// `privnum tone convert IN OUT`.
pub fn tone_convert(input: &Path, output: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let converted = crate::tone::to_carrier_format(&bytes).with_context(|| input.display().to_string())?;
    std::fs::write(output, &converted.bytes).with_context(|| format!("writing {}", output.display()))?;
    if converted.unchanged {
        println!("{} is already A-law, 8000 Hz, mono: copied unchanged to {}", input.display(), output.display());
    } else {
        println!("{} → {} (A-law, 8000 Hz, mono, {} bytes)", input.display(), output.display(), converted.bytes.len());
    }
    Ok(())
}

/// How `privnum call` plays the call.
#[derive(Debug, Clone)]
pub struct CallPlan {
    pub server: String,
    pub switch_token: String,
    pub from: String,
    pub to: String,
    pub digits: Option<String>,
    /// Seconds from the callout until the callee answers; `None`: nobody answers.
    pub answer_after: Option<u64>,
    /// Seconds of talk after the answer.
    pub talk: u64,
}

/// Why `privnum call` stopped before the call was over; the call it started was ended first.
#[derive(Debug, thiserror::Error)]
pub enum CallInterrupted {
    /// Ctrl-C (SIGINT).
    #[error("interrupted (Ctrl-C)")]
    CtrlC,
    /// Standard output was closed, e.g. piped into `head`.
    #[error("standard output was closed (broken pipe)")]
    OutputClosed,
}

/// Writes one line to standard output; a closed output (EPIPE) is [`CallInterrupted::OutputClosed`],
/// not a panic as `println!` would make it.
fn say(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(CallInterrupted::OutputClosed.into()),
        Err(err) => Err(anyhow::Error::new(err).context("writing to standard output")),
    }
}

/// How long the virtual switch waits for the disconnect that ends a call it leaves early.
const END_TIMEOUT: Duration = Duration::from_secs(5);

/// `privnum call`: a virtual switch. Sends the callin, prints the decision, then reports the
/// events a real switch would, with times that say how the call went (it does not wait them out).
///
/// It never leaves a call open: the callin carries a `sessionId` made here, and on every way out
/// before the call's end (an error, a refusal, Ctrl-C, a closed standard output) it reports the
/// caller's `disconnect` for that session before it exits.
pub async fn call(plan: CallPlan) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let session = format!("cli-{}", uuid::Uuid::new_v4().simple());
    let open = std::cell::Cell::new(false);
    let outcome = tokio::select! {
        outcome = play(&client, &plan, &session, &open) => outcome,
        _ = tokio::signal::ctrl_c() => Err(CallInterrupted::CtrlC.into()),
    };
    if outcome.is_err() && open.get() {
        tokio::select! {
            () = end_call(&client, &plan, &session) => {}
            _ = tokio::signal::ctrl_c() => {
                eprintln!("a second Ctrl-C: call {session} may be left open (GET /v1/admin/calls lists it)");
            }
        }
    }
    outcome
}

/// Ends a call `privnum call` is leaving early: the caller hangs up (a `disconnect` with
/// releaseSide `caller`; `release.rhai` names its code). Says what happened on standard error.
async fn end_call(client: &reqwest::Client, plan: &CallPlan, session: &str) {
    let url = format!("{}/v1/switch/calls/{session}/events", plan.server.trim_end_matches('/'));
    let body = json!({"event": "disconnect", "time": chrono::Utc::now().to_rfc3339(), "releaseSide": "caller"});
    let sent = client.post(&url).bearer_auth(&plan.switch_token).timeout(END_TIMEOUT).json(&body).send().await;
    match sent {
        Ok(response) if response.status().is_success() => {
            eprintln!("call {session} ended: the caller hung up (disconnect sent)");
        }
        // The callin never opened it (refused, or it did not reach the server).
        Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => {}
        Ok(response) => eprintln!(
            "call {session} may be left open: its disconnect was refused ({}); GET /v1/admin/calls lists it",
            response.status()
        ),
        Err(err) => eprintln!(
            "call {session} may be left open: its disconnect did not reach the server ({err}); GET /v1/admin/calls lists it"
        ),
    }
}

/// The call itself; `open` says whether a call may be open on the server (from the callin until
/// its release or `disconnect` is acknowledged).
async fn play(
    client: &reqwest::Client,
    plan: &CallPlan,
    session: &str,
    open: &std::cell::Cell<bool>,
) -> anyhow::Result<()> {
    let base = plan.server.trim_end_matches('/').to_owned();
    let start = chrono::Utc::now();
    let at = |secs: u64| (start + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))).to_rfc3339();
    // `ends`: the request ends the call once the server acknowledges it.
    let send = |path: String, body: Value, ends: bool| {
        let request = client.post(format!("{base}{path}")).bearer_auth(&plan.switch_token).json(&body);
        async move {
            let response = request.send().await.with_context(|| format!("POST {path}: is privnum running?"))?;
            let status = response.status();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            if ends && status.is_success() {
                open.set(false);
            }
            say(&format!(
                "→ POST {path} {body}\n← {status} {}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            ))?;
            if !status.is_success() {
                bail!("the server refused: {status}");
            }
            anyhow::Ok(answer)
        }
    };
    let post = |path: String, body: Value| send(path, body, false);
    let hang_up = |path: String, body: Value| send(path, body, true);
    open.set(true);
    let mut decision = post(
        "/v1/switch/calls".into(),
        json!({"caller": plan.from, "called": plan.to, "sessionId": session, "time": at(0)}),
    )
    .await?;
    if decision["action"] == "collect" {
        let Some(digits) = &plan.digits else {
            // The caller hangs up at the prompt, as a real one would: the call ends with 7516.
            let events = format!("/v1/switch/calls/{session}/events");
            hang_up(events, json!({"event": "disconnect", "time": at(5), "releaseSide": "caller"})).await?;
            bail!("the call collects an extension: pass --digits (this caller hung up at the prompt)")
        };
        decision = post(format!("/v1/switch/calls/{session}/digits"), json!({"digits": digits})).await?;
    }
    if decision["action"] != "connect" {
        open.set(false);
        let code = decision["stateCode"].as_u64().and_then(|code| u32::try_from(code).ok());
        let meaning =
            code.and_then(crate::domain::state::describe).map(|text| format!(" ({text})")).unwrap_or_default();
        say(&format!("released: stateCode {}{meaning}", decision["stateCode"]))?;
        return print_cdr(client, &base, &plan.switch_token, session).await;
    }
    let events = format!("/v1/switch/calls/{session}/events");
    post(events.clone(), json!({"event": "callout", "time": at(0)})).await?;
    post(events.clone(), json!({"event": "alerting", "time": at(1)})).await?;
    let end = match plan.answer_after {
        Some(answer_after) => {
            post(events.clone(), json!({"event": "answer", "time": at(answer_after)})).await?;
            let end = answer_after + plan.talk;
            let disconnect = json!({"event": "disconnect", "time": at(end), "releaseSide": "caller", "stateCode": 0});
            hang_up(events.clone(), disconnect).await?;
            end
        }
        None => {
            let disconnect = json!({"event": "disconnect", "time": at(60), "releaseSide": "platform", "stateCode": 8101, "q850": 19});
            hang_up(events.clone(), disconnect).await?;
            60
        }
    };
    say(&format!("call over after {end} s (session {session})"))?;
    print_cdr(client, &base, &plan.switch_token, session).await
}

/// Prints the CDR privnum made of the call (the one pushed to the customer's `cdr_url`).
async fn print_cdr(client: &reqwest::Client, base: &str, token: &str, session: &str) -> anyhow::Result<()> {
    let url = format!("{base}/v1/switch/calls/{session}/cdr");
    let response = client.get(&url).bearer_auth(token).send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let cdr: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("no CDR for session {session}: {status} {cdr}");
    }
    say(&format!("CDR:\n{}", serde_json::to_string_pretty(&cdr).unwrap_or_default()))
}
