//! The script pool: the threads every live script runs on, so that a slow script holds one of
//! them and never an async worker of the server.
//!
//! Two lanes:
//! - **main**: `threads` std threads (by default one per core, at least four) serving one FIFO
//!   queue per app, round-robin, so a busy app
//!   does not queue ahead of a quiet one. One app runs on at most `threads - 1` of them at once
//!   (all of them when there is one), so a script that stalls for one app leaves a thread to the
//!   others. Each app's queue holds at most `queue_per_app` runs; one more is refused at once.
//! - **suspect**: one thread for inputs that were recently stopped by the sandbox (a *suspect*:
//!   the same app, handler, caller, X and digits within [`SUSPECT_FOR`] of being stopped). It runs
//!   them one at a time, FIFO, at most [`SUSPECT_QUEUE`] waiting, and rests after each run nine
//!   times as long as the run took, so hostile inputs together get at most a tenth of one core
//!   however often they are sent. Their callers get the fallback when the run does not answer by
//!   its deadline.
//!
//! The pool runs closures and knows nothing of scripts; `ScriptHost::run_pooled` builds them, sets
//! each run's deadline from when it was asked for, and awaits the answer through a oneshot for at
//! most that deadline plus a small margin. Dropping the pool stops its threads once their current
//! run ends; queued runs are dropped (their callers get the fallback).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How long an input stays a suspect after it was last stopped.
pub const SUSPECT_FOR: Duration = Duration::from_secs(60);
/// Runs waiting for the suspect lane, at most; one more is refused.
pub const SUSPECT_QUEUE: usize = 16;
/// The suspect lane rests this many times a run's length after it.
const SUSPECT_REST_FACTOR: u32 = 9;
/// Inputs remembered as suspects, at most: beyond it (an attack from ever new callers) a new one
/// runs in the main lane, still bounded by its app's share of the threads.
const MAX_SUSPECTS: usize = 4096;

/// The fewest main-lane threads `script_threads = 0` gives. Idle threads cost nothing; with
/// fewer than four, a script that stalls for one app would leave the app's other calls one
/// thread, or none: on two cores, four threads let the operating system share the cores between
/// a stalled run and the others instead of queueing them behind it.
pub const MIN_DEFAULT_THREADS: usize = 4;

/// The pool's size (`script_threads`, `script_queue_per_app` in `privnum.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Main-lane threads; 0 means one per core, and at least [`MIN_DEFAULT_THREADS`].
    pub threads: usize,
    /// Runs one app may have waiting in the main lane.
    pub queue_per_app: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig { threads: 0, queue_per_app: 256 }
    }
}

impl PoolConfig {
    /// The main lane's thread count, with 0 resolved to the cores this process may use (at least
    /// [`MIN_DEFAULT_THREADS`]).
    pub fn resolved_threads(&self) -> usize {
        match self.threads {
            0 => thread::available_parallelism().map_or(MIN_DEFAULT_THREADS, usize::from).max(MIN_DEFAULT_THREADS),
            threads => threads,
        }
    }
}

/// A run the pool carries out.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Which lane a run goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane<'a> {
    /// The main lane, in the queue of this app (or of a shared script, such as `release.rhai`).
    Main(&'a str),
    /// The suspect lane.
    Suspect,
}

/// Why a run was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the script pool's queue for this app is full ({0} runs waiting)")]
    AppQueueFull(usize),
    #[error("the script pool's lane for inputs recently stopped is full ({SUSPECT_QUEUE} runs waiting)")]
    SuspectQueueFull,
    #[error("the script pool has stopped")]
    Stopped,
}

#[derive(Default)]
struct AppQueue {
    jobs: VecDeque<Job>,
    running: usize,
    /// Listed in `Main::ring` (it has jobs and room to run one more).
    in_ring: bool,
}

#[derive(Default)]
struct Main {
    closed: bool,
    apps: HashMap<Arc<str>, AppQueue>,
    /// The apps whose next job may run, in turn.
    ring: VecDeque<Arc<str>>,
}

#[derive(Default)]
struct Suspect {
    closed: bool,
    jobs: VecDeque<Job>,
}

struct Shared {
    queue_per_app: usize,
    /// How many main-lane threads one app may hold at once.
    per_app: usize,
    main: Mutex<Main>,
    main_ready: Condvar,
    suspect: Mutex<Suspect>,
    suspect_ready: Condvar,
    /// Input key → until when it is a suspect.
    suspects: Mutex<HashMap<u64, Instant>>,
    /// `suspects.len()`, read without the lock on every run.
    suspect_count: AtomicUsize,
    hasher: RandomState,
    /// Called by the suspect thread about once a second while it is idle (the strike summary).
    tick: Box<dyn Fn() + Send + Sync>,
}

/// The script threads; dropping it stops them.
pub struct Pool {
    shared: Arc<Shared>,
    threads: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("threads", &self.threads).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each hold is a few queue operations, and jobs run outside the lock: recover.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pool {
    /// Starts the main lane's threads and the suspect lane's. `tick` is called about once a
    /// second from the suspect thread.
    pub fn start(config: PoolConfig, tick: impl Fn() + Send + Sync + 'static) -> std::io::Result<Pool> {
        let threads = config.resolved_threads().max(1);
        let shared = Arc::new(Shared {
            queue_per_app: config.queue_per_app.max(1),
            per_app: if threads > 1 { threads - 1 } else { 1 },
            main: Mutex::default(),
            main_ready: Condvar::new(),
            suspect: Mutex::default(),
            suspect_ready: Condvar::new(),
            suspects: Mutex::default(),
            suspect_count: AtomicUsize::new(0),
            hasher: RandomState::new(),
            tick: Box::new(tick),
        });
        let pool = Pool { shared: shared.clone(), threads };
        for index in 0..threads {
            let shared = shared.clone();
            thread::Builder::new().name(format!("privnum-script-{index}")).spawn(move || serve_main(&shared))?;
        }
        thread::Builder::new().name("privnum-script-suspect".into()).spawn(move || serve_suspects(&shared))?;
        Ok(pool)
    }

    /// The main lane's threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The key of one input: the same parts give the same key for this pool's life.
    pub fn key(&self, parts: &[&str]) -> u64 {
        self.shared.hasher.hash_one(parts)
    }

    /// Whether `key` was stopped by the sandbox within [`SUSPECT_FOR`].
    pub fn is_suspect(&self, key: u64) -> bool {
        if self.shared.suspect_count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let mut suspects = lock(&self.shared.suspects);
        match suspects.get(&key) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                suspects.remove(&key);
                self.shared.suspect_count.store(suspects.len(), Ordering::Relaxed);
                false
            }
            None => false,
        }
    }

    /// Makes `key` a suspect for [`SUSPECT_FOR`] from now.
    pub fn mark_suspect(&self, key: u64) {
        let now = Instant::now();
        let mut suspects = lock(&self.shared.suspects);
        if suspects.len() >= MAX_SUSPECTS && !suspects.contains_key(&key) {
            suspects.retain(|_, until| *until > now);
            if suspects.len() >= MAX_SUSPECTS {
                return;
            }
        }
        suspects.insert(key, now + SUSPECT_FOR);
        self.shared.suspect_count.store(suspects.len(), Ordering::Relaxed);
    }

    /// Inputs that are suspects now (some may have just expired).
    pub fn suspects(&self) -> usize {
        self.shared.suspect_count.load(Ordering::Relaxed)
    }

    /// Queues `job` on `lane`, or says why not (the caller then answers without it).
    pub fn submit(&self, lane: Lane<'_>, job: Job) -> Result<(), Refused> {
        match lane {
            Lane::Main(app) => {
                let mut main = lock(&self.shared.main);
                if main.closed {
                    return Err(Refused::Stopped);
                }
                let per_app = self.shared.per_app;
                let Main { apps, ring, .. } = &mut *main;
                let queue = match apps.get_mut(app) {
                    Some(queue) => queue,
                    None => apps.entry(Arc::from(app)).or_default(),
                };
                if queue.jobs.len() >= self.shared.queue_per_app {
                    return Err(Refused::AppQueueFull(queue.jobs.len()));
                }
                queue.jobs.push_back(job);
                if !queue.in_ring && queue.running < per_app {
                    queue.in_ring = true;
                    ring.push_back(Arc::from(app));
                }
                drop(main);
                self.shared.main_ready.notify_one();
                Ok(())
            }
            Lane::Suspect => {
                let mut suspect = lock(&self.shared.suspect);
                if suspect.closed {
                    return Err(Refused::Stopped);
                }
                if suspect.jobs.len() >= SUSPECT_QUEUE {
                    return Err(Refused::SuspectQueueFull);
                }
                suspect.jobs.push_back(job);
                drop(suspect);
                self.shared.suspect_ready.notify_one();
                Ok(())
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        {
            let mut main = lock(&self.shared.main);
            main.closed = true;
            main.apps.clear();
            main.ring.clear();
        }
        {
            let mut suspect = lock(&self.shared.suspect);
            suspect.closed = true;
            suspect.jobs.clear();
        }
        self.shared.main_ready.notify_all();
        self.shared.suspect_ready.notify_all();
    }
}

/// A main-lane thread: the next app in turn, its oldest job.
fn serve_main(shared: &Shared) {
    loop {
        let (app, job) = {
            let mut main = lock(&shared.main);
            let app = loop {
                if main.closed {
                    return;
                }
                if let Some(app) = main.ring.pop_front() {
                    break app;
                }
                main = shared.main_ready.wait(main).unwrap_or_else(|poisoned| poisoned.into_inner());
            };
            let Main { apps, ring, .. } = &mut *main;
            let Some(queue) = apps.get_mut(&app) else { continue };
            let Some(job) = queue.jobs.pop_front() else {
                queue.in_ring = false;
                continue;
            };
            queue.running += 1;
            if !queue.jobs.is_empty() && queue.running < shared.per_app {
                ring.push_back(app.clone());
            } else {
                queue.in_ring = false;
            }
            (app, job)
        };
        job();
        let mut main = lock(&shared.main);
        let Main { apps, ring, .. } = &mut *main;
        if let Some(queue) = apps.get_mut(&app) {
            queue.running -= 1;
            if queue.jobs.is_empty() && queue.running == 0 {
                apps.remove(&app);
            } else if !queue.in_ring && !queue.jobs.is_empty() {
                queue.in_ring = true;
                ring.push_back(app);
                drop(main);
                shared.main_ready.notify_one();
            }
        }
    }
}

/// The suspect lane's thread: one job at a time, resting after each; ticks while idle.
fn serve_suspects(shared: &Shared) {
    let mut last_tick = Instant::now();
    loop {
        let job = {
            let mut suspect = lock(&shared.suspect);
            loop {
                if suspect.closed {
                    return;
                }
                if let Some(job) = suspect.jobs.pop_front() {
                    break job;
                }
                let (guard, _) = shared
                    .suspect_ready
                    .wait_timeout(suspect, Duration::from_secs(1))
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                suspect = guard;
                if last_tick.elapsed() >= Duration::from_secs(1) {
                    drop(suspect);
                    (shared.tick)();
                    last_tick = Instant::now();
                    suspect = lock(&shared.suspect);
                }
            }
        };
        let started = Instant::now();
        job();
        let rest = started.elapsed() * SUSPECT_REST_FACTOR;
        let until = Instant::now() + rest;
        let mut suspect = lock(&shared.suspect);
        while !suspect.closed {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            suspect = shared.suspect_ready.wait_timeout(suspect, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        drop(suspect);
        if last_tick.elapsed() >= Duration::from_secs(1) {
            (shared.tick)();
            last_tick = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn pool(threads: usize, queue_per_app: usize) -> Pool {
        Pool::start(PoolConfig { threads, queue_per_app }, || {}).expect("threads start")
    }

    #[test]
    fn one_app_cannot_hold_every_thread() {
        let pool = pool(2, 16);
        let (release, held) = mpsc::channel::<()>();
        let held = Arc::new(Mutex::new(held));
        // Two slow runs of app "a": with two threads, one app may hold only one.
        for _ in 0..2 {
            let held = held.clone();
            pool.submit(
                Lane::Main("a"),
                Box::new(move || {
                    let _ = lock(&held).recv_timeout(Duration::from_secs(5));
                }),
            )
            .expect("queued");
        }
        let (done, finished) = mpsc::channel();
        pool.submit(Lane::Main("b"), Box::new(move || done.send(()).expect("send"))).expect("queued");
        assert!(finished.recv_timeout(Duration::from_secs(2)).is_ok(), "app b ran while app a's runs stalled");
        release.send(()).expect("send");
        release.send(()).expect("send");
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        let pool = pool(1, 2);
        let (release, held) = mpsc::channel::<()>();
        pool.submit(
            Lane::Main("a"),
            Box::new(move || {
                let _ = held.recv_timeout(Duration::from_secs(5));
            }),
        )
        .expect("queued");
        // The first may already be running; two more fill the queue, then one is refused.
        let mut refused = None;
        for _ in 0..4 {
            if let Err(err) = pool.submit(Lane::Main("a"), Box::new(|| {})) {
                refused = Some(err);
                break;
            }
        }
        assert!(matches!(refused, Some(Refused::AppQueueFull(2))), "{refused:?}");
        release.send(()).expect("send");
    }

    #[test]
    fn suspects_are_remembered_by_key() {
        let pool = pool(1, 2);
        let key = pool.key(&["app", "modes/axb.rhai", "on_callin", "+861"]);
        assert_eq!(key, pool.key(&["app", "modes/axb.rhai", "on_callin", "+861"]));
        assert!(!pool.is_suspect(key));
        pool.mark_suspect(key);
        assert!(pool.is_suspect(key));
        assert!(!pool.is_suspect(pool.key(&["app", "modes/axb.rhai", "on_callin", "+862"])));
        let (done, finished) = mpsc::channel();
        pool.submit(Lane::Suspect, Box::new(move || done.send(()).expect("send"))).expect("queued");
        assert!(finished.recv_timeout(Duration::from_secs(2)).is_ok());
    }
}
