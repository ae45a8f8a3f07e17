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
//! Invariant: `flushed` only ever holds a ticket number that was read before the flush that
//! published it started, so `flushed >= ticket` implies the ticket's write is on disk.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::Error;

/// How long a writer waits for its flush before reporting failure: far above a healthy disk's sync
/// time (milliseconds), short enough that a client sees an error instead of hanging.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed flush, wait this long before trying again, so a broken disk is not hammered.
const RETRY_DELAY: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(crate) struct GroupFlush {
    /// Only this struct holds the database for the flusher: the task holds a weak reference, so
    /// when the store is dropped, sled is closed at once rather than when the task next wakes.
    db: sled::Db,
    tickets: AtomicU64,
    /// Shared with the flusher task, which holds only a weak reference to the rest, so dropping
    /// the store ends the task and releases the database.
    wake: Arc<Notify>,
    flushed: watch::Sender<u64>,
    /// Completed flushes and the time they took, for `/metrics`.
    flushes: AtomicU64,
    flush_micros: AtomicU64,
}

/// What the flusher has done since the store opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Writers that waited for durability.
    pub waits: u64,
    /// Flushes (sled flush + `fdatasync`) that completed.
    pub flushes: u64,
    /// Their total duration, in microseconds.
    pub flush_micros: u64,
}

impl Drop for GroupFlush {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

impl GroupFlush {
    /// Starts the flusher task for `db`, whose files are in `dir`, on the current tokio runtime.
    pub(crate) fn start(db: sled::Db, dir: &Path) -> std::io::Result<Arc<Self>> {
        // The log file (sled 0.34 keeps everything in `dir/db`) and the directory entry that names it.
        let log = Arc::new(File::open(dir.join("db"))?);
        File::open(dir)?.sync_all()?;
        let wake = Arc::new(Notify::new());
        let group = Arc::new(GroupFlush {
            db,
            tickets: AtomicU64::new(0),
            wake: wake.clone(),
            flushed: watch::Sender::new(0),
            flushes: AtomicU64::new(0),
            flush_micros: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&group);
        tokio::spawn(async move {
            loop {
                wake.notified().await;
                let Some(group) = weak.upgrade() else { return };
                let target = group.tickets.load(Ordering::SeqCst);
                let db = group.db.clone();
                drop(group);
                let started = std::time::Instant::now();
                let flushed = match db.flush_async().await {
                    Ok(_) => sync_data(log.clone()).await,
                    Err(err) => Err(err.to_string()),
                };
                drop(db);
                let Some(group) = weak.upgrade() else { return };
                match flushed {
                    Ok(_) => {
                        group.flushed.send_replace(target);
                        group.flushes.fetch_add(1, Ordering::Relaxed);
                        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        group.flush_micros.fetch_add(micros, Ordering::Relaxed);
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "store flush failed; writers are waiting and it will be retried");
                        wake.notify_one();
                        tokio::time::sleep(RETRY_DELAY).await;
                    }
                }
            }
        });
        Ok(group)
    }

    pub(crate) fn stats(&self) -> FlushStats {
        FlushStats {
            waits: self.tickets.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            flush_micros: self.flush_micros.load(Ordering::Relaxed),
        }
    }

    /// Waits until everything written before this call is on disk.
    pub(crate) async fn wait(&self) -> Result<(), Error> {
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut flushed = self.flushed.subscribe();
        self.wake.notify_one();
        let result = tokio::time::timeout(FLUSH_TIMEOUT, flushed.wait_for(|&done| done >= ticket)).await;
        match result.map(|waited| waited.map(|_| ())) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::Flush("the flusher stopped".to_owned())),
            Err(_) => Err(Error::Flush(format!("no flush completed within {FLUSH_TIMEOUT:?}"))),
        }
    }
}

/// `fdatasync` on a blocking thread.
async fn sync_data(log: Arc<File>) -> Result<(), String> {
    match tokio::task::spawn_blocking(move || log.sync_data()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(format!("fdatasync of the sled log: {err}")),
        Err(err) => Err(format!("fdatasync task: {err}")),
    }
}
