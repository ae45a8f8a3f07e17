//! Block pushes: a push whose reply decides (X mode's `callin`). Unlike the outbox's pushes it is
//! sent once, while the caller waits, never stored and never retried; it is signed like every
//! push and bounded by `x_callin_timeout_ms`. It waits on the async runtime without holding a
//! thread, so any number of callins can wait at once, each on its own customer.
//!
//! **Failing fast.** A customer whose server fails every Block push (no answer in time, no
//! connection, a non-2xx status) would otherwise make each caller wait the whole timeout before
//! the fallback. After [`FAIL_FAST_AFTER`] such failures in a row, an app's Block pushes are not
//! sent for [`FAIL_FAST_FOR`]: its callins are decided at once as on a timeout (failure kind
//! `failing_fast`). Then one callin is sent again (a probe); if it is answered, the app is waited
//! for again at once, otherwise the pause starts over. An answer that is invalid or names an
//! unapproved tone is an answer: it does not count as a failure here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::{App, XFailure};

use super::Pusher;
use crate::telemetry::BlockCounters;

/// Failures in a row after which an app's Block pushes stop being waited for…
pub const FAIL_FAST_AFTER: u32 = 5;
/// …for this long, before one is tried again.
pub const FAIL_FAST_FOR: Duration = Duration::from_secs(10);
/// The largest reply body read; a longer one is invalid.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Per app: failures in a row, and since when it is failing fast.
#[derive(Debug, Default)]
pub(super) struct Breakers {
    apps: Mutex<HashMap<String, Breaker>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Breaker {
    failures: u32,
    /// Failing fast until then. A probe sent moves it on by [`FAIL_FAST_FOR`], so there is one
    /// probe per pause even when one never comes back (its caller hung up).
    open_until: Option<Instant>,
}

impl Breakers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Breaker>> {
        self.apps.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether this push may go out now (when the app is paused: whether it is the pause's probe).
    fn admit(&self, app_key: &str, now: Instant) -> bool {
        let mut apps = self.lock();
        let Some(breaker) = apps.get_mut(app_key) else { return true };
        match breaker.open_until {
            None => true,
            Some(until) if now >= until => {
                breaker.open_until = Some(now + FAIL_FAST_FOR);
                true
            }
            Some(_) => false,
        }
    }

    fn answered(&self, app_key: &str) {
        let mut apps = self.lock();
        if let Some(breaker) = apps.get_mut(app_key) {
            if breaker.open_until.is_some() {
                tracing::info!(app_key, "the customer's server answers Block callins again; waiting for it again");
            }
            *breaker = Breaker::default();
        }
    }

    fn failed(&self, app_key: &str, now: Instant, failure: &XFailure) {
        let mut apps = self.lock();
        let breaker = apps.entry(app_key.to_owned()).or_default();
        breaker.failures = breaker.failures.saturating_add(1);
        if breaker.failures >= FAIL_FAST_AFTER {
            if breaker.open_until.is_none() {
                tracing::warn!(app_key, failures = breaker.failures, "the customer's server failed {FAIL_FAST_AFTER} Block callins in a row ({failure}); its callins are decided at once for {} s, then one is tried again", FAIL_FAST_FOR.as_secs());
            }
            breaker.open_until = Some(now + FAIL_FAST_FOR);
        }
    }

    /// Each app's state at `now`: failing fast while its pause lasts (after it, until a callin
    /// probes, the app is not failing fast any more, only waiting for its next callin).
    pub(super) fn states(&self, now: Instant) -> Vec<BlockCounters> {
        let mut states: Vec<BlockCounters> = self
            .lock()
            .iter()
            .map(|(app_key, breaker)| BlockCounters {
                app_key: app_key.clone(),
                failing_fast: breaker.open_until.is_some_and(|until| until > now),
                failures_in_a_row: breaker.failures,
            })
            .collect();
        states.sort_by(|a, b| a.app_key.cmp(&b.app_key));
        states
    }
}

impl Pusher {
    /// Sends `body` as a Block push of `app` to its `callin_url` (else its `call_event_url`) and
    /// returns the reply's body, waiting at most `timeout`.
    ///
    /// The push runs in a task of its own, so that its outcome counts towards failing fast even
    /// when the caller stops waiting (the switch gave up and closed its request).
    pub async fn block(self: &Arc<Self>, app: &Arc<App>, body: String, timeout: Duration) -> Result<Vec<u8>, XFailure> {
        if !self.breakers.admit(&app.app_key, Instant::now()) {
            return Err(XFailure::FailingFast);
        }
        let (pusher, app) = (self.clone(), app.clone());
        let sent = tokio::spawn(async move {
            let result = pusher.send_block(&app, body, timeout).await;
            match &result {
                Err(failure) if failure.no_answer() => pusher.breakers.failed(&app.app_key, Instant::now(), failure),
                _ => pusher.breakers.answered(&app.app_key),
            }
            result
        });
        sent.await.unwrap_or_else(|err| Err(XFailure::Unreachable(format!("the Block push task failed: {err}"))))
    }

    async fn send_block(&self, app: &App, body: String, timeout: Duration) -> Result<Vec<u8>, XFailure> {
        let url = if app.callin_url.is_empty() { &app.call_event_url } else { &app.callin_url };
        if url.is_empty() {
            return Err(XFailure::Unreachable(format!("app {} has no callin_url or call_event_url", app.app_key)));
        }
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let failed = |err: reqwest::Error| {
            if err.is_timeout() {
                XFailure::Timeout { ms }
            } else {
                XFailure::Unreachable(format!("POST {url}: {err}"))
            }
        };
        let mut response =
            self.signed_post(&app.app_key, &app.app_secret, url, body).timeout(timeout).send().await.map_err(failed)?;
        let status = response.status();
        if !status.is_success() {
            return Err(XFailure::Status(status.as_u16()));
        }
        let mut reply = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if reply.len() + chunk.len() > MAX_REPLY_BYTES {
                let reason = format!("is longer than {MAX_REPLY_BYTES} bytes");
                return Err(XFailure::Invalid(crate::domain::Invalid::new("reply", reason)));
            }
            reply.extend_from_slice(&chunk);
        }
        Ok(reply)
    }

    /// Each app's Block state (for `/metrics`), by app key.
    pub fn block_states(&self) -> Vec<BlockCounters> {
        self.breakers.states(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_fails_fast_after_failures_in_a_row_then_probes_once_and_recovers_on_an_answer() {
        let breakers = Breakers::default();
        let start = Instant::now();
        let timeout = XFailure::Timeout { ms: 3000 };
        for _ in 0..FAIL_FAST_AFTER - 1 {
            assert!(breakers.admit("a", start));
            breakers.failed("a", start, &timeout);
        }
        assert!(breakers.admit("a", start), "not yet failing fast");
        breakers.failed("a", start, &timeout);
        assert!(!breakers.admit("a", start), "failing fast");
        assert!(breakers.admit("b", start), "another app is not affected");
        let later = start + FAIL_FAST_FOR;
        assert!(breakers.admit("a", later), "the probe");
        assert!(!breakers.admit("a", later), "one probe at a time");
        breakers.failed("a", later, &timeout);
        assert!(!breakers.admit("a", later + Duration::from_secs(1)), "the pause starts over");
        let again = later + FAIL_FAST_FOR;
        assert!(breakers.admit("a", again));
        breakers.answered("a");
        assert!(breakers.admit("a", again) && breakers.admit("a", again), "waited for again at once");
        assert_eq!(
            breakers.states(again)[0],
            BlockCounters { app_key: "a".into(), failing_fast: false, failures_in_a_row: 0 }
        );
    }
}
