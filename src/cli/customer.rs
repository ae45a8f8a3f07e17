//! `privnum customer`: a demo customer's server, to try privnum without writing one. It listens
//! where the configured apps push (their `call_event_url`, `cdr_url`, `sms_url`,
//! `sms_control_url` and `callin_url` on loopback), prints each push as it arrives with whose
//! signature it carries, acknowledges it, and answers X mode's Block `callin`s from a small table:
//! a caller is connected to a callee, or the call is closed.
//!
//! The table comes from `--answer CALLER=CALLEE` (or `CALLER=close`; `*` for any other caller)
//! and from `--answers-file FILE`, one `CALLER CALLEE` or `CALLER close` per line (`#` starts a
//! comment). A caller the table does not name is closed.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context as _};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use serde_json::{json, Value};

use crate::auth;
use crate::config::{AppConfig, Config};
use crate::domain::number::check_e164;

/// What a Block `callin` from a caller is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Connect(String),
    Close,
}

/// The callers the demo customer knows; `*` stands for every other caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers(HashMap<String, Answer>);

impl Answers {
    /// Reads `CALLER=CALLEE` / `CALLER=close` items (the `--answer` flags).
    pub fn from_items(items: &[String]) -> anyhow::Result<Answers> {
        let mut answers = Answers::default();
        for item in items {
            let (caller, answer) = item
                .split_once('=')
                .with_context(|| format!("--answer {item:?}: write CALLER=CALLEE or CALLER=close"))?;
            answers.add(caller, answer).with_context(|| format!("--answer {item:?}"))?;
        }
        Ok(answers)
    }

    /// Adds the lines of an answers file: `CALLER CALLEE` or `CALLER close`, `#` comments.
    pub fn add_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for (index, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let at = || format!("{}:{}", path.display(), index + 1);
            let mut words = line.split_whitespace();
            let (Some(caller), Some(answer), None) = (words.next(), words.next(), words.next()) else {
                bail!("{}: write CALLER CALLEE or CALLER close, got {line:?}", at());
            };
            self.add(caller, answer).with_context(at)?;
        }
        Ok(())
    }

    fn add(&mut self, caller: &str, answer: &str) -> anyhow::Result<()> {
        if caller != "*" {
            check_e164(caller).map_err(|reason| anyhow::anyhow!("the caller is neither * nor a number: {reason}"))?;
        }
        let answer = match answer {
            "close" => Answer::Close,
            callee => {
                check_e164(callee)
                    .map_err(|reason| anyhow::anyhow!("the answer is neither close nor a callee: {reason}"))?;
                Answer::Connect(callee.to_owned())
            }
        };
        self.0.insert(caller.to_owned(), answer);
        Ok(())
    }

    /// The Block reply for a call from `caller`.
    pub fn reply(&self, caller: &str) -> Value {
        match self.0.get(caller).or_else(|| self.0.get("*")) {
            Some(Answer::Connect(callee)) => json!({"operation": "connect", "connectInfo": {"calleeNum": callee}}),
            Some(Answer::Close) | None => json!({"operation": "close"}),
        }
    }
}

/// The demo customer's state: the apps (to check signatures), the answers, where it prints.
pub struct Customer {
    apps: Vec<AppConfig>,
    answers: Answers,
    out: Mutex<Box<dyn Write + Send>>,
}

impl Customer {
    pub fn new(apps: Vec<AppConfig>, answers: Answers, out: Box<dyn Write + Send>) -> Arc<Customer> {
        Arc::new(Customer { apps, answers, out: Mutex::new(out) })
    }

    /// Serves on `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let router = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let customer = self.clone();
            async move { customer.receive(&method, &uri, &headers, &body) }
        });
        axum::serve(listener, router).await
    }

    fn receive(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> axum::Json<Value> {
        let signer = self.signer(headers);
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let mut lines = vec![format!("{} {method} {}  {signer}", chrono::Local::now().format("%H:%M:%S"), uri.path())];
        let reply = match &parsed {
            Some(value) => {
                lines.extend(summary(value));
                let info = &value["statusInfo"];
                if value["eventType"] == "callin" && info["notifyMode"] == "Block" {
                    let reply = self.answers.reply(info["caller"].as_str().unwrap_or_default());
                    lines.push(format!("  answered: {reply}"));
                    reply
                } else {
                    json!({"resultcode": "0", "resultdesc": "Success"})
                }
            }
            None => {
                lines.push(format!("  not JSON: {}", String::from_utf8_lossy(body)));
                json!({"resultcode": "0", "resultdesc": "Success"})
            }
        };
        let mut out = self.out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Output closed (`| head`): keep acknowledging, so privnum's pushes do not pile up.
        let _ = writeln!(out, "{}", lines.join("\n")).and_then(|()| out.flush());
        axum::Json(reply)
    }

    /// Whose signature a push carries, checked against the configured secrets.
    fn signer(&self, headers: &HeaderMap) -> String {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let credentials = match auth::parse(header("authorization"), header) {
            Ok(credentials) => credentials,
            Err(err) => return format!("unsigned or malformed signature ({})", err.desc),
        };
        match self.apps.iter().find(|app| app.app_key == credentials.app_key) {
            Some(app) if credentials.verify(&app.app_secret) => format!("signed by {}", app.app_key),
            Some(app) => format!("signed as {}, but not with its secret: BAD SIGNATURE", app.app_key),
            None => format!("signed as {}, an app not in the configuration", credentials.app_key),
        }
    }
}

/// One line per event or CDR, with what a newcomer looks for.
fn summary(value: &Value) -> Vec<String> {
    let text = |value: &Value| value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
    match value["eventType"].as_str() {
        Some("fee") => value["feeLst"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|cdr| {
                format!(
                    "  CDR  session {}  {} -> {} via {}  ulFailReason {}  answered {}  ended {}",
                    text(&cdr["sessionId"]),
                    text(&cdr["callerNum"]),
                    text(&cdr["fwdDstNum"]),
                    text(&cdr["bindNum"]),
                    text(&cdr["ulFailReason"]),
                    text(&cdr["fwdAnswerTime"]),
                    text(&cdr["callEndTime"]),
                )
            })
            .collect(),
        Some(event) => {
            let info = &value["statusInfo"];
            let mut line = format!("  {event}  session {}", text(&info["sessionId"]));
            for field in ["caller", "called", "notifyMode", "stateCode", "stateDesc", "userData"] {
                if !info[field].is_null() {
                    line.push_str(&format!("  {field} {}", text(&info[field])));
                }
            }
            vec![line]
        }
        None => vec![format!("  {value}")],
    }
}

/// Where the apps push, on loopback: the distinct `host:port` of their http:// URLs.
pub fn push_addresses(apps: &[AppConfig]) -> anyhow::Result<Vec<SocketAddr>> {
    let mut addresses = BTreeSet::new();
    for app in apps {
        for (key, url) in app.push_urls() {
            let Some(rest) = url.strip_prefix("http://") else { continue };
            let authority = rest.split('/').next().unwrap_or_default();
            let address: SocketAddr = authority.parse().with_context(|| {
                format!("app {} {key} = {url:?}: the demo customer listens on an IP address and port", app.app_key)
            })?;
            if address.ip().is_loopback() {
                addresses.insert(address);
            }
        }
    }
    Ok(addresses.into_iter().collect())
}

/// `privnum customer`: listens where the configuration's apps push (or on `listen`), until
/// Ctrl-C.
pub async fn run(config_path: &Path, listen: Option<SocketAddr>, answers: Answers) -> anyhow::Result<()> {
    let config = Config::load_required(config_path)?;
    let addresses = match listen {
        Some(address) => vec![address],
        None => push_addresses(&config.apps)?,
    };
    if addresses.is_empty() {
        bail!("no app in {} pushes to an http:// URL on loopback; pass --listen", config_path.display());
    }
    let customer = Customer::new(config.apps, answers, Box::new(std::io::stdout()));
    let mut servers = tokio::task::JoinSet::new();
    for address in addresses {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("listening on {address} (is another customer or receiver running?)"))?;
        println!("demo customer listening on http://{address}");
        servers.spawn(customer.clone().serve(listener));
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        Some(ended) = servers.join_next() => match ended {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err).context("serving"),
            Err(err) => Err(err).context("a listener task failed"),
        },
    }
}
