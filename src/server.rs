//! Wiring: open the store, load the configured apps, start the background sweeper, serve HTTP.
//!
//! [`start`] is what `privnum serve` and the end-to-end tests both run, so the tests exercise the
//! real server on a real socket. [`Running::stop`] shuts down gracefully and releases the store, so
//! a test can start a new server on the same data directory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::calls::ledger::Ledger;
use crate::calls::session::{Session, Sessions};
use crate::calls::Switchboard;
use crate::clock::Clock;
use crate::config::Config;
use crate::http::{self, AppState};
use crate::push::Pusher;
use crate::script::{Limits, PoolConfig, ScriptHost};
use crate::store::Store;
use crate::telemetry::{BindingsExpired, Metrics};

/// How often expired bindings and old nonces are swept. Expired bindings already behave as absent
/// on every path, so this only frees capacity and disk; once a second keeps the queue short.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How many expired bindings one sweep removes at most, so a sweep never holds the writer lock long.
const SWEEP_BATCH: usize = 1000;

/// How long the steps of start-up took: logged once, and kept in [`Running`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Startup {
    /// Opening sled and replaying the call log.
    pub store_open: Duration,
    /// Calls under way found in the store.
    pub calls: usize,
    /// Decoding them into the session map.
    pub calls_restore: Duration,
    /// Finding the lanes with pushes waiting and starting them.
    pub pushes_resume: Duration,
    /// Everything, up to serving.
    pub total: Duration,
}

/// Opens the store, upserts the configured apps, restores the calls under way and resumes the
/// pushes waiting in the outbox. Background work stops when `stop` changes.
pub async fn prepare(
    config: Config,
    clock: Arc<dyn Clock>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(AppState, Startup)> {
    let started = std::time::Instant::now();
    // Blocking this worker thread (seconds with a large store): start-up serves nothing yet.
    let store = Store::open_with_push_budget(&config.data_dir, config.push_memory_budget_mb << 20)
        .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    let mut startup = Startup { store_open: started.elapsed(), ..Startup::default() };
    for app_config in &config.apps {
        let (app, numbers) = app_config.clone().into_parts();
        store
            .apps()
            .upsert(&app, &numbers)
            .with_context(|| format!("loading app {} from the configuration", app.app_key))?;
        crate::calls::route::warn_unapproved_app_tones(&store, &app);
        for warning in app.push_warnings() {
            tracing::warn!(app_key = %app.app_key, "{warning}");
        }
    }
    store.durable().await.context("flushing the configured apps")?;
    let pool = PoolConfig { threads: config.script_threads, queue_per_app: config.script_queue_per_app };
    let limits = Limits { deadline: std::time::Duration::from_millis(config.script_deadline_ms), ..Limits::default() };
    let scripts = ScriptHost::load_with(&config.scripts_dir, limits, pool)
        .with_context(|| format!("loading the scripts in {}", config.scripts_dir.display()))?;
    for version in store.rulesets().all_active().context("reading the active rule sets")? {
        crate::calls::route::load_active_ruleset(&store, &scripts, &version.app_key)
            .with_context(|| format!("loading app {}'s rule set", version.app_key))?;
    }
    let store = Arc::new(store);
    let config = Arc::new(config);
    let sessions = Arc::new(Sessions::default());
    let step = std::time::Instant::now();
    let saved: Vec<Session> = store.calls().sessions().context("reading the sessions of calls under way")?;
    startup.calls = saved.len();
    sessions.restore(saved);
    startup.calls_restore = step.elapsed();
    let step = std::time::Instant::now();
    let client = crate::push::client(&config)?;
    let pusher = Pusher::new(store.calls().clone(), store.apps().clone(), config.clone(), client, stop);
    pusher.resume().context("resuming the pushes waiting in the outbox")?;
    startup.pushes_resume = step.elapsed();
    startup.total = started.elapsed();
    tracing::info!(
        seconds = startup.total.as_secs_f64(),
        store_open_seconds = startup.store_open.as_secs_f64(),
        calls_restored = startup.calls,
        calls_restore_seconds = startup.calls_restore.as_secs_f64(),
        pushes_resume_seconds = startup.pushes_resume.as_secs_f64(),
        "store opened, calls under way restored, pushes resumed"
    );
    let ledger = Ledger {
        calls: store.calls().clone(),
        sessions,
        pusher,
        node_name: config.node_name.clone(),
        apps: store.apps().clone(),
        record_domain: config.record_domain.clone(),
    };
    let metrics = Arc::new(Metrics::default());
    let scripts = Arc::new(scripts);
    let switchboard =
        Switchboard::new(store.clone(), ledger, scripts.clone(), metrics.clone(), clock.clone(), config.clone());
    let throttle =
        Arc::new(crate::http::throttle::AuthThrottle::new(config.auth_failures_burst, config.auth_failures_per_minute));
    Ok((AppState { store, config, clock, metrics, scripts, switchboard, throttle }, startup))
}

/// Ended and stale sessions, expired bindings and old nonces, swept, and newly accepted nonces
/// written to sled, until `stop` changes.
async fn sweep(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        // While the store is faulted every sweep's writes would be refused: the recovery
        // thread brings it back, and the next tick sweeps what is due.
        if state.store.fault().is_some() {
            continue;
        }
        let now = state.clock.now();
        let skew = i64::try_from(state.config.auth_max_skew_secs).unwrap_or(i64::MAX);
        let store = state.store.clone();
        let switchboard = state.switchboard.clone();
        // The sweep takes the writer lock and writes sessions: keep it off the async workers.
        let swept = tokio::task::spawn_blocking(move || {
            switchboard.sweep();
            let axb = store.bindings().axb_sweep_expired(now, SWEEP_BATCH);
            let axe = store.bindings().axe_sweep_expired(now, SWEEP_BATCH);
            let bindings = axb.and_then(|axb| axe.map(|axe| axb + axe));
            // Each apart: one failing must not keep the others from being swept.
            if let Err(err) = store.data().sweep_expired(now, SWEEP_BATCH) {
                tracing::error!(error = %err, "sweeping expired customer data failed; will retry");
            }
            let counted_since = now.saturating_sub(crate::store::ANSWERED_RETENTION_SECS);
            if let Err(err) = store.calls().sweep_answered(counted_since, SWEEP_BATCH) {
                tracing::error!(error = %err, "forgetting old answered calls failed; will retry");
            }
            let persisted = store.nonces().persist();
            let forgotten = store.nonces().forget_before(now.saturating_sub(skew.saturating_mul(2)));
            (bindings, persisted.and(forgotten))
        })
        .await;
        match swept {
            Ok((Ok(count), Ok(_))) => BindingsExpired { count }.emit(&state.metrics),
            Ok((bindings, nonces)) => {
                if let Err(err) = bindings {
                    tracing::error!(error = %err, "sweeping expired bindings failed; will retry");
                }
                if let Err(err) = nonces {
                    tracing::error!(error = %err, "writing new nonces or sweeping old ones failed; will retry");
                }
            }
            Err(err) => tracing::error!(error = %err, "the sweep task failed; will retry"),
        }
    }
}

/// A server running in this process.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    pub startup: Startup,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, finishes in-flight requests, flushes and releases the store.
    pub async fn stop(self) -> anyhow::Result<()> {
        let Running { state, stop, tasks, .. } = self;
        let _ = stop.send(true);
        // A task that panicked is reported after the store is flushed, not instead of it.
        let mut panicked = None;
        for task in tasks {
            if let Err(err) = task.await {
                panicked.get_or_insert(err);
            }
        }
        // Queued call saves are applied (their callbacks may wake lanes) before the lanes are
        // awaited, so no lane starts after the wait and holds the store open.
        state.store.flush_now().context("flushing the store at shutdown")?;
        state.switchboard.pusher().stopped().await;
        // And what the lanes settled while they finished.
        state.store.flush_now().context("flushing the store at shutdown")?;
        match panicked {
            Some(err) => Err(anyhow::Error::new(err).context("a server task panicked")),
            None => Ok(()),
        }
    }

    /// Resolves when the server has stopped for any reason.
    pub async fn wait_for_signal(self) -> anyhow::Result<()> {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.stop().await
    }
}

/// Starts serving `config` on its `listen` address (port 0 picks a free port).
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    // Before the store opens, so a certificate problem is told at once.
    let tls = config.tls.as_ref().map(http::tls::load).transpose()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr().context("reading the listening address")?;
    let (stop, stopped) = watch::channel(false);
    let (state, startup) = prepare(config, clock, stopped.clone()).await?;
    let router = http::app(state.clone());
    let limits = connection_limits(&state.config);
    let server = tokio::spawn(http::listener::serve(
        listener,
        router,
        limits,
        tls.clone(),
        state.metrics.clone(),
        stopped.clone(),
    ));
    let watcher = crate::script::watch::spawn(state.scripts.clone(), stopped.clone())
        .with_context(|| format!("watching {} for changes", state.config.scripts_dir.display()))?;
    let sweeper = tokio::spawn(sweep(state.clone(), stopped));
    match &tls {
        Some(_) => tracing::info!(%addr, "privnum is listening (HTTPS only)"),
        None if !addr.ip().is_loopback() => tracing::warn!(
            %addr,
            "privnum is listening beyond loopback without TLS: signed provisioning requests can be read, and a signature seen on the way used for another request \
             within the skew window; set [tls] cert and key (README, Reliability and security)"
        ),
        None => tracing::info!(%addr, "privnum is listening (plain HTTP, loopback)"),
    }
    Ok(Running { addr, state, startup, stop, tasks: vec![server, sweeper, watcher] })
}

/// Connections to serve at once: the configured cap, lowered to what the open-file limit leaves
/// room for (after raising it as far as the system allows) with a warning when it must be.
fn connection_limits(config: &Config) -> http::listener::Limits {
    /// Descriptors kept for what is not a client connection: sled, the call log, the script
    /// watcher, outgoing pushes.
    const RESERVED_FILES: u64 = 256;
    let mut max_connections = config.max_connections;
    let open_files = http::listener::raise_open_file_limit();
    if let Some(open_files) = open_files {
        let room = usize::try_from(open_files.saturating_sub(RESERVED_FILES).max(1)).unwrap_or(usize::MAX);
        if room < max_connections {
            tracing::warn!(
                max_connections = config.max_connections,
                open_files,
                serving = room,
                "the open-file limit leaves room for fewer connections than max_connections; raise it (ulimit -n) to serve more"
            );
            max_connections = room;
        }
    }
    tracing::info!(open_files = ?open_files, max_connections, "connection limits");
    http::listener::Limits {
        idle_timeout: std::time::Duration::from_secs(config.http_idle_timeout_secs),
        max_connections,
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
