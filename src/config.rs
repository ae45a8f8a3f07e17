//! `privnum.toml`: the server's configuration (README, Configuration).
//!
//! Loading is strict: an unknown key, a value of the wrong type or out of range, or a missing
//! required field stops start-up with a message naming it (and, for apps, which app). A missing
//! file means the built-in defaults. The same [`AppConfig`] shape is what the admin API accepts,
//! so an app looks the same in the file and over HTTP.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::domain::app::check_app_key;
use crate::domain::number::{check_area_code, check_e164};
use crate::domain::ruleset::Review;
use crate::domain::tone::check_tone_name;
use crate::domain::{App, Mode, NumberStatus, RulesetSettings, XNumber};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub scripts_dir: PathBuf,
    /// The CDR `hostName`.
    pub node_name: String,
    pub admin_token: String,
    pub switch_token: String,
    /// How far an AKSK/WSSE `Created` may be from the server's clock.
    pub auth_max_skew_secs: u64,
    /// privnum's extension: failed authentications an address or an app key may make at once
    /// before it is answered 429 (`http::throttle`).
    pub auth_failures_burst: u32,
    /// privnum's extension: how fast that allowance refills.
    pub auth_failures_per_minute: u32,
    pub push_retry_schedule: Vec<HumanDuration>,
    pub cdr_batch_max: usize,
    pub cdr_flush_ms: u64,
    /// privnum's extension: the most push requests one app has in flight at once (events and CDR
    /// batches together, each call's own pushes still one at a time, in order).
    pub push_max_in_flight: usize,
    /// privnum's extension: a warning is logged when an app's waiting pushes of one kind exceed
    /// this many…
    pub push_backlog_warn: usize,
    /// …or its oldest waiting push is older than this; and again when it is back below both.
    pub push_age_warn_secs: u64,
    /// privnum's extension: the most waiting pushes of one app and kind its dispatcher holds
    /// to schedule from (headers only, about 100 bytes each); the rest wait in the call log or,
    /// past the memory budget, in the spill.
    pub push_window: usize,
    /// privnum's extension: memory for the bodies of waiting pushes, in MiB; a push written
    /// beyond it keeps only its header in memory and its body on disk, until its dispatcher
    /// moves it whole to the spill (`store::spill`), from where it comes back when its turn does.
    pub push_memory_budget_mb: u64,
    pub x_callin_timeout_ms: u64,
    pub switch_control_url: String,
    /// privnum's extension: the host of the storage in front of the switch's recordings (as the
    /// record API's `recordDomain`). When set, a CDR with a recording names it in `recordDomain`
    /// and carries a signed link that works for three days in `recordFileDownloadUrl`; `""`
    /// (the default) leaves `recordDomain` empty and sends no link.
    pub record_domain: String,
    /// privnum's extension: customer data items one app may hold (`PUT /rest/privnum/data/v1.0`).
    pub data_max_items_per_app: u32,
    /// privnum's extension: a PEM file of certificate authorities trusted for `https://` pushes
    /// and `switch_control_url`, beside the system's (a customer's private CA). Read at start.
    pub push_ca_file: Option<PathBuf>,
    /// privnum's extension: the AXB pair capacity of one X (the Huawei API caps an X at 5000 pairs;
    /// older material says 1000).
    pub axb_max_pairs_per_x: u32,
    /// privnum's extension: a call the switch never ends is dropped after this long without news.
    /// The default outlasts the longest call a binding can allow (24 h).
    pub session_timeout_secs: u64,
    /// privnum's extension: a connection that has not sent a complete request head this long
    /// after connecting or after its last answer is closed (slow headers and idle keep-alive
    /// connections alike).
    pub http_idle_timeout_secs: u64,
    /// privnum's extension: a request body that has not fully arrived this long after its head
    /// is refused with 408.
    pub http_body_timeout_secs: u64,
    /// privnum's extension: connections served at once; one more is answered 503 and closed. At
    /// start it is lowered, with a warning, to what the open-file limit leaves room for.
    pub max_connections: usize,
    /// privnum's extension: threads running scripts (0: one per core), besides the one for
    /// inputs recently stopped by the sandbox (`script::pool`).
    pub script_threads: usize,
    /// privnum's extension: the wall-clock budget of one script run, in ms (a run may also wait
    /// that long for a thread). Past it the call gets the fallback decision.
    pub script_deadline_ms: u64,
    /// privnum's extension: script runs one app may have waiting for a script thread; one more
    /// gets the fallback decision at once.
    pub script_queue_per_app: usize,
    /// privnum's extension: serve HTTPS only, with this certificate and key (`[tls]`). Without
    /// it, plain HTTP.
    pub tls: Option<TlsConfig>,
    pub apps: Vec<AppConfig>,
}

/// `[tls]`: the listener speaks TLS only, with this certificate chain and key, read at start
/// (`http::tls::load`, which names the file when one is missing or holds nothing usable).
/// Relative paths are from the working directory, like `data_dir`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain in PEM, the server's certificate first, then any intermediates.
    pub cert: PathBuf,
    /// The private key in PEM: PKCS#8 (`BEGIN PRIVATE KEY`), RSA (`BEGIN RSA PRIVATE KEY`) or
    /// EC (`BEGIN EC PRIVATE KEY`).
    pub key: PathBuf,
    /// A connection whose TLS handshake has not completed this long after connecting is closed.
    #[serde(default = "default_handshake_timeout_secs")]
    pub handshake_timeout_secs: u64,
}

fn default_handshake_timeout_secs() -> u64 {
    10
}

impl TlsConfig {
    /// `[tls]` with these files and the default handshake timeout.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsConfig { cert: cert.into(), key: key.into(), handshake_timeout_secs: default_handshake_timeout_secs() }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: "data".into(),
            scripts_dir: "scripts".into(),
            node_name: "node1".into(),
            admin_token: DEMO_ADMIN_TOKEN.into(),
            switch_token: DEMO_SWITCH_TOKEN.into(),
            auth_max_skew_secs: 900,
            auth_failures_burst: 20,
            auth_failures_per_minute: 60,
            push_retry_schedule: ["1m", "4m", "9m", "106m", "203m", "300m"]
                .into_iter()
                .map(|text| HumanDuration::parse(text).unwrap_or(HumanDuration(Duration::from_secs(60))))
                .collect(),
            cdr_batch_max: 50,
            cdr_flush_ms: 1000,
            push_max_in_flight: 128,
            push_backlog_warn: 10_000,
            push_age_warn_secs: 60,
            push_window: 4096,
            push_memory_budget_mb: 64,
            x_callin_timeout_ms: 3000,
            switch_control_url: String::new(),
            record_domain: String::new(),
            data_max_items_per_app: 100_000,
            push_ca_file: None,
            axb_max_pairs_per_x: crate::domain::axb::DEFAULT_MAX_PAIRS_PER_X,
            session_timeout_secs: 90_000,
            http_idle_timeout_secs: 30,
            http_body_timeout_secs: 10,
            max_connections: 10_000,
            script_threads: 0,
            script_deadline_ms: 20,
            script_queue_per_app: 256,
            tls: None,
            apps: Vec::new(),
        }
    }
}

/// The built-in admin token: well known (README shows it), so only for a server on loopback.
pub const DEMO_ADMIN_TOKEN: &str = "dev-admin-token";
/// The built-in switch token, likewise.
pub const DEMO_SWITCH_TOKEN: &str = "dev-switch-token";

/// A configuration problem, naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {reason}")]
    Invalid { path: PathBuf, key: String, reason: String },
}

impl Config {
    /// Reads and validates `path`, which must exist (a path the operator named).
    pub fn load_required(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::parse(&text, path)
    }

    /// Reads and validates `path`; a missing file gives the built-in defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => return Err(ConfigError::Read { path: path.to_owned(), source }),
        };
        Config::parse(&text, path)
    }

    /// Parses and validates configuration text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: path.to_owned(),
            message: err.to_string().trim_end().to_owned(),
        })?;
        config.validate().map_err(|(key, reason)| ConfigError::Invalid { path: path.to_owned(), key, reason })?;
        Ok(config)
    }

    /// Checks what types alone cannot; the error is `(key, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, reason: &str| Err((key.to_owned(), reason.to_owned()));
        if self.auth_max_skew_secs == 0 {
            return fail("auth_max_skew_secs", "must be at least 1");
        }
        if !(1..=50).contains(&self.cdr_batch_max) {
            return fail("cdr_batch_max", "must be between 1 and 50 (the Huawei API's merge limit)");
        }
        if self.cdr_flush_ms == 0 {
            return fail("cdr_flush_ms", "must be at least 1");
        }
        if !(1..=4096).contains(&self.push_max_in_flight) {
            return fail("push_max_in_flight", "must be between 1 and 4096");
        }
        if self.push_backlog_warn == 0 {
            return fail("push_backlog_warn", "must be at least 1");
        }
        if self.push_age_warn_secs == 0 {
            return fail("push_age_warn_secs", "must be at least 1");
        }
        if !(16..=65_536).contains(&self.push_window) {
            return fail("push_window", "must be between 16 and 65536");
        }
        if self.push_memory_budget_mb > 1 << 20 {
            return fail("push_memory_budget_mb", "must be at most 1048576 (1 TiB); 0 keeps every body on disk");
        }
        if !self.record_domain.is_empty() && !crate::domain::recording::is_host(&self.record_domain) {
            return fail(
                "record_domain",
                "must be a host name (letters, digits, '.', '-', an optional ':port'; at most 128 characters), or \"\" for none",
            );
        }
        if !(1..=10_000_000).contains(&self.data_max_items_per_app) {
            return fail("data_max_items_per_app", "must be between 1 and 10000000");
        }
        if self.x_callin_timeout_ms == 0 {
            return fail("x_callin_timeout_ms", "must be at least 1");
        }
        if !self.listen.ip().is_loopback() {
            for (key, token, demo) in [
                ("admin_token", &self.admin_token, DEMO_ADMIN_TOKEN),
                ("switch_token", &self.switch_token, DEMO_SWITCH_TOKEN),
            ] {
                if token == demo {
                    return Err((
                        key.to_owned(),
                        format!(
                            "is the well-known demo token {demo:?}: set a secret of your own before listening on {} (beyond loopback)",
                            self.listen
                        ),
                    ));
                }
            }
        }
        if self.auth_failures_burst == 0 {
            return fail("auth_failures_burst", "must be at least 1");
        }
        if self.auth_failures_per_minute == 0 {
            return fail("auth_failures_per_minute", "must be at least 1");
        }
        if self.http_idle_timeout_secs == 0 {
            return fail("http_idle_timeout_secs", "must be at least 1");
        }
        if self.http_body_timeout_secs == 0 {
            return fail("http_body_timeout_secs", "must be at least 1");
        }
        if self.max_connections == 0 {
            return fail("max_connections", "must be at least 1");
        }
        if !(1..=1000).contains(&self.script_deadline_ms) {
            return fail("script_deadline_ms", "must be between 1 and 1000");
        }
        if self.script_threads > 1024 {
            return fail("script_threads", "must be at most 1024 (0 means one per core)");
        }
        if self.script_queue_per_app == 0 {
            return fail("script_queue_per_app", "must be at least 1");
        }
        if let Some(tls) = &self.tls {
            for (key, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                if path.as_os_str().is_empty() {
                    return fail(key, "must name a PEM file");
                }
            }
            if tls.handshake_timeout_secs == 0 {
                return fail("tls.handshake_timeout_secs", "must be at least 1");
            }
        }
        if self.push_retry_schedule.is_empty() {
            return fail("push_retry_schedule", "needs at least one interval");
        }
        if self.axb_max_pairs_per_x == 0 {
            return fail("axb_max_pairs_per_x", "must be at least 1");
        }
        if self.session_timeout_secs == 0 {
            return fail("session_timeout_secs", "must be at least 1");
        }
        for (key, token) in [("admin_token", &self.admin_token), ("switch_token", &self.switch_token)] {
            if token.is_empty() {
                return fail(key, "must not be empty");
            }
        }
        check_url(&self.switch_control_url).map_err(|reason| ("switch_control_url".to_owned(), reason))?;
        let mut app_keys = std::collections::HashSet::new();
        let mut numbers = std::collections::HashSet::new();
        for (index, app) in self.apps.iter().enumerate() {
            let name = format!("apps[{index}] ({})", app.app_key);
            app.validate().map_err(|(key, reason)| (format!("{name}.{key}"), reason))?;
            if !app_keys.insert(app.app_key.as_str()) {
                return Err((format!("{name}.app_key"), "appears twice".to_owned()));
            }
            for number in &app.numbers {
                if !numbers.insert(number.number.as_str()) {
                    return Err((format!("{name}.numbers"), format!("{} is listed by another app too", number.number)));
                }
            }
        }
        Ok(())
    }
}

/// One app, as in `[[apps]]` and as the admin API takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub app_key: String,
    pub app_secret: String,
    pub mode: Mode,
    #[serde(default)]
    pub scenario: String,
    #[serde(default)]
    pub recording: bool,
    #[serde(default)]
    pub record_hint_tone: String,
    #[serde(default)]
    pub close_hint_tone: String,
    #[serde(default = "default_extension_digits")]
    pub extension_digits: u8,
    #[serde(default)]
    pub extension_prompt: String,
    #[serde(default)]
    pub sms: bool,
    #[serde(default)]
    pub sms_scenario: String,
    #[serde(default)]
    pub call_event_url: String,
    #[serde(default)]
    pub cdr_url: String,
    #[serde(default)]
    pub sms_url: String,
    #[serde(default)]
    pub sms_control_url: String,
    #[serde(default)]
    pub callin_url: String,
    /// AX memory callback: A's call to X with no valid temporary callee reaches the last party
    /// who called A through X within this many minutes; 0 (the default) turns it off.
    #[serde(default)]
    pub memory_callback_minutes: u32,
    /// Customer rule sets: `"ops"` (the default: a checked version waits for ops' review) or
    /// `"auto"` (active once checked).
    #[serde(default)]
    pub ruleset_review: Review,
    /// The operations one run of the app's rule set may take.
    #[serde(default = "default_ruleset_max_operations")]
    pub ruleset_max_operations: u64,
    /// The wall-clock budget of one run of the app's rule set, in ms.
    #[serde(default = "default_ruleset_deadline_ms")]
    pub ruleset_deadline_ms: u64,
    #[serde(default)]
    pub numbers: Vec<NumberConfig>,
}

/// The most operations an app's rule-set run may be given.
pub const MAX_RULESET_OPERATIONS: u64 = 1_000_000;
/// The longest budget an app's rule-set run may be given, in ms: a rule set runs while the
/// switch waits.
pub const MAX_RULESET_DEADLINE_MS: u64 = 50;

fn default_ruleset_max_operations() -> u64 {
    RulesetSettings::default().max_operations
}

fn default_ruleset_deadline_ms() -> u64 {
    RulesetSettings::default().deadline_ms
}

/// The longest memory-callback window: 30 days.
pub const MAX_MEMORY_CALLBACK_MINUTES: u32 = 30 * 24 * 60;

fn default_extension_digits() -> u8 {
    4
}

/// One X number of an app's pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberConfig {
    pub number: String,
    pub area_code: String,
    #[serde(default = "yes")]
    pub sms: bool,
    #[serde(default)]
    pub status: NumberStatus,
}

fn yes() -> bool {
    true
}

impl AppConfig {
    /// An app with the given key, secret and mode and every other setting at its default.
    pub fn new(app_key: &str, app_secret: &str, mode: Mode) -> Self {
        AppConfig {
            app_key: app_key.to_owned(),
            app_secret: app_secret.to_owned(),
            mode,
            scenario: String::new(),
            recording: false,
            record_hint_tone: String::new(),
            close_hint_tone: String::new(),
            extension_digits: default_extension_digits(),
            extension_prompt: String::new(),
            sms: false,
            sms_scenario: String::new(),
            call_event_url: String::new(),
            cdr_url: String::new(),
            sms_url: String::new(),
            sms_control_url: String::new(),
            callin_url: String::new(),
            memory_callback_minutes: 0,
            ruleset_review: Review::default(),
            ruleset_max_operations: default_ruleset_max_operations(),
            ruleset_deadline_ms: default_ruleset_deadline_ms(),
            numbers: Vec::new(),
        }
    }

    /// Checks one app; the error is `(key within the app, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        fn at(key: &str) -> impl FnOnce(String) -> (String, String) + '_ {
            move |reason| (key.to_owned(), reason)
        }
        check_app_key(&self.app_key).map_err(at("app_key"))?;
        if self.app_secret.is_empty() {
            return Err(("app_secret".into(), "must not be empty".into()));
        }
        if !(1..=4).contains(&self.extension_digits) {
            return Err(("extension_digits".into(), format!("must be 1 to 4 (got {})", self.extension_digits)));
        }
        if self.memory_callback_minutes > MAX_MEMORY_CALLBACK_MINUTES {
            return Err((
                "memory_callback_minutes".into(),
                format!("must be 0 to {MAX_MEMORY_CALLBACK_MINUTES} (got {})", self.memory_callback_minutes),
            ));
        }
        if self.memory_callback_minutes > 0 && self.mode != Mode::Ax {
            return Err(("memory_callback_minutes".into(), format!("is for AX apps only (this app is {})", self.mode)));
        }
        if !(1..=MAX_RULESET_OPERATIONS).contains(&self.ruleset_max_operations) {
            return Err((
                "ruleset_max_operations".into(),
                format!("must be 1 to {MAX_RULESET_OPERATIONS} (got {})", self.ruleset_max_operations),
            ));
        }
        if !(1..=MAX_RULESET_DEADLINE_MS).contains(&self.ruleset_deadline_ms) {
            return Err((
                "ruleset_deadline_ms".into(),
                format!("must be 1 to {MAX_RULESET_DEADLINE_MS} (got {})", self.ruleset_deadline_ms),
            ));
        }
        if self.sms && self.sms_scenario.trim().is_empty() {
            return Err(("sms_scenario".into(), "is required when sms = true".into()));
        }
        for (key, tone) in [
            ("record_hint_tone", &self.record_hint_tone),
            ("close_hint_tone", &self.close_hint_tone),
            ("extension_prompt", &self.extension_prompt),
        ] {
            if !tone.is_empty() {
                check_tone_name(tone).map_err(at(key))?;
            }
        }
        for (key, url) in self.push_urls() {
            check_url(url).map_err(at(key))?;
        }
        let mut seen = std::collections::HashSet::new();
        for (index, number) in self.numbers.iter().enumerate() {
            check_e164(&number.number).map_err(at(&format!("numbers[{index}].number")))?;
            check_area_code(&number.area_code).map_err(at(&format!("numbers[{index}].area_code")))?;
            if !seen.insert(number.number.as_str()) {
                return Err((format!("numbers[{index}].number"), format!("{} is listed twice", number.number)));
            }
        }
        Ok(())
    }

    /// Every URL privnum pushes this app's traffic to, with its key.
    pub fn push_urls(&self) -> [(&'static str, &str); 5] {
        [
            ("call_event_url", &self.call_event_url),
            ("cdr_url", &self.cdr_url),
            ("sms_url", &self.sms_url),
            ("sms_control_url", &self.sms_control_url),
            ("callin_url", &self.callin_url),
        ]
    }

    /// The app as privnum keeps it, and its X numbers.
    pub fn into_parts(self) -> (App, Vec<XNumber>) {
        let numbers = self
            .numbers
            .into_iter()
            .map(|number| XNumber {
                number: number.number,
                app_key: self.app_key.clone(),
                area_code: number.area_code,
                sms: number.sms,
                status: number.status,
            })
            .collect();
        let app = App {
            app_key: self.app_key,
            app_secret: self.app_secret,
            mode: self.mode,
            scenario: self.scenario,
            recording: self.recording,
            record_hint_tone: self.record_hint_tone,
            close_hint_tone: self.close_hint_tone,
            extension_digits: self.extension_digits,
            extension_prompt: self.extension_prompt,
            sms: self.sms,
            sms_scenario: self.sms_scenario,
            call_event_url: self.call_event_url,
            cdr_url: self.cdr_url,
            sms_url: self.sms_url,
            sms_control_url: self.sms_control_url,
            callin_url: self.callin_url,
            memory_callback_minutes: self.memory_callback_minutes,
            ruleset: RulesetSettings {
                review: self.ruleset_review,
                max_operations: self.ruleset_max_operations,
                deadline_ms: self.ruleset_deadline_ms,
            },
        };
        (app, numbers)
    }
}

/// URLs are optional (`""`); when given they must be plain http(s) URLs.
fn check_url(url: &str) -> Result<(), String> {
    if url.is_empty() || url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("{url:?} must start with http:// or https://"))
    }
}

/// A duration written as `500ms`, `30s`, `4m` or `2h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn parse(text: &str) -> Result<Self, String> {
        let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (digits, unit) = text.split_at(digits_end);
        let amount: u64 = digits.parse().map_err(|_| format!("{text:?} must be a number followed by ms, s, m or h"))?;
        let millis = match unit {
            "ms" => Some(amount),
            "s" => amount.checked_mul(1000),
            "m" => amount.checked_mul(60_000),
            "h" => amount.checked_mul(3_600_000),
            _ => return Err(format!("{text:?} must end in ms, s, m or h")),
        };
        let millis = millis.ok_or_else(|| format!("{text:?} is too long"))?;
        Ok(HumanDuration(Duration::from_millis(millis)))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HumanDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("privnum.toml")).map_err(|err| err.to_string())
    }

    #[test]
    fn the_demo_config_parses() {
        let config = parse(include_str!("../privnum.toml")).unwrap();
        let modes: Vec<Mode> = config.apps.iter().map(|app| app.mode).collect();
        assert_eq!(modes, [Mode::Axb, Mode::Ax, Mode::Axe, Mode::X], "one demo app per mode");
        assert_eq!(config.push_retry_schedule[3], HumanDuration(Duration::from_secs(106 * 60)));
    }

    #[test]
    fn the_demo_tokens_are_refused_beyond_loopback_only() {
        parse("listen = \"127.0.0.1:8080\"\n").unwrap();
        parse("listen = \"[::1]:8080\"\n").unwrap();
        let err = parse("listen = \"0.0.0.0:8080\"\n").unwrap_err();
        assert!(err.contains("admin_token") && err.contains("demo token") && err.contains("0.0.0.0:8080"), "{err}");
        let err = parse("listen = \"0.0.0.0:8080\"\nadmin_token = \"a-real-secret\"\n").unwrap_err();
        assert!(err.contains("switch_token"), "{err}");
        parse("listen = \"0.0.0.0:8080\"\nadmin_token = \"a-real-secret\"\nswitch_token = \"another\"\n").unwrap();
    }

    #[test]
    fn a_config_file_the_operator_named_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nowhere.toml");
        let err = Config::load_required(&missing).unwrap_err().to_string();
        assert!(err.contains("nowhere.toml"), "{err}");
        assert!(Config::load(&missing).is_ok(), "without --config, no file means the defaults");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse("listen = \"127.0.0.1:1\"\nlisten_port = 3\n").unwrap_err();
        assert!(err.contains("listen_port"), "{err}");
        let err = parse("[[apps]]\napp_key = \"a\"\napp_secret = \"s\"\nmode = \"AXB\"\ncolour = 1\n").unwrap_err();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = parse("cdr_batch_max = 51\n").unwrap_err();
        assert!(err.contains("cdr_batch_max"), "{err}");
        let err = parse("push_retry_schedule = [\"1x\"]\n").unwrap_err();
        assert!(err.contains("1x"), "{err}");
        let err = parse("[[apps]]\napp_key = \"a\"\nmode = \"AXB\"\n").unwrap_err();
        assert!(err.contains("app_secret"), "{err}");
        let err = parse("[[apps]]\napp_key = \"a\"\napp_secret = \"s\"\nmode = \"AXB\"\nsms = true\n").unwrap_err();
        assert!(err.contains("apps[0] (a).sms_scenario"), "{err}");
        let err = parse("[[apps]]\napp_key = \"a\"\napp_secret = \"s\"\nmode = \"AXYB\"\n").unwrap_err();
        assert!(err.contains("AXYB"), "{err}");
        let err = parse("[[apps]]\napp_key = \"a\"\napp_secret = \"s\"\nmode = \"AX\"\nnumbers = [{ number = \"170\", area_code = \"0755\" }]\n")
            .unwrap_err();
        assert!(err.contains("numbers[0].number"), "{err}");
    }

    #[test]
    fn tls_names_its_files_and_checks_its_keys() {
        assert_eq!(parse("").unwrap().tls, None, "without [tls], plain HTTP");
        let config = parse("[tls]\ncert = \"certs/chain.pem\"\nkey = \"certs/key.pem\"\n").unwrap();
        assert_eq!(config.tls, Some(TlsConfig::new("certs/chain.pem", "certs/key.pem")));
        let err = parse("[tls]\ncert = \"chain.pem\"\n").unwrap_err();
        assert!(err.contains("key"), "{err}");
        let err = parse("[tls]\ncert = \"\"\nkey = \"key.pem\"\n").unwrap_err();
        assert!(err.contains("tls.cert"), "{err}");
        let err = parse("[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nhandshake_timeout_secs = 0\n").unwrap_err();
        assert!(err.contains("tls.handshake_timeout_secs"), "{err}");
        let err = parse("[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nciphers = []\n").unwrap_err();
        assert!(err.contains("ciphers"), "{err}");
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(HumanDuration::parse("500ms").unwrap().0, Duration::from_millis(500));
        assert_eq!(HumanDuration::parse("2h").unwrap().0, Duration::from_secs(7200));
        assert!(HumanDuration::parse("m").is_err());
        assert!(HumanDuration::parse("5").is_err());
    }
}
