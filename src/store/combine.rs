//! The committer: every change to the store goes through one thread, which combines the changes
//! waiting at each moment into one sled transaction.
//!
//! sled 0.34 writes its log buffer out at the start of every atomic multi-key change (a
//! transaction or a batch), so one transaction per change caps the store at a few thousand
//! changes a second however small they are. Here a change joins a queue; the committer thread
//! takes everything queued (up to [`MAX_BATCH_OPS`] writes), applies it as one transaction in
//! arrival order, and reports each change's result. A change that arrives while a transaction
//! runs goes into the next one.
//!
//! A change is either waited for ([`Combiner::commit`]: it returns once the change is applied,
//! so whoever holds the writer lock sees it in every later read) or queued
//! ([`Combiner::queue`]: it returns at once, and a callback hears the result). Both kinds share
//! the one queue, so a waited-for change is applied after every change queued before it.
//!
//! Invariants:
//! - changes are applied in the order they joined the queue, and each batch is reported as one: a
//!   failed batch fails every change in it (what `apply` does with a batch that spans two stores
//!   is its own: `Store`'s applies the sled part first, and keeps it if the call log then fails);
//! - at most one transaction runs at a time (one thread);
//! - a queued change nobody waits for is applied within [`QUEUED_LINGER`] of the committer being
//!   free; a waited-for or awaited one as soon as it is;
//! - a transaction that panics fails its changes instead of stopping the thread;
//! - dropping the combiner applies what is queued, then stops the thread.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::{Error, Op, WriteSet};

/// The most writes one combined transaction takes; a change is never split, so one larger
/// change still goes in alone.
const MAX_BATCH_OPS: usize = 4096;

/// How long the committer lets more changes join a batch that nobody waits for (only queued
/// changes, such as connected calls' new sessions). Waking the committer thread for every queued
/// change cost a futex wake and a thread switch per callin; a waited-for change still wakes it
/// at once.
const QUEUED_LINGER: std::time::Duration = std::time::Duration::from_micros(200);

/// Applies writes in one transaction; `Err` says why nothing was applied.
pub(crate) type Apply = Box<dyn Fn(&[Op]) -> Result<(), String> + Send>;

/// Hears the result of a queued change, on the committer thread.
pub(crate) type Done = Box<dyn FnOnce(Result<(), String>) + Send>;

pub(crate) struct Combiner {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Combiner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Combiner").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// The committer waits here for work.
    work: Condvar,
    /// Committers of waited-for changes wait here for their results.
    done: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Entry>,
    next_ticket: u64,
    /// Results of waited-for changes not yet collected.
    results: HashMap<u64, Result<(), String>>,
    closing: bool,
    /// The committer is asleep with nothing to do: a queued change must wake it. (While it
    /// lingers, a queued change just joins the batch.)
    parked: bool,
}

struct Entry {
    writes: WriteSet,
    reply: Reply,
}

enum Reply {
    /// A thread blocks in [`Combiner::commit`] for this ticket's result.
    Waiting(u64),
    /// `done` hears the result; `awaited` says someone waits on it (an async caller), so the
    /// batch must not linger.
    Queued { done: Done, awaited: bool },
}

impl Entry {
    fn urgent(&self) -> bool {
        matches!(self.reply, Reply::Waiting(_) | Reply::Queued { awaited: true, .. })
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state changes in steps that cannot panic halfway: recover from poisoning.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Combiner {
    /// Starts the committer thread, which applies batches with `apply`.
    pub(crate) fn start(apply: Apply) -> std::io::Result<Combiner> {
        let shared = Arc::new(Shared::default());
        let worker = shared.clone();
        let thread = std::thread::Builder::new().name("privnum-commit".into()).spawn(move || run(&worker, &*apply))?;
        Ok(Combiner { shared, thread: Some(thread) })
    }

    /// Applies `writes`, combined with whatever else is queued, and returns once they are.
    pub(crate) fn commit(&self, writes: WriteSet) -> Result<(), Error> {
        let mut state = self.shared.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push_back(Entry { writes, reply: Reply::Waiting(ticket) });
        self.shared.work.notify_one();
        loop {
            if let Some(result) = state.results.remove(&ticket) {
                return result.map_err(Error::Transaction);
            }
            state = self.shared.done.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Queues `writes` and returns at once; `done` hears the result on the committer thread.
    /// `awaited`: the caller waits for `done` (so the committer takes it at once); otherwise the
    /// batch may linger for more.
    pub(crate) fn queue(&self, writes: WriteSet, done: Done, awaited: bool) {
        let mut state = self.shared.lock();
        state.queue.push_back(Entry { writes, reply: Reply::Queued { done, awaited } });
        if state.parked || awaited {
            self.shared.work.notify_one();
        }
    }
}

impl Drop for Combiner {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The committer thread: waits for work, applies it in batches, reports results.
fn run(shared: &Shared, apply: &dyn Fn(&[Op]) -> Result<(), String>) {
    loop {
        let batch = {
            let mut state = shared.lock();
            while state.queue.is_empty() && !state.closing {
                state.parked = true;
                state = shared.work.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
                state.parked = false;
            }
            if state.queue.is_empty() {
                return;
            }
            // Nobody waits for these changes: let more join them, unless a change someone waits
            // for arrives (it wakes this wait) or the combiner is closing.
            if !state.closing && !state.queue.iter().any(Entry::urgent) {
                state =
                    shared.work.wait_timeout(state, QUEUED_LINGER).unwrap_or_else(|poisoned| poisoned.into_inner()).0;
            }
            take_batch(&mut state.queue)
        };
        let mut ops = Vec::with_capacity(batch.iter().map(|entry| entry.writes.ops.len()).sum());
        let mut replies = Vec::with_capacity(batch.len());
        for entry in batch {
            ops.extend(entry.writes.ops);
            replies.push(entry.reply);
        }
        let outcome = if ops.is_empty() {
            Ok(())
        } else {
            catch_unwind(AssertUnwindSafe(|| apply(&ops)))
                .unwrap_or_else(|_| Err("the transaction panicked; nothing was applied".to_owned()))
        };
        // Queued changes hear their results first, so that a waited-for change never returns
        // before the callbacks of changes applied with or before it have run.
        let mut waiting = Vec::new();
        for reply in replies {
            match reply {
                Reply::Waiting(ticket) => waiting.push(ticket),
                Reply::Queued { done, .. } => done(outcome.clone()),
            }
        }
        let mut state = shared.lock();
        state.results.extend(waiting.into_iter().map(|ticket| (ticket, outcome.clone())));
        drop(state);
        shared.done.notify_all();
    }
}

/// Takes queued changes from the front until the batch would exceed [`MAX_BATCH_OPS`] writes;
/// always at least one.
fn take_batch(queue: &mut VecDeque<Entry>) -> Vec<Entry> {
    let mut batch = Vec::new();
    let mut ops = 0;
    while let Some(next) = queue.front() {
        if !batch.is_empty() && ops + next.writes.ops.len() > MAX_BATCH_OPS {
            break;
        }
        ops += next.writes.ops.len();
        batch.extend(queue.pop_front());
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Tree;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    fn one_write(n: u32) -> WriteSet {
        let mut writes = WriteSet::default();
        writes.put(Tree::Apps, n.to_be_bytes(), vec![]);
        writes
    }

    fn key_of(op: &Op) -> u32 {
        u32::from_be_bytes(op.1.as_slice().try_into().unwrap())
    }

    /// A combiner over a log of applied keys, counting transactions; key 7777 fails its batch.
    fn logging() -> (Combiner, Arc<Mutex<Vec<u32>>>, Arc<AtomicUsize>) {
        let (applied, transactions) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicUsize::new(0)));
        let (log, count) = (applied.clone(), transactions.clone());
        let combiner = Combiner::start(Box::new(move |ops| {
            count.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(std::time::Duration::from_micros(50));
            if ops.iter().any(|op| key_of(op) == 7777) {
                return Err("refused".into());
            }
            log.lock().unwrap().extend(ops.iter().map(key_of));
            Ok(())
        }))
        .unwrap();
        (combiner, applied, transactions)
    }

    #[test]
    fn concurrent_changes_share_transactions_in_order_and_each_gets_its_result() {
        let (combiner, applied, transactions) = logging();
        let combiner = Arc::new(combiner);
        let threads: Vec<_> = (0..8u32)
            .map(|thread| {
                let combiner = combiner.clone();
                std::thread::spawn(move || {
                    for n in 0..200u32 {
                        let key = thread * 1000 + n;
                        let result = combiner.commit(one_write(key));
                        if key == 7777 {
                            assert!(result.is_err(), "the failing change sees its failure");
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let applied = applied.lock().unwrap();
        assert!(!applied.contains(&7777));
        for thread in 0..8 {
            let own: Vec<u32> = applied.iter().copied().filter(|key| key / 1000 == thread).collect();
            assert!(own.windows(2).all(|pair| pair[0] < pair[1]), "one committer's changes stay in order");
        }
        let transactions = transactions.load(Ordering::Relaxed);
        assert!(transactions < 1600, "8 concurrent committers shared transactions ({transactions} for 1600)");
    }

    #[test]
    fn queued_changes_come_before_a_later_waited_one_and_report_their_results() {
        let (combiner, applied, _) = logging();
        let (sender, results) = mpsc::channel();
        for key in [1, 2] {
            let sender = sender.clone();
            combiner.queue(one_write(key), Box::new(move |result| sender.send((key, result.is_ok())).unwrap()), false);
        }
        combiner.commit(one_write(3)).unwrap();
        let heard: Vec<(u32, bool)> = results.try_iter().collect();
        assert_eq!(
            heard,
            [(1, true), (2, true)],
            "queued changes heard their results before the later commit returned"
        );
        assert_eq!(*applied.lock().unwrap(), [1, 2, 3], "applied in the order they were queued");

        let failing = sender.clone();
        combiner.queue(one_write(7777), Box::new(move |result| failing.send((7777, result.is_ok())).unwrap()), false);
        drop(combiner);
        assert_eq!(results.try_iter().collect::<Vec<_>>(), [(7777, false)], "a failure reaches its callback");
    }

    #[test]
    fn a_panicking_transaction_fails_its_changes_and_the_committer_goes_on() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let combiner = Combiner::start(Box::new(move |_| {
            if seen.fetch_add(1, Ordering::Relaxed) == 0 {
                panic!("boom");
            }
            Ok(())
        }))
        .unwrap();
        assert!(combiner.commit(one_write(1)).is_err());
        assert!(combiner.commit(one_write(2)).is_ok());
    }

    #[test]
    fn dropping_the_combiner_applies_what_is_queued() {
        let (combiner, applied, _) = logging();
        for key in 0..50 {
            combiner.queue(one_write(key), Box::new(|_| {}), false);
        }
        drop(combiner);
        assert_eq!(applied.lock().unwrap().len(), 50);
    }

    #[test]
    fn a_lone_queued_change_is_applied_without_another_change_to_wake_the_committer() {
        let (combiner, applied, _) = logging();
        for awaited in [false, true] {
            let (sender, heard) = mpsc::channel();
            // The committer must be asleep with nothing to do: the change has to wake it by itself.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while !combiner.shared.lock().parked {
                assert!(std::time::Instant::now() < deadline, "the committer never went to sleep");
                std::thread::yield_now();
            }
            combiner.queue(one_write(1), Box::new(move |result| sender.send(result.is_ok()).unwrap()), awaited);
            let result = heard.recv_timeout(std::time::Duration::from_secs(2));
            assert_eq!(result, Ok(true), "awaited: {awaited}");
        }
        assert_eq!(applied.lock().unwrap().len(), 2);
        drop(combiner);
    }
}
