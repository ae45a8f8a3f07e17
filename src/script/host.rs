//! The active script version and how it changes.
//!
//! Calls read the active set with one atomic load (`arc-swap`) and run on that set to the end, so
//! a call is decided by exactly one version even while a reload swaps another in. Reloads and
//! rollbacks are serialized by a mutex that calls never touch.
//!
//! Live calls run their handler through [`ScriptHost::run_pooled`], on the script pool's threads
//! (`pool`), never on an async worker; the reload's test cases run on the thread that reloads
//! (a blocking one), and `privnum check`/`test` on the command's own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rhai::Engine;
use serde::Serialize;

use super::pool::{Lane, Pool, PoolConfig};
use super::ruleset::{self, DataLookup, Ruleset};
use super::run::{call_handler, call_handler_until, Failure, HandlerOutput, RunError};
use super::set::{LoadError, ScriptSet, Sources, Version};
use super::strikes::Strikes;
use super::{engine, Limits};
use crate::domain::ruleset::Handler;
use crate::telemetry::{RulesetRuns, ScriptStrike};

/// How long past a run's deadline its caller still waits for the script thread before it answers
/// with the fallback itself: the script is stopped within microseconds of its deadline when its
/// thread is on a core; this bounds the answer when it is not (a loaded machine).
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(2);

/// How many earlier versions are kept for rollback.
const HISTORY: usize = 10;

/// What a reload did. A failed reload is a value: the running version stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new version is live.
    Reloaded { version: Version },
    /// The files are the same as the active version's.
    Unchanged { version: Version },
    /// The new files were refused; `active` keeps answering.
    RolledBack { error: String, active: Version },
}

#[derive(Debug, Default)]
struct Bookkeeping {
    next_number: u64,
    previous: Vec<Arc<ScriptSet>>,
    last_error: Option<String>,
    last_reload: Option<ReloadTimes>,
}

/// How long the last reload took, by step, in microseconds. Calls never wait for any of it:
/// they keep the active set until the swap, which is one atomic pointer store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReloadTimes {
    /// Reading the scripts directory.
    pub read_us: u64,
    /// Compiling the changed scripts and checking the handlers.
    pub compile_us: u64,
    /// Running the test cases (0 when the compile failed).
    pub cases_us: u64,
    /// Making the new set active (0 when it was not).
    pub swap_us: u64,
}

/// The host's state for the admin API and `/metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub active: String,
    pub files: Vec<String>,
    pub cases_passed: usize,
    pub previous: Vec<String>,
    pub last_error: Option<String>,
    pub last_reload: Option<ReloadTimes>,
    /// Every reload tried, whatever its outcome (file events and admin calls).
    pub attempts: u64,
    pub reloads: u64,
    pub rejected: u64,
    pub runtime_errors: u64,
}

/// What `/metrics` shows of the script pool and the strikes.
#[derive(Debug, Clone)]
pub struct PoolStatus {
    pub threads: usize,
    pub suspects: usize,
    pub strikes: Vec<ScriptStrike>,
    pub deadline_overrun_max: Duration,
}

/// A script run that was not run or not answered, as its caller reports it.
fn not_run(set: &ScriptSet, file: &str, function: &str, kind: Failure, why: &str) -> RunError {
    RunError {
        location: set.path_of(file).display().to_string(),
        message: format!("{function}: {why}"),
        kind,
        at: function.to_owned(),
    }
}

/// A submission being checked ([`ScriptHost::begin_check`]); dropping it ends the check.
#[derive(Debug)]
pub struct CheckGuard {
    checking: Arc<Mutex<HashSet<String>>>,
    app_key: String,
}

impl Drop for CheckGuard {
    fn drop(&mut self) {
        let mut checking = self.checking.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        checking.remove(&self.app_key);
    }
}

pub struct ScriptHost {
    engine: Engine,
    limits: Limits,
    dir: PathBuf,
    active: ArcSwap<ScriptSet>,
    /// Serializes reloads and rollbacks; held while a set compiles and runs its cases.
    changing: Mutex<()>,
    /// Held only for moments: `status()` (from async handlers) never waits on a compile.
    bookkeeping: Mutex<Bookkeeping>,
    /// Runtime errors already logged, by version and location: each is logged once.
    reported: Mutex<HashSet<String>>,
    attempts: AtomicU64,
    reloads: AtomicU64,
    rejected: AtomicU64,
    runtime_errors: AtomicU64,
    strikes: Arc<Strikes>,
    pool: Pool,
    /// The engine customer rule sets run on (their own API, the same sandbox).
    ruleset_engine: Engine,
    /// Each app's active rule set, compiled; calls read it with one atomic load.
    rulesets: ArcSwap<HashMap<String, Arc<Ruleset>>>,
    /// Rule-set runs by app, version and outcome, for `/metrics`.
    ruleset_runs: Mutex<BTreeMap<(String, String, &'static str), u64>>,
    /// Apps whose submission is being checked now: one check at a time per app.
    checking: Arc<Mutex<HashSet<String>>>,
    /// Held while an app's active rule set is read from the store and swapped in
    /// ([`ScriptHost::loading_rulesets`]), so two loads never swap in the older read last.
    ruleset_loading: Mutex<()>,
}

impl std::fmt::Debug for ScriptHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptHost").field("dir", &self.dir).field("active", &self.active.load().version).finish()
    }
}

impl ScriptHost {
    /// Loads `dir`; start-up fails when the scripts do not load, so a server never runs without
    /// a proven version. Starts a script pool of the default size.
    pub fn load(dir: &Path, limits: Limits) -> Result<ScriptHost, LoadError> {
        ScriptHost::load_with(dir, limits, PoolConfig::default())
    }

    /// Like [`ScriptHost::load`], with a script pool of `pool`'s size.
    pub fn load_with(dir: &Path, limits: Limits, pool: PoolConfig) -> Result<ScriptHost, LoadError> {
        let engine = engine::build(&limits);
        let set = ScriptSet::load(&engine, dir, 1, &limits)?;
        let strikes = Arc::new(Strikes::default());
        let summary = strikes.clone();
        let pool = Pool::start(pool, move || summary.summarize_if_due())
            .map_err(|err| LoadError(vec![format!("cannot start the script threads: {err}")]))?;
        tracing::info!(
            version = %set.version,
            cases = set.cases_passed,
            dir = %dir.display(),
            script_threads = pool.threads(),
            "scripts loaded"
        );
        Ok(ScriptHost {
            engine,
            limits,
            dir: dir.to_owned(),
            active: ArcSwap::from_pointee(set),
            changing: Mutex::new(()),
            bookkeeping: Mutex::new(Bookkeeping { next_number: 2, ..Bookkeeping::default() }),
            reported: Mutex::default(),
            attempts: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            runtime_errors: AtomicU64::new(0),
            strikes,
            pool,
            ruleset_engine: engine::build_for_rulesets(&limits),
            rulesets: ArcSwap::default(),
            ruleset_runs: Mutex::default(),
            ruleset_loading: Mutex::default(),
            checking: Arc::default(),
        })
    }

    /// The engine rule sets are compiled and checked on.
    pub fn ruleset_engine(&self) -> &Engine {
        &self.ruleset_engine
    }

    /// The app's active rule set, if it has one on.
    pub fn ruleset(&self, app_key: &str) -> Option<Arc<Ruleset>> {
        self.rulesets.load().get(app_key).cloned()
    }

    /// Serializes loading rule sets from the store: hold it from reading the active version to
    /// [`ScriptHost::set_ruleset`]. Only loads take it (never a call); it is a std mutex, for
    /// blocking threads.
    pub fn loading_rulesets(&self) -> std::sync::MutexGuard<'_, ()> {
        self.ruleset_loading.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts checking a submission of `app_key`: `None` while another of its submissions is being
    /// checked (a check may take a blocking thread for as long as its cases and probe take). The
    /// guard ends it when dropped.
    pub fn begin_check(&self, app_key: &str) -> Option<CheckGuard> {
        let mut checking = self.checking.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        checking
            .insert(app_key.to_owned())
            .then(|| CheckGuard { checking: self.checking.clone(), app_key: app_key.to_owned() })
    }

    /// Whether the app's active rule set counts answered calls (`answered_calls`), so its calls
    /// are counted when answered.
    pub fn counts_answered(&self, app_key: &str) -> bool {
        self.rulesets.load().get(app_key).is_some_and(|ruleset| ruleset.counts_answered)
    }

    /// Makes `ruleset` the active one of its app, or (`None`) turns `app_key`'s off.
    pub fn set_ruleset(&self, app_key: &str, ruleset: Option<Ruleset>) {
        let ruleset = ruleset.map(Arc::new);
        self.rulesets.rcu(|current| {
            let mut next = HashMap::clone(current);
            match &ruleset {
                Some(ruleset) => next.insert(app_key.to_owned(), ruleset.clone()),
                None => next.remove(app_key),
            };
            next
        });
    }

    /// Runs `handler` of an app's rule set on the script pool and awaits it for at most twice the
    /// rule set's deadline plus [`DEADLINE_MARGIN`] (a run not started within one deadline is not
    /// run). Rule-set runs queue apart from the app's own scripts (a queue of their own in the
    /// main lane, `ruleset <app>`), so a slow rule set never delays the mode's script; and once a
    /// run of this version and handler has been stopped by the sandbox, its runs go to the
    /// suspect lane for [`super::pool::SUSPECT_FOR`] (a tenth of one core for all suspects
    /// together), so a looping version costs the app's calls its budget at most a few times, and
    /// then nothing. A failure is counted per app, version and kind, logged once per version
    /// and location, and returned: the caller goes on as if the rule set were absent.
    /// `Ok(None)`: the handler returned `()`.
    pub async fn run_ruleset(
        self: &Arc<Self>,
        ruleset: Arc<Ruleset>,
        handler: Handler,
        (event, decision): (serde_json::Value, Option<serde_json::Value>),
        data: DataLookup,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>, RunError> {
        let key = self.pool.key(&["ruleset", &ruleset.app_key, &ruleset.version, handler.name()]);
        let (host, run_on) = (self.clone(), ruleset.clone());
        let run = move |stop_at| {
            ruleset::call(&host.ruleset_engine, &run_on, handler, (&event, decision.as_ref()), data, stop_at)
        };
        let named = ruleset.clone();
        let not_run = move |kind, why: &str| RunError {
            kind,
            ..RunError::new(named.location(), format!("{}: {why}", handler.name()))
        };
        let (result, _ended) = self.on_pool((&ruleset.queue, key), ruleset.deadline(), run, not_run).await;
        if let Err(err) = &result {
            self.report_ruleset_failure(&ruleset, err.kind.name(), &err.location, &err.message);
        }
        result
    }

    /// Counts a rule-set run that failed, was stopped (`outcome`: the failure's kind), or
    /// returned what breaks an invariant (`invariant`), and logs it the first time its version
    /// fails at `location`.
    pub fn report_ruleset_failure(&self, ruleset: &Ruleset, outcome: &'static str, location: &str, message: &str) {
        self.count_ruleset_run(ruleset, outcome);
        if self.first_report(format!("{} {location}", ruleset.location())) {
            tracing::warn!(
                app_key = %ruleset.app_key,
                version = %ruleset.version,
                outcome,
                "{location}: {message}; the call goes on as without the rule set"
            );
        }
    }

    /// Counts a rule-set run by its outcome (`decided`, `passed`, `invariant`, or a failure's
    /// kind).
    pub fn count_ruleset_run(&self, ruleset: &Ruleset, outcome: &'static str) {
        if let Ok(mut counts) = self.ruleset_runs.lock() {
            *counts.entry((ruleset.app_key.clone(), ruleset.version.clone(), outcome)).or_default() += 1;
        }
    }

    /// Rule-set runs so far, by app, version and outcome.
    pub fn ruleset_runs(&self) -> RulesetRuns {
        let counts = self.ruleset_runs.lock().map(|counts| counts.clone()).unwrap_or_default();
        RulesetRuns(counts.into_iter().map(|((app, version, outcome), count)| (app, version, outcome, count)).collect())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The version new calls run on.
    pub fn active(&self) -> Arc<ScriptSet> {
        self.active.load_full()
    }

    /// Runs a handler of `set` (which the caller took from [`ScriptHost::active`]). A failure is
    /// reported through [`ScriptHost::report_failure`].
    pub fn run<I: Clone + Send + Sync + 'static, O: HandlerOutput>(
        &self,
        set: &ScriptSet,
        file: &str,
        function: &str,
        input: I,
    ) -> Result<O, RunError> {
        let result = call_handler(&self.engine, set, file, function, input, &self.limits);
        if let Err(err) = &result {
            self.report_failure(set, &err.location, &err.message);
        }
        result
    }

    /// The key of a run's input for the pool's suspect list: the same parts (the app, the handler,
    /// what the script reads that varies per call) name the same input.
    pub fn input_key(&self, parts: &[&str]) -> u64 {
        self.pool.key(parts)
    }

    /// Runs a handler of `set` on the script pool, in `app`'s turn (or, for an input recently
    /// stopped by the sandbox, in the suspect lane), and awaits it for at most twice the deadline
    /// plus [`DEADLINE_MARGIN`]: a run not started within one deadline of this call is not run,
    /// and a run is stopped one deadline after it started. A failure
    /// (a run that failed, was stopped, refused by a full queue, or late) is counted as a strike
    /// and reported through [`ScriptHost::report_failure`]; the caller gives the fallback.
    pub async fn run_pooled<I: Clone + Send + Sync + 'static, O: HandlerOutput>(
        self: &Arc<Self>,
        app: &str,
        key: u64,
        set: Arc<ScriptSet>,
        (file, function): (&'static str, &'static str),
        input: I,
    ) -> Result<O, RunError> {
        let (host, run_set) = (self.clone(), set.clone());
        let run = move |stop_at| {
            let result = call_handler_until(&host.engine, &run_set, file, function, input, &host.limits, stop_at);
            if let Err(err) = &result {
                host.strikes.record(file, &err.at, err.kind);
            }
            result
        };
        let not_run_set = set.clone();
        let not_run = move |kind, why: &str| not_run(&not_run_set, file, function, kind, why);
        let (result, ended) = self.on_pool((app, key), self.limits.deadline, run, not_run).await;
        if let Err(err) = &result {
            if matches!(err.kind, Failure::Deadline | Failure::Late) {
                self.strikes.overran(Instant::now().saturating_duration_since(ended));
            }
            if matches!(err.kind, Failure::Late | Failure::Refused) {
                self.strikes.record(file, &err.at, err.kind);
            }
            self.report_failure(&set, &err.location, &err.message);
        }
        result
    }

    /// Runs `run` on the script pool: in `queue`'s turn in the main lane, or in the suspect lane
    /// when `key` was recently stopped by the sandbox; awaited for at most twice `budget` plus
    /// [`DEADLINE_MARGIN`]. A run not started within one budget is not run (`Late`); one whose
    /// key was stopped while it waited is not run either (`Refused`); `run` gets the instant it
    /// must stop at, and a run it reports stopped marks `key` a suspect. Scripts and rule sets
    /// both run through here. Also returns when the run's time was up (for the overrun figure).
    async fn on_pool<T: Send + 'static>(
        self: &Arc<Self>,
        (queue, key): (&str, u64),
        budget: Duration,
        run: impl FnOnce(Instant) -> Result<T, RunError> + Send + 'static,
        not_run: impl Fn(Failure, &str) -> RunError + Send + Sync + 'static,
    ) -> (Result<T, RunError>, Instant) {
        // A run may wait for a thread up to one budget, then runs for at most another.
        let deadline = Instant::now() + budget;
        let apart = self.pool.is_suspect(key);
        let not_run = Arc::new(not_run);
        let (answer, answered) = tokio::sync::oneshot::channel();
        let (host, inside) = (self.clone(), not_run.clone());
        let job = Box::new(move || {
            if answer.is_closed() {
                return;
            }
            let result = if Instant::now() >= deadline {
                Err(inside(Failure::Late, "waited past its deadline in the queue"))
            } else if !apart && host.pool.is_suspect(key) {
                // Stopped by the sandbox while this run waited: it would hold the thread again.
                Err(inside(Failure::Refused, "not run: the same input was stopped by the sandbox while it waited"))
            } else {
                let result = run(Instant::now() + budget);
                if result.as_ref().is_err_and(|err| err.kind.stopped()) {
                    host.pool.mark_suspect(key);
                }
                result
            };
            let _ = answer.send(result);
        });
        let lane = if apart { Lane::Suspect } else { Lane::Main(queue) };
        let result = match self.pool.submit(lane, job) {
            Err(refused) => Err(not_run(Failure::Refused, &refused.to_string())),
            Ok(()) => {
                let wait_until = tokio::time::Instant::from_std(deadline + budget + DEADLINE_MARGIN);
                match tokio::time::timeout_at(wait_until, answered).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(_dropped)) => Err(not_run(Failure::Refused, "the script pool has stopped")),
                    Err(_elapsed) => {
                        Err(not_run(Failure::Late, &format!("no answer within its deadline of {budget:?}")))
                    }
                }
            }
        };
        (result, deadline + budget)
    }

    /// Counts and reports a decision that broke a platform invariant (`reason`).
    pub fn report_violation(&self, set: &ScriptSet, (file, function): (&str, &str), reason: &str) {
        self.strikes.record(file, function, Failure::Error);
        self.report_failure(set, &set.path_of(file).display().to_string(), reason);
    }

    /// Counts a handler that failed or returned a decision breaking a platform invariant, and logs
    /// it the first time this version fails at this location (a broken script fails every call;
    /// the log should say so once, the counter every time).
    pub fn report_failure(&self, set: &ScriptSet, location: &str, message: &str) {
        self.runtime_errors.fetch_add(1, Ordering::Relaxed);
        if self.first_report(format!("{} {location}", set.version)) {
            tracing::error!(version = %set.version, "{location}: {message}; calls get the fallback decision");
        }
    }

    /// Whether this is the first failure reported under `key` (a version and a location): each
    /// is logged once, and counted every time.
    fn first_report(&self, key: String) -> bool {
        self.reported.lock().map(|mut seen| seen.insert(key)).unwrap_or(true)
    }

    fn bookkeeping(&self) -> std::sync::MutexGuard<'_, Bookkeeping> {
        self.bookkeeping.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Loads the directory again; swaps only a set that compiled, has its handlers and passed
    /// its cases.
    pub fn reload(&self) -> ReloadOutcome {
        let _changing = self.changing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let number = self.bookkeeping().next_number;
        let current = self.active.load_full();
        let micros = |since: Instant| u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        let started = Instant::now();
        let read = Sources::read(&self.dir);
        let read_us = micros(started);
        let started = Instant::now();
        let compiled = ScriptSet::compile_read(&self.engine, &self.dir, number, Some(&current), read);
        let mut times = ReloadTimes { read_us, compile_us: micros(started), cases_us: 0, swap_us: 0 };
        let loaded = compiled.and_then(|set| {
            let started = Instant::now();
            let checked = set.pass_cases(&self.engine, &self.limits);
            times.cases_us = micros(started);
            checked
        });
        let mut books = self.bookkeeping();
        let outcome = match loaded {
            Ok(set) if set.version.hash == current.version.hash => {
                books.last_error = None;
                ReloadOutcome::Unchanged { version: current.version.clone() }
            }
            Ok(set) => {
                books.next_number += 1;
                books.last_error = None;
                let version = set.version.clone();
                let set = Arc::new(set);
                let started = Instant::now();
                self.active.store(set);
                times.swap_us = micros(started);
                books.previous.push(current);
                if books.previous.len() > HISTORY {
                    books.previous.remove(0);
                }
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%version, "scripts reloaded");
                ReloadOutcome::Reloaded { version }
            }
            Err(err) => {
                let error = err.to_string();
                books.last_error = Some(error.clone());
                self.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::error!(active = %current.version, "scripts not reloaded; the running version stays:\n{error}");
                ReloadOutcome::RolledBack { error, active: current.version.clone() }
            }
        };
        books.last_reload = Some(times);
        outcome
    }

    /// Makes the previous version active again; `None` when there is none. It stays active until
    /// the next reload, which loads the files on disk again.
    pub fn rollback(&self) -> Option<Version> {
        let _changing = self.changing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut books = self.bookkeeping();
        let previous = books.previous.pop()?;
        let version = previous.version.clone();
        self.active.store(previous);
        tracing::warn!(%version, "scripts rolled back by an operator");
        Some(version)
    }

    /// The script pool's size, the inputs kept apart, and the strikes so far.
    pub fn pool_status(&self) -> PoolStatus {
        let (strikes, deadline_overrun_max) = self.strikes.snapshot();
        PoolStatus { threads: self.pool.threads(), suspects: self.pool.suspects(), strikes, deadline_overrun_max }
    }

    pub fn status(&self) -> Status {
        let books = self.bookkeeping();
        let active = self.active.load();
        Status {
            active: active.version.to_string(),
            files: active.files().map(str::to_owned).collect(),
            cases_passed: active.cases_passed,
            previous: books.previous.iter().rev().map(|set| set.version.to_string()).collect(),
            last_error: books.last_error.clone(),
            last_reload: books.last_reload,
            attempts: self.attempts.load(Ordering::Relaxed),
            reloads: self.reloads.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            runtime_errors: self.runtime_errors.load(Ordering::Relaxed),
        }
    }
}
