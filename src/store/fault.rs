//! Storage faults: which part of the store cannot make changes durable, why, and since when.
//!
//! A write or flush that fails (a full disk, an I/O error) marks its part faulted: sled (apps,
//! numbers, bindings, tones, dead letters, recordings, nonces) or the call log (sessions and
//! waiting pushes). While a part is faulted every write to it is refused at once with
//! [`Error::Unavailable`], and so is every wait for its durability, including waits that had
//! begun before the fault; `/healthz` answers 503 and `/metrics` shows it. The recovery thread
//! (`recover.rs`) tries every second to bring the part back, and clears the fault once it has.
//!
//! Invariants:
//! - a part's fault keeps its first error and the time it happened; later failures while it is
//!   faulted change nothing and log nothing, so a fault is one log line, and its recovery one;
//! - each fault raises its part's generation, published on a `watch` channel: a durability wait
//!   reads the generations before it checks the fault and fails if one changed before its flush
//!   completed, so a wait that spans a fault (even one already recovered from) never succeeds;
//! - injected failures (`Store::inject_write_failures`, for tests) fail the part's writes,
//!   syncs and recovery probes exactly where the disk's errors surface, as ENOSPC.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::Error;

/// A part of the store that reaches the disk on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorePart {
    /// sled: apps, numbers, bindings, tones, dead letters, recordings, nonces.
    Sled,
    /// The call log: sessions of calls under way and pushes waiting for delivery.
    CallLog,
}

impl StorePart {
    pub const ALL: [StorePart; 2] = [StorePart::Sled, StorePart::CallLog];

    /// The part's name in `/healthz`, `/metrics` and the log.
    pub fn name(self) -> &'static str {
        match self {
            StorePart::Sled => "sled",
            StorePart::CallLog => "call_log",
        }
    }

    /// The part's index in the per-part arrays of [`HealthStats`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a part of the store is faulted: its first error, and when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFault {
    pub part: StorePart,
    /// The first error's text (it may name a file of the store; shown to operators only).
    pub error: String,
    pub since: SystemTime,
}

impl StoreFault {
    /// How long ago the fault began.
    pub fn age(&self) -> Duration {
        self.since.elapsed().unwrap_or_default()
    }

    /// When it began, as RFC 3339 UTC.
    pub fn since_rfc3339(&self) -> String {
        chrono::DateTime::<chrono::Utc>::from(self.since).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}

impl std::fmt::Display for StoreFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} cannot make changes durable since {}: {}", self.part.name(), self.since_rfc3339(), self.error)
    }
}

/// The store's health for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthStats {
    /// Per part (sled, call log): faulted now.
    pub faulted: [bool; 2],
    /// Per part: faults since opening.
    pub faults: [u64; 2],
    /// Per part: recoveries since opening.
    pub recoveries: [u64; 2],
    /// Writes and durability waits refused because a part was faulted.
    pub refused: u64,
}

#[derive(Debug, Default)]
struct PartState {
    /// Mirrors `fault.is_some()`, for checks that take no lock.
    faulted: AtomicBool,
    fault: Mutex<Option<StoreFault>>,
    /// The last fault, kept after recovery to tell a wait that spanned it why it failed.
    last: Mutex<Option<StoreFault>>,
    faults: AtomicU64,
    recoveries: AtomicU64,
    injected: AtomicBool,
}

/// The fault state of the store's parts, shared by the committer, the group flush, the
/// recovery thread and the handles.
#[derive(Debug)]
pub(crate) struct Health {
    parts: [PartState; 2],
    /// Faults per part so far: a durability wait fails when its part's number changes.
    generations: watch::Sender<[u64; 2]>,
    refused: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Health { parts: Default::default(), generations: watch::Sender::new([0; 2]), refused: AtomicU64::new(0) }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each change is one assignment: recover from poisoning.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Health {
    fn part(&self, part: StorePart) -> &PartState {
        &self.parts[part.index()]
    }

    /// Marks `part` faulted by `error`, unless it already is (the first error is kept). Logs once.
    pub(crate) fn fault(&self, part: StorePart, error: impl std::fmt::Display) {
        let state = self.part(part);
        let mut fault = lock(&state.fault);
        if fault.is_some() {
            return;
        }
        let new = StoreFault { part, error: error.to_string(), since: SystemTime::now() };
        tracing::error!(
            part = part.name(),
            error = %new.error,
            "the store cannot make changes durable: changes are refused, calls released, /healthz is 503, until it recovers (retried every second)"
        );
        *lock(&state.last) = Some(new.clone());
        *fault = Some(new);
        state.faulted.store(true, Ordering::SeqCst);
        state.faults.fetch_add(1, Ordering::Relaxed);
        drop(fault);
        self.generations.send_modify(|generations| generations[part.index()] += 1);
    }

    /// Clears `part`'s fault after a recovery. Logs once.
    pub(crate) fn recovered(&self, part: StorePart) {
        let state = self.part(part);
        let mut fault = lock(&state.fault);
        let Some(old) = fault.take() else { return };
        state.faulted.store(false, Ordering::SeqCst);
        state.recoveries.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            part = part.name(),
            faulted_seconds = old.age().as_secs_f64(),
            first_error = %old.error,
            "the store recovered: changes are accepted again"
        );
    }

    /// Whether `part` is faulted now.
    pub(crate) fn faulted(&self, part: StorePart) -> bool {
        self.part(part).faulted.load(Ordering::SeqCst)
    }

    /// `part`'s fault, if it has one now.
    pub(crate) fn fault_of(&self, part: StorePart) -> Option<StoreFault> {
        if !self.faulted(part) {
            return None;
        }
        lock(&self.part(part).fault).clone()
    }

    /// The oldest fault of any part, if one is faulted now.
    pub(crate) fn first_fault(&self) -> Option<StoreFault> {
        StorePart::ALL.into_iter().filter_map(|part| self.fault_of(part)).min_by_key(|fault| fault.since)
    }

    /// `Err` (and counted as refused) while `part` is faulted.
    pub(crate) fn check(&self, part: StorePart) -> Result<(), Error> {
        match self.fault_of(part) {
            None => Ok(()),
            Some(fault) => Err(self.refuse(fault)),
        }
    }

    /// The error for a change refused because of `fault`, counted.
    pub(crate) fn refuse(&self, fault: StoreFault) -> Error {
        self.refused.fetch_add(1, Ordering::Relaxed);
        Error::Unavailable(fault)
    }

    /// The error for a durability wait that spanned a fault of `part` (now or already recovered).
    pub(crate) fn spanned(&self, part: StorePart) -> Error {
        let fault = self.fault_of(part).or_else(|| lock(&self.part(part).last).clone());
        let fault = fault.unwrap_or_else(|| StoreFault {
            part,
            error: "a fault began while this change waited for the disk".to_owned(),
            since: SystemTime::now(),
        });
        self.refuse(fault)
    }

    /// Faults per part so far.
    pub(crate) fn generations(&self) -> [u64; 2] {
        *self.generations.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<[u64; 2]> {
        self.generations.subscribe()
    }

    /// Makes `part`'s writes, syncs and recovery probes fail as a full disk would, or stops.
    pub(crate) fn inject(&self, part: StorePart, failing: bool) {
        self.part(part).injected.store(failing, Ordering::SeqCst);
    }

    /// An injected failure for `part`, if injection is on: ENOSPC, as a full disk answers.
    pub(crate) fn injected(&self, part: StorePart) -> std::io::Result<()> {
        if self.part(part).injected.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(())
    }

    pub(crate) fn stats(&self) -> HealthStats {
        let each = |read: &dyn Fn(&PartState) -> u64| StorePart::ALL.map(|part| read(self.part(part)));
        HealthStats {
            faulted: StorePart::ALL.map(|part| self.faulted(part)),
            faults: each(&|state| state.faults.load(Ordering::Relaxed)),
            recoveries: each(&|state| state.recoveries.load(Ordering::Relaxed)),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// `ENOSPC` on Linux (and every Unix privnum builds on): "No space left on device".
const ENOSPC: i32 = 28;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_keeps_its_first_error_until_recovery_and_raises_its_generation_once() {
        let health = Health::default();
        assert!(health.check(StorePart::Sled).is_ok());
        health.fault(StorePart::Sled, "first");
        health.fault(StorePart::Sled, "second");
        assert_eq!(health.generations(), [1, 0]);
        let err = health.check(StorePart::Sled).unwrap_err().to_string();
        assert!(err.contains("first") && !err.contains("second"), "{err}");
        assert!(health.check(StorePart::CallLog).is_ok(), "the call log is a part of its own");
        assert_eq!(health.first_fault().map(|fault| fault.part), Some(StorePart::Sled));
        health.recovered(StorePart::Sled);
        assert!(health.check(StorePart::Sled).is_ok());
        assert!(health.spanned(StorePart::Sled).to_string().contains("first"), "the last fault is kept");
        let stats = health.stats();
        assert_eq!((stats.faults, stats.recoveries, stats.refused), ([1, 0], [1, 0], 2));
    }

    #[test]
    fn injected_failures_read_as_a_full_disk() {
        let health = Health::default();
        health.inject(StorePart::CallLog, true);
        let err = health.injected(StorePart::CallLog).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(ENOSPC));
        assert!(health.injected(StorePart::Sled).is_ok());
        health.inject(StorePart::CallLog, false);
        assert!(health.injected(StorePart::CallLog).is_ok());
    }
}
