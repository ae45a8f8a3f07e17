//! Failed authentication, limited per client address and per app key.
//!
//! Each address and each app key has a bucket of `auth_failures_burst` failures that refills at
//! `auth_failures_per_minute`. A failure (a malformed header, a wrong digest, skew, a replayed
//! nonce, a wrong bearer token) takes one from the bucket of its address and of the app key it
//! named; while either bucket is empty, requests from that address or for that app key are
//! answered 429 before any digest is computed, so guessing costs the guesser time, not privnum CPU.
//! A request that authenticates takes nothing.
//!
//! Failures are not logged one line each: a summary (how many, from where, and why: an unknown
//! app key, a wrong digest, skew, a replay, a wrong token, which the client is never told apart)
//! is logged at the first failure after a quiet spell, then at most every [`SUMMARY_EVERY`] (at
//! the next failure after it), so a flood of guesses cannot flood the log.
//!
//! Invariant: memory is bounded: at most `MAX_TRACKED` (50,000) buckets are kept; past that, full ones
//! (which say nothing) are dropped first.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The address of the connection a request came on, put in each request's extensions by the
/// listener (`http::listener`). Requests built in-process (tests through `oneshot`) have none.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// How often a summary of failed authentications is logged, at most.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Buckets kept at most: enough for every address of a busy deployment's clients many times over.
const MAX_TRACKED: usize = 50_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    Addr(IpAddr),
    AppKey(String),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct Summary {
    since: Instant,
    failures: u64,
    by_addr: HashMap<IpAddr, u64>,
    by_reason: [u64; Failure::ALL.len()],
}

impl Summary {
    fn new(since: Instant) -> Summary {
        Summary { since, failures: 0, by_addr: HashMap::new(), by_reason: [0; Failure::ALL.len()] }
    }

    /// `unknown app key (3), wrong digest (1)`: what ops read to tell a client with a wrong
    /// secret from one with a wrong app key.
    fn reasons(&self) -> String {
        let counted = Failure::ALL.iter().filter(|why| self.by_reason[**why as usize] > 0);
        counted.map(|why| format!("{} ({})", why.name(), self.by_reason[*why as usize])).collect::<Vec<_>>().join(", ")
    }
}

/// Why an authentication failed, as ops need to know it: the client's answer stays the
/// reference's (an unknown app key answers exactly like a wrong digest), the log tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No Authorization or X-WSSE header, or one that does not parse.
    Malformed,
    /// An app key privnum does not know.
    UnknownAppKey,
    /// A known app key with a digest its secret does not give.
    WrongDigest,
    /// A `Created` outside the allowed skew.
    Stale,
    /// A nonce used before.
    Replay,
    /// A wrong or missing admin token.
    AdminToken,
}

impl Failure {
    const ALL: [Failure; 6] = [
        Failure::Malformed,
        Failure::UnknownAppKey,
        Failure::WrongDigest,
        Failure::Stale,
        Failure::Replay,
        Failure::AdminToken,
    ];

    fn name(self) -> &'static str {
        match self {
            Failure::Malformed => "malformed",
            Failure::UnknownAppKey => "unknown app key",
            Failure::WrongDigest => "wrong digest",
            Failure::Stale => "Created outside the skew window",
            Failure::Replay => "nonce replayed",
            Failure::AdminToken => "wrong admin token",
        }
    }
}

/// The limiter; one per server.
#[derive(Debug)]
pub struct AuthThrottle {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<Source, Bucket>>,
    summary: Mutex<Summary>,
}

impl AuthThrottle {
    pub fn new(burst: u32, per_minute: u32) -> AuthThrottle {
        AuthThrottle {
            burst: f64::from(burst.max(1)),
            per_sec: f64::from(per_minute.max(1)) / 60.0,
            buckets: Mutex::default(),
            // As if the last summary were long ago: the first failure is logged at once.
            summary: Mutex::new(Summary::new(Instant::now().checked_sub(SUMMARY_EVERY).unwrap_or_else(Instant::now))),
        }
    }

    /// `Err(wait)` while the address or the app key has used up its failures: how long until one
    /// more is allowed.
    pub fn check(&self, addr: Option<IpAddr>, app_key: Option<&str>, now: Instant) -> Result<(), Duration> {
        let buckets = lock(&self.buckets);
        let mut wait = Duration::ZERO;
        for source in sources(addr, app_key) {
            if let Some(bucket) = buckets.get(&source) {
                let tokens = self.refilled(*bucket, now);
                if tokens < 1.0 {
                    wait = wait.max(Duration::from_secs_f64((1.0 - tokens) / self.per_sec));
                }
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Counts one failed authentication against the address and the app key it named.
    pub fn failed(&self, addr: Option<IpAddr>, app_key: Option<&str>, why: Failure, now: Instant) {
        {
            let mut buckets = lock(&self.buckets);
            if buckets.len() >= MAX_TRACKED {
                buckets.retain(|_, bucket| self.refilled(*bucket, now) < self.burst);
                if buckets.len() >= MAX_TRACKED {
                    tracing::warn!(
                        tracked = buckets.len(),
                        "too many sources of failed authentication to track; starting over"
                    );
                    buckets.clear();
                }
            }
            for source in sources(addr, app_key) {
                let bucket = buckets.entry(source).or_insert(Bucket { tokens: self.burst, at: now });
                *bucket = Bucket { tokens: (self.refilled(*bucket, now) - 1.0).max(0.0), at: now };
            }
        }
        self.summarize(addr, why, now);
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.per_sec).min(self.burst)
    }

    /// Adds a failure to the summary, and logs the summary when it is due.
    fn summarize(&self, addr: Option<IpAddr>, why: Failure, now: Instant) {
        let mut summary = lock(&self.summary);
        summary.failures += 1;
        summary.by_reason[why as usize] += 1;
        if let Some(addr) = addr {
            if summary.by_addr.len() < 1_000 || summary.by_addr.contains_key(&addr) {
                *summary.by_addr.entry(addr).or_default() += 1;
            }
        }
        // Logged when the last summary is SUMMARY_EVERY old: so the first failure after a quiet
        // spell is logged at once, and a flood once every SUMMARY_EVERY.
        let window = now.saturating_duration_since(summary.since);
        if window < SUMMARY_EVERY {
            return;
        }
        let mut worst: Vec<(IpAddr, u64)> = summary.by_addr.iter().map(|(addr, n)| (*addr, *n)).collect();
        worst.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let most: Vec<String> = worst.iter().take(3).map(|(addr, n)| format!("{addr} ({n})")).collect();
        let reasons = summary.reasons();
        tracing::warn!(
            failures = summary.failures,
            seconds = window.as_secs_f64().round(),
            addresses = summary.by_addr.len(),
            most = %most.join(", "),
            reasons = %reasons,
            "failed authentications"
        );
        *summary = Summary::new(now);
    }
}

fn sources(addr: Option<IpAddr>, app_key: Option<&str>) -> impl Iterator<Item = Source> {
    addr.map(Source::Addr).into_iter().chain(app_key.map(|key| Source::AppKey(key.to_owned())))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each hold is a few map operations that cannot leave the map half-changed: recover.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_failures_blocks_the_address_and_the_app_key_until_they_refill() {
        let throttle = AuthThrottle::new(3, 60);
        let (start, addr, other) =
            (Instant::now(), Some("10.0.0.1".parse().unwrap()), Some("10.0.0.2".parse().unwrap()));
        for _ in 0..3 {
            assert!(throttle.check(addr, Some("app"), start).is_ok());
            throttle.failed(addr, Some("app"), Failure::WrongDigest, start);
        }
        let wait = throttle.check(addr, None, start).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(throttle.check(other, Some("app"), start).is_err(), "the app key is blocked from any address");
        assert!(throttle.check(other, Some("another-app"), start).is_ok(), "others are not");
        assert!(throttle.check(addr, Some("app"), start + Duration::from_secs(1)).is_ok(), "one more after a second");
    }

    #[test]
    fn the_summary_tells_ops_why_authentication_failed() {
        let throttle = AuthThrottle::new(100, 60);
        let (start, addr) = (Instant::now(), Some("10.0.0.1".parse().unwrap()));
        // The first failure is logged at once and starts a new summary; the next ones wait for it.
        throttle.failed(addr, None, Failure::Malformed, start);
        assert_eq!(lock(&throttle.summary).failures, 0, "logged at once");
        for why in [Failure::UnknownAppKey, Failure::UnknownAppKey, Failure::WrongDigest] {
            throttle.failed(addr, Some("app"), why, start + Duration::from_secs(1));
        }
        assert_eq!(lock(&throttle.summary).reasons(), "unknown app key (2), wrong digest (1)");
        assert_eq!(lock(&throttle.summary).failures, 3, "a flood waits for the next summary");
        throttle.failed(addr, Some("app"), Failure::Replay, start + SUMMARY_EVERY);
        assert_eq!(lock(&throttle.summary).failures, 0, "logged SUMMARY_EVERY after the last");
    }
}
