//! Group commit: many acknowledged writes share one `fsync`.
//!
//! sled writes to its log in memory and syncs in the background every 500 ms, so a write is
//! durable only after a flush. Flushing once per request caps throughput at the disk's sync rate;
//! instead every writer takes a ticket after its write and waits until a flush that *started after*
//! its ticket has finished. One flush in progress serves every ticket issued before it began.
//!
//! sled's own flush ends in `sync_file_range`, which pushes the log's pages to the disk but neither
//! the file's metadata (the log grows by appending) nor the drive's write cache (sled#1452). So a
//! flush here is sled's flush followed by `fdatasync` on the log file: an acknowledged write then
//! survives a power cut, not only `kill -9`, at the cost of one more sync per group.
//!
//! The store has two files to sync: sled's (apps, numbers, bindings, tones) and the call log
//! (sessions and pushes, `calllog.rs`). A writer says which it wrote ([`Scope`]); a flush syncs only
//! what some writer since the last flush asked for, so an acknowledged call event never waits for
//! sled, nor a bind for the call log.
//!
//! Invariants:
//! - `flushed` only ever holds a ticket number that was read before the flush that published it
//!   started, so `flushed >= ticket` implies the ticket's write is on disk;
//! - a writer raises its scope's flag before taking its ticket, and the flusher lowers a flag only
//!   after reading the tickets it will serve and before syncing: so whichever flush lowered the
//!   flag a writer raised started after that writer's write, and covers it.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::calllog::CallLog;
use super::Error;

/// Which of the store's files a writer needs on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Everything: sled and the call log.
    All,
    /// The call log only: a change to sessions or waiting pushes alone.
    Calls,
}

/// How long a writer waits for its flush before reporting failure: far above a healthy disk's sync
/// time (milliseconds), short enough that a client sees an error instead of hanging.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// With no writer waiting, the call log is still synced this often while it has new records, as
/// sled syncs its own log every 500 ms: the most a power cut can take of what was not waited for.
const BACKGROUND_SYNC: Duration = Duration::from_millis(500);

/// How long a sled flush under load waits for more writers to join it. Each sled flush costs CPU
/// of its own (sealing and writing its log buffer on sled's I/O threads); binds are CPU-bound, so
/// fewer, larger flushes serve more of them. Measured at 64 clients: without it binds fell 7%
/// (flushes 1.4x as many); 300 µs did not help; 800 µs matched the old flusher, whose hand-off
/// to a blocking pool made each flush ~1.2 ms and so batched the same way.
const SLED_LINGER: Duration = Duration::from_micros(800);

/// After a failed flush, wait this long before trying again, so a broken disk is not hammered.
const RETRY_DELAY: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(crate) struct GroupFlush {
    /// Only this struct holds the database for the flusher: the thread holds a weak reference, so
    /// when the store is dropped, sled is closed at once rather than when the thread next wakes.
    db: sled::Db,
    calls: Arc<CallLog>,
    tickets: AtomicU64,
    /// Raised by writers that need sled flushed, lowered by the flush that does it.
    sled_wanted: AtomicBool,
    /// The same for the call log.
    calls_wanted: AtomicBool,
    /// Shared with the flusher thread, which holds only a weak reference to the rest, so dropping
    /// the store ends the thread and releases the database.
    wake: Arc<Wake>,
    flushed: watch::Sender<u64>,
    /// Completed flushes and the time they took, for `/metrics`.
    flushes: AtomicU64,
    flush_micros: AtomicU64,
}

/// How writers (and the store's drop) wake the flusher thread.
#[derive(Debug, Default)]
struct Wake {
    state: Mutex<WakeState>,
    signal: Condvar,
}

#[derive(Debug, Default)]
struct WakeState {
    /// A writer is waiting for a flush that has not started yet.
    pending: bool,
    /// The store is gone: the thread ends.
    closed: bool,
}

impl Wake {
    fn lock(&self) -> MutexGuard<'_, WakeState> {
        // Two flags, each set in one step: recover from poisoning.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn notify(&self, change: impl FnOnce(&mut WakeState)) {
        change(&mut self.lock());
        self.signal.notify_one();
    }

    /// Waits until a writer asks for a flush, or `timeout` passes; `None` once closed, else
    /// whether a writer asked.
    fn wait(&self, timeout: Duration) -> Option<bool> {
        let mut state = self.lock();
        if !state.pending && !state.closed {
            state = self.signal.wait_timeout(state, timeout).unwrap_or_else(|poisoned| poisoned.into_inner()).0;
        }
        if state.closed {
            return None;
        }
        Some(std::mem::take(&mut state.pending))
    }
}

/// What the flusher has done since the store opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Writers that waited for durability.
    pub waits: u64,
    /// Flushes (sled flush + `fdatasync`, the call log's `fdatasync`, or both) that completed.
    pub flushes: u64,
    /// Their total duration, in microseconds.
    pub flush_micros: u64,
}

impl Drop for GroupFlush {
    fn drop(&mut self) {
        self.wake.notify(|state| state.closed = true);
    }
}

/// What runs just before each sled flush, on the flusher thread.
pub(crate) type BeforeSledFlush = Box<dyn Fn() -> Result<(), String> + Send>;

impl GroupFlush {
    /// Starts the flusher thread for `db`, whose files are in `dir`, and the call log `calls`.
    ///
    /// `before_sled_flush` runs on the flusher thread before each sled flush, so what it writes
    /// to sled is in that flush (the store writes the pending nonces there).
    pub(crate) fn start(
        db: sled::Db,
        calls: Arc<CallLog>,
        before_sled_flush: BeforeSledFlush,
        dir: &Path,
    ) -> std::io::Result<Arc<Self>> {
        // The log file (sled 0.34 keeps everything in `dir/db`) and the directory entry that names it.
        let log = File::open(dir.join("db"))?;
        File::open(dir)?.sync_all()?;
        let wake = Arc::new(Wake::default());
        let group = Arc::new(GroupFlush {
            db,
            calls,
            tickets: AtomicU64::new(0),
            sled_wanted: AtomicBool::new(false),
            calls_wanted: AtomicBool::new(false),
            wake: wake.clone(),
            flushed: watch::Sender::new(0),
            flushes: AtomicU64::new(0),
            flush_micros: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&group);
        // A thread of its own: a flush blocks on the disk, and handing each one to a blocking
        // pool cost two thread switches per flush.
        std::thread::Builder::new().name("privnum-flush".into()).spawn(move || {
            let mut served = 0;
            while let Some(asked) = wake.wait(BACKGROUND_SYNC) {
                let Some(group) = weak.upgrade() else { return };
                if !asked {
                    if !group.calls.unsynced() {
                        continue;
                    }
                    group.calls_wanted.store(true, Ordering::SeqCst);
                }
                // A sled flush costs far more CPU than a call-log sync. Under load (the last flush
                // served more than one writer) let the next writers join this one first.
                if group.sled_wanted.load(Ordering::SeqCst) && served > 1 {
                    std::thread::sleep(SLED_LINGER);
                }
                let target = group.tickets.load(Ordering::SeqCst);
                let sled = group.sled_wanted.swap(false, Ordering::SeqCst).then(|| group.db.clone());
                let calls = group.calls_wanted.swap(false, Ordering::SeqCst).then(|| group.calls.clone());
                drop(group);
                let started = std::time::Instant::now();
                let flushed = if sled.is_some() {
                    before_sled_flush().and_then(|()| flush(sled, &log, calls))
                } else {
                    flush(sled, &log, calls)
                };
                let Some(group) = weak.upgrade() else { return };
                match flushed {
                    Ok(()) => {
                        served = target - group.flushed.send_replace(target);
                        group.flushes.fetch_add(1, Ordering::Relaxed);
                        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        group.flush_micros.fetch_add(micros, Ordering::Relaxed);
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "store flush failed; writers are waiting and it will be retried");
                        // What this flush took on is still owed.
                        group.sled_wanted.store(true, Ordering::SeqCst);
                        group.calls_wanted.store(true, Ordering::SeqCst);
                        drop(group);
                        std::thread::sleep(RETRY_DELAY);
                        wake.notify(|state| state.pending = true);
                    }
                }
            }
        })?;
        Ok(group)
    }

    pub(crate) fn stats(&self) -> FlushStats {
        FlushStats {
            waits: self.tickets.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            flush_micros: self.flush_micros.load(Ordering::Relaxed),
        }
    }

    /// Waits until everything in `scope` written before this call is on disk.
    pub(crate) async fn wait(&self, scope: Scope) -> Result<(), Error> {
        if scope == Scope::All {
            self.sled_wanted.store(true, Ordering::SeqCst);
        }
        self.calls_wanted.store(true, Ordering::SeqCst);
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut flushed = self.flushed.subscribe();
        self.wake.notify(|state| state.pending = true);
        let result = tokio::time::timeout(FLUSH_TIMEOUT, flushed.wait_for(|&done| done >= ticket)).await;
        match result.map(|waited| waited.map(|_| ())) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::Flush("the flusher stopped".to_owned())),
            Err(_) => Err(Error::Flush(format!("no flush completed within {FLUSH_TIMEOUT:?}"))),
        }
    }
}

/// Flushes sled (its flush, then `fdatasync` of its log) and syncs the call log, each if given.
fn flush(sled: Option<sled::Db>, sled_log: &File, calls: Option<Arc<CallLog>>) -> Result<(), String> {
    if let Some(db) = sled {
        db.flush().map_err(|err| format!("sled flush: {err}"))?;
        sled_log.sync_data().map_err(|err| format!("fdatasync of the sled log: {err}"))?;
    }
    if let Some(calls) = calls {
        calls.sync().map_err(|err| format!("fdatasync of the call log: {err}"))?;
    }
    Ok(())
}
