//! The outbox's spill: waiting pushes beyond the memory budget, on disk only, key and all.
//!
//! The call log keeps every waiting push's key and header in memory, and beyond
//! `push_memory_budget_mb` only those (the body stays in its file). While a customer's receiver
//! is down for hours that still grows by a few hundred bytes per push. So a lane's dispatcher
//! moves the pushes the log keeps on disk, and that its window does not hold, here
//! ([`Calls::spill_lane`](super::Calls::spill_lane)), and back into the log when its window has
//! room for them (`unspill_lane`). Memory then holds the budget, the windows, and per lane a
//! count and the first spilled key: flat, whatever the backlog.
//!
//! The spill is a sled instance of its own (`outbox_spill/` in the data directory), with a small
//! cache, so a long outage neither fills the main instance's cache nor evicts the bindings the
//! call path reads.
//!
//! Invariants:
//! - a move writes the destination, durably, before it removes the source (out: the spill is
//!   flushed and synced, then the log's copies are removed; back: the log's record is synced,
//!   then the spill's copies are removed), so a crash may leave a push in both, never in
//!   neither; bringing a push back that the log already holds keeps the log's copy;
//! - a lane's window reads the log only below the lane's first spilled key (`lane_waiting`), so
//!   a call's later pushes are never read before its earlier, spilled ones: order per call holds;
//! - the spilled pushes are never changed here: a push is retried, delivered or buried only
//!   once it is back in the log;
//! - after a failed write, sled keeps failing (it keeps its first I/O error), so a failure
//!   drops the instance and the next operation opens it again.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::Error;

/// The spill's directory, in the store's.
pub(crate) const DIR_NAME: &str = "outbox_spill";

/// sled's page cache for the spill: what it may hold in memory of what is spilled.
const CACHE_BYTES: u64 = 8 << 20;

/// Outbox records as they move: key, record.
pub(crate) type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// What memory keeps of one lane's spilled pushes.
#[derive(Debug, Clone, Default)]
struct LaneState {
    count: u64,
    /// Of them, those being brought back, whose copy in the log is already written (so the
    /// backlog does not count them twice).
    returning: u64,
    /// The lowest spilled key, and when its push was made (ms).
    first: Option<(Vec<u8>, i64)>,
}

#[derive(Debug)]
pub(crate) struct Spill {
    dir: PathBuf,
    /// `None` after a failure, until the next operation opens it again.
    db: Mutex<Option<sled::Db>>,
    /// By lane prefix (an outbox key without its 8-byte push id).
    lanes: Mutex<HashMap<Vec<u8>, LaneState>>,
}

/// The lane prefix of an outbox key: all but its push id.
fn lane_of(key: &[u8]) -> Option<&[u8]> {
    key.len().checked_sub(8).map(|end| &key[..end])
}

fn sled_error(source: sled::Error) -> Error {
    Error::Sled { tree: "outbox_spill", source }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Spill {
    /// Opens (or creates) the spill in `store_dir`, counting what it holds per lane (one pass
    /// over its keys: a large spill takes a moment at start-up).
    pub(crate) fn open(store_dir: &Path) -> Result<Spill, Error> {
        let dir = store_dir.join(DIR_NAME);
        let db = open_db(&dir)?;
        let mut lanes: HashMap<Vec<u8>, LaneState> = HashMap::new();
        for item in db.iter() {
            let (key, value) = item.map_err(sled_error)?;
            let Some(lane) = lane_of(&key) else { continue };
            let state = lanes.entry(lane.to_vec()).or_default();
            state.count += 1;
            if state.first.is_none() {
                state.first = Some((key.to_vec(), created_at(&key, &value)?));
            }
        }
        let spilled: u64 = lanes.values().map(|lane| lane.count).sum();
        if spilled > 0 {
            tracing::info!(spilled, lanes = lanes.len(), dir = %dir.display(), "waiting pushes found in the outbox's spill");
        }
        Ok(Spill { dir, db: Mutex::new(Some(db)), lanes: Mutex::new(lanes) })
    }

    /// The instance, opened again if the last operation failed.
    fn db(&self) -> Result<sled::Db, Error> {
        let mut slot = lock(&self.db);
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        let db = open_db(&self.dir)?;
        *slot = Some(db.clone());
        Ok(db)
    }

    /// Runs `op` on the instance; a failure lets the instance go, to be opened again.
    fn with_db<R>(&self, op: impl FnOnce(&sled::Db) -> Result<R, Error>) -> Result<R, Error> {
        let db = self.db()?;
        let result = op(&db);
        if result.is_err() {
            drop(db);
            lock(&self.db).take();
        }
        result
    }

    /// Writes these outbox records (key, record) and makes them durable (sled's flush and an
    /// `fdatasync` of its log). Blocking.
    pub(crate) fn put_durable(&self, records: &Records) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        let mut added: Vec<(&[u8], &[u8], i64)> = Vec::with_capacity(records.len());
        self.with_db(|db| {
            for (key, value) in records {
                if db.insert(key.as_slice(), value.as_slice()).map_err(sled_error)?.is_none() {
                    added.push((key, value, created_at(key, value)?));
                }
            }
            db.flush().map_err(sled_error)?;
            let log = self.dir.join("db");
            File::open(&log).and_then(|file| file.sync_data()).map_err(|source| Error::Io { path: log, source })
        })?;
        let mut lanes = lock(&self.lanes);
        for (key, _, created) in added {
            let Some(lane) = lane_of(key) else { continue };
            let state = lanes.entry(lane.to_vec()).or_default();
            state.count += 1;
            if state.first.as_ref().is_none_or(|(first, _)| key < first.as_slice()) {
                state.first = Some((key.to_vec(), created));
            }
        }
        Ok(())
    }

    /// The first `max` records of a lane (by its prefix), in key order. Blocking.
    pub(crate) fn head(&self, lane: &[u8], max: usize) -> Result<Records, Error> {
        self.with_db(|db| {
            db.scan_prefix(lane)
                .take(max)
                .map(|item| item.map(|(key, value)| (key.to_vec(), value.to_vec())).map_err(sled_error))
                .collect()
        })
    }

    /// Removes these keys (of one lane or several). Blocking.
    pub(crate) fn remove(&self, keys: &[Vec<u8>]) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut removed: Vec<&[u8]> = Vec::with_capacity(keys.len());
        self.with_db(|db| {
            for key in keys {
                if db.remove(key.as_slice()).map_err(sled_error)?.is_some() {
                    removed.push(key);
                }
            }
            Ok(())
        })?;
        // The lanes whose first key went: their new first is read from sled.
        let mut stale: Vec<Vec<u8>> = Vec::new();
        {
            let mut lanes = lock(&self.lanes);
            for key in removed {
                let Some(lane) = lane_of(key) else { continue };
                let Some(state) = lanes.get_mut(lane) else { continue };
                state.count = state.count.saturating_sub(1);
                if state.first.as_ref().is_some_and(|(first, _)| first.as_slice() == key) {
                    state.first = None;
                    stale.push(lane.to_vec());
                }
            }
        }
        stale.sort();
        stale.dedup();
        for lane in stale {
            let first = self.with_db(|db| match db.scan_prefix(&lane).next() {
                Some(item) => {
                    let (key, value) = item.map_err(sled_error)?;
                    Ok(Some((key.to_vec(), created_at(&key, &value)?)))
                }
                None => Ok(None),
            })?;
            let mut lanes = lock(&self.lanes);
            match first {
                None => {
                    lanes.remove(&lane);
                }
                Some(first) => {
                    if let Some(state) = lanes.get_mut(&lane) {
                        // A put since may have brought a lower key.
                        if state.first.as_ref().is_none_or(|(key, _)| first.0 < *key) {
                            state.first = Some(first);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// How many pushes of a lane are spilled (not counting those being brought back), and its
    /// first spilled key with when its push was made. From memory.
    pub(crate) fn lane(&self, lane: &[u8]) -> (u64, Option<(Vec<u8>, i64)>) {
        lock(&self.lanes)
            .get(lane)
            .map_or((0, None), |state| (state.count.saturating_sub(state.returning), state.first.clone()))
    }

    /// `n` of a lane's spilled pushes are about to be written back to the log (`true`), or their
    /// move ended (`false`: removed here, or left here by a failure).
    pub(crate) fn returning(&self, lane: &[u8], n: u64, started: bool) {
        let mut lanes = lock(&self.lanes);
        let Some(state) = lanes.get_mut(lane) else { return };
        state.returning = if started { state.returning + n } else { state.returning.saturating_sub(n) };
    }

    /// The first spilled key of a lane, if any. From memory.
    pub(crate) fn first_key(&self, lane: &[u8]) -> Option<Vec<u8>> {
        lock(&self.lanes).get(lane).and_then(|state| state.first.as_ref().map(|(key, _)| key.clone()))
    }

    /// Every lane prefix with pushes spilled. From memory.
    pub(crate) fn lanes(&self) -> Vec<Vec<u8>> {
        lock(&self.lanes).iter().filter(|(_, state)| state.count > 0).map(|(lane, _)| lane.clone()).collect()
    }
}

fn open_db(dir: &Path) -> Result<sled::Db, Error> {
    super::handles::open_when_free(&sled::Config::new().path(dir).cache_capacity(CACHE_BYTES))
        .map_err(|source| Error::Open { path: dir.to_owned(), source })
}

/// When the push of this record was made (ms).
fn created_at(key: &[u8], value: &[u8]) -> Result<i64, Error> {
    super::outbox::decode_header(super::Tree::Outbox, key, value).map(|header| header.created_at_ms)
}
