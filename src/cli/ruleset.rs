//! `privnum ruleset …`: a customer's rule set from its own CI. Offline, `check` and `test` run
//! what a submission's check runs (compile, handlers, the cases, the invariant probe), without
//! a server; against a server, `submit`, `list` and `activate` call the rule-set API signed with
//! the app's own key (`policy-docs/rulesets.md`).
//!
//! A rule set's cases are read from `--cases` (a directory of `.json` files, one case each, or a
//! file holding one case or an array of them), else from the directory beside the rule set named
//! like it with `.cases` (`trip.rhai` → `trip.cases/`), as privnum's own scripts keep theirs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::auth::{self, Scheme};
use crate::domain::ruleset::{parse_case, Case};
use crate::domain::{Fields, Mode, RulesetSettings};
use crate::script::ruleset::{check, compile, probe, run_cases, CheckContext, PROBE_X};
use crate::script::{engine, Limits};

/// The rule set and its cases, as read from disk: the source, the cases parsed, and as JSON.
struct Files {
    source: String,
    cases: Vec<Case>,
    raw: Vec<Value>,
}

fn default_cases(file: &Path) -> PathBuf {
    file.with_extension("cases")
}

fn read(file: &Path, cases: Option<&Path>) -> anyhow::Result<Files> {
    let source = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let dir = cases.map_or_else(|| default_cases(file), Path::to_path_buf);
    let mut raw: Vec<(String, Value)> = Vec::new();
    let parse = |path: &Path| -> anyhow::Result<Value> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))
    };
    if dir.is_dir() {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        paths.sort();
        for path in paths {
            raw.push((path.display().to_string(), parse(&path)?));
        }
    } else if dir.is_file() {
        match parse(&dir)? {
            Value::Array(items) => {
                raw.extend(items.into_iter().enumerate().map(|(i, v)| (format!("{}[{i}]", dir.display()), v)))
            }
            one => raw.push((dir.display().to_string(), one)),
        }
    } else if cases.is_some() {
        bail!("{}: no such file or directory of cases", dir.display());
    }
    let mut parsed = Vec::with_capacity(raw.len());
    for (i, (from, value)) in raw.iter().enumerate() {
        let Value::Object(map) = value else { bail!("{from}: a case is a JSON object") };
        let case = parse_case(&Fields::new(map), i).map_err(|err| anyhow::anyhow!("{from}: {err}"))?;
        parsed.push(case);
    }
    Ok(Files { source, cases: parsed, raw: raw.into_iter().map(|(_, v)| v).collect() })
}

fn context<'a>(app_key: &'a str, mode: Option<Mode>, approved: &'a dyn Fn(&str) -> bool) -> CheckContext<'a> {
    CheckContext { app_key, mode, x_number: PROBE_X.to_owned(), approved, settings: RulesetSettings::default() }
}

/// Offline, every tone is taken as approved: the server checks the app's own.
fn any_tone(_: &str) -> bool {
    true
}

/// `privnum ruleset check FILE`: what a submission's check says, offline.
pub fn check_file(file: &Path, cases: Option<&Path>, mode: Option<Mode>) -> anyhow::Result<()> {
    let files = read(file, cases)?;
    let engine = engine::build_for_rulesets(&Limits::default());
    let on = context("offline", mode, &any_tone);
    match check(&engine, &on, &files.source, &files.cases) {
        Ok(checked) => {
            let handlers: Vec<_> = checked.ruleset.handlers.iter().map(|h| h.name()).collect();
            println!(
                "{}: OK ({}; {} case(s) passed, {} probe call(s); tones are checked by the server)",
                file.display(),
                handlers.join(", "),
                checked.cases_passed,
                checked.probe_calls
            );
            Ok(())
        }
        Err(reason) => bail!("{}: {reason}", file.display()),
    }
}

/// `privnum ruleset test FILE`: one line per case, then the invariant probe.
pub fn test_file(file: &Path, cases: Option<&Path>, mode: Option<Mode>) -> anyhow::Result<()> {
    let files = read(file, cases)?;
    let engine = engine::build_for_rulesets(&Limits::default());
    let on = context("offline", mode, &any_tone);
    let ruleset = compile(&engine, "offline", "local", &files.source, on.settings)
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", file.display()))?;
    let results = run_cases(&engine, &ruleset, &on, &files.cases);
    let mut failed = 0;
    for (case, result) in &results {
        match result {
            Ok(()) => println!("ok    {}  {}", case.handler.name(), case.name),
            Err(why) => {
                failed += 1;
                println!("FAIL  {}  {}\n      {why}", case.handler.name(), case.name);
            }
        }
    }
    println!("cases: {} passed, {failed} failed", results.len() - failed);
    match probe(&engine, &ruleset, &on, &files.cases) {
        Ok(calls) => println!("probe: {calls} call(s), no invariant broken"),
        Err(why) => {
            println!("probe: {why}");
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{} failed", file.display());
    }
    Ok(())
}

/// Where and as whom `submit`, `list` and `activate` call.
pub struct Remote {
    pub server: String,
    pub app: String,
    pub secret: String,
}

async fn send(remote: &Remote, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let signed = auth::sign(Scheme::Aksk, &remote.app, &remote.secret, &auth::new_nonce(), chrono::Utc::now());
    let url = format!("{}{path}", remote.server.trim_end_matches('/'));
    let mut request = reqwest::Client::new()
        .request(method, &url)
        .header("Authorization", &signed.authorization)
        .header(signed.token_name, &signed.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.with_context(|| format!("calling {url}"))?;
    let status = response.status();
    let answer: Value = response.json().await.with_context(|| format!("{url} answered {status} without JSON"))?;
    if answer["resultcode"] != "0" {
        bail!(
            "{status} {}: {}",
            answer["resultcode"].as_str().unwrap_or("?"),
            answer["resultdesc"].as_str().unwrap_or("")
        );
    }
    Ok(answer)
}

const PATH: &str = "/rest/privnum/ruleset/v1.0";

/// `privnum ruleset submit FILE`: the source and its cases, with a note.
pub async fn submit(remote: &Remote, file: &Path, cases: Option<&Path>, note: &str) -> anyhow::Result<()> {
    let files = read(file, cases)?;
    let body = json!({"source": files.source, "cases": files.raw, "note": note});
    let answer = send(remote, reqwest::Method::POST, PATH, Some(body)).await?;
    println!(
        "{} {}: {} case(s) passed, {} probe call(s)",
        answer["version"].as_str().unwrap_or("?"),
        answer["state"].as_str().unwrap_or("?"),
        answer["casesPassed"],
        answer["probeCalls"]
    );
    Ok(())
}

/// `privnum ruleset list`: the app's versions, newest first.
pub async fn list(remote: &Remote) -> anyhow::Result<()> {
    let answer = send(remote, reqwest::Method::GET, PATH, None).await?;
    let active = answer["active"].as_str().unwrap_or_default();
    println!("active: {}", if active.is_empty() { "(off)" } else { active });
    for version in answer["versions"].as_array().into_iter().flatten() {
        let text = |key: &str| version[key].as_str().unwrap_or_default();
        let reason = version["reviewReason"].as_str().map(|r| format!("  ({r})")).unwrap_or_default();
        // The hash's first 12 hex digits, as `git log --oneline` shortens a commit.
        let sha: String = text("sha256").chars().take(12).collect();
        let (name, state, time, note) = (text("version"), text("state"), text("submitTime"), text("note"));
        println!("{name:<5} {state:<9} {time}  {sha}  {note}{reason}");
    }
    Ok(())
}

/// `privnum ruleset activate VERSION` (`""` turns the rule set off).
pub async fn activate(remote: &Remote, version: &str) -> anyhow::Result<()> {
    let answer =
        send(remote, reqwest::Method::PUT, &format!("{PATH}/active"), Some(json!({"version": version}))).await?;
    let shown = |key: &str| answer[key].as_str().filter(|v| !v.is_empty()).unwrap_or("(off)").to_owned();
    println!("active: {} (was {})", shown("active"), shown("previous"));
    Ok(())
}
