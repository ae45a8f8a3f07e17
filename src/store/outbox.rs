//! The outbox: every push to a customer is kept here until the customer acknowledges it.
//!
//! Pushes wait in lanes, one per app and kind (call events, CDRs), in id order; each names its
//! call, and delivery keeps each call's pushes in order (`push::dispatch`). A push
//! whose retries are used up moves to `outbox_dead`, where the admin API lists it and can put it
//! back. Pushes are written in the same transaction as the session change that caused them, so
//! an acknowledged event always has its push on disk.
//!
//! Waiting pushes are in the call log (`calllog.rs`); dead letters, which can stay for days, are
//! in sled. A move between the two writes the destination and waits for it to be on disk before
//! it removes the source, so a failure or crash may leave a push in both, never in neither.
//!
//! A push's body is encoded once, when the push is made, and kept as the bytes delivery sends:
//! its record (layout 2) holds a small JSON header and then the body verbatim, so reading a lane
//! does not decode the bodies, and delivery sends (or, for CDRs, splices) what was stored.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{keys, Calls, Error, Tree, WriteSet};

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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Push {
    pub id: u64,
    pub app_key: String,
    /// The call it reports on (its session id): delivery keeps one call's pushes in order.
    /// Pushes written before it was recorded have none (`""`), and are kept in order among
    /// themselves.
    #[serde(default)]
    pub call: String,
    pub lane: Lane,
    /// The JSON as it is sent. Events: the whole body. CDRs: one `feeLst` item.
    pub body: Box<RawValue>,
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

/// The record layout of a push written today: `2 · header length (u32 LE) · header (JSON) ·
/// body`, the body as it is sent. Layout 1, every push written before it (the call log's version
/// 2, dead letters in sled, an older store's outbox), was the whole push as one JSON object; it is
/// read still.
const PUSH_LAYOUT: u8 = 2;
const PUSH_LAYOUT_JSON: u8 = 1;

/// Everything of a push but its body, as layout 2 writes it.
#[derive(Serialize)]
struct PushHeader<'a> {
    id: u64,
    app_key: &'a str,
    call: &'a str,
    lane: Lane,
    attempts: u32,
    created_at_ms: i64,
    next_attempt_at_ms: i64,
    last_error: Option<&'a str>,
}

/// [`PushHeader`] as it is read back.
#[derive(Deserialize)]
struct StoredPushHeader {
    id: u64,
    app_key: String,
    #[serde(default)]
    call: String,
    lane: Lane,
    attempts: u32,
    created_at_ms: i64,
    next_attempt_at_ms: i64,
    last_error: Option<String>,
}

pub(crate) fn encode_push(push: &Push) -> Vec<u8> {
    let header = PushHeader {
        id: push.id,
        app_key: &push.app_key,
        call: &push.call,
        lane: push.lane,
        attempts: push.attempts,
        created_at_ms: push.created_at_ms,
        next_attempt_at_ms: push.next_attempt_at_ms,
        last_error: push.last_error.as_deref(),
    };
    // Serializing a struct of strings, numbers and an enum into a Vec cannot fail.
    let header =
        serde_json::to_vec(&header).unwrap_or_else(|err| unreachable!("push header serialization failed: {err}"));
    let body = push.body.get().as_bytes();
    let mut bytes = Vec::with_capacity(1 + 4 + header.len() + body.len());
    bytes.push(PUSH_LAYOUT);
    bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(body);
    bytes
}

/// Reads a push record of either layout.
pub(crate) fn decode_push(tree: Tree, key: &[u8], bytes: &[u8]) -> Result<Push, Error> {
    let fail = |reason: String| Error::Decode { tree: tree.name(), key: super::show_key(key), reason };
    match bytes.split_first() {
        Some((&PUSH_LAYOUT, rest)) => {
            let (header, body) = split_header(rest).ok_or_else(|| fail("a push record cut short".into()))?;
            let header: StoredPushHeader = serde_json::from_slice(header).map_err(|err| fail(err.to_string()))?;
            let body = std::str::from_utf8(body).map_err(|err| fail(err.to_string()))?;
            let body = RawValue::from_string(body.to_owned()).map_err(|err| fail(err.to_string()))?;
            Ok(Push {
                id: header.id,
                app_key: header.app_key,
                call: header.call,
                lane: header.lane,
                body,
                attempts: header.attempts,
                created_at_ms: header.created_at_ms,
                next_attempt_at_ms: header.next_attempt_at_ms,
                last_error: header.last_error,
            })
        }
        Some((&PUSH_LAYOUT_JSON, _)) => super::record::decode(tree.name(), key, bytes),
        Some((version, _)) => Err(fail(format!("unknown push layout {version}"))),
        None => Err(fail("empty record".to_owned())),
    }
}

/// A waiting push as delivery schedules it: its header, without the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub id: u64,
    pub call: String,
    pub attempts: u32,
    pub created_at_ms: i64,
    pub next_attempt_at_ms: i64,
}

/// A lane's backlog: pushes waiting (the spilled included), how many of them are spilled, and
/// when the oldest was made (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub waiting: u64,
    pub spilled: u64,
    pub oldest_ms: Option<i64>,
}

/// Runs blocking store work on a blocking thread.
async fn blocking<R: Send + 'static>(work: impl FnOnce() -> Result<R, Error> + Send + 'static) -> Result<R, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| Error::Transaction(format!("a blocking outbox task failed: {err}")))?
}

/// The push id at the end of an outbox key.
fn key_id(key: &[u8]) -> Option<u64> {
    let tail = key.len().checked_sub(8).map(|start| &key[start..])?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

/// A push record's header, decoding only the header (layout 2) or, for layout 1, the whole push.
pub(super) fn decode_header(tree: Tree, key: &[u8], bytes: &[u8]) -> Result<Waiting, Error> {
    let fail = |reason: String| Error::Decode { tree: tree.name(), key: super::show_key(key), reason };
    let header: StoredPushHeader = match bytes.split_first() {
        Some((&PUSH_LAYOUT, rest)) => {
            let (header, _) = split_header(rest).ok_or_else(|| fail("a push record cut short".into()))?;
            serde_json::from_slice(header).map_err(|err| fail(err.to_string()))?
        }
        _ => {
            let push = decode_push(tree, key, bytes)?;
            return Ok(Waiting {
                id: push.id,
                call: push.call,
                attempts: push.attempts,
                created_at_ms: push.created_at_ms,
                next_attempt_at_ms: push.next_attempt_at_ms,
            });
        }
    };
    Ok(Waiting {
        id: header.id,
        call: header.call,
        attempts: header.attempts,
        created_at_ms: header.created_at_ms,
        next_attempt_at_ms: header.next_attempt_at_ms,
    })
}

/// How many leading bytes of a push record (layout 2) hold its header: what memory keeps of a
/// push whose body is left in the call log's file. `None` for another layout.
pub(crate) fn push_head_len(bytes: &[u8]) -> Option<usize> {
    match bytes.split_first() {
        Some((&PUSH_LAYOUT, rest)) => split_header(rest).map(|(header, _)| 1 + 4 + header.len()),
        _ => None,
    }
}

/// An error of the call log's file.
fn log_error(source: std::io::Error) -> Error {
    Error::Io { path: std::path::PathBuf::from(super::calllog::FILE_NAME), source }
}

fn split_header(rest: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// A push record in today's layout, from one of either layout (the call log's migration).
pub(crate) fn upgrade_push_record(key: &[u8], bytes: &[u8]) -> Result<Vec<u8>, String> {
    match bytes.first() {
        Some(&PUSH_LAYOUT) => Ok(bytes.to_vec()),
        _ => decode_push(Tree::Outbox, key, bytes).map(|push| encode_push(&push)).map_err(|err| err.to_string()),
    }
}

/// Adds a push to a change being staged.
pub(super) fn stage_push(writes: &mut WriteSet, push: &Push) {
    writes.put(Tree::Outbox, lane_key(push), encode_push(push));
}

impl Calls {
    /// A new push for `app_key` about `call` (its session id), due now, its body encoded here once.
    pub fn new_push(
        &self,
        app_key: &str,
        call: &str,
        lane: Lane,
        body: &impl Serialize,
        now_ms: i64,
    ) -> Result<Push, Error> {
        let body = serde_json::value::to_raw_value(body)
            .map_err(|err| Error::Transaction(format!("encoding a push to {}: {err}", lane.name())))?;
        Ok(Push {
            id: self.shared.next_id()?,
            app_key: app_key.to_owned(),
            call: call.to_owned(),
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
        let records = self.shared.log.scan(Tree::Outbox, &lane_prefix(app_key, lane), max).map_err(log_error)?;
        records.iter().map(|(key, value)| decode_push(Tree::Outbox, key, value)).collect()
    }

    /// Up to `max` waiting pushes of a lane, oldest first, as headers (no bodies), passing over
    /// those `skip` names by id; and whether more were left unread (read or spilled). Delivery
    /// reads its window this way: from the lane's start, so a push committed after a later one is
    /// still seen; and only up to the lane's first spilled push (see [`Calls::unspill_lane`]).
    pub fn lane_waiting(
        &self,
        app_key: &str,
        lane: Lane,
        skip: impl Fn(u64) -> bool,
        max: usize,
    ) -> Result<(Vec<Waiting>, bool), Error> {
        let prefix = lane_prefix(app_key, lane);
        // Below the first spilled push only: a call's later pushes wait until its spilled ones
        // are back (`spill.rs`).
        let bound = self.shared.spill.first_key(&prefix);
        let mut found = Vec::new();
        let mut more = bound.is_some();
        let mut failure = None;
        self.shared.log.visit(Tree::Outbox, &prefix, |key, value| {
            if bound.as_deref().is_some_and(|bound| key >= bound) {
                return false;
            }
            let Some(id) = key_id(key) else { return true };
            if skip(id) {
                return true;
            }
            if found.len() == max {
                more = true;
                return false;
            }
            match decode_header(Tree::Outbox, key, value) {
                Ok(header) => found.push(header),
                Err(err) => {
                    failure = Some(err);
                    return false;
                }
            }
            true
        });
        match failure {
            Some(err) => Err(err),
            None => Ok((found, more)),
        }
    }

    /// Whole pushes of a lane, by id, in the order given; those no longer waiting are left out.
    pub fn lane_pushes(&self, app_key: &str, lane: Lane, ids: &[u64]) -> Result<Vec<Push>, Error> {
        let mut pushes = Vec::with_capacity(ids.len());
        for id in ids {
            let mut key = lane_prefix(app_key, lane);
            key.extend_from_slice(&id.to_be_bytes());
            if let Some(value) = self.shared.log.get(Tree::Outbox, &key).map_err(log_error)? {
                pushes.push(decode_push(Tree::Outbox, &key, &value)?);
            }
        }
        Ok(pushes)
    }

    /// Whether reading these pushes needs no disk (their bodies are all in memory).
    pub fn lane_in_memory(&self, app_key: &str, lane: Lane, ids: &[u64]) -> bool {
        let keys: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| {
                let mut key = lane_prefix(app_key, lane);
                key.extend_from_slice(&id.to_be_bytes());
                key
            })
            .collect();
        self.shared.log.in_memory(Tree::Outbox, &keys)
    }

    /// How many pushes wait in a lane, how many of them are spilled, and when the oldest was
    /// made (ms), for `/metrics` and the admin API. Counts the lane's keys in memory.
    pub fn lane_backlog(&self, app_key: &str, lane: Lane) -> Result<Backlog, Error> {
        let prefix = lane_prefix(app_key, lane);
        let count = self.shared.log.count(Tree::Outbox, &prefix, usize::MAX) as u64;
        let mut oldest = None;
        self.shared.log.visit(Tree::Outbox, &prefix, |key, value| {
            oldest = Some(decode_header(Tree::Outbox, key, value).map(|header| header.created_at_ms));
            false
        });
        let oldest = oldest.transpose()?;
        let (spilled, first) = self.shared.spill.lane(&prefix);
        let oldest = match (oldest, first.map(|(_, created)| created)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(Backlog { waiting: count + spilled, spilled, oldest_ms: oldest })
    }

    /// Whether the memory budget for waiting pushes is used up (some body is on disk only): then
    /// delivery spills what its windows do not hold.
    pub fn over_budget(&self) -> bool {
        self.shared.log.over_budget()
    }

    /// How many pushes of a lane are spilled (from memory).
    pub fn spilled(&self, app_key: &str, lane: Lane) -> u64 {
        self.shared.spill.lane(&lane_prefix(app_key, lane)).0
    }

    /// Moves up to `max` of a lane's waiting pushes whose bodies are on disk only, and that
    /// `keep` (the window, by id) does not name, out of the call log into the spill: key, header
    /// and body leave memory (`spill.rs`). The spill's copies are durable before the log's go.
    /// Only the lane's dispatcher calls it, between its own changes to the lane. Returns how
    /// many moved.
    pub async fn spill_lane(
        &self,
        app_key: &str,
        lane: Lane,
        keep: std::collections::HashSet<u64>,
        max: usize,
    ) -> Result<usize, Error> {
        let shared = self.shared.clone();
        let prefix = lane_prefix(app_key, lane);
        let moved = blocking(move || {
            let kept = |key: &[u8]| key_id(key).is_some_and(|id| keep.contains(&id));
            let keys = shared.log.on_disk_keys(Tree::Outbox, &prefix, kept, max);
            let mut records = Vec::with_capacity(keys.len());
            for key in keys {
                if let Some(value) = shared.log.get(Tree::Outbox, &key).map_err(log_error)? {
                    records.push((key, value));
                }
            }
            shared.spill.put_durable(&prefix, &records)?;
            Ok(records.into_iter().map(|(key, _)| key).collect::<Vec<_>>())
        })
        .await?;
        if moved.is_empty() {
            return Ok(0);
        }
        let count = moved.len();
        let mut writes = WriteSet::default();
        for key in moved {
            writes.remove(Tree::Outbox, key);
        }
        self.shared.commit_async(writes).await?;
        Ok(count)
    }

    /// Brings up to `max` of a lane's spilled pushes, oldest first, back into the call log,
    /// where its window reads them: the log's record on disk before the spill's copies go. A
    /// push the log holds already (a crash in the middle of a move) keeps the log's copy.
    /// Returns how many came back.
    pub async fn unspill_lane(&self, app_key: &str, lane: Lane, max: usize) -> Result<usize, Error> {
        let shared = self.shared.clone();
        let prefix = lane_prefix(app_key, lane);
        let (records, mut taken) = blocking(move || shared.spill.take(&prefix, max)).await?;
        if records.is_empty() {
            return Ok(0);
        }
        let count = records.len();
        let mut writes = WriteSet::default();
        for (key, value) in records {
            if !self.shared.log.contains(Tree::Outbox, &key) {
                writes.put(Tree::Outbox, key, value);
            }
        }
        let written = async {
            if !writes.ops.is_empty() {
                self.shared.commit_async(writes).await?;
            }
            // In the log's maps now: counted there, no longer here.
            self.shared.spill.returned(&mut taken);
            if self.shared.log.unsynced() {
                self.shared.log_durable().await?;
            }
            Ok::<(), Error>(())
        };
        if let Err(err) = written.await {
            self.shared.spill.restore(taken);
            return Err(err);
        }
        let shared = self.shared.clone();
        blocking(move || shared.spill.commit(taken)).await?;
        Ok(count)
    }

    /// How many pushes a lane holds, counting up to `max`.
    pub fn lane_len(&self, app_key: &str, lane: Lane, max: usize) -> usize {
        self.shared.log.count(Tree::Outbox, &lane_prefix(app_key, lane), max)
    }

    /// Every lane that has pushes waiting (at start-up, to resume them): one look per lane, from
    /// the keys alone, so a large outbox is not decoded to find them.
    pub fn waiting_lanes(&self) -> Result<Vec<(String, Lane)>, Error> {
        let mut lanes = Vec::new();
        let mut from = Vec::new();
        while let Some(key) = self.shared.log.first_key_from(Tree::Outbox, &from) {
            let (app_key, lane) = match keys::first_parts(&key, 2)[..] {
                [app_key, name] => (app_key, Lane::ALL.into_iter().find(|lane| lane.name().as_bytes() == name)),
                _ => (&key[..], None),
            };
            let Some(lane) = lane else {
                return Err(Error::Decode {
                    tree: Tree::Outbox.name(),
                    key: super::show_key(&key),
                    reason: "not an outbox key (app key, events or cdrs, push id)".into(),
                });
            };
            let app_key = String::from_utf8_lossy(app_key).into_owned();
            from = keys::past_prefix(lane_prefix(&app_key, lane));
            lanes.push((app_key, lane));
        }
        for prefix in self.shared.spill.lanes() {
            let parts = keys::first_parts(&prefix, 2);
            let lane = parts.get(1).and_then(|name| Lane::ALL.into_iter().find(|lane| lane.name().as_bytes() == *name));
            if let (Some(app_key), Some(lane)) = (parts.first(), lane) {
                let app_key = String::from_utf8_lossy(app_key).into_owned();
                if !lanes.contains(&(app_key.clone(), lane)) {
                    lanes.push((app_key, lane));
                }
            }
        }
        Ok(lanes)
    }

    /// The customer acknowledged these. Like the two below, it returns once the change is
    /// applied (so the lane's next look no longer sees them), waiting without blocking a thread.
    pub async fn delivered(&self, pushes: &[Push]) -> Result<(), Error> {
        let mut writes = WriteSet::default();
        for push in pushes {
            writes.remove(Tree::Outbox, lane_key(push));
        }
        self.shared.commit_async(writes).await
    }

    /// Records a failed attempt and when to try again.
    pub async fn retry_later(&self, pushes: &[Push]) -> Result<(), Error> {
        let mut writes = WriteSet::default();
        for push in pushes {
            writes.put(Tree::Outbox, lane_key(push), encode_push(push));
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
            dead.put(Tree::OutboxDead, push.id.to_be_bytes().to_vec(), encode_push(push));
            lane.remove(Tree::Outbox, lane_key(push));
        }
        self.shared.commit_async(dead).await?;
        self.shared.durable().await?;
        self.shared.commit_async(lane).await
    }

    /// The dead letters, oldest first.
    pub fn dead_pushes(&self) -> Result<Vec<Push>, Error> {
        self.shared
            .tree(Tree::OutboxDead)?
            .iter()
            .map(|item| {
                let (key, value) = item.map_err(|source| Error::Sled { tree: Tree::OutboxDead.name(), source })?;
                decode_push(Tree::OutboxDead, &key, &value)
            })
            .collect()
    }

    /// Puts a dead push back at the end of its lane with fresh retries; `None` if no such push.
    /// The lane's copy first, on disk before the dead letter goes: a failure or crash between
    /// the two leaves the push in the lane and still among the dead (redelivering it again sends
    /// it twice), never in neither. A dead letter that could not be removed is logged, and the
    /// push is returned all the same: it is in its lane.
    pub async fn revive(&self, id: u64, now_ms: i64) -> Result<Option<Push>, Error> {
        let key = id.to_be_bytes();
        let Some(bytes) = self.shared.get(Tree::OutboxDead, &key)? else { return Ok(None) };
        let push = decode_push(Tree::OutboxDead, &key, &bytes)?;
        // A new id puts it behind what is waiting now, keeping the lane in order from here on.
        let revived =
            Push { id: self.shared.next_id()?, attempts: 0, next_attempt_at_ms: now_ms, last_error: None, ..push };
        let mut lane = WriteSet::default();
        super::outbox::stage_push(&mut lane, &revived);
        self.shared.commit_async(lane).await?;
        self.shared.log_durable().await?;
        let mut dead = WriteSet::default();
        dead.remove(Tree::OutboxDead, key.to_vec());
        if let Err(err) = self.shared.commit_async(dead).await {
            tracing::error!(old_id = id, new_id = revived.id, error = %err, "a redelivered push is still listed among the dead letters");
        }
        Ok(Some(revived))
    }
}

#[cfg(test)]
mod tests {
    use super::{lane_prefix, Lane};
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
                    pushes.push(store.calls().new_push(app_key, "call", lane, &serde_json::json!({}), 0).unwrap());
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pushes_spilled_beyond_the_window_come_back_in_order_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let ids = |found: &[super::Waiting]| found.iter().map(|w| w.id).collect::<Vec<u64>>();
        let mut made: Vec<u64>;
        {
            // No memory budget: every body is on disk, so everything outside the window spills.
            let store = Store::open_with_push_budget(dir.path(), 0).unwrap();
            let calls = store.calls();
            let pushes: Vec<_> = (0..50)
                .map(|n| {
                    calls.new_push("app", &format!("call-{}", n % 5), Lane::Events, &serde_json::json!({"n": n}), n)
                })
                .collect::<Result<_, _>>()
                .unwrap();
            made = pushes.iter().map(|p| p.id).collect();
            calls.save_session("s1", &serde_json::json!({}), &pushes, None).unwrap();
            assert!(calls.over_budget());
            let (all, more) = calls.lane_waiting("app", Lane::Events, |_| false, 1000).unwrap();
            assert_eq!((ids(&all), more), (made.clone(), false));

            // A window of the first ten: the other forty spill.
            let window: std::collections::HashSet<u64> = made[..10].iter().copied().collect();
            let moved = calls.spill_lane("app", Lane::Events, window.clone(), 1000).await.unwrap();
            assert_eq!(moved, 40);
            assert_eq!(calls.spilled("app", Lane::Events), 40);
            let backlog = calls.lane_backlog("app", Lane::Events).unwrap();
            assert_eq!((backlog.waiting, backlog.spilled, backlog.oldest_ms), (50, 40, Some(0)));
            let (found, more) = calls.lane_waiting("app", Lane::Events, |id| window.contains(&id), 1000).unwrap();
            assert_eq!(
                (found.len(), more),
                (0, true),
                "nothing past the window is read while spilled pushes come first"
            );

            // A later push lands in the log, but waits behind the spilled ones.
            let late = calls.new_push("app", "call-0", Lane::Events, &serde_json::json!({"n": 50}), 50).unwrap();
            let late_id = late.id;
            calls.save_session("s1", &serde_json::json!({}), &[late], None).unwrap();
            let (found, _) = calls.lane_waiting("app", Lane::Events, |id| window.contains(&id), 1000).unwrap();
            assert!(found.is_empty(), "{:?}", ids(&found));

            // Fifteen come back, oldest first, and are read in order.
            assert_eq!(calls.unspill_lane("app", Lane::Events, 15).await.unwrap(), 15);
            let (found, more) = calls.lane_waiting("app", Lane::Events, |id| window.contains(&id), 1000).unwrap();
            assert_eq!((ids(&found), more), (made[10..25].to_vec(), true));
            assert_eq!(calls.spilled("app", Lane::Events), 25);
            made.push(late_id);
        }
        // Reopened: the spill is counted again, and the lane is found from it too.
        let store = Store::open_with_push_budget(dir.path(), 0).unwrap();
        let calls = store.calls();
        assert_eq!(calls.spilled("app", Lane::Events), 25);
        assert_eq!(calls.waiting_lanes().unwrap(), [("app".to_owned(), Lane::Events)]);
        let (found, more) = calls.lane_waiting("app", Lane::Events, |_| false, 1000).unwrap();
        assert_eq!((ids(&found), more), (made[..25].to_vec(), true));

        // A crash in the middle of a move leaves a push in both: it comes back once.
        let first = calls.lane_head("app", Lane::Events, 1).unwrap().remove(0);
        let doubled = calls.spill_lane("app", Lane::Events, Default::default(), 1000).await.unwrap();
        assert_eq!(doubled, 26, "the 25 in the log and the late one");
        assert_eq!(calls.spilled("app", Lane::Events), 51);
        let mut writes = crate::store::WriteSet::default();
        super::stage_push(&mut writes, &first);
        calls.shared.commit_blocking(writes).unwrap();
        while calls.spilled("app", Lane::Events) > 0 {
            calls.unspill_lane("app", Lane::Events, 7).await.unwrap();
        }
        let (found, more) = calls.lane_waiting("app", Lane::Events, |_| false, 1000).unwrap();
        assert_eq!((ids(&found), more), (made.clone(), false), "every push once, in id order");
        assert_eq!(calls.lane_backlog("app", Lane::Events).unwrap().waiting, 51);
        let bodies = calls.lane_pushes("app", Lane::Events, &made[..2]).unwrap();
        assert_eq!(bodies[1].body.get(), r#"{"n":1}"#, "bodies come back whole");
    }

    /// One call-log record as version 2 framed it (the framing is unchanged): length, CRC, ops.
    fn v2_record(ops: &[(u8, &[u8], &[u8])]) -> Vec<u8> {
        let mut payload = Vec::new();
        for (tree, key, value) in ops {
            payload.push(*tree);
            payload.extend_from_slice(&(key.len() as u32).to_le_bytes());
            payload.extend_from_slice(key);
            payload.extend_from_slice(&(value.len() as u32).to_le_bytes());
            payload.extend_from_slice(value);
        }
        let mut record = (payload.len() as u32).to_le_bytes().to_vec();
        record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        record
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_version_2_call_log_is_rewritten_and_keeps_its_sessions_and_pushes() {
        let dir = tempfile::tempdir().unwrap();
        // What the previous release wrote: tree 0 the outbox, tree 1 the sessions; each value a
        // version byte 1 and JSON, a push's body inside its JSON.
        let session = br#"{"sessionId":"call-1","caller":"+8613800000001"}"#;
        let push = br#"{"id":7,"app_key":"app","lane":"cdrs","body":{"icid":"call-1","direction":1},"attempts":2,"created_at_ms":10,"next_attempt_at_ms":20,"last_error":"HTTP 503"}"#;
        let mut push_key = lane_prefix("app", Lane::Cdrs);
        push_key.extend_from_slice(&7u64.to_be_bytes());
        let versioned = |json: &[u8]| [&[1u8][..], json].concat();
        let mut file = b"PNCALLS2".to_vec();
        file.extend(v2_record(&[(1, b"call-1", &versioned(session)), (0, &push_key, &versioned(push))]));
        std::fs::write(dir.path().join("calls.log"), &file).unwrap();
        for opening in ["first", "second"] {
            let store = Store::open(dir.path()).unwrap();
            let sessions: Vec<serde_json::Value> = store.calls().sessions().unwrap();
            assert_eq!(sessions, [serde_json::json!({"sessionId": "call-1", "caller": "+8613800000001"})], "{opening}");
            let pushes = store.calls().lane_head("app", Lane::Cdrs, 10).unwrap();
            assert_eq!(pushes.len(), 1, "{opening}");
            let push = &pushes[0];
            assert_eq!((push.id, push.attempts, push.created_at_ms, push.next_attempt_at_ms), (7, 2, 10, 20));
            assert_eq!(push.last_error.as_deref(), Some("HTTP 503"));
            assert_eq!(push.body.get(), r#"{"icid":"call-1","direction":1}"#, "{opening}: the body as it will be sent");
            assert_eq!(store.calls().waiting_lanes().unwrap(), [("app".to_owned(), Lane::Cdrs)]);
            drop(store);
            let header = std::fs::read(dir.path().join("calls.log")).unwrap();
            assert_eq!(&header[..8], b"PNCALLS3", "{opening}: the log is rewritten at today's version");
        }
    }
}
