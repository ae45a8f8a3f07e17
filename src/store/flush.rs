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
//! sled, nor a bind for the call log. Each round syncs the call log first and publishes it at
//! once, then flushes sled, and the two are published apart: a call-log writer is served by the
//! call log's sync alone, whether sled's flush is slow, fails, or sled is faulted.
//!
//! A failed sync or flush faults its part (`fault.rs`); a faulted part is not synced again (the
//! recovery thread brings it back), and every wait for it fails at once, including waits that
//! began before the fault.
//!
//! Invariants:
//! - a part's published ticket was read before the sync that published it started, so
//!   `published >= ticket` implies the ticket's write to that part is on disk (or the part
//!   faulted since, which the wait checks);
//! - a writer raises its scope's flags before taking its ticket, and the flusher lowers a flag only
//!   after reading the tickets it will serve and before syncing: so whichever flush lowered the
//!   flag a writer raised started after that writer's write, and covers it. A round that finds
//!   a flag lowered publishes its part up to the tickets it read: everything before them was
//!   covered by an earlier sync (or its wait fails with the fault that sync raised).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::calllog::CallLog;
use super::fault::{Health, StorePart};
use super::handles::SledSlot;
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

#[derive(Debug)]
pub(crate) struct GroupFlush {
    /// sled's handles, taken for each flush (the recovery thread may replace them).
    sled: Arc<SledSlot>,
    calls: Arc<CallLog>,
    health: Arc<Health>,
    tickets: AtomicU64,
    /// Raised by writers that need sled flushed, lowered by the flush that does it.
    sled_wanted: AtomicBool,
    /// The same for the call log.
    calls_wanted: AtomicBool,
    /// Shared with the flusher thread, which holds only a weak reference to the rest, so dropping
    /// the store ends the thread and releases the database.
    wake: Arc<Wake>,
    flushed: watch::Sender<Published>,
    /// Completed flushes and the time they took, for `/metrics`.
    flushes: AtomicU64,
    flush_micros: AtomicU64,
}

/// The last ticket each part's syncs have covered.
#[derive(Debug, Clone, Copy, Default)]
struct Published {
    sled: u64,
    calls: u64,
}

impl Published {
    fn covers(&self, scope: Scope, ticket: u64) -> bool {
        self.calls >= ticket && (scope == Scope::Calls || self.sled >= ticket)
    }
}

impl Scope {
    fn parts(self) -> &'static [StorePart] {
        match self {
            Scope::All => &[StorePart::Sled, StorePart::CallLog],
            Scope::Calls => &[StorePart::CallLog],
        }
    }
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
    /// Starts the flusher thread for the sled instance in `sled` and the call log `calls`, whose
    /// files are in `dir`; failures fault their part in `health`.
    ///
    /// `before_sled_flush` runs on the flusher thread before each sled flush, so what it writes
    /// to sled is in that flush (the store writes the pending nonces there).
    pub(crate) fn start(
        sled: Arc<SledSlot>,
        calls: Arc<CallLog>,
        health: Arc<Health>,
        before_sled_flush: BeforeSledFlush,
        dir: &Path,
    ) -> std::io::Result<Arc<Self>> {
        // The directory entry that names sled's log file.
        std::fs::File::open(dir)?.sync_all()?;
        let wake = Arc::new(Wake::default());
        let group = Arc::new(GroupFlush {
            sled,
            calls,
            health,
            tickets: AtomicU64::new(0),
            sled_wanted: AtomicBool::new(false),
            calls_wanted: AtomicBool::new(false),
            wake: wake.clone(),
            flushed: watch::Sender::new(Published::default()),
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
                    if group.health.faulted(StorePart::CallLog) || !group.calls.unsynced() {
                        continue;
                    }
                    group.calls_wanted.store(true, Ordering::SeqCst);
                }
                let started = std::time::Instant::now();
                let calls_synced = group.sync_calls();
                // A sled flush costs far more CPU than a call-log sync. Under load (the last flush
                // served more than one writer) let the next writers join this one first.
                if group.sled_wanted.load(Ordering::SeqCst) && served > 1 {
                    std::thread::sleep(SLED_LINGER);
                }
                let sled_flushed = group.flush_sled(&before_sled_flush);
                served = sled_flushed.unwrap_or(0);
                if calls_synced || sled_flushed.is_some() {
                    group.flushes.fetch_add(1, Ordering::Relaxed);
                    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    group.flush_micros.fetch_add(micros, Ordering::Relaxed);
                }
            }
        })?;
        Ok(group)
    }

    /// Syncs the call log if a writer asked and it is not faulted, and publishes it; whether it
    /// synced.
    fn sync_calls(&self) -> bool {
        let target = self.tickets.load(Ordering::SeqCst);
        let wanted = self.calls_wanted.swap(false, Ordering::SeqCst);
        if self.health.faulted(StorePart::CallLog) {
            return false;
        }
        if wanted {
            if let Err(err) = self.health.injected(StorePart::CallLog).and_then(|()| self.calls.sync()) {
                self.health.fault(StorePart::CallLog, format!("fdatasync of the call log: {err}"));
                return false;
            }
        }
        self.flushed.send_modify(|published| published.calls = published.calls.max(target));
        wanted
    }

    /// Flushes sled if a writer asked and it is not faulted, and publishes it; how many tickets
    /// the flush served, if it flushed.
    fn flush_sled(&self, before_sled_flush: &BeforeSledFlush) -> Option<u64> {
        let target = self.tickets.load(Ordering::SeqCst);
        let wanted = self.sled_wanted.swap(false, Ordering::SeqCst);
        if self.health.faulted(StorePart::Sled) {
            return None;
        }
        if wanted {
            let flushed = self
                .health
                .injected(StorePart::Sled)
                .map_err(|err| format!("sled flush: {err}"))
                .and_then(|()| before_sled_flush())
                .and_then(|()| self.sled.get().map_err(|err| err.to_string())?.flush());
            if let Err(err) = flushed {
                self.health.fault(StorePart::Sled, err);
                return None;
            }
        }
        let mut before = 0;
        self.flushed.send_modify(|published| {
            before = published.sled;
            published.sled = published.sled.max(target);
        });
        wanted.then(|| target.saturating_sub(before))
    }

    pub(crate) fn stats(&self) -> FlushStats {
        FlushStats {
            waits: self.tickets.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            flush_micros: self.flush_micros.load(Ordering::Relaxed),
        }
    }

    /// Waits until everything in `scope` written before this call is on disk. Fails at once
    /// while a part in `scope` is faulted, and as soon as one faults while waiting.
    pub(crate) async fn wait(&self, scope: Scope) -> Result<(), Error> {
        // Read before the check: a fault after it changes them, and fails this wait.
        let generations = self.health.generations();
        for part in scope.parts() {
            self.health.check(*part)?;
        }
        if scope == Scope::All {
            self.sled_wanted.store(true, Ordering::SeqCst);
        }
        self.calls_wanted.store(true, Ordering::SeqCst);
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut flushed = self.flushed.subscribe();
        let mut faults = self.health.subscribe();
        self.wake.notify(|state| state.pending = true);
        let spanned =
            |now: &[u64; 2]| scope.parts().iter().copied().find(|part| now[part.index()] != generations[part.index()]);
        let waited = tokio::time::timeout(FLUSH_TIMEOUT, async {
            tokio::select! {
                done = flushed.wait_for(|published| published.covers(scope, ticket)) => {
                    done.map(|_| ()).map_err(|_| Error::Flush("the flusher stopped".to_owned()))
                }
                fault = faults.wait_for(|now| spanned(now).is_some()) => {
                    let part = fault.ok().and_then(|now| spanned(&now)).unwrap_or(StorePart::CallLog);
                    Err(self.health.spanned(part))
                }
            }
        })
        .await;
        match waited {
            Err(_) => Err(Error::Flush(format!("no flush completed within {FLUSH_TIMEOUT:?}"))),
            Ok(Err(err)) => Err(err),
            // A fault and its recovery may both have happened while this waited.
            Ok(Ok(())) => match spanned(&self.health.generations()) {
                Some(part) => Err(self.health.spanned(part)),
                None => Ok(()),
            },
        }
    }
}
