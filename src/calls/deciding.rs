//! Callins being decided, by session id, so that the switch's retry of a callin still being
//! decided waits for the first instead of deciding it again. An X-mode decision waits for the
//! customer (up to `x_callin_timeout_ms`); a switch that gives up on its first request sooner and
//! sends it again would otherwise have the customer asked twice about one call, and perhaps
//! answer twice differently.
//!
//! Invariant: an entry lives exactly as long as its [`First`] guard, which the first callin
//! holds until its session is opened (or its decision failed); dropping it wakes every waiter.
//! The map's lock is held only to look up, insert or remove, never across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

#[derive(Debug, Default)]
pub struct Deciding {
    calls: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    caller: String,
    called: String,
    done: watch::Receiver<()>,
}

/// What a callin with a session id found.
pub enum Joined<'a> {
    /// No callin with this id is being decided: this one decides, holding the guard.
    First(First<'a>),
    /// The same call (caller and X) is being decided: wait for it, then read its session.
    Wait(watch::Receiver<()>),
    /// Another call with this id is being decided.
    Other,
}

/// Held by the callin that decides; dropping it ends the entry and wakes the waiters.
pub struct First<'a> {
    deciding: &'a Deciding,
    session_id: String,
    _done: watch::Sender<()>,
}

impl Drop for First<'_> {
    fn drop(&mut self) {
        self.deciding.lock().remove(&self.session_id);
    }
}

impl Deciding {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Joins the callin being decided with this id, or becomes it.
    pub fn join(&self, session_id: &str, caller: &str, called: &str) -> Joined<'_> {
        let mut calls = self.lock();
        if let Some(entry) = calls.get(session_id) {
            return if entry.caller == caller && entry.called == called {
                Joined::Wait(entry.done.clone())
            } else {
                Joined::Other
            };
        }
        let (sender, done) = watch::channel(());
        calls.insert(session_id.to_owned(), Entry { caller: caller.to_owned(), called: called.to_owned(), done });
        Joined::First(First { deciding: self, session_id: session_id.to_owned(), _done: sender })
    }

    /// How many callins are being decided.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Waits until the first callin's guard is dropped.
pub async fn wait(mut done: watch::Receiver<()>) {
    // `changed` fails once the sender is gone: that is the end being waited for.
    while done.changed().await.is_ok() {}
}

/// Shared by the switchboard's clones.
pub type SharedDeciding = Arc<Deciding>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_retry_waits_for_the_first_and_another_call_is_told_apart() {
        let deciding = Deciding::default();
        let first = match deciding.join("s1", "+861", "+862") {
            Joined::First(first) => first,
            _ => panic!("the first callin decides"),
        };
        assert!(matches!(deciding.join("s1", "+869", "+862"), Joined::Other));
        let Joined::Wait(done) = deciding.join("s1", "+861", "+862") else { panic!("the retry waits") };
        let waiter = tokio::spawn(wait(done));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "it waits while the first decides");
        drop(first);
        waiter.await.unwrap();
        assert!(deciding.is_empty());
        assert!(matches!(deciding.join("s1", "+861", "+862"), Joined::First(_)), "once done, the id is free");
    }
}
