//! Strikes: handler runs that failed, counted per script file, location and kind, for `/metrics`
//! (`privnum_script_strikes_total`) and a log summary at most every [`SUMMARY_EVERY`] (the first
//! failure at each location of a version is also logged at once, by the host).
//!
//! The location is `line:column` of the statement where the script was stopped or failed when
//! Rhai gives it, else the handler's name. Also kept: the worst overrun of a deadline as the
//! caller saw it (from the deadline to the fallback answer).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::run::Failure;
use crate::telemetry::ScriptStrike;

/// How often a summary of strikes is logged, at most.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);
/// Distinct (script, location, kind) counted, at most; beyond it they count under `(other)`.
const MAX_LOCATIONS: usize = 1_000;

type Key = (String, String, Failure);

#[derive(Debug)]
struct Book {
    total: BTreeMap<Key, u64>,
    window: BTreeMap<Key, u64>,
    since: Instant,
    overrun_max: Duration,
}

#[derive(Debug)]
pub struct Strikes {
    book: Mutex<Book>,
}

impl Default for Strikes {
    fn default() -> Self {
        Strikes {
            book: Mutex::new(Book {
                total: BTreeMap::new(),
                window: BTreeMap::new(),
                since: Instant::now(),
                overrun_max: Duration::ZERO,
            }),
        }
    }
}

impl Strikes {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one failure of `script` (its path under the scripts directory) at `at`.
    pub fn record(&self, script: &str, at: &str, kind: Failure) {
        let mut book = self.book();
        let mut key = (script.to_owned(), at.to_owned(), kind);
        if book.total.len() >= MAX_LOCATIONS && !book.total.contains_key(&key) {
            key = ("(other)".to_owned(), String::new(), kind);
        }
        *book.window.entry(key.clone()).or_default() += 1;
        *book.total.entry(key).or_default() += 1;
        drop(book);
        self.summarize_if_due();
    }

    /// Keeps the worst deadline overrun seen by a caller.
    pub fn overran(&self, by: Duration) {
        let mut book = self.book();
        book.overrun_max = book.overrun_max.max(by);
    }

    /// Logs what was counted since the last summary, when [`SUMMARY_EVERY`] has passed.
    pub fn summarize_if_due(&self) {
        let mut book = self.book();
        let window = book.since.elapsed();
        if window < SUMMARY_EVERY {
            return;
        }
        book.since = Instant::now();
        if book.window.is_empty() {
            return;
        }
        let mut counts: Vec<(Key, u64)> = std::mem::take(&mut book.window).into_iter().collect();
        let overrun_max = book.overrun_max;
        drop(book);
        counts.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        let failures: u64 = counts.iter().map(|(_, count)| count).sum();
        let most: Vec<String> = counts
            .iter()
            .take(5)
            .map(|((script, at, kind), count)| format!("{script} {at} {} ×{count}", kind.name()))
            .collect();
        tracing::warn!(
            failures,
            seconds = window.as_secs_f64().round(),
            locations = counts.len(),
            most = %most.join(", "),
            deadline_overrun_max_ms = overrun_max.as_secs_f64() * 1e3,
            "script runs that failed and got the fallback decision"
        );
    }

    /// Every count so far, and the worst overrun.
    pub fn snapshot(&self) -> (Vec<ScriptStrike>, Duration) {
        let book = self.book();
        let strikes = book
            .total
            .iter()
            .map(|((script, at, kind), count)| ScriptStrike {
                script: script.clone(),
                location: at.clone(),
                kind: kind.name(),
                count: *count,
            })
            .collect();
        (strikes, book.overrun_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strikes_are_counted_per_script_location_and_kind() {
        let strikes = Strikes::default();
        strikes.record("modes/axb.rhai", "12:5", Failure::Deadline);
        strikes.record("modes/axb.rhai", "12:5", Failure::Deadline);
        strikes.record("modes/axb.rhai", "on_callin", Failure::Late);
        strikes.overran(Duration::from_micros(300));
        strikes.overran(Duration::from_micros(100));
        let (counts, overrun) = strikes.snapshot();
        let find = |at: &str, kind: &str| counts.iter().find(|s| s.location == at && s.kind == kind).map(|s| s.count);
        assert_eq!(find("12:5", "deadline"), Some(2));
        assert_eq!(find("on_callin", "late"), Some(1));
        assert_eq!(counts.len(), 2);
        assert_eq!(overrun, Duration::from_micros(300));
    }
}
