//! The switchboard: the one way into a call's flow, for the switch adapter and the customer's
//! call controls. It routes a callin (or an AXE call's digits), builds and changes the session
//! through the ledger, names a release's code, and hands back the answer with how durable the
//! change must be before it is sent; HTTP only parses requests and serializes answers.
//!
//! Invariants: a session is built and changed here and in the ledger only; blocking store work
//! runs on a blocking thread, never on an async worker; a connected call's answer waits for no
//! disk (README, "Durability"), an event or a release waits for the call log, and the digits
//! or an event filing a recording for the whole store.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::answer::{CdrAnswer, DecisionAnswer, EventAnswer};
use super::deciding::{self, Joined, SharedDeciding};
use super::ledger::{DigitsOutcome, EndOutcome, Ledger};
use super::route::{decide_callin, decide_digits, state_code_for_release, CallIn, Customer, Routed};
use super::session::{Applied, Event, EventKind, Opened, Recording, Session, Sessions};
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::{state, Action, Binding, Decision};
use crate::push::Pusher;
use crate::script::api::Release;
use crate::script::ScriptHost;
use crate::store::{self, Store};
use crate::telemetry::{CallRebuilt, CallinDecided, CallinRetried, CallinUnrecordable, EventRetried, Metrics};

/// How durable a change must be before its answer is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Answer at once (a connected call: the switch is waiting to ring).
    None,
    /// After the call log's flush (`Calls::durable`).
    Calls,
    /// After sled's flush and the call log's (`Store::durable`).
    All,
}

/// An answer, and how durable its change must be before it is sent.
#[derive(Debug, Clone)]
pub struct Answered<T> {
    pub answer: T,
    pub durability: Durability,
}

/// Why the switchboard did not take a request.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("session {0} is not a known session")]
    UnknownSession(String),
    #[error("session {0} is already in use")]
    SessionInUse(String),
    #[error("session {0} is not collecting digits")]
    NotCollecting(String),
    #[error("session {0} has not ended")]
    NotEnded(String),
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A blocking task did not finish (it panicked, or the runtime is stopping).
    #[error("a blocking task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// A callin as the switch reports it, parsed.
#[derive(Debug, Clone)]
pub struct CallReport {
    pub caller: String,
    /// The X dialled.
    pub called: String,
    /// The switch's id for the call; privnum makes one when it sends none.
    pub session_id: Option<String>,
    /// When the call came in, as the switch says (only recorded); privnum's clock when absent.
    pub time: Option<i64>,
}

/// Who released a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseSide {
    Caller,
    Callee,
    Platform,
}

impl ReleaseSide {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseSide::Caller => "caller",
            ReleaseSide::Callee => "callee",
            ReleaseSide::Platform => "platform",
        }
    }
}

/// An event as the switch reports it, parsed and checked (the codes are real ones).
#[derive(Debug, Clone)]
pub struct EventReport {
    pub kind: EventKind,
    /// privnum's clock when absent.
    pub time: Option<i64>,
    pub release_side: Option<ReleaseSide>,
    pub state_code: Option<u32>,
    pub q850: Option<u32>,
    pub sip_status: Option<u32>,
    pub recording: Option<Recording>,
    /// The call this event is of, as the switch knows it: lets privnum rebuild a call it lost
    /// (a crash right after a connect's answer, before its session reached the disk).
    pub call: Option<CallOrigin>,
}

/// What the switch knows of a call from its callin: enough to decide it again.
#[derive(Debug, Clone)]
pub struct CallOrigin {
    pub caller: String,
    pub called: String,
    /// When the call came in; the event's time when absent.
    pub time: Option<i64>,
}

/// Why a call stop was not passed on.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("{0} is not a call of this app that is still going on")]
    NotLive(String),
    #[error("a call stop was asked for, but switch_control_url is not configured")]
    NotConfigured,
    #[error("the switch did not accept a call stop: {0}")]
    Refused(String),
}

/// How long the switch may take to accept a stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the switch's control URL is sent to stop a call.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StopCommand<'a> {
    command: &'static str,
    session_id: &'a str,
}

/// The call flow's facade; cheap to clone.
#[derive(Clone)]
pub struct Switchboard {
    /// Routing reads bindings, apps and tones; every write goes through the ledger.
    store: Arc<Store>,
    ledger: Ledger,
    scripts: Arc<ScriptHost>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    config: Arc<Config>,
    /// Callins being decided: a retry waits for the first (`deciding.rs`).
    deciding: SharedDeciding,
}

impl std::fmt::Debug for Switchboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switchboard").field("ledger", &self.ledger).finish_non_exhaustive()
    }
}

impl Switchboard {
    pub fn new(
        store: Arc<Store>,
        ledger: Ledger,
        scripts: Arc<ScriptHost>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        config: Arc<Config>,
    ) -> Self {
        Switchboard { store, ledger, scripts, metrics, clock, config, deciding: SharedDeciding::default() }
    }

    /// The calls in memory.
    pub fn sessions(&self) -> &Sessions {
        &self.ledger.sessions
    }

    /// The push deliverer (the admin API wakes a lane after a redelivery).
    pub fn pusher(&self) -> &Arc<Pusher> {
        &self.ledger.pusher
    }

    fn store(&self) -> &Store {
        &self.store
    }

    /// Decides a callin and opens its session. A connected call's save is only queued, so it
    /// opens on this thread; a released call's save (it has its CDR) is waited for, on a
    /// blocking thread, and its answer waits for the call log.
    ///
    /// A callin retried with the `sessionId`, caller and X of a session that lives hears that
    /// session's decision again, without routing it twice (the switch lost the first answer);
    /// one retried while the first is still being decided (an X-mode customer is slow) waits for
    /// that decision instead of asking the customer again. The same `sessionId` for another call
    /// is [`SwitchError::SessionInUse`].
    pub async fn callin(&self, report: CallReport) -> Result<Answered<DecisionAnswer>, SwitchError> {
        // Held until the session is opened: a retry meanwhile waits for this decision.
        let mut _first = None;
        if let Some(session_id) = &report.session_id {
            // A few rounds at most: a first callin that failed leaves the id to a waiting retry.
            for _ in 0..4 {
                if let Some(retried) = self.retried_callin(session_id, &report.caller, &report.called) {
                    return retried;
                }
                match self.deciding.join(session_id, &report.caller, &report.called) {
                    Joined::First(first) => {
                        _first = Some(first);
                        break;
                    }
                    Joined::Wait(done) => deciding::wait(done).await,
                    Joined::Other => return Err(SwitchError::SessionInUse(session_id.clone())),
                }
            }
        }
        if self.store.fault().is_some() {
            return Ok(unrecordable(report, &self.metrics));
        }
        let now = self.clock.now();
        let session_id = report.session_id.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let call =
            CallIn { session_id, caller: report.caller, called: report.called, time: report.time.unwrap_or(now) };
        let customer =
            Customer { pusher: &self.ledger.pusher, timeout: Duration::from_millis(self.config.x_callin_timeout_ms) };
        let routed = decide_callin(self.store(), &self.scripts, &self.metrics, customer, &call, now).await?;
        CallinDecided { action: routed.decision.action, fallback: routed.fallback }.emit(&self.metrics);
        let answer = DecisionAnswer::new(&call.session_id, &call.called, &routed);
        let mut session = Session {
            session_id: call.session_id,
            icid: uuid::Uuid::new_v4().simple().to_string(),
            app_key: routed.app.as_ref().map(|app| app.app_key.clone()),
            mode: routed.app.as_ref().map(|app| app.mode),
            caller: call.caller,
            x_number: call.called,
            callee: None,
            subscription_id: None,
            binding_caller_num: None,
            user_data: None,
            extend_num: None,
            area_code: routed.area_code.clone(),
            recording: None,
            decision: routed.decision.clone(),
            script_version: None,
            ruleset_version: None,
            count_answered: false,
            started_at: call.time,
            events: Vec::new(),
            last_seen: now,
            ended_at: None,
        };
        session.take_decision(&routed, now);
        session.count_answered = session.app_key.as_deref().is_some_and(|app| self.scripts.counts_answered(app));
        let released = session.ended_at.is_some();
        let opened = if released {
            let ledger = self.ledger.clone();
            blocking(move || ledger.open(session, None)).await??
        } else {
            let memory = match (&routed.binding, &routed.app) {
                (Some(Binding::Ax(binding)), Some(app)) => binding.memory_of_call(app, &session.caller, now),
                _ => None,
            };
            self.ledger.open(session, memory)?
        };
        if let Opened::Taken(session) = opened {
            // Another callin with this id opened it first: the same call retried at once, or
            // another call.
            let retried = self.retried_callin(&session.session_id, &session.caller, &session.x_number);
            return retried.unwrap_or(Err(SwitchError::SessionInUse(session.session_id)));
        }
        // A call released at routing has its CDR now: it is on disk before the answer. A connect
        // is answered at once; its session and callin push are applied by the store's committer
        // right after, and durable with the next flush (README, "Durability").
        let durability = if released { Durability::Calls } else { Durability::None };
        Ok(Answered { answer, durability })
    }

    /// The answer to a callin for a session that exists: its decision again when the callin is
    /// the same call's (caller and X), else [`SwitchError::SessionInUse`]; `None` when no session
    /// has this id. A decision that ended the call has its CDR in the call log: the retry's answer
    /// waits for the log like the first one did.
    fn retried_callin(
        &self,
        session_id: &str,
        caller: &str,
        called: &str,
    ) -> Option<Result<Answered<DecisionAnswer>, SwitchError>> {
        let session = self.sessions().get(session_id)?;
        if session.caller != caller || session.x_number != called {
            return Some(Err(SwitchError::SessionInUse(session_id.to_owned())));
        }
        CallinRetried.emit(&self.metrics);
        let released = session.decision.action == Action::Release;
        let durability = if released { Durability::Calls } else { Durability::None };
        Some(Ok(Answered { answer: DecisionAnswer::of_session(&session), durability }))
    }

    /// An AXE caller's extension after a `collect` (`digits` without the closing `#`), decided by
    /// `modes/axe.rhai` `on_digits`. The answer, connect or release, waits for the whole store:
    /// the callback record or the CDR is on disk before the switch acts on it.
    pub async fn digits(&self, session_id: &str, digits: String) -> Result<Answered<DecisionAnswer>, SwitchError> {
        let unknown = || SwitchError::UnknownSession(session_id.to_owned());
        let session = self.sessions().get(session_id).ok_or_else(unknown)?;
        // Its answer needs the whole store: refused at once while a part is faulted.
        if let Some(fault) = self.store.fault() {
            return Err(store::Error::Unavailable(fault).into());
        }
        if !session.is_collecting() {
            return Err(SwitchError::NotCollecting(session_id.to_owned()));
        }
        let now = self.clock.now();
        let routed = decide_digits(self.store(), &self.scripts, &self.metrics, &session, &digits, now).await?;
        CallinDecided { action: routed.decision.action, fallback: routed.fallback }.emit(&self.metrics);
        let answer = DecisionAnswer::new(session_id, &session.x_number, &routed);
        let (ledger, id) = (self.ledger.clone(), session_id.to_owned());
        match blocking(move || ledger.digits(&id, &digits, &routed, now)).await?? {
            DigitsOutcome::UnknownSession => Err(unknown()),
            DigitsOutcome::NotCollecting => Err(SwitchError::NotCollecting(session_id.to_owned())),
            DigitsOutcome::Recorded => Ok(Answered { answer, durability: Durability::All }),
        }
    }

    /// Records an event the switch reported. A `disconnect` without a `stateCode` gets one from
    /// `release.rhai`. Acknowledged once its pushes are on disk (the call log), and the recording
    /// it files too (sled).
    ///
    /// An event for a call privnum does not know, that names its call (`CallOrigin`), first
    /// rebuilds the session by deciding the callin again: a connect is answered before its
    /// session is on disk (for an answer in microseconds), so a crash in that window loses it, and
    /// this is how the call still gets its events and its CDR.
    pub async fn event(&self, session_id: &str, report: EventReport) -> Result<Answered<EventAnswer>, SwitchError> {
        let unknown = || SwitchError::UnknownSession(session_id.to_owned());
        if let Some(call) = &report.call {
            if !self.sessions().contains(session_id) {
                self.rebuild(session_id, call, report.time).await?;
            }
        }
        let mut state_code = report.state_code;
        if report.kind == EventKind::Disconnect && state_code.is_none() {
            let (alerted, answered) = self.sessions().progress(session_id).ok_or_else(unknown)?;
            let release = Release {
                q850: report.q850.map(i64::from),
                sip_status: report.sip_status.map(i64::from),
                release_side: report.release_side.map_or("", ReleaseSide::as_str).to_owned(),
                alerted,
                answered,
                collecting: self.sessions().collecting(session_id).unwrap_or(false),
            };
            state_code = Some(state_code_for_release(&self.scripts, release).await);
        }
        let now = self.clock.now();
        let event = Event {
            kind: report.kind,
            time: report.time.unwrap_or(now),
            release_side: report.release_side.map(|side| side.as_str().to_owned()),
            state_code,
            q850: report.q850,
            sip_status: report.sip_status,
        };
        let durability = if report.recording.is_some() { Durability::All } else { Durability::Calls };
        let (ledger, id, recording) = (self.ledger.clone(), session_id.to_owned(), report.recording);
        let applied = blocking(move || ledger.record(&id, event, recording, now)).await??.ok_or_else(unknown)?;
        if applied == Applied::Repeated {
            EventRetried.emit(&self.metrics);
        }
        Ok(Answered { answer: EventAnswer {}, durability })
    }

    /// Opens a lost call's session again by deciding its callin again, with its first time.
    async fn rebuild(&self, session_id: &str, call: &CallOrigin, event_time: Option<i64>) -> Result<(), SwitchError> {
        // A callin is released unrecorded while the store is faulted: refuse the event instead,
        // and the switch's retry rebuilds the call once the store is back.
        if let Some(fault) = self.store.fault() {
            return Err(store::Error::Unavailable(fault).into());
        }
        let report = CallReport {
            caller: call.caller.clone(),
            called: call.called.clone(),
            session_id: Some(session_id.to_owned()),
            time: call.time.or(event_time),
        };
        match self.callin(report).await {
            Ok(answered) => {
                CallRebuilt { action: answered.answer.action }.emit(&self.metrics);
                tracing::info!(
                    session_id,
                    action = ?answered.answer.action,
                    "an event named a call privnum did not know; its session was rebuilt by deciding it again"
                );
                Ok(())
            }
            // Another event of the call rebuilt it meanwhile.
            Err(SwitchError::SessionInUse(_)) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The CDR of an ended call (kept a minute after the end).
    pub fn cdr(&self, session_id: &str) -> Result<Answered<CdrAnswer>, SwitchError> {
        let session =
            self.sessions().get(session_id).ok_or_else(|| SwitchError::UnknownSession(session_id.to_owned()))?;
        if session.ended_at.is_none() {
            return Err(SwitchError::NotEnded(session_id.to_owned()));
        }
        let storage = self.ledger.record_storage(&session)?;
        let answer = CdrAnswer { session, host_name: self.config.node_name.clone(), storage };
        Ok(Answered { answer, durability: Durability::None })
    }

    /// Drops ended sessions after their grace and closes stale ones (each with its CDR). Blocks
    /// on the store: run it on a blocking thread.
    pub fn sweep(&self) -> usize {
        let timeout = i64::try_from(self.config.session_timeout_secs).unwrap_or(i64::MAX);
        self.ledger.sweep(self.clock.now(), timeout)
    }

    /// Ends a live call for ops, in privnum: its `disconnect` (platform, 8020) and CDR, through
    /// the ledger (`Ledger::end`); answered once they are in the call log. Asking the switch to
    /// stop the call too is [`Switchboard::stop`].
    pub async fn end(&self, session_id: &str) -> Result<Answered<EndOutcome>, SwitchError> {
        let (ledger, id, now) = (self.ledger.clone(), session_id.to_owned(), self.clock.now());
        let answer = blocking(move || ledger.end(&id, now)).await??;
        Ok(Answered { answer, durability: Durability::Calls })
    }

    /// Asks the switch, through `switch_control_url`, to stop a call of `app_key` that is still
    /// going on (README, "Stopping a call, recordings").
    pub async fn stop(&self, app_key: &str, session_id: &str) -> Result<(), StopError> {
        let live = self
            .sessions()
            .get(session_id)
            .is_some_and(|session| session.app_key.as_deref() == Some(app_key) && session.ended_at.is_none());
        if !live {
            return Err(StopError::NotLive(session_id.to_owned()));
        }
        let url = &self.config.switch_control_url;
        if url.is_empty() {
            return Err(StopError::NotConfigured);
        }
        let stop = StopCommand { command: "stop", session_id };
        let sent = self.pusher().http().post(url).timeout(STOP_TIMEOUT).json(&stop).send().await;
        match sent {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(StopError::Refused(format!("HTTP {}", response.status()))),
            Err(err) => Err(StopError::Refused(err.to_string())),
        }
    }

    /// Whether a call of `app_key` reported a recording named `object_name`.
    pub fn is_recording_of(&self, app_key: &str, object_name: &str) -> Result<bool, store::Error> {
        self.store().calls().is_recording_of(app_key, object_name)
    }
}

/// The answer to a callin while the store cannot record its session (a storage fault):
/// `release` with 8011 ([`state::PLATFORM_FAULT`]), and nothing recorded (no session, push or
/// CDR: the call never rang). Counted; the fault itself was logged once.
fn unrecordable(report: CallReport, metrics: &Metrics) -> Answered<DecisionAnswer> {
    CallinUnrecordable.emit(metrics);
    let session_id = report.session_id.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let decision = Decision::release(state::PLATFORM_FAULT, None);
    let routed = Routed::by_host(decision, None);
    Answered { answer: DecisionAnswer::new(&session_id, &report.called, &routed), durability: Durability::None }
}

/// Runs blocking store work on a blocking thread.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, SwitchError> {
    tokio::task::spawn_blocking(work).await.map_err(SwitchError::Task)
}
