//! The store's handle on what the call path writes: sessions, the outbox (`outbox.rs`) and its
//! dead letters, recordings, and the AXE callback record a connected digits step leaves.
//!
//! Every change here goes through the committer thread (`combine.rs`) in arrival order, so a
//! call's queued save never lands after a later save of the same call. The names say what
//! blocks: `save_*` and `forget_session` block the thread until applied (call them off the async
//! workers), `queue_session` returns at once, and the push settlements (`delivered`,
//! `retry_later`, `bury`, `revive`) are awaited without blocking.

use std::sync::Arc;

use serde::Serialize;

use crate::domain::axe::Callback;
use crate::domain::AxeBinding;

use super::outbox::{self, Push};
use super::record::encode;
use super::{keys, Error, Shared, Tree, WriteSet};

/// Sessions, the outbox and recordings.
#[derive(Debug, Clone)]
pub struct Calls {
    pub(super) shared: Arc<Shared>,
}

impl Calls {
    /// Waits until every change to the call log (sessions, waiting pushes) committed before this
    /// call is on disk; cheaper than [`super::Store::durable`] when nothing else was written.
    pub async fn durable(&self) -> Result<(), Error> {
        self.shared.log_durable().await
    }

    /// The store's oldest fault, while a part cannot make changes durable (the pusher pauses:
    /// a push delivered now could not be settled).
    pub fn fault(&self) -> Option<super::StoreFault> {
        self.shared.health.first_fault()
    }
}

impl Calls {
    /// Saves a call's session together with the pushes its change caused, in one transaction;
    /// `recording` = `(object name, app key)` files a recording the switch reported as the app's.
    pub fn save_session<S: Serialize>(
        &self,
        session_id: &str,
        session: &S,
        pushes: &[Push],
        recording: Option<(&str, &str)>,
    ) -> Result<(), Error> {
        self.shared.commit_blocking(Calls::session_writes(session_id, session, pushes, recording))
    }

    /// Like [`Calls::save_session`] without the wait: queued behind every change before it, so a
    /// later save of the same session still lands after it. `done` hears the result on the store's
    /// committer thread.
    /// `memory` is an AX memory-callback record to write with it: `(X, A, record)`.
    pub fn queue_session<S: Serialize>(
        &self,
        session_id: &str,
        session: &S,
        pushes: &[Push],
        memory: Option<(&str, &str, &Callback)>,
        done: Box<dyn FnOnce(Result<(), String>) + Send>,
    ) {
        let mut writes = Calls::session_writes(session_id, session, pushes, None);
        if let Some((x_number, a_number, record)) = memory {
            writes.put(Tree::AxeCallback, keys::join(&[x_number, a_number]), encode(record));
        }
        self.shared.enqueue(writes, done);
    }

    fn session_writes<S: Serialize>(
        session_id: &str,
        session: &S,
        pushes: &[Push],
        recording: Option<(&str, &str)>,
    ) -> WriteSet {
        let mut writes = WriteSet::default();
        writes.put(Tree::Sessions, session_id.as_bytes(), encode(session));
        if let Some((object_name, app_key)) = recording {
            writes.put(Tree::Recordings, keys::join(&[app_key, object_name]), Vec::new());
        }
        for push in pushes {
            outbox::stage_push(&mut writes, push);
        }
        writes
    }

    /// Forgets a finished session, with the pushes its end caused (a stale session's CDR).
    pub fn forget_session(&self, session_id: &str, pushes: &[Push]) -> Result<(), Error> {
        let mut writes = WriteSet::default();
        writes.remove(Tree::Sessions, session_id.as_bytes());
        for push in pushes {
            outbox::stage_push(&mut writes, push);
        }
        self.shared.commit_blocking(writes)
    }

    /// Whether a call of `app_key` reported a recording named `object_name`. Recordings are per
    /// app: another app's report of the same name files its own, and moves nothing. (A store of
    /// before per-app recordings keyed them by name alone, with the app as the value; those are
    /// still believed for their app.)
    pub fn is_recording_of(&self, app_key: &str, object_name: &str) -> Result<bool, Error> {
        if self.shared.get(Tree::Recordings, &keys::join(&[app_key, object_name]))?.is_some() {
            return Ok(true);
        }
        let legacy = self.shared.get(Tree::Recordings, object_name.as_bytes())?;
        Ok(legacy.is_some_and(|owner| owner == app_key.as_bytes()))
    }

    /// Every saved session (at start-up).
    pub fn sessions<S: serde::de::DeserializeOwned>(&self) -> Result<Vec<S>, Error> {
        self.shared.logged_records(Tree::Sessions, &[], usize::MAX)
    }

    /// Saves a session after its digits, with the pushes they caused and, for a connected call,
    /// the callback record it leaves (A ↔ the caller): one transaction. The callback is written
    /// without the writer lock: a record racing an unbind is harmless, because a callback is
    /// believed only under the binding it names.
    pub fn save_digits<S: Serialize>(
        &self,
        session_id: &str,
        session: &S,
        pushes: &[Push],
        callback: Option<(&AxeBinding, &Callback)>,
    ) -> Result<(), Error> {
        let mut writes = WriteSet::default();
        writes.put(Tree::Sessions, session_id.as_bytes(), encode(session));
        if let Some((binding, callback)) = callback {
            writes.put(Tree::AxeCallback, keys::join(&[&binding.x_number, &binding.bind_num]), encode(callback));
        }
        for push in pushes {
            outbox::stage_push(&mut writes, push);
        }
        self.shared.commit_blocking(writes)
    }
}
