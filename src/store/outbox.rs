//! The outbox: every push to a customer is kept here until the customer acknowledges it.
//!
//! Pushes wait in lanes, one per app and kind (call events, CDRs), first in first out, so a
//! customer sees one call's events in order and one app's outage never holds up another's. A push
//! whose retries are used up moves to `outbox_dead`, where the admin API lists it and can put it
//! back. Pushes are written in the same transaction as the session change that caused them, so
//! an acknowledged event always has its push on disk.
//!
//! Waiting pushes are in the call log (`calllog.rs`); dead letters, which can stay for days, are
//! in sled. A move between the two writes the destination and waits for it to be on disk before
//! it removes the source, so a failure or crash may leave a push in both, never in neither.

use serde::{Deserialize, Serialize};

use super::record::encode;
use super::{keys, Calls, Error, WriteSet, T};

/// What a push carries, and so which URL and how it is batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    /// One call event per POST to `call_event_url`.
    Events,
    /// CDRs merged, at most `cdr_batch_max` per POST to `cdr_url`.
    Cdrs,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Events, Lane::Cdrs];

    pub fn name(self) -> &'static str {
        match self {
            Lane::Events => "events",
            Lane::Cdrs => "cdrs",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Push {
    pub id: u64,
    pub app_key: String,
    pub lane: Lane,
    /// Events: the whole body. CDRs: one `feeLst` item.
    pub body: serde_json::Value,
    pub attempts: u32,
    /// Milliseconds since the epoch.
    pub created_at_ms: i64,
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
}

fn lane_prefix(app_key: &str, lane: Lane) -> Vec<u8> {
    keys::prefix(&[app_key, lane.name()])
}

fn lane_key(push: &Push) -> Vec<u8> {
    let mut key = lane_prefix(&push.app_key, push.lane);
    key.extend_from_slice(&push.id.to_be_bytes());
    key
}

/// Adds a push to a change being staged.
pub(super) fn stage_push(writes: &mut WriteSet, push: &Push) {
    writes.put(T::Outbox, lane_key(push), encode(push));
}

impl Calls {
    /// A new push for `app_key`, due now.
    pub fn new_push(&self, app_key: &str, lane: Lane, body: serde_json::Value, now_ms: i64) -> Result<Push, Error> {
        Ok(Push {
            id: self.shared.next_id()?,
            app_key: app_key.to_owned(),
            lane,
            body,
            attempts: 0,
            created_at_ms: now_ms,
            next_attempt_at_ms: now_ms,
            last_error: None,
        })
    }

    /// The first `max` pushes of a lane, oldest first.
    pub fn lane_head(&self, app_key: &str, lane: Lane, max: usize) -> Result<Vec<Push>, Error> {
        self.shared.logged_records(T::Outbox, &lane_prefix(app_key, lane), max)
    }

    /// How many pushes a lane holds, counting up to `max`.
    pub fn lane_len(&self, app_key: &str, lane: Lane, max: usize) -> usize {
        self.shared.log.count(T::Outbox, &lane_prefix(app_key, lane), max)
    }

    /// Every lane that has pushes waiting (at start-up, to resume them): one look per lane, from
    /// the keys alone, so a large outbox is not decoded to find them.
    pub fn waiting_lanes(&self) -> Result<Vec<(String, Lane)>, Error> {
        let mut lanes = Vec::new();
        let mut from = Vec::new();
        while let Some(key) = self.shared.log.first_key_from(T::Outbox, &from) {
            let (app_key, lane) = match keys::first_parts(&key, 2)[..] {
                [app_key, name] => (app_key, Lane::ALL.into_iter().find(|lane| lane.name().as_bytes() == name)),
                _ => (&key[..], None),
            };
            let Some(lane) = lane else {
                return Err(Error::Decode {
                    tree: T::Outbox.name(),
                    key: super::show_key(&key),
                    reason: "not an outbox key (app key, events or cdrs, push id)".into(),
                });
            };
            let app_key = String::from_utf8_lossy(app_key).into_owned();
            from = keys::past_prefix(lane_prefix(&app_key, lane));
            lanes.push((app_key, lane));
        }
        Ok(lanes)
    }

    /// The customer acknowledged these. Like the two below, it returns once the change is
    /// applied (so the lane's next look no longer sees them), waiting without blocking a thread.
    pub async fn delivered(&self, pushes: &[Push]) -> Result<(), Error> {
        let mut writes = WriteSet::default();
        for push in pushes {
            writes.remove(T::Outbox, lane_key(push));
        }
        self.shared.commit_async(writes).await
    }

    /// Records a failed attempt and when to try again.
    pub async fn retry_later(&self, pushes: &[Push]) -> Result<(), Error> {
        let mut writes = WriteSet::default();
        for push in pushes {
            writes.put(T::Outbox, lane_key(push), encode(push));
        }
        self.shared.commit_async(writes).await
    }

    /// Moves pushes whose retries are used up to the dead letters: the dead letters first, on
    /// disk (sled's flush) before the pushes leave their lane, so a crash between the two leaves
    /// a push in both (listed, and tried once more), never in neither.
    pub async fn bury(&self, pushes: &[Push]) -> Result<(), Error> {
        let mut dead = WriteSet::default();
        let mut lane = WriteSet::default();
        for push in pushes {
            dead.put(T::OutboxDead, push.id.to_be_bytes().to_vec(), encode(push));
            lane.remove(T::Outbox, lane_key(push));
        }
        self.shared.commit_async(dead).await?;
        self.shared.durable().await?;
        self.shared.commit_async(lane).await
    }

    /// The dead letters, oldest first.
    pub fn dead_pushes(&self) -> Result<Vec<Push>, Error> {
        super::decode_all(T::OutboxDead, self.shared.tree(T::OutboxDead).iter())
    }

    /// Puts a dead push back at the end of its lane with fresh retries; `None` if no such push.
    /// The lane's copy first, on disk before the dead letter goes: a failure or crash between
    /// the two leaves the push in the lane and still among the dead (redelivering it again sends
    /// it twice), never in neither. A dead letter that could not be removed is logged, and the
    /// push is returned all the same: it is in its lane.
    pub async fn revive(&self, id: u64, now_ms: i64) -> Result<Option<Push>, Error> {
        let key = id.to_be_bytes();
        let Some(push) = self.shared.get_record::<Push>(T::OutboxDead, &key)? else { return Ok(None) };
        // A new id puts it behind what is waiting now, keeping the lane in order from here on.
        let revived =
            Push { id: self.shared.next_id()?, attempts: 0, next_attempt_at_ms: now_ms, last_error: None, ..push };
        let mut lane = WriteSet::default();
        super::outbox::stage_push(&mut lane, &revived);
        self.shared.commit_async(lane).await?;
        self.shared.log_durable().await?;
        let mut dead = WriteSet::default();
        dead.remove(T::OutboxDead, key.to_vec());
        if let Err(err) = self.shared.commit_async(dead).await {
            tracing::error!(old_id = id, new_id = revived.id, error = %err, "a redelivered push is still listed among the dead letters");
        }
        Ok(Some(revived))
    }
}

#[cfg(test)]
mod tests {
    use super::Lane;
    use crate::store::Store;

    #[test]
    fn the_waiting_lanes_are_found_from_the_keys_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.calls().waiting_lanes().unwrap().is_empty());
        let mut pushes = Vec::new();
        for app_key in ["app-a", "app-b", "app"] {
            for lane in [Lane::Events, Lane::Cdrs] {
                // Several pushes a lane, with ids that hold a 0 byte (the keys' separator).
                for _ in 0..300 {
                    pushes.push(store.calls().new_push(app_key, lane, serde_json::json!({}), 0).unwrap());
                }
            }
        }
        store.calls().save_session("s1", &serde_json::json!({}), &pushes, None).unwrap();
        let mut lanes = store.calls().waiting_lanes().unwrap();
        lanes.sort_by(|a, b| (&a.0, a.1.name()).cmp(&(&b.0, b.1.name())));
        let expected: Vec<(String, Lane)> = ["app", "app-a", "app-b"]
            .into_iter()
            .flat_map(|app| [(app.to_owned(), Lane::Cdrs), (app.to_owned(), Lane::Events)])
            .collect();
        assert_eq!(lanes, expected);
    }
}
