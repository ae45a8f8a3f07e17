//! Replay protection: each `(app key, Nonce)` is accepted once within the skew window.
//!
//! A nonce is checked and taken in memory (`recent`, one short hold of one of 16 shard locks,
//! which includes a sled point read), and written to sled later, many at a time, by
//! [`Nonces::persist`] (every sweep, about once a second, and at a clean stop): two sled
//! writes per signed request had been a third of a bind's cost, and they ran on an async worker.
//! A nonce is always in `recent`, in sled, or in both, because persisting writes sled before it
//! forgets the nonce in memory, and a check looks in both under the shard's lock.
//!
//! Nonces are durable no later than the change they authorize: the group flush writes the
//! pending nonces to sled just before each sled flush, and every change a signed request makes
//! waits for such a flush before it is answered, so a bind replayed after a crash is refused.
//! A signed request that changes nothing (a query) has its nonce written by the sweeper within
//! a second or so; a crash in between forgets it, which re-opens a replay of that query only.
//!
//! `nonce_expiry` files each nonce under its `Created` time, so the sweeper drops old nonces with
//! one range scan instead of reading them all; a nonce older than the skew window can no longer
//! pass the `Created` check anyway.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::{Arc, Mutex, MutexGuard};

use super::fault::{Health, StorePart};
use super::handles::SledSlot;
use super::{keys, Error};

fn sled_error(source: sled::Error) -> Error {
    Error::Sled { tree: "nonces", source }
}

/// Shards of [`RecentNonces`], so concurrent requests rarely wait for each other's sled read.
const SHARDS: usize = 16;

/// Nonces accepted since the last persist, by key, with their `Created` time; sharded as the
/// session map is (`calls::session`).
#[derive(Debug, Default)]
pub(crate) struct RecentNonces {
    shards: [Mutex<HashMap<Vec<u8>, i64>>; SHARDS],
    hasher: RandomState,
}

type Shard<'a> = MutexGuard<'a, HashMap<Vec<u8>, i64>>;

impl RecentNonces {
    fn lock(shard: &Mutex<HashMap<Vec<u8>, i64>>) -> Shard<'_> {
        // Each step is one map operation: recover from poisoning.
        shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The shard that holds `key`.
    fn shard(&self, key: &[u8]) -> Shard<'_> {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        RecentNonces::lock(&self.shards[index])
    }

    /// Every pending nonce, copied.
    fn pending(&self) -> Vec<(Vec<u8>, i64)> {
        let mut pending = Vec::new();
        for shard in &self.shards {
            pending.extend(RecentNonces::lock(shard).iter().map(|(key, created)| (key.clone(), *created)));
        }
        pending
    }

    /// Forgets these (persisted) nonces, unless one was taken again meanwhile.
    fn forget(&self, persisted: &[(Vec<u8>, i64)]) {
        for (key, created_at) in persisted {
            let mut shard = self.shard(key);
            if shard.get(key) == Some(created_at) {
                shard.remove(key);
            }
        }
    }
}

/// Nonces in memory and in sled: what the [`Nonces`] handle and the group flush share. sled's
/// trees `nonces` and `nonce_expiry` (each nonce filed under its `Created` time, for the sweep)
/// are taken from the store's slot for each operation (`handles.rs`).
#[derive(Debug)]
pub(crate) struct NonceBook {
    /// Nonces accepted and not yet written to sled.
    recent: RecentNonces,
    sled: Arc<SledSlot>,
    health: Arc<Health>,
}

impl NonceBook {
    pub(crate) fn new(sled: Arc<SledSlot>, health: Arc<Health>) -> NonceBook {
        NonceBook { recent: RecentNonces::default(), sled, health }
    }

    /// A failed write to sled faults it.
    fn written<T>(&self, result: Result<T, sled::Error>) -> Result<T, Error> {
        result.map_err(|source| {
            self.health.fault(StorePart::Sled, format!("writing nonces: {source}"));
            sled_error(source)
        })
    }

    /// Refuses while sled is faulted, and fails as injected.
    fn check_writable(&self) -> Result<(), Error> {
        self.health.check(StorePart::Sled)?;
        self.health.injected(StorePart::Sled).map_err(|err| {
            self.health.fault(StorePart::Sled, format!("writing nonces: {err}"));
            self.health.spanned(StorePart::Sled)
        })
    }

    fn remember(&self, app_key: &str, nonce: &str, created_at: i64) -> Result<bool, Error> {
        let key = keys::join(&[app_key, nonce]);
        // Both looks under the key's shard lock: persisting removes a nonce from memory only after
        // writing it to sled, so with the lock held a nonce seen before is in one or the other,
        // and this request's own nonce cannot be persisted between the looks and found as a
        // replay of itself. The sled read is a point read, about a microsecond.
        let mut recent = self.recent.shard(&key);
        let Entry::Vacant(vacant) = recent.entry(key) else { return Ok(false) };
        if self.sled.get()?.nonces.contains_key(vacant.key()).map_err(sled_error)? {
            return Ok(false);
        }
        vacant.insert(created_at);
        Ok(true)
    }

    /// Writes the nonces accepted so far to sled (not flushed), then forgets them in memory.
    /// Safe to run from two threads at once (the sweeper's and the group flush's): a nonce
    /// written twice is written the same.
    pub(crate) fn persist(&self) -> Result<usize, Error> {
        let pending = self.recent.pending();
        if pending.is_empty() {
            return Ok(0);
        }
        self.check_writable()?;
        let sled = self.sled.get()?;
        // One insert at a time: a sled batch would hold sled's write lock over all of them,
        // stalling every transaction meanwhile. The sweep entry first: a failure between the two
        // leaves an entry whose nonce is missing (the sweep drops it), never a nonce no sweep will
        // find.
        for (key, created_at) in &pending {
            let mut expiry = keys::expiry(*created_at, "").to_vec();
            expiry.extend_from_slice(key);
            self.written(sled.nonce_expiry.insert(expiry, &[]))?;
            self.written(sled.nonces.insert(key.as_slice(), &created_at.to_be_bytes()[..]))?;
        }
        self.recent.forget(&pending);
        Ok(pending.len())
    }

    fn forget_before(&self, before: i64) -> Result<usize, Error> {
        self.check_writable()?;
        let sled = self.sled.get()?;
        let mut forgotten = 0;
        for item in sled.nonce_expiry.range(..keys::expiry_bound(before.saturating_sub(1)).to_vec()) {
            let (expiry, _) = item.map_err(sled_error)?;
            self.written(sled.nonces.remove(&expiry[8..]))?;
            self.written(sled.nonce_expiry.remove(&expiry))?;
            forgotten += 1;
        }
        Ok(forgotten)
    }
}

/// The store's handle on replay protection. A check is one shard lock and a sled point read; it
/// may run on an async worker.
#[derive(Debug, Clone)]
pub struct Nonces {
    pub(super) book: Arc<NonceBook>,
}

impl Nonces {
    /// Records a nonce; `false` when it was already seen (a replay).
    pub fn remember(&self, app_key: &str, nonce: &str, created_at: i64) -> Result<bool, Error> {
        self.book.remember(app_key, nonce, created_at)
    }

    /// Writes the nonces accepted since the last call to sled, then forgets them in memory;
    /// returns how many. Not flushed here: the next flush of sled makes them durable, and every
    /// change a signed request makes waits for one (see the module notes).
    pub fn persist(&self) -> Result<usize, Error> {
        self.book.persist()
    }

    /// Drops nonces created before `before`; returns how many.
    pub fn forget_before(&self, before: i64) -> Result<usize, Error> {
        self.book.forget_before(before)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    #[tokio::test]
    async fn a_nonce_is_accepted_once_until_it_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.nonces().remember("app", "n1", 100).unwrap());
        assert!(!store.nonces().remember("app", "n1", 100).unwrap(), "a replay, found in memory");
        assert!(store.nonces().remember("other-app", "n1", 100).unwrap());
        assert!(store.nonces().remember("app", "n2", 200).unwrap());
        assert_eq!(store.nonces().persist().unwrap(), 3);
        assert_eq!(store.nonces().persist().unwrap(), 0, "persisted ones are no longer pending");
        assert!(!store.nonces().remember("app", "n1", 100).unwrap(), "a replay, found in sled");
        assert_eq!(store.nonces().persist().unwrap(), 0, "a refused nonce is not written again");
        assert_eq!(store.nonces().forget_before(100).unwrap(), 0, "created at 100 is not before 100");
        assert_eq!(store.nonces().forget_before(101).unwrap(), 2);
        assert!(store.nonces().remember("app", "n1", 100).unwrap(), "forgotten, so accepted again");
        assert!(!store.nonces().remember("app", "n2", 300).unwrap(), "n2 is still remembered");
    }

    #[test]
    fn persisted_nonces_survive_a_restart_and_concurrent_replays_get_one_acceptance() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let accepted = std::thread::scope(|scope| {
                let tries: Vec<_> =
                    (0..8).map(|_| scope.spawn(|| store.nonces().remember("app", "same", 100).unwrap())).collect();
                tries.into_iter().map(|t| t.join().unwrap()).filter(|accepted| *accepted).count()
            });
            assert_eq!(accepted, 1, "one of eight concurrent uses of a nonce is accepted");
            assert!(store.nonces().remember("app", "unpersisted", 100).unwrap());
            store.flush_now().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert!(!store.nonces().remember("app", "same", 100).unwrap());
        assert!(!store.nonces().remember("app", "unpersisted", 100).unwrap(), "a clean stop persists what is pending");
    }

    #[test]
    fn persisting_meanwhile_neither_refuses_a_new_nonce_nor_accepts_a_replay() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    store.nonces().persist().unwrap();
                }
            });
            // More threads than cores, so that a remembering thread is often preempted mid-check.
            let workers: Vec<_> = (0..6)
                .map(|t| {
                    let store = &store;
                    scope.spawn(move || {
                        for n in 0..5_000 {
                            let nonce = format!("t{t}-n{n}");
                            assert!(store.nonces().remember("app", &nonce, 100).unwrap(), "new nonce {nonce} refused");
                            let replay = format!("t{t}-n{}", n / 2);
                            assert!(
                                !store.nonces().remember("app", &replay, 100).unwrap(),
                                "replay of {replay} accepted"
                            );
                        }
                    })
                })
                .collect();
            let finished = workers.into_iter().map(|worker| worker.join()).collect::<Vec<_>>();
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            for result in finished {
                if let Err(panic) = result {
                    std::panic::resume_unwind(panic);
                }
            }
        });
    }
}
