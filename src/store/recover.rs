//! Recovery from storage faults, by the store itself, within seconds of the disk taking writes
//! again: no restart, and nothing acknowledged lost.
//!
//! A thread of the store's own looks every half second. For a part that has been faulted for a
//! second or more it first probes the disk (writes, syncs and removes a 1 MiB file in the data
//! directory), so a disk that is still full costs one small write, not a reopening; then:
//!
//! - **the call log** is rewritten as a snapshot of its maps, synced and renamed over the log
//!   (`CallLog::recover`): the maps hold every record appended, the file then holds them all
//!   whatever the failed syncs left, and nothing appended fails to reach the disk;
//! - **sled**, which keeps its first I/O error for good, is opened again in this process:
//!   under the writer lock (no binding, pool or app change meanwhile) the slot is emptied and the
//!   old instance dropped (sled locks its directory; opening waits up to 5 s for it to let go),
//!   a new one opened, verified (a write, a flush, `fdatasync`) and put in the slot, and what
//!   memory copies of sled (the pools, the apps, the approved tones) rebuilt from it. What the
//!   new instance holds is what reached sled's disk: every change acknowledged (each waited for a
//!   flush that succeeded before the fault), and perhaps some that were refused.
//!
//! Then the fault is cleared (one log line). A failed attempt leaves the part faulted, to be
//! tried again half a second later.
//!
//! A durability wait that spanned the fault fails (`fault.rs`), so a change applied to the old
//! sled instance and lost with it is never acknowledged. The one gap: a writer that applied its
//! change just before the fault and had not yet begun its wait when the whole recovery (at least
//! a second) had run. Only a thread stalled for that long between its write and its wait hits it.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::fault::{Health, StorePart};
use super::handles::SledHandles;
use super::{apps, tones, Shared};

/// How often the thread looks for a faulted part.
const TICK: Duration = Duration::from_millis(500);

/// How long a part stays faulted before the first attempt: a fault is seen by every wait that
/// spans it, and waits begin within moments of their writes.
const MIN_FAULT_AGE: Duration = Duration::from_secs(1);

/// What the disk probe writes: enough for sled's next segment and a call-log record.
const PROBE_BYTES: usize = 1 << 20;

/// The probe file's name in the data directory.
const PROBE_FILE: &str = "disk-probe.tmp";

/// Starts the recovery thread of `shared`'s store. It holds the store only while it recovers a
/// part, and ends when the store is dropped.
pub(super) fn start(shared: &Arc<Shared>) -> std::io::Result<()> {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    std::thread::Builder::new().name("privnum-recover".into()).spawn(move || loop {
        std::thread::sleep(TICK);
        let Some(shared) = weak.upgrade() else { return };
        for part in StorePart::ALL {
            let due = shared.health.fault_of(part).is_some_and(|fault| fault.age() >= MIN_FAULT_AGE);
            if !due {
                continue;
            }
            let attempt = match part {
                StorePart::CallLog => recover_call_log(&shared),
                StorePart::Sled => recover_sled(&shared),
            };
            match attempt {
                Ok(()) => shared.health.recovered(part),
                Err(err) => tracing::debug!(part = part.name(), error = %err, "the store is still faulted"),
            }
        }
    })?;
    Ok(())
}

fn recover_call_log(shared: &Shared) -> Result<(), String> {
    probe_disk(shared.sled.dir(), &shared.health, StorePart::CallLog)?;
    shared.log.recover().map(|_| ()).map_err(|err| format!("rewriting the call log: {err}"))
}

fn recover_sled(shared: &Shared) -> Result<(), String> {
    let dir = shared.sled.dir().to_owned();
    probe_disk(&dir, &shared.health, StorePart::Sled)?;
    let mut pools = shared.lock_writer();
    // Every other handle is taken from the slot for one operation: once these are gone, the old
    // instance lets go of the directory.
    drop(shared.sled.take());
    let handles = SledHandles::open(&dir).map_err(|err| err.to_string())?;
    let verified = verify(&handles, &shared.health);
    shared.sled.put(handles);
    verified?;
    *pools = shared.load_pools().map_err(|err| format!("reloading the pools: {err}"))?;
    let apps = apps::load(shared).map_err(|err| format!("reloading the apps: {err}"))?;
    shared.apps.store(Arc::new(apps));
    let serving = tones::load_serving(shared).map_err(|err| format!("reloading the approved tones: {err}"))?;
    shared.serving_tones.store(Arc::new(serving));
    Ok(())
}

/// A write, a flush and `fdatasync` on a new sled instance: it takes writes.
fn verify(handles: &SledHandles, health: &Health) -> Result<(), String> {
    health.injected(StorePart::Sled).map_err(|err| format!("verifying sled: {err}"))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    handles.db.insert("privnum:recovered_at", &now.to_be_bytes()).map_err(|err| format!("verifying sled: {err}"))?;
    handles.flush()
}

/// Writes, syncs and removes [`PROBE_BYTES`] in `dir`: the disk takes writes again.
fn probe_disk(dir: &Path, health: &Health, part: StorePart) -> Result<(), String> {
    let path = dir.join(PROBE_FILE);
    let probed = health.injected(part).and_then(|()| {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&path)?;
        file.write_all(&vec![0; PROBE_BYTES])?;
        file.sync_data()
    });
    let _ = std::fs::remove_file(&path);
    if probed.is_ok() {
        // The removal frees the space; its directory entry need not be durable.
        let _ = File::open(dir).and_then(|dir| dir.sync_all());
    }
    probed.map_err(|err| format!("probing {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::domain::app::tests_support::app;
    use crate::domain::Mode;
    use crate::store::{Error, Store, StorePart};

    /// Polls `done` every 50 ms for up to `limit`.
    fn within(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        done()
    }

    fn save_session(store: &Store, id: &str) -> Result<(), Error> {
        store.calls().save_session(id, &serde_json::json!({"id": id}), &[], None)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_refuses_changes_at_once_and_the_store_recovers_by_itself_keeping_what_was_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.apps().upsert(&app("before", Mode::Axb), &[]).unwrap();
        save_session(&store, "call-before").unwrap();
        store.durable().await.unwrap();

        store.inject_write_failures(StorePart::Sled, true);
        store.inject_write_failures(StorePart::CallLog, true);
        // The first failures fault each part...
        assert!(store.apps().upsert(&app("during", Mode::Axb), &[]).is_err());
        assert!(save_session(&store, "call-during").is_err());
        let fault = store.fault().expect("the store is faulted");
        assert!(fault.error.contains("No space left on device"), "{fault}");
        // ...and from then on changes and waits are refused at once, saying why.
        let started = Instant::now();
        let refused = store.apps().upsert(&app("during", Mode::Axb), &[]).unwrap_err();
        assert!(matches!(refused, crate::store::OpError::Store(Error::Unavailable(_))), "{refused}");
        assert!(matches!(save_session(&store, "call-during"), Err(Error::Unavailable(_))));
        assert!(matches!(store.durable().await, Err(Error::Unavailable(_))));
        assert!(matches!(store.calls().durable().await, Err(Error::Unavailable(_))));
        assert!(started.elapsed() < Duration::from_secs(1), "refused at once: {:?}", started.elapsed());
        // Recovery is tried, and fails, while the disk is still full.
        std::thread::sleep(Duration::from_millis(1600));
        assert!(store.fault().is_some(), "no recovery while writes still fail");

        store.inject_write_failures(StorePart::Sled, false);
        store.inject_write_failures(StorePart::CallLog, false);
        assert!(within(Duration::from_secs(5), || store.fault().is_none()), "recovered by itself: {:?}", store.fault());
        let stats = store.health_stats();
        assert_eq!((stats.faults, stats.recoveries), ([1, 1], [1, 1]), "{stats:?}");
        store.apps().upsert(&app("after", Mode::Axb), &[]).unwrap();
        save_session(&store, "call-after").unwrap();
        store.durable().await.unwrap();
        for key in ["before", "after"] {
            assert!(store.apps().get(key).unwrap().is_some(), "app {key}");
        }
        assert!(store.apps().get("during").unwrap().is_none(), "a refused change was not made");
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        for key in ["before", "after"] {
            assert!(store.apps().get(key).unwrap().is_some(), "app {key} after reopening");
        }
        let sessions: Vec<serde_json::Value> = store.calls().sessions().unwrap();
        let ids: Vec<&str> = sessions.iter().filter_map(|session| session["id"].as_str()).collect();
        assert_eq!(ids, ["call-after", "call-before"], "sessions after reopening");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn call_log_changes_are_made_durable_while_sled_is_faulted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.inject_write_failures(StorePart::Sled, true);
        assert!(store.apps().upsert(&app("refused", Mode::Axb), &[]).is_err());
        assert_eq!(store.fault().map(|fault| fault.part), Some(StorePart::Sled));
        let started = Instant::now();
        for n in 0..20 {
            save_session(&store, &format!("call-{n}")).unwrap();
            store.calls().durable().await.unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(2), "events do not wait on sled: {:?}", started.elapsed());
        assert!(matches!(store.durable().await, Err(Error::Unavailable(_))), "a wait for sled is refused");
        store.inject_write_failures(StorePart::Sled, false);
        assert!(within(Duration::from_secs(5), || store.fault().is_none()));
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.calls().sessions::<serde_json::Value>().unwrap().len(), 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn while_the_call_log_is_faulted_an_app_change_is_refused_before_it_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.inject_write_failures(StorePart::CallLog, true);
        assert!(save_session(&store, "call-1").is_err());
        assert_eq!(store.fault().map(|fault| fault.part), Some(StorePart::CallLog));
        let refused = store.apps().upsert(&app("refused", Mode::Axb), &[]).unwrap_err();
        assert!(matches!(refused, crate::store::OpError::Store(Error::Unavailable(_))), "{refused}");
        assert!(store.apps().get("refused").unwrap().is_none(), "nothing was applied");
        store.inject_write_failures(StorePart::CallLog, false);
        assert!(within(Duration::from_secs(5), || store.fault().is_none()));
        save_session(&store, "call-2").unwrap();
        store.calls().durable().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wait_that_began_before_the_fault_fails_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.apps().upsert(&app("one", Mode::Axb), &[]).unwrap();
        // The flush this wait needs fails: the wait ends with the fault, not a timeout.
        store.inject_write_failures(StorePart::Sled, true);
        let started = Instant::now();
        assert!(matches!(store.durable().await, Err(Error::Unavailable(_))));
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
