//! Combining commits: many concurrent changes share one sled transaction.
//!
//! sled 0.34 writes its log buffer out at the start of every atomic multi-key change (a
//! transaction or a batch), so one transaction per change caps the store at a few thousand
//! changes a second however small they are. Instead, a change joins a queue; the first committer
//! to find no transaction running becomes the leader, takes everything queued (up to
//! [`MAX_BATCH_OPS`] writes), applies it as one transaction in arrival order, hands each change
//! its result and wakes the others. A change that arrived while a transaction ran goes into the
//! next one. With one committer at a time this is a plain transaction per change; with many, the
//! cost of each transaction is shared.
//!
//! Invariants:
//! - a commit returns only after its own writes were applied (or failed), so whoever holds the
//!   writer lock sees its change in every later read, exactly as with a direct transaction;
//! - changes are applied in the order they joined the queue, and each change is all-or-nothing: a
//!   failed transaction fails every change in it, and applies none of them;
//! - at most one transaction runs at a time, and a leader that panics hands leadership back
//!   (its drop guard), so no committer waits forever.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::{Error, Op, WriteSet};

/// The most writes one combined transaction takes; a change is never split, so one larger
/// change still goes in alone.
const MAX_BATCH_OPS: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct Combiner {
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<(u64, WriteSet)>,
    next_ticket: u64,
    /// A transaction is being applied.
    leading: bool,
    /// The results of changes whose committers have not collected them yet.
    results: HashMap<u64, Result<(), String>>,
}

impl Combiner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state changes in steps that cannot panic halfway: recover from poisoning.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `writes` with `apply`, combined with whatever other changes are waiting.
    pub(crate) fn commit(&self, writes: WriteSet, apply: impl Fn(&[Op]) -> Result<(), String>) -> Result<(), Error> {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push_back((ticket, writes));
        loop {
            if let Some(result) = state.results.remove(&ticket) {
                return result.map_err(Error::Transaction);
            }
            if state.leading {
                state = self.done.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            state.leading = true;
            let batch = take_batch(&mut state.queue);
            drop(state);
            let unfinished = || Err("the transaction did not finish (it panicked)".to_owned());
            let mut leadership = Leadership {
                combiner: self,
                results: batch.iter().map(|(ticket, _)| (*ticket, unfinished())).collect(),
            };
            let ops: Vec<Op> = batch.into_iter().flat_map(|(_, writes)| writes.ops).collect();
            let outcome = apply(&ops);
            for (_, result) in &mut leadership.results {
                result.clone_from(&outcome);
            }
            drop(leadership);
            state = self.lock();
        }
    }
}

/// Takes queued changes from the front until the batch would exceed [`MAX_BATCH_OPS`] writes;
/// always at least one.
fn take_batch(queue: &mut VecDeque<(u64, WriteSet)>) -> Vec<(u64, WriteSet)> {
    let mut batch = Vec::new();
    let mut ops = 0;
    while let Some((_, next)) = queue.front() {
        if !batch.is_empty() && ops + next.ops.len() > MAX_BATCH_OPS {
            break;
        }
        ops += next.ops.len();
        batch.extend(queue.pop_front());
    }
    batch
}

/// Publishes a leader's results and gives up leadership when dropped, also if applying panicked
/// (its changes then fail, rather than leave their committers waiting).
struct Leadership<'a> {
    combiner: &'a Combiner,
    results: Vec<(u64, Result<(), String>)>,
}

impl Drop for Leadership<'_> {
    fn drop(&mut self) {
        let mut state = self.combiner.lock();
        state.results.extend(self.results.drain(..));
        state.leading = false;
        drop(state);
        self.combiner.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::T;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn one_write(n: u32) -> WriteSet {
        let mut writes = WriteSet::default();
        writes.put(T::Apps, n.to_be_bytes(), vec![]);
        writes
    }

    #[test]
    fn concurrent_changes_share_transactions_and_each_gets_its_result() {
        let combiner = Arc::new(Combiner::default());
        let (transactions, applied) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
        let threads: Vec<_> = (0..8u32)
            .map(|thread| {
                let (combiner, transactions, applied) = (combiner.clone(), transactions.clone(), applied.clone());
                std::thread::spawn(move || {
                    for n in 0..200u32 {
                        let key = thread * 1000 + n;
                        let result = combiner.commit(one_write(key), |ops| {
                            transactions.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(std::time::Duration::from_micros(50));
                            let mut applied = applied.lock().unwrap();
                            for (_, key, _) in ops {
                                applied.push(u32::from_be_bytes(key.as_slice().try_into().unwrap()));
                            }
                            // One key in every batch that holds it fails the whole batch.
                            if ops.iter().any(|(_, key, _)| key.as_slice() == 7777u32.to_be_bytes()) {
                                return Err("refused".into());
                            }
                            Ok(())
                        });
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
        assert_eq!(applied.len(), 1600, "every change was applied exactly once");
        for thread in 0..8 {
            let own: Vec<u32> = applied.iter().copied().filter(|key| key / 1000 == thread).collect();
            assert!(own.windows(2).all(|pair| pair[0] < pair[1]), "one committer's changes stay in order");
        }
        let transactions = transactions.load(Ordering::Relaxed);
        assert!(transactions < 1600, "8 concurrent committers shared transactions ({transactions} for 1600)");
    }

    #[test]
    fn a_panicking_transaction_fails_its_changes_and_frees_the_next() {
        let combiner = Combiner::default();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            combiner.commit(one_write(1), |_| panic!("boom"))
        }));
        assert!(outcome.is_err());
        assert!(combiner.commit(one_write(2), |ops| if ops.len() == 1 { Ok(()) } else { Err("stale".into()) }).is_ok());
    }
}
