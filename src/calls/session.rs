//! Sessions: what privnum knows of each call while it lasts, keyed by the switch's sessionId.
//!
//! Kept in memory in shards, each behind its own short-held mutex, so concurrent calls rarely meet
//! on a lock and never on a global one. (Durable sessions, their state machine, events and CDRs
//! are the next milestone.)

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::domain::Decision;

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub session_id: String,
    pub app_key: Option<String>,
    pub caller: String,
    pub x_number: String,
    pub subscription_id: Option<String>,
    pub user_data: Option<String>,
    pub decision: Decision,
    pub script_version: Option<String>,
    pub started_at: i64,
    /// In the order the switch reported them; an out-of-order event is kept, not refused.
    pub events: Vec<Event>,
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

    /// Adds a session; `false` if one with that id exists already.
    pub fn insert(&self, session: Session) -> bool {
        let mut shard = self.shard(&session.session_id);
        if shard.contains_key(&session.session_id) {
            return false;
        }
        shard.insert(session.session_id.clone(), session);
        true
    }

    /// Records an event; `None` for an unknown session.
    pub fn record(&self, session_id: &str, event: Event) -> Option<()> {
        self.shard(session_id).get_mut(session_id).map(|session| session.events.push(event))
    }

    pub fn get(&self, session_id: &str) -> Option<Session> {
        self.shard(session_id).get(session_id).cloned()
    }
}
