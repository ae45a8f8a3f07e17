//! The store's handle on what the call path writes: sessions, the outbox (`outbox.rs`) and its
//! dead letters, recordings, the AXE callback record a connected digits step leaves, and the
//! answered calls rule sets count (`answered_calls`: one key per answered call of an app whose
//! rule set counts, queued behind the session save of its `answer`, kept
//! [`ANSWERED_RETENTION_SECS`]).
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

/// `answered_calls` counts up to this many calls of one pair: a limit is far below it, and the
/// scan stays short whatever the pair's history.
pub const MAX_COUNTED: u32 = 10_000;

/// How long an answered call is counted: eight days, so "this week" and "today" in any time zone
/// are whole.
pub const ANSWERED_RETENTION_SECS: i64 = 8 * 24 * 3600;

/// An answered call, as counted: its app, its two parties (either order), when it was
/// answered, its id.
#[derive(Debug, Clone, Copy)]
pub struct AnsweredCall<'a> {
    pub app_key: &'a str,
    pub parties: (&'a str, &'a str),
    pub answered_at: i64,
    pub icid: &'a str,
}

/// The two parties in one order, whoever called.
fn ordered<'a>((a, b): (&'a str, &'a str)) -> (&'a str, &'a str) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

fn answered_key(app_key: &str, (lo, hi): (&str, &str), at: i64, icid: &str) -> Vec<u8> {
    let mut key = keys::prefix(&[app_key, lo, hi]);
    key.extend_from_slice(&keys::time_bytes(at));
    key.extend_from_slice(icid.as_bytes());
    key
}

fn answered_expiry_key(app_key: &str, (lo, hi): (&str, &str), at: i64, icid: &str) -> Vec<u8> {
    let mut key = keys::time_bytes(at).to_vec();
    key.extend_from_slice(&keys::join(&[app_key, lo, hi, icid]));
    key
}

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

    /// Counts an answered call for rule sets, queued behind the session save of its `answer` and
    /// not waited for: the switch never waits on sled for a count, and a sled fault (or a crash
    /// before sled's next flush) loses only counts, never the call.
    pub fn count_answered(&self, call: AnsweredCall<'_>) {
        let parties = ordered(call.parties);
        let mut writes = WriteSet::default();
        writes.put(Tree::Answered, answered_key(call.app_key, parties, call.answered_at, call.icid), Vec::new());
        writes.put(
            Tree::AnsweredExpiry,
            answered_expiry_key(call.app_key, parties, call.answered_at, call.icid),
            Vec::new(),
        );
        let icid = call.icid.to_owned();
        self.shared.enqueue(
            writes,
            Box::new(move |result| {
                if let Err(err) = result {
                    tracing::warn!(icid, error = %err, "an answered call was not counted for rule sets");
                }
            }),
        );
    }

    /// How many of the app's calls between `a` and `b` (either calling) were answered at or after
    /// `since` (at most [`ANSWERED_RETENTION_SECS`] ago), counting up to [`MAX_COUNTED`]: one
    /// range scan of their keys.
    pub fn answered_between(&self, app_key: &str, (a, b): (&str, &str), since: i64) -> Result<u32, Error> {
        let (lo, hi) = ordered((a, b));
        let prefix = keys::prefix(&[app_key, lo, hi]);
        let mut start = prefix.clone();
        start.extend_from_slice(&keys::time_bytes(since));
        let mut end = prefix;
        // The prefix ends with the separator (0): one past it bounds every key under it.
        if let Some(last) = end.last_mut() {
            *last = 1;
        }
        let tree = self.shared.tree(Tree::Answered)?;
        let mut count = 0u32;
        for key in tree.range(start..end).keys().take(MAX_COUNTED as usize) {
            key.map_err(|source| Error::Sled { tree: Tree::Answered.name(), source })?;
            count += 1;
        }
        Ok(count)
    }

    /// Forgets up to `limit` answered calls that ended before `before`, through the committer
    /// (these trees change only there); how many.
    pub fn sweep_answered(&self, before: i64, limit: usize) -> Result<usize, Error> {
        let due = self
            .shared
            .tree(Tree::AnsweredExpiry)?
            .range(..keys::time_bytes(before).to_vec())
            .keys()
            .take(limit)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| Error::Sled { tree: Tree::AnsweredExpiry.name(), source })?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut writes = WriteSet::default();
        for entry in &due {
            let (Some(at), Some(rest)) = (entry.get(..8), entry.get(8..)) else { continue };
            let parts: Vec<&[u8]> = rest.split(|byte| *byte == 0).collect();
            if let [app_key, lo, hi, icid] = parts.as_slice() {
                let mut key = keys::prefix(&[
                    &String::from_utf8_lossy(app_key),
                    &String::from_utf8_lossy(lo),
                    &String::from_utf8_lossy(hi),
                ]);
                key.extend_from_slice(at);
                key.extend_from_slice(icid);
                writes.remove(Tree::Answered, key);
            }
            writes.remove(Tree::AnsweredExpiry, entry.to_vec());
        }
        self.shared.commit_blocking(writes)?;
        Ok(due.len())
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

#[cfg(test)]
mod tests {
    use super::AnsweredCall;
    use crate::store::Store;

    #[test]
    fn answered_calls_are_counted_per_app_and_pair_since_a_time_and_forgotten_later() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let calls = store.calls();
        let save = |app_key: &str, parties: (&str, &str), ended_at: i64, icid: &str| {
            calls.count_answered(AnsweredCall { app_key, parties, answered_at: ended_at, icid });
            // Counted behind the next change through the committer.
            calls.save_session(icid, &serde_json::json!({}), &[], None).unwrap();
        };
        save("a", ("+861", "+862"), 100, "c1");
        save("a", ("+862", "+861"), 200, "c2");
        save("a", ("+861", "+863"), 200, "c3");
        save("b", ("+861", "+862"), 200, "c4");
        assert_eq!(calls.answered_between("a", ("+861", "+862"), 0).unwrap(), 2, "either party calling");
        assert_eq!(calls.answered_between("a", ("+862", "+861"), 150).unwrap(), 1, "since a time");
        assert_eq!(calls.answered_between("a", ("+861", "+86"), 0).unwrap(), 0, "a prefix of a party is another party");
        assert_eq!(calls.answered_between("b", ("+861", "+862"), 0).unwrap(), 1, "apps apart");
        assert_eq!(calls.sweep_answered(150, 100).unwrap(), 1);
        assert_eq!(calls.answered_between("a", ("+861", "+862"), 0).unwrap(), 1);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.calls().answered_between("a", ("+861", "+863"), 0).unwrap(), 1, "durable");
    }
}
