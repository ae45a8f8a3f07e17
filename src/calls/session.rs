//! Sessions: what privnum knows of each call while it lasts, keyed by the switch's sessionId.
//!
//! Kept in memory in shards, each behind its own short-held mutex, so concurrent calls rarely meet
//! on a lock and never on a global one. A session ends at a release decision or a `disconnect`
//! and is dropped a minute later (late events still land); one the switch never ends is dropped
//! after `session_timeout_secs` without news. An AXE call's session is opened by its `collect`
//! decision and changed once more by its digits.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::route::Routed;
use crate::domain::{Action, Decision};

/// What the switch reports after the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Callout,
    Alerting,
    Answer,
    Disconnect,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub time: i64,
    pub release_side: Option<String>,
    pub state_code: Option<u32>,
    pub q850: Option<u32>,
    pub sip_status: Option<u32>,
}

/// What opening a session came to.
#[derive(Debug)]
pub enum Opened {
    Opened,
    /// Another session has this id: the one that was to be opened, given back (a retried callin
    /// is told from another call by it).
    Taken(Box<Session>),
}

/// What [`Session::apply`] made of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Recorded; `ends` when it ended the call.
    Kept { ends: bool },
    /// Past [`MAX_EVENTS`]: news that the call lives, not recorded.
    Dropped,
    /// The session has this event already: a retry, not pushed again.
    Repeated,
}

/// The recording the switch made of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recording {
    pub object_name: String,
    /// As the switch reported it (`yyyy-MM-dd HH:mm:ss` or RFC 3339).
    pub start_time: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub session_id: String,
    /// The CDR's unique id.
    pub icid: String,
    pub app_key: Option<String>,
    pub mode: Option<crate::domain::Mode>,
    pub caller: String,
    pub x_number: String,
    /// The number the call was connected to, for connect decisions.
    pub callee: Option<String>,
    pub subscription_id: Option<String>,
    /// The binding's A, to tell the CDR's direction.
    pub binding_caller_num: Option<String>,
    pub user_data: Option<String>,
    /// AXE: the extension the caller entered (the CDR's `extendNum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extend_num: Option<String>,
    /// The X's area code, as its number had it when the call came in (the CDR's `areaCode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area_code: Option<String>,
    pub recording: Option<Recording>,
    pub decision: Decision,
    pub script_version: Option<String>,
    /// The app's rule-set version whose answer the call took, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruleset_version: Option<String>,
    /// The app's active rule set counts answered calls (`answered_calls`): this one is counted
    /// when it is answered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub count_answered: bool,
    pub started_at: i64,
    /// In the order the switch reported them; an out-of-order event is kept, not refused.
    pub events: Vec<Event>,
    /// privnum's clock at the last news of this call.
    pub last_seen: i64,
    pub ended_at: Option<i64>,
}

/// How long an ended session is kept for late events.
pub const ENDED_GRACE_SECS: i64 = 60;

/// Events one session keeps (and pushes) at most, besides its `disconnect`: a real call has five;
/// a switch that repeats itself must not grow a session or a customer's traffic without bound.
pub const MAX_EVENTS: usize = 32;

impl Session {
    /// Waiting for the caller's digits (an AXE collect that has not ended).
    pub fn is_collecting(&self) -> bool {
        self.decision.action == Action::Collect && self.ended_at.is_none()
    }

    /// Takes the decision a call was routed to, at `now`: who it connects to, under which binding,
    /// with which `userData`, decided by which script version. A release ends the call here.
    /// The one place a decision changes a session (the callin's, and an AXE call's digits').
    pub fn take_decision(&mut self, routed: &Routed, now: i64) {
        let released = routed.decision.action == Action::Release;
        self.last_seen = now;
        self.callee = routed.decision.callee.clone().filter(|_| !released);
        self.subscription_id = routed.binding.as_ref().map(|b| b.subscription_id().to_owned());
        self.binding_caller_num = routed.binding.as_ref().map(|b| b.a_number().to_owned());
        self.user_data.clone_from(&routed.user_data);
        self.script_version.clone_from(&routed.script_version);
        self.ruleset_version.clone_from(&routed.ruleset_version);
        self.decision = routed.decision.clone();
        if released {
            self.ended_at = Some(now);
        }
    }

    /// Applies a reported event at `now` (privnum's clock): whether it was kept (and so should be
    /// pushed), dropped, or is one the session has already (the switch retried it). A `disconnect`
    /// that ends the call is always kept; other events past [`MAX_EVENTS`] count as news but are
    /// dropped. A retry is the same event (kind, time, codes) again: a switch that sends its
    /// events' `time` has each retry recognized.
    pub fn apply(&mut self, event: Event, recording: Option<Recording>, now: i64) -> Applied {
        self.last_seen = now;
        if self.events.contains(&event) {
            return Applied::Repeated;
        }
        if recording.is_some() {
            self.recording = recording;
        }
        let ends = event.kind == EventKind::Disconnect && self.ended_at.is_none();
        if ends {
            self.ended_at = Some(now);
        }
        if ends || self.events.len() < MAX_EVENTS {
            self.events.push(event);
            Applied::Kept { ends }
        } else {
            Applied::Dropped
        }
    }
}

/// Enough shards that two cores' worth of concurrent calls rarely share one.
const SHARDS: usize = 64;

#[derive(Debug)]
pub struct Sessions {
    shards: Vec<Mutex<HashMap<String, Session>>>,
    hasher: RandomState,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), hasher: RandomState::new() }
    }
}

impl Sessions {
    fn shard(&self, session_id: &str) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        let index = (self.hasher.hash_one(session_id) as usize) % SHARDS;
        // A shard's map is only touched by inserts and pushes that cannot panic halfway.
        self.shards[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts back sessions saved before a restart.
    pub fn restore(&self, sessions: Vec<Session>) {
        for session in sessions {
            self.shard(&session.session_id).insert(session.session_id.clone(), session);
        }
    }

    /// Adds a session; `false` if one with that id exists already.
    #[cfg(test)]
    pub fn insert(&self, session: Session) -> bool {
        matches!(self.insert_with(session, |_| Ok::<(), ()>(())), Ok(Opened::Opened))
    }

    /// Changes one session under its shard's lock: `change` gets a copy of the session and returns
    /// the new state with a result; the map takes the new state only if `change` succeeded. So
    /// changes to one session are serialized, and a change that failed to be saved leaves the
    /// session as it was. `None` for an unknown session.
    pub fn update<R, E>(
        &self,
        session_id: &str,
        change: impl FnOnce(Session) -> Result<(Session, R), E>,
    ) -> Option<Result<R, E>> {
        let mut shard = self.shard(session_id);
        let current = shard.get(session_id)?.clone();
        Some(change(current).map(|(session, result)| {
            shard.insert(session.session_id.clone(), session);
            result
        }))
    }

    /// Adds a session saved by `save` under its shard's lock; [`Opened::Taken`], with the
    /// session given back unsaved, if the id is taken.
    pub fn insert_with<E>(&self, session: Session, save: impl FnOnce(&Session) -> Result<(), E>) -> Result<Opened, E> {
        let mut shard = self.shard(&session.session_id);
        if shard.contains_key(&session.session_id) {
            return Ok(Opened::Taken(Box::new(session)));
        }
        save(&session)?;
        shard.insert(session.session_id.clone(), session);
        Ok(Opened::Opened)
    }

    /// Removes sessions that ended more than [`ENDED_GRACE_SECS`] ago, and those with no news for
    /// `timeout_secs`; returns them (the stale ones still need their CDR).
    pub fn prune(&self, now: i64, timeout_secs: i64) -> Vec<Session> {
        let mut dropped = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let done: Vec<String> = shard
                .values()
                .filter(|session| match session.ended_at {
                    Some(ended_at) => now - ended_at >= ENDED_GRACE_SECS,
                    None => now - session.last_seen >= timeout_secs,
                })
                .map(|session| session.session_id.clone())
                .collect();
            dropped.extend(done.iter().filter_map(|id| shard.remove(id)));
        }
        dropped
    }

    /// The live calls (not ended), of one app or of all, oldest first: at most `limit` of them,
    /// and how many there are in all. Copies only ids and start times under the shards' locks,
    /// then the `limit` sessions shown; a call that ends meanwhile is left out. Walks every call
    /// in memory: run it on a blocking thread.
    pub fn live(&self, app_key: Option<&str>, limit: usize) -> (Vec<Session>, usize) {
        let mut keys: Vec<(i64, String)> = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            keys.extend(
                shard
                    .values()
                    .filter(|session| session.ended_at.is_none())
                    .filter(|session| app_key.is_none_or(|key| session.app_key.as_deref() == Some(key)))
                    .map(|session| (session.started_at, session.session_id.clone())),
            );
        }
        let total = keys.len();
        keys.sort_unstable();
        let shown = keys
            .iter()
            .take(limit)
            .filter_map(|(_, id)| self.get(id))
            .filter(|session| session.ended_at.is_none())
            .collect();
        (shown, total)
    }

    /// Calls in memory: under way, or ended less than a minute ago.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().map_or(0, |shard| shard.len())).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the callee rang and whether it answered, by the events so far.
    pub fn progress(&self, session_id: &str) -> Option<(bool, bool)> {
        let shard = self.shard(session_id);
        let session = shard.get(session_id)?;
        let seen = |kind| session.events.iter().any(|event| event.kind == kind);
        Some((seen(EventKind::Alerting) || seen(EventKind::Answer), seen(EventKind::Answer)))
    }

    /// Whether the call is waiting for the caller's digits (AXE), without copying the session.
    pub fn collecting(&self, session_id: &str) -> Option<bool> {
        self.shard(session_id).get(session_id).map(Session::is_collecting)
    }

    /// Whether a call with this id is in memory, without copying it.
    pub fn contains(&self, session_id: &str) -> bool {
        self.shard(session_id).contains_key(session_id)
    }

    pub fn get(&self, session_id: &str) -> Option<Session> {
        self.shard(session_id).get(session_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, now: i64, ended: bool) -> Session {
        Session {
            session_id: id.into(),
            icid: id.into(),
            app_key: None,
            mode: None,
            caller: "+1".into(),
            x_number: "+2".into(),
            callee: None,
            subscription_id: None,
            binding_caller_num: None,
            user_data: None,
            extend_num: None,
            area_code: None,
            recording: None,
            decision: Decision::release(8014, None),
            script_version: None,
            ruleset_version: None,
            count_answered: false,
            started_at: now,
            events: Vec::new(),
            last_seen: now,
            ended_at: ended.then_some(now),
        }
    }

    fn event(kind: EventKind) -> Event {
        Event { kind, time: 0, release_side: None, state_code: None, q850: None, sip_status: None }
    }

    fn apply(sessions: &Sessions, id: &str, kind: EventKind, now: i64) -> Applied {
        let outcome = sessions.update(id, |mut session| {
            let applied = session.apply(event(kind), None, now);
            Ok::<_, ()>((session, applied))
        });
        outcome.unwrap().unwrap()
    }

    #[test]
    fn ended_and_stale_sessions_are_dropped_and_live_ones_kept() {
        let sessions = Sessions::default();
        assert!(sessions.insert(session("released", 0, true)));
        assert!(sessions.insert(session("talking", 0, false)));
        assert!(sessions.insert(session("forgotten", 0, false)));
        assert!(!sessions.insert(session("talking", 0, false)), "ids are unique");
        apply(&sessions, "talking", EventKind::Answer, 500);
        assert_eq!(sessions.prune(59, 1000).len(), 0);
        assert_eq!(sessions.prune(60, 1000).len(), 1, "the released call's grace is over");
        let stale = sessions.prune(1000, 1000);
        assert_eq!(stale[0].session_id, "forgotten", "no news for the whole timeout");
        assert!(sessions.get("talking").is_some());
        assert_eq!(apply(&sessions, "talking", EventKind::Disconnect, 1200), Applied::Kept { ends: true });
        assert_eq!(sessions.prune(1260, 1000).len(), 1);
        assert!(sessions.is_empty());
    }

    #[test]
    fn a_repeating_switch_cannot_grow_a_session_without_bound() {
        let sessions = Sessions::default();
        sessions.insert(session("s", 0, false));
        for time in 0..1000 {
            let outcome = sessions.update("s", |mut session| {
                let applied = session.apply(Event { time, ..event(EventKind::Alerting) }, None, 1);
                Ok::<_, ()>((session, applied))
            });
            let expected = if time < MAX_EVENTS as i64 { Applied::Kept { ends: false } } else { Applied::Dropped };
            assert_eq!(outcome.unwrap().unwrap(), expected);
        }
        assert_eq!(sessions.get("s").unwrap().events.len(), MAX_EVENTS);
        assert_eq!(apply(&sessions, "s", EventKind::Disconnect, 2), Applied::Kept { ends: true }, "the end is kept");
    }

    #[test]
    fn an_event_reported_again_is_a_retry_and_a_new_one_is_not() {
        let sessions = Sessions::default();
        sessions.insert(session("s", 0, false));
        assert_eq!(apply(&sessions, "s", EventKind::Alerting, 1), Applied::Kept { ends: false });
        assert_eq!(apply(&sessions, "s", EventKind::Alerting, 2), Applied::Repeated, "same kind, time and codes");
        assert_eq!(apply(&sessions, "s", EventKind::Answer, 3), Applied::Kept { ends: false });
        assert_eq!(apply(&sessions, "s", EventKind::Disconnect, 4), Applied::Kept { ends: true });
        assert_eq!(apply(&sessions, "s", EventKind::Disconnect, 5), Applied::Repeated);
        assert_eq!(sessions.get("s").unwrap().events.len(), 3);
        assert_eq!(sessions.get("s").unwrap().last_seen, 5, "a retry is still news of the call");
    }
}
