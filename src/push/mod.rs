//! Delivering pushes to customers: call events and merged CDRs, signed with the app's key, retried
//! on `push_retry_schedule`, and kept in the store's outbox until acknowledged (any 2xx).
//!
//! The delivery model (README, "How pushes are delivered"):
//! - **in order per call**: a call's next push goes out only after the previous one was
//!   acknowledged or buried; its CDR only after its events;
//! - **parallel across calls**: one dispatcher task per app sends the heads of many calls at once,
//!   up to `push_max_in_flight` requests, over keep-alive connections; a CDR batch is one request;
//! - **no head-of-line blocking**: a push waiting for its retry holds up only its own call;
//! - **back-off as a whole**: a receiver that fails every request gets one probe at a time, and
//!   full speed again as soon as one is acknowledged (`dispatch.rs`).
//!
//! Routing never waits for a push: it only writes to the outbox and wakes the app's dispatcher.
//!
//! A push's body is sent as the bytes stored with it: an event as it is, CDRs spliced into one
//! `{"eventType":"fee","feeLst":[…]}` without decoding them (README, "What the customer
//! receives").

mod block;
mod dispatch;
mod send;

pub use block::{FAIL_FAST_AFTER, FAIL_FAST_FOR};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use crate::auth::{self, Scheme};
use crate::config::Config;
use crate::store::outbox::{Lane, Push, Waiting};
use crate::store::{Apps, Calls};
use crate::telemetry::PushCounters;

/// After a storage error, wait this long before looking again.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// On a graceful stop, the requests in flight get this long to be answered and settled, so that a
/// restart does not send them again. (A crash still can: delivery is at least once.)
const STOP_GRACE: Duration = Duration::from_secs(2);

/// An app's wake-up, where its new pushes are told, and its dispatcher task.
struct AppTask {
    notify: Arc<Notify>,
    arrivals: mpsc::UnboundedSender<Vec<dispatch::Arrival>>,
    task: tokio::task::JoinHandle<()>,
}

/// A lane's counters: what `/metrics` and the admin API show besides the outbox's backlog.
#[derive(Debug, Default)]
pub struct LaneStats {
    in_flight: AtomicU64,
    delivered: AtomicU64,
    retried: AtomicU64,
    buried: AtomicU64,
    backing_off: AtomicBool,
}

impl LaneStats {
    fn in_flight_started(&self, pushes: usize) {
        self.in_flight.fetch_add(pushes as u64, Ordering::Relaxed);
    }

    fn in_flight_done(&self, pushes: usize) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(pushes as u64)));
    }

    fn count_delivered(&self, pushes: usize) {
        self.delivered.fetch_add(pushes as u64, Ordering::Relaxed);
    }

    fn count_retried(&self, pushes: usize) {
        self.retried.fetch_add(pushes as u64, Ordering::Relaxed);
    }

    fn count_buried(&self, pushes: usize) {
        self.buried.fetch_add(pushes as u64, Ordering::Relaxed);
    }

    fn set_backing_off(&self, on: bool) {
        self.backing_off.store(on, Ordering::Relaxed);
    }
}

pub struct Pusher {
    /// The outbox, read and settled here.
    calls: Calls,
    /// Where each app's pushes go, and the secret that signs them.
    apps: Apps,
    config: Arc<Config>,
    client: reqwest::Client,
    /// Each app's wake-up and dispatcher; a shutdown waits for them to let go of the store.
    tasks: Mutex<HashMap<String, AppTask>>,
    stats: Mutex<HashMap<(String, Lane), Arc<LaneStats>>>,
    stop: watch::Receiver<bool>,
    /// Where dispatchers run: `wake` may be called from the store's committer thread, outside
    /// the runtime.
    runtime: tokio::runtime::Handle,
    /// Each app's Block-push failures (`block.rs`).
    breakers: block::Breakers,
}

/// The HTTP client of pushes and of every other call privnum makes to customers and the switch:
/// keep-alive per host, no proxy, HTTPS trusting the system's certificate authorities (read once,
/// here) and those in `push_ca_file`. Fails naming the file when it cannot be read or holds no
/// certificate.
pub fn client(config: &Config) -> anyhow::Result<reqwest::Client> {
    use anyhow::Context as _;
    let mut builder = reqwest::Client::builder()
        .timeout(send::PUSH_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .no_proxy();
    if let Some(path) = config.push_ca_file.as_ref().filter(|path| !path.as_os_str().is_empty()) {
        let pem = std::fs::read(path).with_context(|| format!("push_ca_file: reading {}", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("push_ca_file: {} is not a PEM bundle", path.display()))?;
        if certificates.is_empty() {
            anyhow::bail!("push_ca_file: {} holds no certificate (expected BEGIN CERTIFICATE)", path.display());
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().context("building the HTTP client for pushes")
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher").finish_non_exhaustive()
    }
}

impl Pusher {
    /// Must be called inside the tokio runtime that will run the dispatchers. `client` is
    /// [`client`]'s.
    pub fn new(
        calls: Calls,
        apps: Apps,
        config: Arc<Config>,
        client: reqwest::Client,
        stop: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let runtime = tokio::runtime::Handle::current();
        Arc::new(Pusher {
            calls,
            apps,
            config,
            client,
            tasks: Mutex::default(),
            stats: Mutex::default(),
            stop,
            runtime,
            breakers: block::Breakers::default(),
        })
    }

    /// The HTTP client pushes use (keep-alive per customer host), for other calls to customers'
    /// and switches too.
    pub fn http(&self) -> &reqwest::Client {
        &self.client
    }

    /// Pushes are scheduled in milliseconds of real time (not the injectable clock), so retries
    /// and CDR merging behave the same whatever a test does with binding expiry.
    pub fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    /// Resumes every app with pushes waiting (after a restart).
    pub fn resume(self: &Arc<Self>) -> Result<(), crate::store::Error> {
        for (app_key, lane) in self.calls.waiting_lanes()? {
            self.wake(&app_key, lane);
        }
        Ok(())
    }

    /// Tells an app's dispatcher to read its outbox again (`lane` has pushes it was not told
    /// of: after a restart, a redelivery), starting it the first time (or again, if it ended).
    pub fn wake(self: &Arc<Self>, app_key: &str, _lane: Lane) {
        self.with_task(app_key, |task| task.notify.notify_one());
    }

    /// Tells the dispatchers of the pushes just committed, which they take without reading the
    /// outbox (unless their window is full: then they read it in order when there is room).
    pub fn arrived(self: &Arc<Self>, pushes: &[Push]) {
        let mut by_app: Vec<(&str, Vec<dispatch::Arrival>)> = Vec::new();
        for push in pushes {
            let waiting = Waiting {
                id: push.id,
                call: push.call.clone(),
                attempts: push.attempts,
                created_at_ms: push.created_at_ms,
                next_attempt_at_ms: push.next_attempt_at_ms,
            };
            match by_app.iter_mut().find(|(app, _)| *app == push.app_key) {
                Some((_, list)) => list.push((push.lane, waiting)),
                None => by_app.push((&push.app_key, vec![(push.lane, waiting)])),
            }
        }
        for (app_key, list) in by_app {
            let mut list = Some(list);
            self.with_task(app_key, |task| {
                if let Some(list) = list.take() {
                    if task.arrivals.send(list).is_err() {
                        task.notify.notify_one();
                    }
                }
            });
        }
    }

    /// Runs `tell` on the app's dispatcher, starting it if it is not running. After the stop, it
    /// starts nothing: the pushes wait in the outbox for the next start, and no new task holds
    /// the store while it closes.
    fn with_task(self: &Arc<Self>, app_key: &str, tell: impl FnOnce(&AppTask)) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Under the lock: `stopped` takes the tasks after the stop is signalled, so a task
        // started here is either among those it waits for, or not started at all.
        if *self.stop.borrow() {
            return;
        }
        if let Some(task) = tasks.get(app_key) {
            if !task.task.is_finished() {
                tell(task);
                return;
            }
        }
        // A new dispatcher reads the outbox first, so what `tell` would say is found there.
        let notify = Arc::new(Notify::new());
        let (arrivals, receiver) = mpsc::unbounded_channel();
        let pusher = self.clone();
        let (app, wake) = (app_key.to_owned(), notify.clone());
        let task = self.runtime.spawn(async move { pusher.run_app(app, wake, receiver).await });
        tasks.insert(app_key.to_owned(), AppTask { notify, arrivals, task });
    }

    /// Waits until every dispatcher has stopped (after `stop` changed). Requests in flight get
    /// `STOP_GRACE` (2 s) to finish; those that do not stay in the outbox and are sent again after
    /// the restart.
    pub async fn stopped(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        for (_, app) in tasks {
            let _ = app.task.await;
        }
    }

    /// A POST of a JSON body to a customer's URL, signed with the app's key as every push is
    /// (AKSK, a fresh nonce, the current time).
    fn signed_post(&self, app_key: &str, app_secret: &str, url: &str, body: String) -> reqwest::RequestBuilder {
        let signed = auth::sign(Scheme::Aksk, app_key, app_secret, &auth::new_nonce(), chrono::Utc::now());
        self.client
            .post(url)
            .header("Authorization", signed.authorization)
            .header(signed.token_name, signed.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
    }

    fn lane_stats(&self, app_key: &str, lane: Lane) -> Arc<LaneStats> {
        let mut stats = self.stats.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        stats.entry((app_key.to_owned(), lane)).or_default().clone()
    }

    /// Every lane that has pushes waiting or has delivered some since the start, by app and kind.
    /// Counts the outbox's keys (in memory); call it from a blocking thread for a large backlog.
    pub fn report(&self) -> Result<Vec<PushCounters>, crate::store::Error> {
        let mut lanes: Vec<(String, Lane)> = self.calls.waiting_lanes()?;
        let stats: Vec<((String, Lane), Arc<LaneStats>)> = {
            let stats = self.stats.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            stats.iter().map(|(key, value)| (key.clone(), value.clone())).collect()
        };
        lanes.extend(stats.iter().map(|(key, _)| key.clone()));
        lanes.sort_by(|a, b| (&a.0, a.1.name()).cmp(&(&b.0, b.1.name())));
        lanes.dedup();
        let now = self.now_ms();
        let mut reports = Vec::with_capacity(lanes.len());
        for (app_key, lane) in lanes {
            let backlog = self.calls.lane_backlog(&app_key, lane)?;
            let counters = stats.iter().find(|(key, _)| key.0 == app_key && key.1 == lane).map(|(_, s)| s.clone());
            let counters = counters.unwrap_or_default();
            reports.push(PushCounters {
                kind: lane.name(),
                waiting: backlog.waiting,
                spilled: backlog.spilled,
                oldest_age_ms: backlog.oldest_ms.map_or(0, |at| u64::try_from(now - at).unwrap_or(0)),
                in_flight: counters.in_flight.load(Ordering::Relaxed),
                delivered: counters.delivered.load(Ordering::Relaxed),
                retried: counters.retried.load(Ordering::Relaxed),
                buried: counters.buried.load(Ordering::Relaxed),
                backing_off: counters.backing_off.load(Ordering::Relaxed),
                app_key,
            });
        }
        Ok(reports)
    }
}
