//! The call ledger: every change to a call's session is saved together with the pushes it causes
//! (call events, and the CDR when the call ends), in one store transaction, and the delivery
//! lanes are woken. Exactly one CDR per session: it is made when the session ends (a release
//! decision, the switch's `disconnect`, the stale-session timeout, or ops ending it through the admin
//! API), and a session ends once.

use std::sync::Arc;

use serde::Serialize;

use super::report::{callin_event, cdr, collect_info_event, leg_event, RecordStorage};
use super::route::Routed;
use super::session::{Applied, Event, EventKind, Opened, Session, Sessions};
use crate::domain::axe::Callback;
use crate::push::Pusher;
use crate::store;
use crate::store::outbox::{Lane, Push};
use crate::store::AnsweredCall;

/// What a stale session's CDR says about its end.
pub const CLOSED_BY_TIMEOUT: &str = "privnum: the switch sent no disconnect within session_timeout_secs";

/// What the CDR of a call ops ended says about its end.
pub const CLOSED_BY_OPS: &str = "privnum: ended by ops through the admin API (POST /v1/admin/calls/{sessionId}/end)";

/// The `stateCode` of the `disconnect` privnum gives a call it ends itself, stale or ended by ops:
/// 8020, "Service exception".
pub const PLATFORM_END_CODE: u32 = crate::domain::state::SERVICE_EXCEPTION;

/// What became of a request to end a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndOutcome {
    UnknownSession,
    /// It had ended already (it is kept a minute after its end).
    AlreadyEnded,
    /// Ended now, with its `disconnect` and CDR.
    Ended,
}

/// What became of digits the switch reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitsOutcome {
    UnknownSession,
    /// The session is not waiting for digits (another mode, already decided, or ended).
    NotCollecting,
    Recorded,
}

#[derive(Clone)]
pub struct Ledger {
    /// The store's handle on sessions and the outbox: all the ledger writes.
    pub calls: store::Calls,
    pub sessions: Arc<Sessions>,
    pub pusher: Arc<Pusher>,
    pub node_name: String,
    /// For CDRs' recording links: the apps' secrets, and where recordings are kept (`""`: not
    /// known, no link).
    pub apps: store::Apps,
    pub record_domain: String,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("node_name", &self.node_name).finish_non_exhaustive()
    }
}

impl Ledger {
    /// Where a CDR's recording link points and who signs it: only for a call with a recording,
    /// of an app that still exists, when `record_domain` is set.
    pub fn record_storage(&self, session: &Session) -> Result<Option<RecordStorage>, store::Error> {
        let (Some(_), Some(app_key)) = (&session.recording, &session.app_key) else { return Ok(None) };
        if self.record_domain.is_empty() {
            return Ok(None);
        }
        Ok(self.apps.get(app_key)?.map(|app| RecordStorage {
            domain: self.record_domain.clone(),
            app_key: app.app_key.clone(),
            app_secret: app.app_secret.clone(),
        }))
    }

    /// Adds the call's CDR to `out`.
    fn push_cdr(&self, session: &Session, closed_by: Option<&str>, out: &mut Vec<Push>) -> Result<(), store::Error> {
        let storage = self.record_storage(session)?;
        self.push(session, Lane::Cdrs, cdr(session, &self.node_name, closed_by, storage.as_ref()), out)
    }

    fn push(
        &self,
        session: &Session,
        lane: Lane,
        body: impl Serialize,
        out: &mut Vec<Push>,
    ) -> Result<(), store::Error> {
        if let Some(app_key) = &session.app_key {
            out.push(self.calls.new_push(app_key, &session.session_id, lane, &body, self.pusher.now_ms())?);
        }
        Ok(())
    }

    /// A call privnum released by its decision (at routing, or after the digits): its
    /// `disconnect` at `time`, released by the platform with the decision's code, and its CDR.
    fn push_platform_release(&self, session: &Session, time: i64, pushes: &mut Vec<Push>) -> Result<(), store::Error> {
        let disconnect = Event {
            kind: EventKind::Disconnect,
            time,
            release_side: Some("platform".into()),
            state_code: session.decision.state_code,
            q850: None,
            sip_status: None,
        };
        self.push(session, Lane::Events, leg_event(session, &disconnect), pushes)?;
        self.push_cdr(session, None, pushes)
    }

    /// Changes one session ([`Sessions::update`]) and wakes the lanes of the pushes the change
    /// saved with it; `None` for an unknown session.
    fn change<R>(
        &self,
        session_id: &str,
        change: impl FnOnce(Session) -> Result<(Session, (R, Vec<Push>)), store::Error>,
    ) -> Result<Option<R>, store::Error> {
        match self.sessions.update(session_id, change) {
            None => Ok(None),
            Some(Err(err)) => Err(err),
            Some(Ok((outcome, pushes))) => {
                self.wake(&pushes);
                Ok(Some(outcome))
            }
        }
    }

    /// Counts a call answered at `at` for its app's rule set (`answered_calls`), when the app's
    /// rule set counts (the session says so).
    fn count_answered(&self, session: &Session, at: i64) {
        if let Some(call) = answered_call(session, at) {
            self.calls.count_answered(call);
        }
    }

    fn wake(&self, pushes: &[Push]) {
        self.pusher.arrived(pushes);
    }

    /// A decided call: saves the session with its `callin` event; a call released at routing
    /// ends here, with its `disconnect` and CDR. [`Opened::Taken`] gives the session back if its id
    /// is taken.
    ///
    /// A connected call's save is queued, not waited for: the switch is waiting to ring, and the
    /// save needs no answer. The session's later saves queue behind it, and its lanes are woken
    /// once it is applied. A call released here is saved before this returns (it has its CDR).
    /// Does not block on the store for a connected call; may for a released one. `memory` is the
    /// AX memory-callback record a connected call leaves (written with its session, under X and
    /// the binding's A).
    pub fn open(&self, session: Session, memory: Option<Callback>) -> Result<Opened, store::Error> {
        let mut pushes = Vec::new();
        // An X-mode call's callin was the Block push its decision waited for: not pushed again.
        if session.mode != Some(crate::domain::Mode::X) {
            self.push(&session, Lane::Events, callin_event(&session), &mut pushes)?;
        }
        if session.ended_at.is_some() {
            self.push_platform_release(&session, session.started_at, &mut pushes)?;
        }
        if session.ended_at.is_some() {
            let opened = self
                .sessions
                .insert_with(session, |session| self.calls.save_session(&session.session_id, session, &pushes, None))?;
            if matches!(opened, Opened::Opened) {
                self.wake(&pushes);
            }
            return Ok(opened);
        }
        self.sessions.insert_with(session, |session| {
            let (pusher, arrived) = (self.pusher.clone(), pushes.clone());
            let session_id = session.session_id.clone();
            let done = Box::new(move |result: Result<(), String>| match result {
                Ok(()) => pusher.arrived(&arrived),
                // The session is in memory and its next save (the next event) writes it whole.
                Err(err) => tracing::error!(session_id, error = %err, "saving a new call's session failed"),
            });
            let a_number = session.binding_caller_num.as_deref();
            let memory = memory.as_ref().zip(a_number).map(|(record, a)| (session.x_number.as_str(), a, record));
            self.calls.queue_session(&session.session_id, session, &pushes, memory, done);
            Ok::<(), store::Error>(())
        })
    }

    /// Records an event the switch reported; `None` for an unknown session. Changes to one
    /// session are serialized, and saved (with their pushes) before the session in memory
    /// changes. An event after the end is kept in the session but not pushed; one the session
    /// has already is neither saved nor pushed again.
    pub fn record(
        &self,
        session_id: &str,
        event: Event,
        recording: Option<super::session::Recording>,
        now: i64,
    ) -> Result<Option<Applied>, store::Error> {
        self.change(session_id, |mut session| {
            let was_ended = session.ended_at.is_some();
            let was_answered = session.events.iter().any(|known| known.kind == EventKind::Answer);
            let object_name = recording.as_ref().map(|r| r.object_name.clone());
            let applied = session.apply(event.clone(), recording, now);
            let mut pushes = Vec::new();
            if let (Applied::Kept { ends }, false) = (applied, was_ended) {
                self.push(&session, Lane::Events, leg_event(&session, &event), &mut pushes)?;
                if ends {
                    self.push_cdr(&session, None, &mut pushes)?;
                }
            }
            // A retry changes nothing worth a write: what it repeats was saved before it was
            // acknowledged, and its answer waits for the log like the first one's.
            if applied != Applied::Repeated {
                let recording = object_name.as_deref().zip(session.app_key.as_deref());
                self.calls.save_session(session_id, &session, &pushes, recording)?;
                let answered_now = event.kind == EventKind::Answer && !was_answered && !was_ended;
                if answered_now && matches!(applied, Applied::Kept { .. }) {
                    self.count_answered(&session, now);
                }
            }
            Ok((session, (applied, pushes)))
        })
    }

    /// Records an AXE call's digits and the decision they led to (the session takes it with
    /// [`Session::take_decision`]): the `collectInfo` event, and for a release its `disconnect`
    /// and CDR; for a connect, the callback record (A ↔ the caller) in the same transaction.
    /// Only a session that is still collecting takes digits.
    pub fn digits(
        &self,
        session_id: &str,
        digits: &str,
        routed: &Routed,
        now: i64,
    ) -> Result<DigitsOutcome, store::Error> {
        Ok(self
            .change(session_id, |mut session| {
                if !session.is_collecting() {
                    return Ok((session, (DigitsOutcome::NotCollecting, Vec::new())));
                }
                session.extend_num = (!digits.is_empty()).then(|| digits.to_owned());
                session.take_decision(routed, now);
                let released = session.ended_at.is_some();
                let mut pushes = Vec::new();
                self.push(&session, Lane::Events, collect_info_event(&session, digits, now), &mut pushes)?;
                if released {
                    self.push_platform_release(&session, now, &mut pushes)?;
                }
                let callback = match &routed.binding {
                    Some(crate::domain::Binding::Axe(binding)) if !released => {
                        Some((binding.as_ref(), binding.callback_from(&session.caller, now)))
                    }
                    _ => None,
                };
                let callback = callback.as_ref().map(|(binding, callback)| (*binding, callback));
                self.calls.save_digits(session_id, &session, &pushes, callback)?;
                Ok((session, (DigitsOutcome::Recorded, pushes)))
            })?
            .unwrap_or(DigitsOutcome::UnknownSession))
    }

    /// Ends a live call for ops, as the platform: a `disconnect` (releaseSide `platform`,
    /// [`PLATFORM_END_CODE`]) and the CDR, whose `closedBy` is [`CLOSED_BY_OPS`], saved with the
    /// session in one transaction like every other change. The session stays in memory for its
    /// grace, so its CDR can be read and the switch's late events still land (neither is pushed).
    /// Blocks on the store.
    pub fn end(&self, session_id: &str, now: i64) -> Result<EndOutcome, store::Error> {
        Ok(self
            .change(session_id, |mut session| {
                if session.ended_at.is_some() {
                    return Ok((session, (EndOutcome::AlreadyEnded, Vec::new())));
                }
                let disconnect = platform_disconnect(now);
                session.apply(disconnect.clone(), None, now);
                let mut pushes = Vec::new();
                self.push(&session, Lane::Events, leg_event(&session, &disconnect), &mut pushes)?;
                self.push_cdr(&session, Some(CLOSED_BY_OPS), &mut pushes)?;
                self.calls.save_session(session_id, &session, &pushes, None)?;
                Ok((session, (EndOutcome::Ended, pushes)))
            })?
            .unwrap_or(EndOutcome::UnknownSession))
    }

    /// Drops ended sessions after their grace, and ends stale ones with a `disconnect` (8020)
    /// and a CDR that says privnum closed them.
    pub fn sweep(&self, now: i64, timeout_secs: i64) -> usize {
        let dropped = self.sessions.prune(now, timeout_secs);
        let count = dropped.len();
        for session in dropped {
            // One session that cannot be closed must not stop the others; it goes back into
            // memory and is tried again at the next sweep.
            if let Err(err) = self.close(session.clone(), now) {
                tracing::error!(session_id = %session.session_id, error = %err, "closing a session failed; will retry");
                self.sessions.restore(vec![session]);
            }
        }
        count
    }

    fn close(&self, mut session: Session, now: i64) -> Result<(), store::Error> {
        let mut pushes = Vec::new();
        if session.ended_at.is_none() {
            let disconnect = platform_disconnect(now);
            session.events.push(disconnect.clone());
            session.ended_at = Some(now);
            tracing::warn!(session_id = %session.session_id, "closing a session the switch never ended");
            self.push(&session, Lane::Events, leg_event(&session, &disconnect), &mut pushes)?;
            self.push_cdr(&session, Some(CLOSED_BY_TIMEOUT), &mut pushes)?;
        }
        self.calls.forget_session(&session.session_id, &pushes)?;
        self.wake(&pushes);
        Ok(())
    }
}

/// A call answered at `at`, as its app's rule set counts it (`answered_calls`): its app, caller
/// and callee, when, and its id; `None` when the app's rule set does not count.
fn answered_call(session: &Session, at: i64) -> Option<AnsweredCall<'_>> {
    match (&session.app_key, &session.callee) {
        (Some(app_key), Some(callee)) if session.count_answered => {
            Some(AnsweredCall { app_key, parties: (&session.caller, callee), answered_at: at, icid: &session.icid })
        }
        _ => None,
    }
}

/// The `disconnect` of a call privnum ends itself (stale, or ended by ops).
fn platform_disconnect(now: i64) -> Event {
    Event {
        kind: EventKind::Disconnect,
        time: now,
        release_side: Some("platform".into()),
        state_code: Some(PLATFORM_END_CODE),
        q850: None,
        sip_status: None,
    }
}
