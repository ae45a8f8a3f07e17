//! Telemetry as typed events: each observable thing is one struct whose `emit` writes the log line
//! and updates the counter together, so logs and `/metrics` cannot disagree.
//!
//! Counters are plain atomics or a small labelled map; `/metrics` renders them in the Prometheus
//! text format without a metrics framework.
//!
//! A leaf: events name only domain types and plain data, never a subsystem's (script, store), so
//! every layer can emit them. What other parts count themselves (the script host, the store's
//! flushes and call log) reaches the renderers below as the plain structs defined here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::domain::{Action, AppToneSetting, XFailure};

/// A counter family for rendering: name, help, and `(labels, counter)` per series.
type Family<'a> = (&'a str, &'a str, &'a [(&'a str, &'a AtomicU64)]);

#[derive(Debug, Default)]
pub struct Metrics {
    /// `(surface, resultcode)` → count. Provisioning and admin only: the switch's call path
    /// counts with the atomics below and takes no lock.
    results: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    bindings_without_notice: AtomicU64,
    calls_without_notice: AtomicU64,
    bindings_expired: AtomicU64,
    decisions_connect: AtomicU64,
    decisions_release: AtomicU64,
    decisions_collect: AtomicU64,
    decisions_fallback: AtomicU64,
    app_tones_skipped_record: AtomicU64,
    app_tones_skipped_close: AtomicU64,
    app_tones_skipped_prompt: AtomicU64,
    connections_refused: AtomicU64,
    tls_handshakes_timeout: AtomicU64,
    tls_handshakes_plain_http: AtomicU64,
    tls_handshakes_refused: AtomicU64,
    retried_callins: AtomicU64,
    retried_events: AtomicU64,
    callins_unrecordable: AtomicU64,
    rebuilt_calls: AtomicU64,
    /// X mode's Block callins per app: latency buckets and failures by kind. Only X-mode callins
    /// take this lock, once each, after their customer answered.
    block_callins: Mutex<BTreeMap<String, BlockCallinStats>>,
}

/// The upper bounds (seconds) of the Block callin latency histogram's buckets.
const BLOCK_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Default, Clone)]
struct BlockCallinStats {
    /// Per bucket of `BLOCK_BUCKETS` (not cumulative), then the count above the last.
    buckets: [u64; BLOCK_BUCKETS.len() + 1],
    count: u64,
    sum_seconds: f64,
    failures: BTreeMap<&'static str, u64>,
}

impl Metrics {
    fn count_result(&self, surface: &'static str, code: &'static str) {
        let mut results = self.results.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *results.entry((surface, code)).or_default() += 1;
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP privnum_requests_total Requests answered, by API surface and resultcode.\n");
        out.push_str("# TYPE privnum_requests_total counter\n");
        let results = self.results.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        for ((surface, code), count) in results {
            let _ = writeln!(out, "privnum_requests_total{{surface=\"{surface}\",resultcode=\"{code}\"}} {count}");
        }
        let families: [Family<'_>; 9] = [
            (
                "privnum_connections_refused_total",
                "Connections answered 503 and closed because max_connections were open.",
                &[("", &self.connections_refused)],
            ),
            (
                "privnum_tls_handshakes_failed_total",
                "TLS connections closed before their handshake completed: too slow (tls.handshake_timeout_secs), plain HTTP (answered 400), or refused by TLS.",
                &[
                    ("{reason=\"timeout\"}", &self.tls_handshakes_timeout),
                    ("{reason=\"plain_http\"}", &self.tls_handshakes_plain_http),
                    ("{reason=\"refused\"}", &self.tls_handshakes_refused),
                ],
            ),
            (
                "privnum_compliance_warnings_total",
                "Recording with no notice at all (no recordHintTone and no app record_hint_tone): bindings made, calls decided.",
                &[
                    ("{kind=\"record_without_notice\",on=\"binding\"}", &self.bindings_without_notice),
                    ("{kind=\"record_without_notice\",on=\"call\"}", &self.calls_without_notice),
                ],
            ),
            ("privnum_bindings_expired_total", "Expired bindings removed by the sweeper.", &[("", &self.bindings_expired)]),
            (
                "privnum_switch_decisions_total",
                "Callin decisions, by action; fallback counts script failures and invariant breaks.",
                &[
                    ("{action=\"connect\"}", &self.decisions_connect),
                    ("{action=\"release\"}", &self.decisions_release),
                    ("{action=\"collect\"}", &self.decisions_collect),
                    ("{action=\"fallback\"}", &self.decisions_fallback),
                ],
            ),
            (
                "privnum_switch_retries_total",
                "Switch requests recognized as retries: a callin answered again with its session's decision, an event already recorded (not pushed again).",
                &[("{request=\"callin\"}", &self.retried_callins), ("{request=\"event\"}", &self.retried_events)],
            ),
            (
                "privnum_callins_released_store_fault_total",
                "Callins answered release (8011) because the store could not record their session.",
                &[("", &self.callins_unrecordable)]
            ),
            (
                "privnum_calls_rebuilt_total",
                "Calls privnum had lost (a crash right after a connect's answer) rebuilt from an event that named them.",
                &[("", &self.rebuilt_calls)],
            ),
            (
                "privnum_app_tones_skipped_total",
                "Calls where the app's record_hint_tone, close_hint_tone or extension_prompt was not played because it is not an approved tone.",
                &[
                    ("{setting=\"record_hint_tone\"}", &self.app_tones_skipped_record),
                    ("{setting=\"close_hint_tone\"}", &self.app_tones_skipped_close),
                    ("{setting=\"extension_prompt\"}", &self.app_tones_skipped_prompt),
                ],
            ),
        ];
        for (name, help, series) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, counter) in series {
                let _ = writeln!(out, "{name}{labels} {}", counter.load(Ordering::Relaxed));
            }
        }
        self.render_block_callins(&mut out);
        out
    }

    fn render_block_callins(&self, out: &mut String) {
        let apps = self.block_callins.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let name = "privnum_x_callin_seconds";
        let _ = writeln!(out, "# HELP {name} X mode: time from a Block callin push to its customer's reply (or the failure), by app; callins decided without asking (failing fast) are not in it.\n# TYPE {name} histogram");
        for (app, stats) in &apps {
            let mut cumulative = 0;
            for (bound, count) in BLOCK_BUCKETS.iter().zip(&stats.buckets) {
                cumulative += count;
                let _ = writeln!(out, "{name}_bucket{{app=\"{app}\",le=\"{bound}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{name}_bucket{{app=\"{app}\",le=\"+Inf\"}} {}", stats.count);
            let _ = writeln!(out, "{name}_sum{{app=\"{app}\"}} {}", stats.sum_seconds);
            let _ = writeln!(out, "{name}_count{{app=\"{app}\"}} {}", stats.count);
        }
        let name = "privnum_x_callin_failures_total";
        let _ = writeln!(out, "# HELP {name} X mode: Block callins without a usable reply, by app and kind (timeout, unreachable, status, invalid, tone, failing_fast).\n# TYPE {name} counter");
        for (app, stats) in &apps {
            for (kind, count) in &stats.failures {
                let _ = writeln!(out, "{name}{{app=\"{app}\",kind=\"{kind}\"}} {count}");
            }
        }
    }
}

/// X mode's fail-fast state per app: `(app_key, failing fast, failures in a row)`.
/// What `/metrics` shows of an app's X-mode Block pushes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockCounters {
    pub app_key: String,
    /// Its callins are decided at once, without waiting for its customer's server.
    pub failing_fast: bool,
    pub failures_in_a_row: u32,
}

pub fn render_block_states(states: &[BlockCounters]) -> String {
    let mut out = String::new();
    let name = "privnum_x_callin_failing_fast";
    let _ = writeln!(out, "# HELP {name} X mode: 1 while an app's callins are decided without waiting for its customer's server (it failed every recent one).\n# TYPE {name} gauge");
    for state in states {
        let _ = writeln!(out, "{name}{{app=\"{}\"}} {}", state.app_key, u8::from(state.failing_fast));
    }
    let name = "privnum_x_callin_failures_in_a_row";
    let _ = writeln!(
        out,
        "# HELP {name} X mode: an app's Block callins that got no answer since the last that did.\n# TYPE {name} gauge"
    );
    for state in states {
        let _ = writeln!(out, "{name}{{app=\"{}\"}} {}", state.app_key, state.failures_in_a_row);
    }
    out
}

/// An X-mode Block callin was answered, or failed.
pub struct BlockCallin<'a> {
    pub app_key: &'a str,
    pub elapsed: std::time::Duration,
    /// Why there was no usable reply; `None`: there was one.
    pub outcome: Option<&'a XFailure>,
}

impl BlockCallin<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        let seconds = self.elapsed.as_secs_f64();
        {
            let mut apps = metrics.block_callins.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let stats = match apps.get_mut(self.app_key) {
                Some(stats) => stats,
                None => apps.entry(self.app_key.to_owned()).or_default(),
            };
            // A callin decided without asking (failing fast) says nothing of the customer's time.
            if !matches!(self.outcome, Some(XFailure::FailingFast)) {
                let bucket = BLOCK_BUCKETS.iter().position(|bound| seconds <= *bound).unwrap_or(BLOCK_BUCKETS.len());
                stats.buckets[bucket] += 1;
                stats.count += 1;
                stats.sum_seconds += seconds;
            }
            if let Some(failure) = self.outcome {
                *stats.failures.entry(failure.kind()).or_default() += 1;
            }
        }
        if let Some(failure) = self.outcome {
            // Failing fast was logged once when it began.
            if !matches!(failure, XFailure::FailingFast) {
                tracing::info!(
                    app_key = self.app_key,
                    kind = failure.kind(),
                    "X-mode callin without a usable reply: {failure}"
                );
            }
        }
    }
}

/// A request answered with a result code. (Refusals are logged where their reason is known, in
/// `http::error`; this only counts.)
pub struct RequestAnswered {
    pub surface: &'static str,
    pub code: &'static str,
}

impl RequestAnswered {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.count_result(self.surface, self.code);
    }
}

/// A binding records calls with no notice to the parties: the carrier requires one.
pub struct RecordWithoutNotice<'a> {
    pub app_key: &'a str,
    pub subscription_id: &'a str,
}

impl RecordWithoutNotice<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.bindings_without_notice.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            app_key = self.app_key,
            subscription_id = self.subscription_id,
            "binding records without a recording notice: neither recordHintTone nor the app's record_hint_tone is set"
        );
    }
}

/// A call is recorded with no notice. Counted every time; the binding was already warned about
/// when it was made, so the call path logs only at debug level.
pub struct CallRecordedWithoutNotice<'a> {
    pub app_key: &'a str,
    pub subscription_id: &'a str,
}

impl CallRecordedWithoutNotice<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.calls_without_notice.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            app_key = self.app_key,
            subscription_id = self.subscription_id,
            "call recorded without a notice"
        );
    }
}

/// An app names a tone that is not approved (yet), so a call went without it. Counted every
/// time; logged at debug level here, and as a warning when the app is saved
/// ([`AppToneNotApproved`]).
pub struct AppToneSkipped<'a> {
    pub app_key: &'a str,
    pub setting: AppToneSetting,
    pub file_name: &'a str,
}

impl AppToneSkipped<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        let counter = match self.setting {
            AppToneSetting::RecordHint => &metrics.app_tones_skipped_record,
            AppToneSetting::CloseHint => &metrics.app_tones_skipped_close,
            AppToneSetting::ExtensionPrompt => &metrics.app_tones_skipped_prompt,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            app_key = self.app_key,
            setting = self.setting.name(),
            file_name = self.file_name,
            "app tone not played: not an approved tone"
        );
    }
}

/// An app was saved naming a tone that is not approved: its calls will go without it until it is.
pub struct AppToneNotApproved<'a> {
    pub app_key: &'a str,
    pub setting: AppToneSetting,
    pub file_name: &'a str,
}

impl AppToneNotApproved<'_> {
    pub fn emit(&self) {
        tracing::warn!(
            app_key = self.app_key,
            setting = self.setting.name(),
            file_name = self.file_name,
            "the app names a tone that is not approved; calls play none until it is uploaded and approved"
        );
    }
}

/// A callin was decided.
pub struct CallinDecided {
    pub action: Action,
    pub fallback: bool,
}

impl CallinDecided {
    pub fn emit(&self, metrics: &Metrics) {
        let counter = match (self.fallback, self.action) {
            (true, _) => &metrics.decisions_fallback,
            (false, Action::Release) => &metrics.decisions_release,
            (false, Action::Collect) => &metrics.decisions_collect,
            (false, Action::Connect) => &metrics.decisions_connect,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A callin retried with a live session's id was answered with its decision again.
pub struct CallinRetried;

impl CallinRetried {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.retried_callins.fetch_add(1, Ordering::Relaxed);
    }
}

/// An event the switch reported again was recognized and not pushed twice.
pub struct EventRetried;

impl EventRetried {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.retried_events.fetch_add(1, Ordering::Relaxed);
    }
}

/// A lost call was rebuilt from an event that named it; `action` is what deciding it again gave.
pub struct CallRebuilt {
    pub action: Action,
}

impl CallRebuilt {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.rebuilt_calls.fetch_add(1, Ordering::Relaxed);
        if self.action != Action::Connect {
            tracing::warn!(action = ?self.action, "a rebuilt call was not decided connect again: its binding changed");
        }
    }
}

/// The sweeper removed expired bindings.
pub struct BindingsExpired {
    pub count: usize,
}

impl BindingsExpired {
    pub fn emit(&self, metrics: &Metrics) {
        if self.count > 0 {
            metrics.bindings_expired.fetch_add(self.count as u64, Ordering::Relaxed);
            tracing::debug!(count = self.count, "expired bindings removed");
        }
    }
}

/// What `/metrics` shows of the script host.
#[derive(Debug, Clone, Default)]
pub struct ScriptCounters {
    /// The active script version.
    pub active: String,
    /// Reloads that became active, and those rolled back.
    pub reloads: u64,
    pub rejected: u64,
    /// Handler runs that failed and got the fallback decision.
    pub runtime_errors: u64,
    /// Whether the last reload was refused.
    pub last_reload_failed: bool,
    /// The script pool's main-lane threads.
    pub pool_threads: usize,
    /// Inputs kept in the pool's lane for those recently stopped by the sandbox.
    pub suspects: usize,
    /// Failed runs by script, location and kind.
    pub strikes: Vec<ScriptStrike>,
    /// The worst time from a run's deadline to its caller's fallback answer.
    pub deadline_overrun_max_micros: u64,
}

/// Customer rule-set runs by app, version and outcome: `decided` (its answer was used),
/// `passed` (it returned `()`), `invariant` (its answer broke one), or a failure kind
/// (`deadline`, `limit`, `error`, `late`, `refused`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RulesetRuns(pub Vec<(String, String, &'static str, u64)>);

impl RulesetRuns {
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP privnum_ruleset_runs_total Customer rule-set runs, by app, version and outcome (decided, passed, invariant, deadline, limit, error, late, refused).
             # TYPE privnum_ruleset_runs_total counter
",
        );
        for (app, version, outcome, count) in &self.0 {
            let _ = writeln!(
                out,
                "privnum_ruleset_runs_total{{app=\"{}\",version=\"{}\",outcome=\"{outcome}\"}} {count}",
                label(app),
                label(version)
            );
        }
        out
    }
}

/// Failed handler runs of one script at one location, of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptStrike {
    /// The script's path under the scripts directory.
    pub script: String,
    /// `line:column` where it was stopped or failed, or the handler's name.
    pub location: String,
    /// `deadline`, `limit`, `error`, `late` or `refused`.
    pub kind: &'static str,
    pub count: u64,
}

/// A label value in the Prometheus text format.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// What `/metrics` shows of the call log.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallLogCounters {
    pub file_bytes: u64,
    pub live_bytes: u64,
    pub push_memory_bytes: u64,
    pub pushes_on_disk: u64,
    pub compactions: u64,
    pub compaction_micros: u64,
}

/// A callin was answered `release` because the store cannot record its session (a storage
/// fault, logged once when it began): counted, not logged.
pub struct CallinUnrecordable;

impl CallinUnrecordable {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.callins_unrecordable.fetch_add(1, Ordering::Relaxed);
    }
}

/// What `/metrics` shows of the store's health, per part (`part` is its name: `sled`,
/// `call_log`).
#[derive(Debug, Clone, Default)]
pub struct StoreHealthCounters {
    /// `(part, healthy now, faults, recoveries)`.
    pub parts: Vec<(&'static str, bool, u64, u64)>,
    /// Changes and durability waits refused while a part was faulted.
    pub refused: u64,
}

/// The store's health, in the Prometheus text format.
pub fn render_store_health(stats: &StoreHealthCounters) -> String {
    let mut out = String::new();
    let healthy = stats.parts.iter().all(|(_, healthy, _, _)| *healthy);
    let _ = writeln!(
        out,
        "# HELP privnum_store_healthy 1 while the store can make changes durable; 0 while a part is faulted (changes refused, callins released).\n\
         # TYPE privnum_store_healthy gauge\nprivnum_store_healthy {}",
        u8::from(healthy)
    );
    let _ = writeln!(
        out,
        "# HELP privnum_store_part_healthy 1 while the part (sled, the call log) can make changes durable.\n# TYPE privnum_store_part_healthy gauge"
    );
    for (part, healthy, _, _) in &stats.parts {
        let _ = writeln!(out, "privnum_store_part_healthy{{part=\"{part}\"}} {}", u8::from(*healthy));
    }
    let _ = writeln!(out, "# HELP privnum_store_faults_total Storage faults (a failed write or flush), by part.\n# TYPE privnum_store_faults_total counter");
    for (part, _, faults, _) in &stats.parts {
        let _ = writeln!(out, "privnum_store_faults_total{{part=\"{part}\"}} {faults}");
    }
    let _ = writeln!(out, "# HELP privnum_store_recoveries_total Recoveries from storage faults, by part.\n# TYPE privnum_store_recoveries_total counter");
    for (part, _, _, recoveries) in &stats.parts {
        let _ = writeln!(out, "privnum_store_recoveries_total{{part=\"{part}\"}} {recoveries}");
    }
    let _ = writeln!(
        out,
        "# HELP privnum_store_refused_total Changes and durability waits refused because a part of the store was faulted.\n\
         # TYPE privnum_store_refused_total counter\nprivnum_store_refused_total {}",
        stats.refused
    );
    out
}

/// What `/metrics` shows of group commit.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlushCounters {
    pub waits: u64,
    pub flushes: u64,
    pub flush_micros: u64,
}

/// One app's pushes of one kind, as `/metrics` and `GET /v1/admin/pushes` show them.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
pub struct PushCounters {
    pub app_key: String,
    /// `events` or `cdrs`.
    pub kind: &'static str,
    /// Pushes in the outbox, not yet acknowledged (those in flight included).
    pub waiting: u64,
    /// Of them, those spilled to disk whole (key and all) beyond the memory budget.
    pub spilled: u64,
    /// Age of the oldest of them, in milliseconds (0 when none waits).
    pub oldest_age_ms: u64,
    /// Pushes being sent now (a CDR batch counts its CDRs).
    pub in_flight: u64,
    /// Since the start: pushes acknowledged, failed attempts that will be retried, pushes buried.
    pub delivered: u64,
    pub retried: u64,
    pub buried: u64,
    /// The receiver fails every request: one probe at a time until it answers.
    pub backing_off: bool,
}

/// A push metric: name, type, help, and its value for one lane.
type PushFamily = (&'static str, &'static str, &'static str, fn(&PushCounters) -> String);

/// Push delivery's gauges and counters, by app and kind, in the Prometheus text format.
pub fn render_pushes(lanes: &[PushCounters]) -> String {
    let families: [PushFamily; 8] = [
        (
            "privnum_pushes_waiting",
            "gauge",
            "Pushes waiting in the outbox (in flight included), by app and kind.",
            |l| l.waiting.to_string(),
        ),
        (
            "privnum_pushes_spilled",
            "gauge",
            "Of the waiting pushes, those moved to disk whole (key and all) beyond push_memory_budget_mb.",
            |l| l.spilled.to_string(),
        ),
        ("privnum_pushes_oldest_age_seconds", "gauge", "Age of the oldest waiting push, by app and kind.", |l| {
            format!("{:.3}", l.oldest_age_ms as f64 / 1000.0)
        }),
        ("privnum_pushes_in_flight", "gauge", "Pushes being sent now (a CDR batch counts its CDRs).", |l| {
            l.in_flight.to_string()
        }),
        ("privnum_pushes_delivered_total", "counter", "Pushes the customer acknowledged.", |l| l.delivered.to_string()),
        ("privnum_pushes_retried_total", "counter", "Failed attempts that will be tried again.", |l| {
            l.retried.to_string()
        }),
        ("privnum_pushes_buried_total", "counter", "Pushes moved to the dead letters.", |l| l.buried.to_string()),
        (
            "privnum_pushes_backing_off",
            "gauge",
            "1 while the receiver fails every request and gets one probe at a time.",
            |l| u8::from(l.backing_off).to_string(),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in families {
        let _ = writeln!(
            out,
            "# HELP {name} {help}
# TYPE {name} {kind}"
        );
        for lane in lanes {
            let _ = writeln!(out, "{name}{{app=\"{}\",kind=\"{}\"}} {}", lane.app_key, lane.kind, value(lane));
        }
    }
    out
}

/// The script host's counters, in the Prometheus text format.
pub fn render_scripts(status: &ScriptCounters) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP privnum_script_reloads_total Script reloads, by outcome.\n# TYPE privnum_script_reloads_total counter\n\
         privnum_script_reloads_total{{outcome=\"reloaded\"}} {}\nprivnum_script_reloads_total{{outcome=\"rolled_back\"}} {}",
        status.reloads, status.rejected
    );
    let _ = writeln!(
        out,
        "# HELP privnum_script_runtime_errors_total Handler runs that failed and got the fallback decision.\n\
         # TYPE privnum_script_runtime_errors_total counter\nprivnum_script_runtime_errors_total {}",
        status.runtime_errors
    );
    let _ = writeln!(
        out,
        "# HELP privnum_script_strikes_total Handler runs that failed, by script, location (line:column where it was stopped or failed, else the handler) and kind (deadline, limit, error, late, refused).\n\
         # TYPE privnum_script_strikes_total counter"
    );
    for strike in &status.strikes {
        let _ = writeln!(
            out,
            "privnum_script_strikes_total{{script=\"{}\",location=\"{}\",kind=\"{}\"}} {}",
            label(&strike.script),
            label(&strike.location),
            strike.kind,
            strike.count
        );
    }
    let _ = writeln!(
        out,
        "# HELP privnum_script_deadline_overrun_max_seconds The longest a caller waited past a script's deadline for its fallback answer.\n\
         # TYPE privnum_script_deadline_overrun_max_seconds gauge\nprivnum_script_deadline_overrun_max_seconds {:.6}\n\
         # HELP privnum_script_pool_threads Threads running scripts (script_threads), besides the one for inputs recently stopped.\n\
         # TYPE privnum_script_pool_threads gauge\nprivnum_script_pool_threads {}\n\
         # HELP privnum_script_suspect_inputs Inputs recently stopped by the sandbox, run apart on one thread at a tenth of a core.\n\
         # TYPE privnum_script_suspect_inputs gauge\nprivnum_script_suspect_inputs {}",
        status.deadline_overrun_max_micros as f64 / 1e6,
        status.pool_threads,
        status.suspects
    );
    let _ = writeln!(
        out,
        "# HELP privnum_script_last_reload_failed 1 when the last reload was refused (see GET /v1/admin/scripts).\n\
         # TYPE privnum_script_last_reload_failed gauge\nprivnum_script_last_reload_failed {}",
        u8::from(status.last_reload_failed)
    );
    let _ = writeln!(
        out,
        "# HELP privnum_script_active The active script version.\n# TYPE privnum_script_active gauge\n\
         privnum_script_active{{version=\"{}\"}} 1",
        status.active
    );
    out
}

/// The call log's gauges and counters for `/metrics`.
pub fn render_call_log(stats: &CallLogCounters) -> String {
    format!(
        "# HELP privnum_call_log_bytes Size of the call log (sessions and waiting pushes) on disk.\n\
         # TYPE privnum_call_log_bytes gauge\nprivnum_call_log_bytes {}\n\
         # HELP privnum_call_log_live_bytes What a compaction of the call log would keep.\n\
         # TYPE privnum_call_log_live_bytes gauge\nprivnum_call_log_live_bytes {}\n\
         # HELP privnum_call_log_push_memory_bytes Bodies of waiting pushes held in memory (at most push_memory_budget_mb).\n\
         # TYPE privnum_call_log_push_memory_bytes gauge\nprivnum_call_log_push_memory_bytes {}\n\
         # HELP privnum_call_log_pushes_on_disk Waiting pushes whose body is on disk only (beyond the budget).\n\
         # TYPE privnum_call_log_pushes_on_disk gauge\nprivnum_call_log_pushes_on_disk {}\n\
         # HELP privnum_call_log_compactions_total Rewrites of the call log to what is live.\n\
         # TYPE privnum_call_log_compactions_total counter\nprivnum_call_log_compactions_total {}\n\
         # HELP privnum_call_log_compaction_seconds_total Time spent compacting, during which call-path writes wait.\n\
         # TYPE privnum_call_log_compaction_seconds_total counter\nprivnum_call_log_compaction_seconds_total {:.6}\n",
        stats.file_bytes,
        stats.live_bytes,
        stats.push_memory_bytes,
        stats.pushes_on_disk,
        stats.compactions,
        stats.compaction_micros as f64 / 1e6
    )
}

/// Group commit's counters, in the Prometheus text format: how many writers waited for the disk,
/// and how many flushes served them, taking how long.
pub fn render_flushes(stats: &FlushCounters) -> String {
    format!(
        "# HELP privnum_store_durable_waits_total Changes that waited to be on disk before their answer.\n\
         # TYPE privnum_store_durable_waits_total counter\nprivnum_store_durable_waits_total {}\n\
         # HELP privnum_store_flushes_total Flushes (sled flush plus fdatasync, and/or the call log's fdatasync), each serving every waiting change.\n\
         # TYPE privnum_store_flushes_total counter\nprivnum_store_flushes_total {}\n\
         # HELP privnum_store_flush_seconds_total Time spent in those flushes.\n\
         # TYPE privnum_store_flush_seconds_total counter\nprivnum_store_flush_seconds_total {:.6}\n",
        stats.waits,
        stats.flushes,
        stats.flush_micros as f64 / 1e6
    )
}

/// A connection was refused because `max_connections` were open. Counted every time; logged at
/// most once a second, so a flood of connections cannot flood the log.
pub struct ConnectionRefused {
    pub peer: std::net::SocketAddr,
    pub limit: usize,
}

impl ConnectionRefused {
    pub fn emit(&self, metrics: &Metrics) {
        static LAST_LOGGED_SEC: AtomicU64 = AtomicU64::new(0);
        let refused = metrics.connections_refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if LAST_LOGGED_SEC.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(peer = %self.peer, limit = self.limit, refused_so_far = refused, "refused a connection: max_connections are open");
        }
    }
}

/// A TLS connection closed before its handshake completed. `reason` is `timeout`, `plain_http`
/// or `refused`. Logged at debug level (scanners make many), except plain HTTP, a client's
/// misconfiguration: a warning at most once per 10 s.
pub struct TlsHandshakeFailed {
    pub peer: std::net::SocketAddr,
    pub reason: &'static str,
}

impl TlsHandshakeFailed {
    pub fn emit(&self, metrics: &Metrics) {
        static LAST_WARNED_SEC: AtomicU64 = AtomicU64::new(0);
        let counter = match self.reason {
            "timeout" => &metrics.tls_handshakes_timeout,
            "plain_http" => &metrics.tls_handshakes_plain_http,
            _ => &metrics.tls_handshakes_refused,
        };
        let failed = counter.fetch_add(1, Ordering::Relaxed) + 1;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = LAST_WARNED_SEC.load(Ordering::Relaxed);
        if self.reason == "plain_http"
            && now >= last.saturating_add(10)
            && LAST_WARNED_SEC.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(peer = %self.peer, so_far = failed, "a client spoke plain HTTP to the TLS listener and was told to use https://");
        } else {
            tracing::debug!(peer = %self.peer, reason = self.reason, "a TLS handshake failed");
        }
    }
}

/// A log writer that keeps every log event on one line of plain text: control characters in what
/// a line carries (a `%0D%0A` decoded from a path, a terminal escape sent as a caller) are written
/// as `\r`, `\n`, `\x1b` and so on, so untrusted text can neither forge a log line nor drive the
/// terminal that shows it. Each `write` is one formatted event; its final newline is kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct OneLineLog;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for OneLineLog {
    type Writer = OneLine<std::io::Stdout>;

    fn make_writer(&'a self) -> Self::Writer {
        OneLine(std::io::stdout())
    }
}

/// Writes to `W` with control characters escaped (see [`OneLineLog`]).
#[derive(Debug)]
pub struct OneLine<W>(pub W);

/// `line` with its control characters (C0, DEL and C1) escaped, but for one final newline.
pub fn escape_controls(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let (body, end) = match line.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (line, &b""[..]),
    };
    let is_c1 = |i: usize| body[i] == 0xc2 && body.get(i + 1).is_some_and(|b| (0x80..0xa0).contains(b));
    let needs = |i: usize| body[i] < 0x20 || body[i] == 0x7f || is_c1(i);
    if !(0..body.len()).any(needs) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = Vec::with_capacity(line.len() + 16);
    let mut i = 0;
    while i < body.len() {
        let byte = body[i];
        match byte {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ if byte < 0x20 || byte == 0x7f => out.extend_from_slice(format!("\\x{byte:02x}").as_bytes()),
            _ if is_c1(i) => {
                out.extend_from_slice(format!("\\u{{{:x}}}", body[i + 1]).as_bytes());
                i += 1;
            }
            _ => out.push(byte),
        }
        i += 1;
    }
    out.extend_from_slice(end);
    std::borrow::Cow::Owned(out)
}

impl<W: std::io::Write> std::io::Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(&escape_controls(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod log_tests {
    use super::escape_controls;

    #[test]
    fn a_log_line_stays_one_line_of_plain_text() {
        let plain = b"request refused: Invalid request.sessionId abc is not a known session\n";
        assert_eq!(&*escape_controls(plain), plain, "plain lines are written as they are");
        let forged = "refused: abc\r\n2026-01-01 INFO admin logged in \u{1b}[31mred\u{9b}2J\n";
        assert_eq!(
            String::from_utf8(escape_controls(forged.as_bytes()).into_owned()).unwrap(),
            "refused: abc\\r\\n2026-01-01 INFO admin logged in \\x1b[31mred\\u{9b}2J\n"
        );
        assert_eq!(&*escape_controls("中文 ü\n".as_bytes()), "中文 ü\n".as_bytes(), "other UTF-8 is kept");
    }
}
