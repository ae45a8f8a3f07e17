//! Load harness: how fast privnum serves its APIs over real HTTP, at several concurrency levels.
//!
//! The server runs in this process (the same `privnum::server::start` that `privnum serve` runs)
//! on 127.0.0.1 with a fresh sled directory. Each simulated client is a tokio task sending requests
//! back to back over keep-alive connections. Client and server share the machine's cores and one
//! multi-threaded runtime, so the figures are a lower bound for a dedicated server.
//!
//! Each `--clients` level gets an unmeasured warm-up, then runs for `--seconds` or
//! `--max-requests` requests, whichever comes first, and prints one table row: requests, errors,
//! throughput, p50/p99/max latency and the process's resident memory at the end of the level.
//!
//! Subcommands:
//! - `binds`: AXB binds by area code (`POST /rest/caas/relationnumber/partners/v1.0`), each with a
//!   caller and callee no earlier bind used. A bind is acknowledged only once flushed to disk, so
//!   this measures group commit: throughput should grow with concurrency as one flush serves many
//!   binds.
//!
//! - `calls`: AXB callin decisions (`POST /v1/switch/calls`) from callers with a binding, after
//!   loading `--bindings` bindings straight into the store. Each answer must be a connect.
//!
//! - `complete`: whole calls — callin, callout, alerting, answer, disconnect — each event durable
//!   before its answer, with call events and CDRs pushed to a receiver in this process; after each
//!   level it waits until every CDR has arrived and reports calls per second up to the last one.
//!   Each level first runs the JSON echo at the same concurrency: a complete call is ten HTTP
//!   exchanges (five from the switch, five pushes), so echo ÷ 10 is what HTTP alone would allow.
//!
//! - `scale`: callin decisions with `--small` bindings, then with `--large` (loaded in the store
//!   directly) right after loading them, then a timed restart (with its steps: store open, calls
//!   restored, pushes resumed) and the same load again; prints the p99 ratios. The calls these
//!   levels make are never ended, so they are among the calls the restart restores.
//!
//! - `reloads`: callin decisions steady, then while the AXB script (a copy) is edited and saved
//!   `--reloads` times, each time waiting until the new version answers; prints save → live and
//!   each reload's read, compile, swap and test-case times.
//!
//! - `deliveries`: whole calls at a fixed `--rate` for `--seconds`, their events and CDRs pushed to
//!   a receiver in this process that answers each push after `--receiver-delay-ms`, and can be
//!   down (answering 503) from `--receiver-off-at` for `--receiver-off-for` seconds. Prints, per
//!   second, calls started, events acknowledged and memory; then each event's delivery lag (from
//!   the switch's report to the receiver's acknowledgement) p50/p99/max, the drain time after the
//!   load stopped (until the last event and CDR are acknowledged), calls whose events arrived out
//!   of order, and memory before, during and after.
//! - `hostile`: AXB callin decisions from `--clients` bound callers, alone and then while
//!   `--hostile` more clients call at full rate from one caller number for which the server's
//!   script (a copy, edited by the harness; the repository's scripts have no such branch) loops
//!   until its deadline stops it; prints the other calls' p50/p99 and throughput with and
//!   without it, their ratios, and what the hostile caller got.
//! - `xmode`: X-mode callins (each a Block push to a customer in this process that answers
//!   `connect` after `--customer-delay-ms`), AXB callins, POSTs straight to the customer, and
//!   X-mode callins of another app whose rule set decides them from customer data (`on_x_callin`,
//!   no push), at each `--clients` level; prints the four, the time privnum adds to the
//!   customer's (X-mode p50 minus the customer's own) beside an AXB decision's p50, and how much
//!   faster the rule set's decision is than the customer's.
//! - `crash`: the crash loop (`load_modes/crash.rs`): the `privnum` binary killed with SIGKILL
//!   every few seconds under binds and whole calls, then checked for anything acknowledged and
//!   lost. Needs `cargo build --release` first; `.ci/crash-loop` runs it.
//!
//! Run: `cargo run --release --example load -- binds --clients 1,16,64 --seconds 5`
//! and  `cargo run --release --example load -- calls --bindings 100000 --clients 4,64 --seconds 5`
//! and  `cargo run --release --example load -- complete --clients 16,64 --seconds 5`
//! and  `cargo run --release --example load -- scale --clients 4,64 --seconds 5 --max-requests 1000000`
//! and  `cargo run --release --example load -- reloads --clients 4,64 --seconds 25 --max-requests 2000000`
//! and  `cargo run --release --example load -- deliveries --rate 500 --seconds 20 --receiver-delay-ms 20`
//! and  `cargo run --release --example load -- xmode --clients 4,64 --seconds 5 --customer-delay-ms 20`
//! and  `cargo run --release --example load -- hostile --clients 16 --hostile 1,4 --seconds 5 --max-requests 1000000`

#[path = "load_modes/crash.rs"]
mod crash;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Parser, Subcommand};
use privnum::auth::{self, Scheme};
use privnum::clock::SystemClock;
use privnum::config::{AppConfig, Config, NumberConfig};
use privnum::domain::{Mode, NumberStatus};
use privnum::server::{self, Running};
use privnum::store::{CallLogStats, FlushStats};
use reqwest::RequestBuilder;
use serde_json::{json, Value};

const APP_KEY: &str = "load-app";
const APP_SECRET: &str = "load-secret";
const AREA_CODE: &str = "0755";
/// The first X number of the pool; the others follow it.
const FIRST_X: u64 = 8_617_000_000_000;

#[derive(Parser)]
#[command(about = "Measures privnum over real HTTP at several concurrency levels")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// AXB binds by area code, each with a new caller/callee pair.
    Binds(BindsArgs),
    /// AXB callin decisions from bound callers.
    Calls(CallsArgs),
    /// Whole calls with their events and CDRs delivered to a local receiver.
    Complete(CallsArgs),
    /// Callin decisions with few bindings, then with many; start-up with the many.
    Scale(ScaleArgs),
    /// Callin decisions steady, then while the AXB script is edited and reloaded again and again.
    Reloads(ReloadsArgs),
    /// Whole calls at a fixed rate, pushed to a receiver that answers after a delay (and can be
    /// down for a while): each event's delivery lag, the drain time and memory.
    Deliveries(DeliveriesArgs),
    /// Callin decisions alone, then beside a caller whose script runs until its deadline.
    Hostile(HostileArgs),
    /// X-mode callins decided by a customer in this process that answers after a delay, beside
    /// AXB callins at the same concurrency: what privnum adds to the customer's time.
    Xmode(XmodeArgs),
    /// The crash loop: binds and whole calls while the `privnum` binary is killed with SIGKILL
    /// and restarted again and again; checks nothing acknowledged was lost (`load_modes/crash.rs`).
    Crash(crash::CrashArgs),
}

#[derive(Args)]
struct DeliveriesArgs {
    /// Complete calls started per second (open loop: at this rate whatever the answers take).
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// How long calls are started for, in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// The receiver answers each push this long after it arrived.
    #[arg(long, default_value_t = 20)]
    receiver_delay_ms: u64,
    /// The receiver is down (answers 503 at once) from this second of the run…
    #[arg(long)]
    receiver_off_at: Option<f64>,
    /// …for this many seconds.
    #[arg(long, default_value_t = 0.0)]
    receiver_off_for: f64,
    /// The app's `push_max_in_flight` (default: privnum's).
    #[arg(long)]
    in_flight: Option<usize>,
    /// Bindings loaded before the run; calls dial from them round robin.
    #[arg(long, default_value_t = 10_000)]
    bindings: u64,
    /// The longest wait for the last pushes after the load stops, in seconds.
    #[arg(long, default_value_t = 600.0)]
    drain_limit: f64,
    /// Where to create the temporary data directory (default: the system's temp directory).
    #[arg(long)]
    data_parent: Option<PathBuf>,
}

#[derive(Args)]
struct XmodeArgs {
    #[command(flatten)]
    levels: LevelArgs,
    /// The customer answers each Block callin this long after it arrived.
    #[arg(long, default_value_t = 20)]
    customer_delay_ms: u64,
    /// AXB bindings loaded for the comparison's callins.
    #[arg(long, default_value_t = 10_000)]
    bindings: u64,
}

#[derive(Args)]
struct HostileArgs {
    #[command(flatten)]
    levels: LevelArgs,
    #[arg(long, default_value_t = 10_000)]
    bindings: u64,
    /// Clients calling from the hostile caller number at once, comma-separated: one round each.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    hostile: Vec<usize>,
}

#[derive(Args)]
struct ScaleArgs {
    #[command(flatten)]
    levels: LevelArgs,
    /// Bindings of the first round.
    #[arg(long, default_value_t = 10_000)]
    small: u64,
    /// Bindings of the second round (loaded directly in the store; about 75 µs each).
    #[arg(long, default_value_t = 1_000_000)]
    large: u64,
}

#[derive(Args)]
struct ReloadsArgs {
    #[command(flatten)]
    levels: LevelArgs,
    #[arg(long, default_value_t = 10_000)]
    bindings: u64,
    /// Reloads to make while the load runs (each waits until the edit is live).
    #[arg(long, default_value_t = 100)]
    reloads: usize,
}

#[derive(Args)]
struct CallsArgs {
    #[command(flatten)]
    levels: LevelArgs,
    /// Bindings loaded before the run (each X holds 5000).
    #[arg(long, default_value_t = 100_000)]
    bindings: u64,
}

#[derive(Args)]
struct BindsArgs {
    #[command(flatten)]
    levels: LevelArgs,
    /// X numbers in the app's pool, all in area 0755 (each holds at most 5000 pairs).
    #[arg(long, default_value_t = 200)]
    numbers: u64,
}

/// The options every subcommand shares: which levels to run and for how long.
#[derive(Args)]
struct LevelArgs {
    /// Concurrency levels, comma-separated; one table row each.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// How long each level is measured, in seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// The most requests one level sends.
    #[arg(long, default_value_t = 200_000)]
    max_requests: u64,
    /// Unmeasured warm-up before each level, in seconds.
    #[arg(long, default_value_t = 0.5)]
    warmup_seconds: f64,
    /// Where to create the temporary data directory (default: the system's temp directory).
    #[arg(long)]
    data_parent: Option<PathBuf>,
}

/// The validated run plan of a subcommand.
struct Plan {
    clients: Vec<usize>,
    warmup: Limits,
    measured: Limits,
}

impl LevelArgs {
    fn plan(&self) -> anyhow::Result<Plan> {
        if self.clients.is_empty() || self.clients.contains(&0) {
            bail!("--clients needs one or more levels, each at least 1");
        }
        if self.max_requests == 0 {
            bail!("--max-requests must be at least 1");
        }
        let seconds = |value: f64, name: &str| {
            Duration::try_from_secs_f64(value).with_context(|| format!("--{name} {value} is not a duration"))
        };
        let measured = Limits { duration: seconds(self.seconds, "seconds")?, max_requests: self.max_requests };
        if measured.duration.is_zero() {
            bail!("--seconds must be above 0");
        }
        let warmup =
            Limits { duration: seconds(self.warmup_seconds, "warmup-seconds")?, max_requests: self.max_requests };
        Ok(Plan { clients: self.clients.clone(), warmup, measured })
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Binds(args) => run_binds(args).await,
        Command::Calls(args) => run_calls(args).await,
        Command::Complete(args) => run_complete(args).await,
        Command::Scale(args) => run_scale(args).await,
        Command::Reloads(args) => run_reloads(args).await,
        Command::Deliveries(args) => run_deliveries(args).await,
        Command::Hostile(args) => run_hostile(args).await,
        Command::Xmode(args) => run_xmode(args).await,
        Command::Crash(args) => crash::run(args).await,
    }
}

/// The hostile branch: endless, and slow per operation (each pads an array to 1,000 items), so
/// the deadline stops it rather than the operations limit (a bare `loop {}` reaches 100,000
/// operations in a millisecond or two).
const SLOW_LOOP: &str = "let n = 0; loop { let a = []; a.pad(1000, n); n += 1; }";

/// The caller number the harness's script copy loops for.
const HOSTILE_CALLER: &str = "+8613666666601";

/// Normal callins alone, then beside hostile clients, at each level.
async fn run_hostile(args: HostileArgs) -> anyhow::Result<()> {
    let plan = args.levels.plan()?;
    if args.hostile.is_empty() || args.hostile.contains(&0) {
        bail!("--hostile needs one or more counts, each at least 1");
    }
    let per_x = u64::from(Config::default().axb_max_pairs_per_x);
    let app = axb_app(args.bindings.div_ceil(per_x).max(1));
    let server = Server::start_with(vec![app], args.levels.data_parent.as_deref(), true, |_| {}).await?;
    let path = server.config.scripts_dir.join("modes/axb.rhai");
    let text = std::fs::read_to_string(&path).context("reading the script copy")?;
    let anchor = "    let binding = callin.binding;";
    if !text.contains(anchor) {
        bail!("{}: the line the hostile branch goes before is gone: {anchor:?}", path.display());
    }
    let branch = format!("    if callin.caller == \"{HOSTILE_CALLER}\" {{ {SLOW_LOOP} }}\n{anchor}");
    std::fs::write(&path, text.replacen(anchor, &branch, 1)).context("editing the script copy")?;
    let scripts = server.running.state.scripts.clone();
    let outcome = tokio::task::spawn_blocking(move || scripts.reload()).await.context("the reload task")?;
    if !matches!(outcome, privnum::script::ReloadOutcome::Reloaded { .. }) {
        bail!("the hostile script copy did not load: {outcome:?}");
    }
    print_header(
        &server,
        &format!("AXB callin decisions, alone and beside a caller whose script loops ({HOSTILE_CALLER})"),
    );
    let pairs = preload(&server, args.bindings).await?;
    let x = pairs[0].1.clone();
    let caller = Arc::new(Caller::new(&server.base, pairs)?);
    let hostile = Arc::new(Caller::new(&server.base, vec![(HOSTILE_CALLER.to_owned(), x)])?);
    let table = Table::new("calls/s");
    print!("{:>9} ", "");
    table.print_header();
    for &clients in &plan.clients {
        let caller_op = caller.clone();
        let op = move || {
            let caller = caller_op.clone();
            async move { caller.call().await }
        };
        if !plan.warmup.duration.is_zero() {
            drive(op.clone(), clients, plan.warmup).await?;
        }
        let alone = drive(op.clone(), clients, plan.measured).await?;
        print!("{:>9} ", "alone");
        table.print_row(&alone, rss_kib());
        for &hostiles in &args.hostile {
            let hostile_op = {
                let hostile = hostile.clone();
                move || {
                    let hostile = hostile.clone();
                    async move { hostile.fallback().await }
                }
            };
            let (beside, bad) =
                tokio::join!(drive(op.clone(), clients, plan.measured), drive(hostile_op, hostiles, plan.measured));
            let (beside, bad) = (beside?, bad?);
            print!("{:>9} ", format!("+{hostiles} hostile"));
            table.print_row(&beside, rss_kib());
            print!("{:>9} ", "(hostile)");
            table.print_row(&bad, None);
            let ratio = |p: f64| {
                beside.percentile_us(p).unwrap_or_default() as f64 / alone.percentile_us(p).unwrap_or(1).max(1) as f64
            };
            println!(
                "          with {hostiles} hostile: other calls' p50 {:.2} ×, p99 {:.2} ×, throughput {:.2} × alone; failed {}",
                ratio(0.5),
                ratio(0.99),
                beside.rate() / alone.rate().max(1e-9),
                beside.log.errors
            );
            if let Some(error) = beside.log.first_error.as_ref().or(bad.log.first_error.as_ref()) {
                println!("          first error: {error}");
            }
        }
    }
    server.stop().await
}

/// Callin decisions, each level measured against `POST /v1/switch/echo` on the same server in the
/// same run: the ratio says how much of HTTP's own rate privnum's work leaves.
async fn run_calls(args: CallsArgs) -> anyhow::Result<()> {
    let plan = args.levels.plan()?;
    let (server, caller) = start_with_bindings(&args, None).await?;
    print_header(
        &server,
        &format!("AXB callin decisions; {} bindings; each level after a JSON echo baseline", args.bindings),
    );
    let table = Table::new("req/s");
    print!("{:>5} ", "");
    table.print_header();
    for &clients in &plan.clients {
        let caller = caller.clone();
        let op = move |variant: usize| {
            let caller = caller.clone();
            async move {
                if variant == 0 {
                    caller.echo().await
                } else {
                    caller.call().await
                }
            }
        };
        let samples = compare(op, &["echo", "call"], Some("call"), clients, &plan, &table, &server).await?;
        println!("           callin / echo throughput: {:.2}", samples[1].rate() / samples[0].rate().max(1e-9));
    }
    server.stop().await
}

async fn run_complete(args: CallsArgs) -> anyhow::Result<()> {
    let plan = args.levels.plan()?;
    let receiver = CdrReceiver::start().await?;
    let (server, caller) = start_with_bindings(&args, Some(&receiver.base)).await?;
    print_header(
        &server,
        &format!("complete AXB calls (callin + 4 events, CDR delivered); {} bindings", args.bindings),
    );
    let table = Table::new("calls/s");
    print!("{:>5} ", "");
    table.print_header();
    for &clients in &plan.clients {
        // The most complete calls HTTP alone would allow: each is EXCHANGES_PER_CALL requests,
        // and this machine serves (and sends) that many echoes a second.
        let echo_op = {
            let caller = caller.clone();
            move || {
                let caller = caller.clone();
                async move { caller.echo().await }
            }
        };
        if !plan.warmup.duration.is_zero() {
            drive(echo_op.clone(), clients, plan.warmup).await?;
        }
        let echo = drive(echo_op, clients, plan.measured).await?;
        print!("{:>5} ", "echo");
        table.print_row(&echo, rss_kib());
        let (before, events_before) = (receiver.cdrs(), receiver.events());
        let started = Instant::now();
        let caller_op = caller.clone();
        let op = move || {
            let caller = caller_op.clone();
            async move { caller.complete().await }
        };
        let disk = server.disk_stats();
        let sample = drive(op, clients, plan.measured).await?;
        print!("{:>5} ", "call");
        table.print_row(&sample, rss_kib());
        print_disk(disk, server.disk_stats(), sample.elapsed);
        let completed = sample.log.latencies_us.len() as u64 - sample.log.errors;
        let expected = before + completed;
        let events_expected = events_before + completed * EVENTS_PER_CALL;
        let (delivered, events) = receiver.wait_for(expected, events_expected, Duration::from_secs(60)).await;
        let took = started.elapsed().as_secs_f64();
        println!(
            "           {} of {} CDRs and {} of {} events delivered, the last {:.1} s after the level began: {:.0} complete calls/s",
            delivered - before,
            expected - before,
            events - events_before,
            events_expected - events_before,
            took,
            (delivered - before).min((events - events_before) / EVENTS_PER_CALL) as f64 / took
        );
        let ceiling = echo.rate() / EXCHANGES_PER_CALL;
        println!(
            "           HTTP alone allows {ceiling:.0} calls/s ({:.0} echoes/s over {EXCHANGES_PER_CALL} exchanges a call): complete calls reach {:.2} of it",
            echo.rate(),
            sample.rate() / ceiling.max(1e-9)
        );
        if let Some(error) = &sample.log.first_error {
            println!("           first error: {error}");
        }
    }
    server.stop().await
}

/// The HTTP exchanges of one complete call: the callin and four events from the switch, and the
/// five call events privnum pushes (one per POST); the CDR push carries up to 50 calls, so it is
/// left out.
const EXCHANGES_PER_CALL: f64 = 10.0;

/// The call events privnum pushes for one complete call: callin, callout, alerting, answer,
/// disconnect.
const EVENTS_PER_CALL: u64 = 5;

/// A customer endpoint in this process: counts CDR items and events, and acknowledges every push.
struct CdrReceiver {
    base: String,
    cdrs: Arc<AtomicU64>,
    events: Arc<AtomicU64>,
}

impl CdrReceiver {
    async fn start() -> anyhow::Result<CdrReceiver> {
        let (cdrs, events) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let counters = (cdrs.clone(), events.clone());
        let router = axum::Router::new().fallback(axum::routing::post(move |body: axum::Json<Value>| {
            let (cdrs, events) = counters.clone();
            async move {
                match body.0["feeLst"].as_array() {
                    Some(items) => cdrs.fetch_add(items.len() as u64, Ordering::Relaxed),
                    None => events.fetch_add(1, Ordering::Relaxed),
                };
                axum::http::StatusCode::OK
            }
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the receiver")?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(CdrReceiver { base, cdrs, events })
    }

    fn cdrs(&self) -> u64 {
        self.cdrs.load(Ordering::Relaxed)
    }

    fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Waits (at most `limit`) until `cdrs` CDRs and `events` events have arrived; returns how
    /// many did.
    async fn wait_for(&self, cdrs: u64, events: u64, limit: Duration) -> (u64, u64) {
        let start = Instant::now();
        while (self.cdrs() < cdrs || self.events() < events) && start.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (self.cdrs(), self.events())
    }
}

/// A server whose app has room for `--bindings` pairs, all loaded, pushing to `receiver` (its
/// `/events` and `/cdr`) when given; and a caller that dials from the bound numbers.
async fn start_with_bindings(args: &CallsArgs, receiver: Option<&str>) -> anyhow::Result<(Server, Arc<Caller>)> {
    let per_x = u64::from(Config::default().axb_max_pairs_per_x);
    let mut app = axb_app(args.bindings.div_ceil(per_x).max(1));
    if let Some(base) = receiver {
        app.call_event_url = format!("{base}/events");
        app.cdr_url = format!("{base}/cdr");
    }
    let server = Server::start(vec![app], args.levels.data_parent.as_deref()).await?;
    let pairs = preload(&server, args.bindings).await?;
    let caller = Arc::new(Caller::new(&server.base, pairs)?);
    Ok((server, caller))
}

/// Binds `count` pairs directly in the store (not over HTTP), printing progress; returns each
/// pair's caller and X.
async fn preload(server: &Server, count: u64) -> anyhow::Result<Vec<(String, String)>> {
    preload_range(server, 0, count).await
}

/// Binds the pairs numbered `from..to`, as [`preload`] does.
async fn preload_range(server: &Server, from: u64, to: u64) -> anyhow::Result<Vec<(String, String)>> {
    let count = to;
    let store = server.running.state.store.clone();
    let app = store.apps().get(APP_KEY)?.context("the load app is configured")?;
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut pairs = Vec::new();
        for n in from..to {
            let request = privnum::domain::axb::AxbBindRequest {
                x: privnum::domain::XSelection::Area { area_code: AREA_CODE.into(), lenient: false },
                caller_num: format!("+86138{n:08}"),
                callee_num: format!("+86139{n:08}"),
                settings: privnum::domain::axb::AxbChanges::default(),
            };
            let binding = store.bindings().axb_bind(&app, &request, chrono::Utc::now().timestamp(), 5000)?;
            pairs.push((binding.caller_num, binding.x_number));
            if (n + 1) % 50_000 == 0 || n + 1 == count {
                eprintln!("loaded {} of {count} bindings ({:.1} s)", n + 1, started.elapsed().as_secs_f64());
            }
        }
        store.flush_now()?;
        anyhow::Ok(pairs)
    })
    .await
    .context("the preload task")?
}

/// Sends callins from bound callers, round robin.
struct Caller {
    client: reqwest::Client,
    url: String,
    echo_url: String,
    token: String,
    pairs: Vec<(String, String)>,
    next: AtomicU64,
}

impl Caller {
    fn new(base: &str, pairs: Vec<(String, String)>) -> anyhow::Result<Caller> {
        if pairs.is_empty() {
            bail!("--bindings must be at least 1");
        }
        let token = Config::default().switch_token;
        Ok(Caller {
            client: http_client()?,
            url: format!("{base}/v1/switch/calls"),
            echo_url: format!("{base}/v1/switch/echo"),
            token,
            pairs,
            next: AtomicU64::new(0),
        })
    }

    async fn call(&self) -> Outcome {
        let n = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        let (caller, x) = &self.pairs[n % self.pairs.len()];
        let request =
            self.client.post(&self.url).bearer_auth(&self.token).json(&json!({"caller": caller, "called": x}));
        let response = request.send().await.map_err(|err| err.to_string())?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|err| format!("HTTP {status}: {err}"))?;
        if status != reqwest::StatusCode::OK || body["action"] != "connect" {
            return Err(format!("HTTP {status}: {body}"));
        }
        Ok(())
    }

    /// A callin that must get the fallback (release 8020): the hostile caller's.
    async fn fallback(&self) -> Outcome {
        let (caller, x) = &self.pairs[0];
        let request =
            self.client.post(&self.url).bearer_auth(&self.token).json(&json!({"caller": caller, "called": x}));
        let response = request.send().await.map_err(|err| err.to_string())?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|err| format!("HTTP {status}: {err}"))?;
        if status != reqwest::StatusCode::OK || body["action"] != "release" || body["stateCode"] != 8020 {
            return Err(format!("hostile: HTTP {status}: {body}"));
        }
        Ok(())
    }

    /// The JSON echo route with a body the size of a callin's: HTTP and JSON, no privnum work.
    async fn echo(&self) -> Outcome {
        let n = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        let (caller, x) = &self.pairs[n % self.pairs.len()];
        let body = json!({"caller": caller, "called": x});
        let response = self.client.post(&self.echo_url).bearer_auth(&self.token).json(&body).send().await;
        let response = response.map_err(|err| err.to_string())?;
        let status = response.status();
        let echoed: Value = response.json().await.map_err(|err| format!("HTTP {status}: {err}"))?;
        if status != reqwest::StatusCode::OK || echoed != body {
            return Err(format!("echo: HTTP {status}: {echoed}"));
        }
        Ok(())
    }

    /// A whole call: the callin, then the four events of an answered call.
    async fn complete(&self) -> Outcome {
        let n = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        let (caller, x) = &self.pairs[n % self.pairs.len()];
        let session = format!("load-{n}-{}", std::process::id());
        let body = json!({"caller": caller, "called": x, "sessionId": session});
        let response = self.client.post(&self.url).bearer_auth(&self.token).json(&body).send().await;
        let response = response.map_err(|err| err.to_string())?;
        if !response.status().is_success() {
            return Err(format!("callin: HTTP {}", response.status()));
        }
        for event in ["callout", "alerting", "answer", "disconnect"] {
            let url = format!("{}/{session}/events", self.url);
            let body = json!({"event": event, "stateCode": 0, "releaseSide": "caller"});
            let response = self.client.post(url).bearer_auth(&self.token).json(&body).send().await;
            let status = response.map_err(|err| err.to_string())?.status();
            if !status.is_success() {
                return Err(format!("{event}: HTTP {status}"));
            }
        }
        Ok(())
    }
}

async fn run_binds(args: BindsArgs) -> anyhow::Result<()> {
    let plan = args.levels.plan()?;
    let server = Server::start(vec![axb_app(args.numbers)], args.levels.data_parent.as_deref()).await?;
    let capacity = args.numbers * u64::from(Config::default().axb_max_pairs_per_x);
    print_header(
        &server,
        &format!("AXB binds by area code {AREA_CODE}; {} X numbers, room for {capacity} pairs", args.numbers),
    );
    let binder = Arc::new(Binder::new(&server.base)?);
    let bind = move || {
        let binder = binder.clone();
        async move { binder.bind().await }
    };
    let result = run_levels(bind, &plan, "binds/s", &server).await;
    server.stop().await?;
    result
}

/// Runs every level of `plan` with `op`, printing a row as each level ends.
async fn run_levels<F, Fut>(op: F, plan: &Plan, rate_name: &'static str, server: &Server) -> anyhow::Result<()>
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let table = Table::new(rate_name);
    table.print_header();
    let mut failures = Vec::new();
    for &clients in &plan.clients {
        if !plan.warmup.duration.is_zero() {
            drive(op.clone(), clients, plan.warmup).await?;
        }
        let disk = server.disk_stats();
        let sample = drive(op.clone(), clients, plan.measured).await?;
        table.print_row(&sample, rss_kib());
        print_disk(disk, server.disk_stats(), sample.elapsed);
        if let Some(error) = &sample.log.first_error {
            failures.push(format!("{clients} clients, first error: {error}"));
        }
    }
    for failure in failures {
        println!("{failure}");
    }
    Ok(())
}

/// The privnum server under test, in this process, with its temporary data directory.
struct Server {
    running: Running,
    config: Config,
    base: String,
    data_dir: PathBuf,
    /// Deleted on drop, after `stop` released the store.
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(apps: Vec<AppConfig>, parent: Option<&Path>) -> anyhow::Result<Server> {
        Server::start_with(apps, parent, false, |_| {}).await
    }

    /// With the configuration changed by `configure` before the start.
    async fn start_configured(
        apps: Vec<AppConfig>,
        parent: Option<&Path>,
        configure: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Server> {
        Server::start_with(apps, parent, false, configure).await
    }

    /// With `own_scripts`, the server runs a copy of the repository's scripts (in its temporary
    /// directory), which the harness may edit.
    async fn start_with(
        apps: Vec<AppConfig>,
        parent: Option<&Path>,
        own_scripts: bool,
        configure: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Server> {
        let dir = match parent {
            Some(parent) => tempfile::tempdir_in(parent),
            None => tempfile::tempdir(),
        }
        .context("creating the temporary data directory")?;
        let data_dir = dir.path().join("data");
        let listen = ([127, 0, 0, 1], 0).into();
        let mut scripts_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts");
        if own_scripts {
            let copy = dir.path().join("scripts");
            copy_dir(&scripts_dir, &copy).context("copying the scripts")?;
            scripts_dir = copy;
        }
        let mut config = Config { listen, data_dir: data_dir.clone(), scripts_dir, apps, ..Config::default() };
        configure(&mut config);
        config
            .validate()
            .map_err(|(key, reason)| anyhow!("the load-test configuration is invalid: {key}: {reason}"))?;
        let running = server::start(config.clone(), Arc::new(SystemClock)).await.context("starting the server")?;
        let base = format!("http://{}", running.addr);
        Ok(Server { running, config, base, data_dir, _dir: dir })
    }

    /// Stops the server and starts it again on the same data; returns it and how long the start
    /// took (opening the store, rebuilding the pools, restoring the calls under way).
    async fn restart(self) -> anyhow::Result<(Server, Duration)> {
        let Server { running, config, data_dir, _dir, .. } = self;
        running.stop().await.context("stopping the server")?;
        let started = Instant::now();
        let running = server::start(config.clone(), Arc::new(SystemClock)).await.context("restarting the server")?;
        let took = started.elapsed();
        let base = format!("http://{}", running.addr);
        Ok((Server { running, config, base, data_dir, _dir }, took))
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.running.stop().await.context("stopping the server")
    }

    fn disk_stats(&self) -> DiskStats {
        let store = &self.running.state.store;
        DiskStats { flush: store.flush_stats(), log: store.call_log_stats() }
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        let target = to.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            copy_dir(&path, &target)?;
        } else {
            std::fs::copy(&path, &target)?;
        }
    }
    Ok(())
}

/// Callin decisions at `--small` bindings, then at `--large`, after a restart that is timed.
async fn run_scale(args: ScaleArgs) -> anyhow::Result<()> {
    let plan = args.levels.plan()?;
    if args.large < args.small || args.small == 0 {
        bail!("--large must be at least --small, and --small at least 1");
    }
    let per_x = u64::from(Config::default().axb_max_pairs_per_x);
    let app = axb_app(args.large.div_ceil(per_x).max(1));
    let server = Server::start(vec![app], args.levels.data_parent.as_deref()).await?;
    print_header(&server, &format!("AXB callin decisions with {} bindings, then {}", args.small, args.large));
    let mut pairs = preload(&server, args.small).await?;
    let small = measure_calls(&server, pairs.clone(), &plan, &format!("{}", args.small)).await?;
    pairs.extend(preload_range(&server, args.small, args.large).await?);
    // Right after loading them, in the same process: sled has them in memory as written.
    let loaded = measure_calls(&server, pairs.clone(), &plan, &format!("{} (just loaded)", args.large)).await?;
    let (server, start_up) = server.restart().await?;
    let steps = server.running.startup;
    println!(
        "\nstart-up with {} bindings: {:.2} s: store open {:.2} s, {} calls under way restored in {:.2} s, \
         pushes resumed in {:.2} s; RSS {}",
        args.large,
        start_up.as_secs_f64(),
        steps.store_open.as_secs_f64(),
        steps.calls,
        steps.calls_restore.as_secs_f64(),
        steps.pushes_resume.as_secs_f64(),
        rss_kib().map_or_else(|| "n/a".to_owned(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0)),
    );
    // After the restart: sled reads the bindings back from disk as the calls ask for them.
    let large = measure_calls(&server, pairs, &plan, &format!("{} (after a restart)", args.large)).await?;
    println!();
    for (round, measured) in [("just loaded", &loaded), ("after a restart", &large)] {
        for ((clients, small_p99), (_, large_p99)) in small.iter().zip(measured.iter()) {
            println!(
                "{clients} clients: p99 {} with {} bindings, {} with {} ({round}): {:.2} ×",
                show_latency(Some(*small_p99)),
                args.small,
                show_latency(Some(*large_p99)),
                args.large,
                *large_p99 as f64 / (*small_p99).max(1) as f64
            );
        }
    }
    server.stop().await
}

/// One table of callin decisions, a row per level; returns each level's p99 in µs.
async fn measure_calls(
    server: &Server,
    pairs: Vec<(String, String)>,
    plan: &Plan,
    label: &str,
) -> anyhow::Result<Vec<(usize, u64)>> {
    let caller = Arc::new(Caller::new(&server.base, pairs)?);
    let table = Table::new("calls/s");
    println!("\n{label} bindings:");
    table.print_header();
    let mut p99s = Vec::new();
    for &clients in &plan.clients {
        let caller = caller.clone();
        let op = move || {
            let caller = caller.clone();
            async move { caller.call().await }
        };
        if !plan.warmup.duration.is_zero() {
            drive(op.clone(), clients, plan.warmup).await?;
        }
        let sample = drive(op, clients, plan.measured).await?;
        table.print_row(&sample, rss_kib());
        if let Some(error) = &sample.log.first_error {
            println!("           first error: {error}");
        }
        p99s.push((clients, sample.percentile_us(0.99).unwrap_or_default()));
    }
    Ok(p99s)
}

/// Callin decisions steady, then while `modes/axb.rhai` is edited `--reloads` times, each edit
/// waited for until it is live.
async fn run_reloads(args: ReloadsArgs) -> anyhow::Result<()> {
    let plan = args.levels.plan()?;
    let per_x = u64::from(Config::default().axb_max_pairs_per_x);
    let app = axb_app(args.bindings.div_ceil(per_x).max(1));
    let server = Server::start_with(vec![app], args.levels.data_parent.as_deref(), true, |_| {}).await?;
    print_header(&server, &format!("AXB callin decisions, steady and during {} script reloads", args.reloads));
    let pairs = preload(&server, args.bindings).await?;
    let caller = Arc::new(Caller::new(&server.base, pairs)?);
    let table = Table::new("calls/s");
    print!("{:>9} ", "");
    table.print_header();
    for &clients in &plan.clients {
        let caller_op = caller.clone();
        let op = move || {
            let caller = caller_op.clone();
            async move { caller.call().await }
        };
        if !plan.warmup.duration.is_zero() {
            drive(op.clone(), clients, plan.warmup).await?;
        }
        let steady = drive(op.clone(), clients, plan.measured).await?;
        print!("{:>9} ", "steady");
        table.print_row(&steady, rss_kib());
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let editor = tokio::spawn(edit_and_reload(
            server.running.state.scripts.clone(),
            server.config.scripts_dir.clone(),
            args.reloads,
            done.clone(),
        ));
        let during = drive(op, clients, plan.measured).await?;
        done.store(true, Ordering::Relaxed);
        let report = editor.await.context("the editing task")??;
        print!("{:>9} ", "reloading");
        table.print_row(&during, rss_kib());
        let (steady_p99, during_p99) =
            (steady.percentile_us(0.99).unwrap_or_default(), during.percentile_us(0.99).unwrap_or_default());
        println!(
            "          {} reloads during the level; failed requests {}; p99 {:.2} × steady",
            report.save_to_live.len(),
            during.log.errors,
            during_p99 as f64 / steady_p99.max(1) as f64
        );
        println!("          save → live:  {}", report.summary(&report.save_to_live));
        println!("          read files:   {}", report.summary(&report.read));
        println!("          compile:      {}", report.summary(&report.compile));
        println!("          swap:         {}", report.summary(&report.swap));
        println!("          compile+swap: {}", report.summary(&report.compile_and_swap));
        println!("          test cases:   {} (before the swap, off the request path)", report.summary(&report.cases));
        if let Some(error) = &during.log.first_error {
            println!("          first error: {error}");
        }
        if report.save_to_live.len() < args.reloads {
            println!("          (the level ended before {} reloads; raise --seconds or --max-requests)", args.reloads);
        }
    }
    server.stop().await
}

/// What the editing task saw, in microseconds per reload.
#[derive(Default)]
struct ReloadReport {
    save_to_live: Vec<u64>,
    read: Vec<u64>,
    compile: Vec<u64>,
    compile_and_swap: Vec<u64>,
    cases: Vec<u64>,
    swap: Vec<u64>,
}

impl ReloadReport {
    fn summary(&self, values: &[u64]) -> String {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let at = |p: f64| sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied();
        format!("p50 {}, max {}", show_latency(at(0.5)), show_latency(sorted.last().copied()))
    }
}

/// Saves `modes/axb.rhai` with a new comment line, the way an editor does (write, then rename),
/// and waits until the server runs the new version; `reloads` times, or until `done`.
async fn edit_and_reload(
    scripts: Arc<privnum::script::ScriptHost>,
    dir: PathBuf,
    reloads: usize,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<ReloadReport> {
    let path = dir.join("modes/axb.rhai");
    let original = std::fs::read_to_string(&path).context("reading axb.rhai")?;
    let mut report = ReloadReport::default();
    for round in 0..reloads {
        if done.load(Ordering::Relaxed) {
            break;
        }
        let before = scripts.status().active;
        let temporary = path.with_extension("rhai.tmp~");
        std::fs::write(&temporary, format!("{original}\n// load harness edit {round}\n"))?;
        let saved = Instant::now();
        std::fs::rename(&temporary, &path)?;
        loop {
            let status = scripts.status();
            if status.active != before {
                report.save_to_live.push(saved.elapsed().as_micros() as u64);
                if let Some(times) = status.last_reload {
                    report.read.push(times.read_us);
                    report.compile.push(times.compile_us);
                    report.compile_and_swap.push(times.compile_us + times.swap_us);
                    report.cases.push(times.cases_us);
                    report.swap.push(times.swap_us);
                }
                break;
            }
            if saved.elapsed() > Duration::from_secs(5) {
                bail!("edit {round} was not live after 5 s (last error: {:?})", status.last_error);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    std::fs::write(&path, original)?;
    Ok(report)
}

/// An AXB app with `numbers` X numbers in [`AREA_CODE`].
fn axb_app(numbers: u64) -> AppConfig {
    let pool = (0..numbers)
        .map(|i| NumberConfig {
            number: format!("+{}", FIRST_X + i),
            area_code: AREA_CODE.into(),
            sms: true,
            status: NumberStatus::Normal,
        })
        .collect();
    let mut app = AppConfig::new(APP_KEY, APP_SECRET, Mode::Axb);
    app.scenario = "load".into();
    app.numbers = pool;
    app
}

/// What one request ended in: `Err` says why the server did not accept it.
type Outcome = Result<(), String>;

/// Sends AXB binds, each with a caller and callee that no earlier bind used.
struct Binder {
    client: reqwest::Client,
    url: String,
    next: AtomicU64,
}

impl Binder {
    fn new(base: &str) -> anyhow::Result<Binder> {
        Ok(Binder {
            client: http_client()?,
            url: format!("{base}{}", privnum::http::AXB_PATH),
            next: AtomicU64::new(0),
        })
    }

    async fn bind(&self) -> Outcome {
        // Distinct prefixes keep callers and callees apart however large `n` grows.
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let body = json!({
            "areaCode": AREA_CODE,
            "callerNum": format!("+86138{n:08}"),
            "calleeNum": format!("+86139{n:08}"),
        });
        accepted(signed(self.client.post(&self.url), APP_KEY, APP_SECRET).json(&body)).await
    }
}

/// A keep-alive client for loopback: no proxy from the environment, no Nagle delay.
fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_idle_timeout(None)
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")
}

/// Adds AKSK headers for the app, signed now with a fresh nonce.
fn signed(request: RequestBuilder, app_key: &str, secret: &str) -> RequestBuilder {
    let headers = auth::sign(Scheme::Aksk, app_key, secret, &auth::new_nonce(), chrono::Utc::now());
    request.header("Authorization", headers.authorization).header(headers.token_name, headers.token)
}

/// Sends a provisioning request; accepted means HTTP 200 with `"resultcode": "0"`.
async fn accepted(request: RequestBuilder) -> Outcome {
    let response = request.send().await.map_err(|err| format!("request failed: {err}"))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|err| format!("reading the answer failed: {err}"))?;
    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match answer["resultcode"].as_str() {
        Some("0") if status == reqwest::StatusCode::OK => Ok(()),
        _ => Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body))),
    }
}

/// When a level stops: after `duration` or `max_requests` requests, whichever comes first.
#[derive(Debug, Clone, Copy)]
struct Limits {
    duration: Duration,
    max_requests: u64,
}

/// What some clients saw: every latency, and the errors among those requests.
#[derive(Debug, Default)]
struct Log {
    /// Microseconds, one per request (errors included).
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Log {
    fn record(&mut self, latency: Duration, outcome: Outcome) {
        self.latencies_us.push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        if let Err(error) = outcome {
            self.errors += 1;
            self.first_error.get_or_insert(error);
        }
    }

    fn merge(&mut self, other: Log) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// One measured level.
#[derive(Debug)]
struct Sample {
    clients: usize,
    /// From the first request sent to the last answer received.
    elapsed: Duration,
    /// With its latencies sorted.
    log: Log,
}

impl Sample {
    fn requests(&self) -> u64 {
        self.log.latencies_us.len() as u64
    }

    /// Accepted requests per second.
    fn rate(&self) -> f64 {
        (self.requests() - self.log.errors) as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency below which a share `p` of the requests answered (nearest rank).
    fn percentile_us(&self, p: f64) -> Option<u64> {
        let sorted = &self.log.latencies_us;
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
        sorted.get(rank - 1).copied()
    }
}

/// One level of a side-by-side run: each variant of `op` in turn (`op(0)` first), warmed up and
/// measured with `clients` clients, printed as a row labelled from `labels` (with the store's
/// writes under the row labelled `disk_of`). Returns the samples in the variants' order.
async fn compare<F, Fut>(
    op: F,
    labels: &[&str],
    disk_of: Option<&str>,
    clients: usize,
    plan: &Plan,
    table: &Table,
    server: &Server,
) -> anyhow::Result<Vec<Sample>>
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let mut samples = Vec::with_capacity(labels.len());
    for (variant, &label) in labels.iter().enumerate() {
        let op = {
            let op = op.clone();
            move || op(variant)
        };
        if !plan.warmup.duration.is_zero() {
            drive(op.clone(), clients, plan.warmup).await?;
        }
        let disk = server.disk_stats();
        let sample = drive(op, clients, plan.measured).await?;
        print!("{label:>5} ");
        table.print_row(&sample, rss_kib());
        if disk_of == Some(label) {
            print_disk(disk, server.disk_stats(), sample.elapsed);
        }
        if let Some(error) = &sample.log.first_error {
            println!("           first error: {error}");
        }
        samples.push(sample);
    }
    Ok(samples)
}

/// Runs `clients` tasks, each calling `op` back to back, until `limits` stop them.
async fn drive<F, Fut>(op: F, clients: usize, limits: Limits) -> anyhow::Result<Sample>
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + limits.duration;
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(client_loop(op.clone(), issued.clone(), limits.max_requests, deadline)))
        .collect();
    let mut log = Log::default();
    for task in tasks {
        log.merge(task.await.context("a client task panicked")?);
    }
    let elapsed = started.elapsed();
    log.latencies_us.sort_unstable();
    Ok(Sample { clients, elapsed, log })
}

/// One simulated client: requests back to back until the deadline, or until the clients together
/// have issued `max_requests`.
async fn client_loop<F, Fut>(op: F, issued: Arc<AtomicU64>, max_requests: u64, deadline: Instant) -> Log
where
    F: Fn() -> Fut,
    Fut: Future<Output = Outcome>,
{
    let mut log = Log::default();
    while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max_requests {
        let sent = Instant::now();
        let outcome = op().await;
        log.record(sent.elapsed(), outcome);
    }
    log
}

/// The result table: fixed-width, right-aligned columns, printed a row at a time.
struct Table {
    header: [&'static str; 8],
}

const COLUMN_WIDTH: usize = 10;

impl Table {
    fn new(rate_name: &'static str) -> Table {
        Table { header: ["clients", "requests", "errors", rate_name, "p50", "p99", "max", "RSS"] }
    }

    fn print_header(&self) {
        Self::print_cells(self.header.iter().map(|name| name.to_string()));
        println!("{}", "-".repeat((COLUMN_WIDTH + 1) * self.header.len()));
    }

    fn print_row(&self, sample: &Sample, rss_kib: Option<u64>) {
        Self::print_cells([
            sample.clients.to_string(),
            sample.requests().to_string(),
            sample.log.errors.to_string(),
            format!("{:.0}", sample.rate()),
            show_latency(sample.percentile_us(0.50)),
            show_latency(sample.percentile_us(0.99)),
            show_latency(sample.log.latencies_us.last().copied()),
            rss_kib.map_or_else(|| "n/a".to_owned(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0)),
        ]);
    }

    fn print_cells(cells: impl IntoIterator<Item = String>) {
        let line: Vec<String> = cells.into_iter().map(|cell| format!("{cell:>COLUMN_WIDTH$}")).collect();
        println!("{}", line.join(" "));
    }
}

/// Microseconds below 1 ms, milliseconds above.
fn show_latency(us: Option<u64>) -> String {
    match us {
        None => "-".to_owned(),
        Some(us) if us < 1_000 => format!("{us} µs"),
        Some(us) if us < 100_000 => format!("{:.2} ms", us as f64 / 1_000.0),
        Some(us) => format!("{:.0} ms", us as f64 / 1_000.0),
    }
}

/// What group commit did during a level: the disk's share of the story. Durable answers wait for
/// a flush (sled flush + fdatasync); one flush serves every change waiting when it starts.
/// The store's disk counters at one moment.
#[derive(Debug, Clone, Copy)]
struct DiskStats {
    flush: FlushStats,
    log: CallLogStats,
}

/// Prints what the disk did during a level: group commit, and the call log's compactions.
fn print_disk(before: DiskStats, after: DiskStats, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let (flush_before, flush) = (before.flush, after.flush);
    let flushes = flush.flushes - flush_before.flushes;
    if flushes > 0 {
        let waits = flush.waits - flush_before.waits;
        let busy = (flush.flush_micros - flush_before.flush_micros) as f64 / 1e6;
        println!(
            "           disk: {:.0} flushes/s, {:.2} ms each, {:.1} durable answers per flush, flushing {:.0}% of the time",
            flushes as f64 / seconds,
            busy * 1e3 / flushes as f64,
            waits as f64 / flushes as f64,
            100.0 * busy / seconds
        );
    }
    let compactions = after.log.compactions - before.log.compactions;
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    let compacting = if compactions == 0 {
        "no compaction".to_owned()
    } else {
        let micros = after.log.compaction_micros - before.log.compaction_micros;
        format!("{compactions} compactions, {:.0} ms each", micros as f64 / 1e3 / compactions as f64)
    };
    println!(
        "           call log: {:.0} MiB, {:.0} MiB live; {compacting}",
        mib(after.log.file_bytes),
        mib(after.log.live_bytes)
    );
}

/// What was run, where, and on what.
fn print_header(server: &Server, workload: &str) {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let cpu = cpu_model().unwrap_or_else(|| "unknown CPU".to_owned());
    let fs = fs_type(&server.data_dir).unwrap_or_else(|| "unknown filesystem".to_owned());
    println!("privnum load harness");
    println!("command:  {}", std::env::args().collect::<Vec<_>>().join(" "));
    println!("machine:  {cpus} CPUs (nproc), {cpu}; client and server share it (one tokio runtime)");
    println!("server:   in-process at {}, data in {} ({fs})", server.base, server.data_dir.display());
    println!("workload: {workload}");
    println!();
}

/// This process's resident memory, from `/proc/self/status` (Linux only).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

/// The CPU's model name, from `/proc/cpuinfo` (Linux only).
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|line| line.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

/// The filesystem holding `path`: the type of the longest mount point above it (Linux only).
/// It decides what a flush costs (tmpfs makes it free).
fn fs_type(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            Some((fields.next()?, fields.next()?))
        })
        .filter(|(mount_point, _)| path.starts_with(mount_point))
        .max_by_key(|(mount_point, _)| mount_point.len())
        .map(|(_, fs_type)| fs_type.to_owned())
}

/// The events of one complete call as the customer sees them, in order.
const CALL_EVENTS: [&str; 5] = ["callin", "callout", "alerting", "answer", "disconnect"];

/// A customer's receiver in this process: answers each push after a delay (or 503 while it is
/// switched off), and times each event from the switch's report to its acknowledgement.
struct LagReceiver {
    base: String,
    inner: Arc<LagInner>,
}

struct LagInner {
    delay: Duration,
    off: std::sync::atomic::AtomicBool,
    /// Report times are kept as microseconds since this instant.
    epoch: Instant,
    /// Per call, by its number: when each event was reported (µs since `epoch`, plus 1; 0 not
    /// yet) and how many of its events were acknowledged so far. Sized for every call at the
    /// start, so the harness's own memory does not grow with the backlog it measures (a page is
    /// touched only as its calls start, a few bytes per call).
    calls: std::sync::Mutex<Vec<([u64; 5], u8)>>,
    /// Delivery lags of acknowledged events, in microseconds (capacity for every event).
    lags_us: std::sync::Mutex<Vec<u64>>,
    events: AtomicU64,
    cdrs: AtomicU64,
    /// When the last event and the last CDR were acknowledged.
    last_event: std::sync::Mutex<Option<Instant>>,
    last_cdr: std::sync::Mutex<Option<Instant>>,
    out_of_order: AtomicU64,
    refused: AtomicU64,
}

impl LagReceiver {
    /// A receiver for `calls` calls, numbered from 0.
    async fn start(delay: Duration, calls: u64) -> anyhow::Result<LagReceiver> {
        let calls = usize::try_from(calls).context("too many calls")?;
        let inner = Arc::new(LagInner {
            delay,
            off: Default::default(),
            epoch: Instant::now(),
            calls: std::sync::Mutex::new(vec![([0; 5], 0); calls]),
            lags_us: std::sync::Mutex::new(Vec::with_capacity(calls.saturating_mul(CALL_EVENTS.len()))),
            events: AtomicU64::new(0),
            cdrs: AtomicU64::new(0),
            last_event: Default::default(),
            last_cdr: Default::default(),
            out_of_order: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let state = inner.clone();
        let router = axum::Router::new().fallback(axum::routing::post(move |body: axum::body::Bytes| {
            let inner = state.clone();
            async move { inner.receive(&body).await }
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the receiver")?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(LagReceiver { base, inner })
    }

    fn reported(&self, call: u64, event: usize, at: Instant) {
        let micros = u64::try_from(at.saturating_duration_since(self.inner.epoch).as_micros()).unwrap_or(u64::MAX - 1);
        let mut calls = self.inner.calls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((reported, _)) = usize::try_from(call).ok().and_then(|n| calls.get_mut(n)) {
            reported[event] = micros + 1;
        }
    }
}

/// The call number in a session id of the harness (`lag-{n}-{pid}`).
fn lag_call_number(session: &str) -> Option<usize> {
    session.strip_prefix("lag-")?.split('-').next()?.parse().ok()
}

impl LagInner {
    async fn receive(&self, body: &[u8]) -> axum::http::StatusCode {
        if self.off.load(Ordering::Relaxed) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
        }
        tokio::time::sleep(self.delay).await;
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if let Some(items) = body["feeLst"].as_array() {
            self.cdrs.fetch_add(items.len() as u64, Ordering::Relaxed);
            *self.last_cdr.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            return axum::http::StatusCode::OK;
        }
        let acked = Instant::now();
        let session = body["statusInfo"]["sessionId"].as_str().unwrap_or_default();
        let Some(index) = CALL_EVENTS.iter().position(|e| body["eventType"] == *e) else {
            return axum::http::StatusCode::OK;
        };
        self.events.fetch_add(1, Ordering::Relaxed);
        *self.last_event.lock().unwrap_or_else(|p| p.into_inner()) = Some(acked);
        let reported = {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            let Some((reported, seen)) = lag_call_number(session).and_then(|n| calls.get_mut(n)) else {
                return axum::http::StatusCode::OK;
            };
            if usize::from(*seen) != index {
                self.out_of_order.fetch_add(1, Ordering::Relaxed);
            }
            *seen = (*seen).max(index as u8 + 1);
            reported[index]
        };
        if reported > 0 {
            let at = self.epoch + Duration::from_micros(reported - 1);
            let lag = u64::try_from(acked.saturating_duration_since(at).as_micros()).unwrap_or(u64::MAX);
            self.lags_us.lock().unwrap_or_else(|p| p.into_inner()).push(lag);
        }
        axum::http::StatusCode::OK
    }
}

/// One complete call, each report timed for the receiver.
async fn lag_call(caller: &Caller, receiver: &LagReceiver, n: u64) -> Outcome {
    let (number, x) = &caller.pairs[n as usize % caller.pairs.len()];
    let session = format!("lag-{n}-{}", std::process::id());
    receiver.reported(n, 0, Instant::now());
    let body = json!({"caller": number, "called": x, "sessionId": session});
    let response = caller.client.post(&caller.url).bearer_auth(&caller.token).json(&body).send().await;
    let response = response.map_err(|err| err.to_string())?;
    if !response.status().is_success() {
        return Err(format!("callin: HTTP {}", response.status()));
    }
    for (index, event) in CALL_EVENTS.iter().enumerate().skip(1) {
        let url = format!("{}/{session}/events", caller.url);
        let body = json!({"event": event, "stateCode": 0, "releaseSide": "caller"});
        receiver.reported(n, index, Instant::now());
        let response = caller.client.post(url).bearer_auth(&caller.token).json(&body).send().await;
        let status = response.map_err(|err| err.to_string())?.status();
        if !status.is_success() {
            return Err(format!("{event}: HTTP {status}"));
        }
    }
    Ok(())
}

async fn run_deliveries(args: DeliveriesArgs) -> anyhow::Result<()> {
    if !args.rate.is_finite() || args.rate <= 0.0 || !args.seconds.is_finite() || args.seconds <= 0.0 {
        bail!("--rate and --seconds must be above 0");
    }
    let total = (args.rate * args.seconds).round() as u64;
    let receiver = Arc::new(LagReceiver::start(Duration::from_millis(args.receiver_delay_ms), total).await?);
    let per_x = u64::from(Config::default().axb_max_pairs_per_x);
    let mut app = axb_app(args.bindings.div_ceil(per_x).max(1));
    app.call_event_url = format!("{}/events", receiver.base);
    app.cdr_url = format!("{}/cdr", receiver.base);
    let app_key = app.app_key.clone();
    let server = match args.in_flight {
        Some(limit) => {
            Server::start_configured(vec![app], args.data_parent.as_deref(), |config| {
                config.push_max_in_flight = limit;
            })
            .await?
        }
        None => Server::start(vec![app], args.data_parent.as_deref()).await?,
    };
    let in_flight = server.config.push_max_in_flight;
    let pairs = preload(&server, args.bindings).await?;
    let caller = Arc::new(Caller::new(&server.base, pairs)?);
    let off = args.receiver_off_at.map(|at| (at, at + args.receiver_off_for));
    print_header(
        &server,
        &format!(
            "complete AXB calls at {} calls/s for {} s; receiver answers after {} ms{}; push_max_in_flight {in_flight}",
            args.rate,
            args.seconds,
            args.receiver_delay_ms,
            off.map_or(String::new(), |(from, to)| format!(", down (503) from {from} s to {to} s"))
        ),
    );
    let rss_before = rss_kib().unwrap_or(0);
    let started = Instant::now();
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut calls = tokio::task::JoinSet::new();
    let generator = {
        let (caller, receiver, errors, first_error) =
            (caller.clone(), receiver.clone(), errors.clone(), first_error.clone());
        let interval = Duration::from_secs_f64(1.0 / args.rate);
        tokio::spawn(async move {
            for n in 0..total {
                let due = started + interval.mul_f64(n as f64);
                tokio::time::sleep_until(due.into()).await;
                let (caller, receiver, errors, first_error) =
                    (caller.clone(), receiver.clone(), errors.clone(), first_error.clone());
                calls.spawn(async move {
                    if let Err(err) = lag_call(&caller, &receiver, n).await {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(err);
                    }
                });
                while calls.try_join_next().is_some() {}
            }
            while calls.join_next().await.is_some() {}
            Instant::now()
        })
    };
    println!(
        "{:>6} {:>8} {:>10} {:>8} {:>10} {:>9} {:>9} {:>9}",
        "second", "calls", "events ok", "cdrs ok", "refused", "RSS MiB", "on disk", "spilled"
    );
    let store = server.running.state.store.clone();
    let spilled = |store: &privnum::store::Store| {
        use privnum::store::outbox::Lane;
        Lane::ALL.iter().map(|lane| store.calls().spilled(&app_key, *lane)).sum::<u64>()
    };
    let mut rss_peak_off = 0;
    let mut rss_peak_on = 0;
    let mut second = 0u64;
    let limit = Duration::from_secs_f64(args.seconds + args.drain_limit);
    let mut load_done_at = None;
    let expected_events = total * CALL_EVENTS.len() as u64;
    let inner = &receiver.inner;
    loop {
        second += 1;
        tokio::time::sleep_until((started + Duration::from_secs(second)).into()).await;
        let elapsed = started.elapsed().as_secs_f64();
        if let Some((from, to)) = off {
            inner.off.store(elapsed >= from && elapsed < to, Ordering::Relaxed);
        }
        let rss = rss_kib().unwrap_or(0);
        if inner.off.load(Ordering::Relaxed) {
            rss_peak_off = rss_peak_off.max(rss);
        } else {
            rss_peak_on = rss_peak_on.max(rss);
        }
        println!(
            "{second:>6} {:>8} {:>10} {:>8} {:>10} {:>9.0} {:>9} {:>9}",
            caller_started(total, args.rate, elapsed),
            inner.events.load(Ordering::Relaxed),
            inner.cdrs.load(Ordering::Relaxed),
            inner.refused.load(Ordering::Relaxed),
            rss as f64 / 1024.0,
            store.call_log_stats().outbox_on_disk,
            spilled(&store)
        );
        if load_done_at.is_none() && generator.is_finished() {
            load_done_at = Some(());
        }
        let drained = inner.events.load(Ordering::Relaxed) + errors.load(Ordering::Relaxed) * 5 >= expected_events
            && inner.cdrs.load(Ordering::Relaxed) + errors.load(Ordering::Relaxed) >= total;
        if (load_done_at.is_some() && drained) || started.elapsed() > limit {
            break;
        }
    }
    // The last second's look is coarse: wait for the exact moment everything was acknowledged.
    let drained_at = loop {
        let done = inner.events.load(Ordering::Relaxed) + errors.load(Ordering::Relaxed) * 5 >= expected_events
            && inner.cdrs.load(Ordering::Relaxed) + errors.load(Ordering::Relaxed) >= total;
        if done || started.elapsed() > limit {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let _ = load_done_at;
    let load_done_at = if generator.is_finished() { generator.await.unwrap_or(drained_at) } else { drained_at };
    let mut lags = std::mem::take(&mut *inner.lags_us.lock().unwrap_or_else(|p| p.into_inner()));
    lags.sort_unstable();
    let pick = |p: f64| lags.get(((lags.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied();
    let ms = |us: Option<u64>| us.map_or("-".to_owned(), |us| format!("{:.1} ms", us as f64 / 1e3));
    println!();
    println!(
        "calls: {total} started at {} calls/s over {:.1} s, {} failed{}",
        args.rate,
        args.seconds,
        errors.load(Ordering::Relaxed),
        first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(String::new(), |e| format!(" (first: {e})"))
    );
    println!(
        "events acknowledged: {} of {expected_events}; CDRs: {} of {total}; calls with an event out of order: {}",
        inner.events.load(Ordering::Relaxed),
        inner.cdrs.load(Ordering::Relaxed),
        inner.out_of_order.load(Ordering::Relaxed)
    );
    println!(
        "delivery lag (switch report -> receiver's acknowledgement): p50 {}  p99 {}  max {}",
        ms(pick(0.50)),
        ms(pick(0.99)),
        ms(lags.last().copied())
    );
    let after_load = |at: Option<Instant>| {
        at.map_or("-".to_owned(), |at| format!("{:.2} s", at.saturating_duration_since(load_done_at).as_secs_f64()))
    };
    println!(
        "drain after the last call's last report was answered: last event acknowledged {}, last CDR {} (CDRs wait up to cdr_flush_ms to merge)",
        after_load(*inner.last_event.lock().unwrap_or_else(|p| p.into_inner())),
        after_load(*inner.last_cdr.lock().unwrap_or_else(|p| p.into_inner()))
    );
    let rss_after = rss_kib().unwrap_or(0);
    let during = if off.is_some() {
        format!("peak while down {:.0} MiB, ", rss_peak_off as f64 / 1024.0)
    } else {
        String::new()
    };
    println!(
        "RSS (this process: server, receiver and load): before {:.0} MiB, {during}peak while up {:.0} MiB, after {:.0} MiB",
        rss_before as f64 / 1024.0,
        rss_peak_on as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    server.stop().await
}

/// Calls the generator has started by `elapsed` seconds.
fn caller_started(total: u64, rate: f64, elapsed: f64) -> u64 {
    ((elapsed * rate).floor() as u64 + 1).min(total)
}

/// The X-mode app of the `xmode` scenario, and its numbers.
const X_APP_KEY: &str = "load-x-app";
const FIRST_XMODE_X: u64 = 8_617_500_000_000;
const XMODE_NUMBERS: u64 = 100;

async fn run_xmode(args: XmodeArgs) -> anyhow::Result<()> {
    let plan = args.levels.plan()?;
    let delay = Duration::from_millis(args.customer_delay_ms);
    // The customer: every Block callin is connected to one callee, after the delay.
    let router = axum::Router::new().fallback(axum::routing::post(move || async move {
        tokio::time::sleep(delay).await;
        r#"{"operation":"connect","connectInfo":{"calleeNum":"+8613900000001"}}"#
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the customer")?;
    let customer = format!("http://{}/callin", listener.local_addr()?);
    let customer_url = customer.clone();
    let direct = reqwest::Client::builder().no_proxy().build()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    let per_x = u64::from(Config::default().axb_max_pairs_per_x);
    let axb = axb_app(args.bindings.div_ceil(per_x).max(1));
    let mut x_app = AppConfig::new(X_APP_KEY, APP_SECRET, Mode::X);
    x_app.scenario = "load".into();
    x_app.callin_url = customer;
    x_app.numbers = (0..XMODE_NUMBERS)
        .map(|i| NumberConfig {
            number: format!("+{}", FIRST_XMODE_X + i),
            area_code: AREA_CODE.into(),
            sms: true,
            status: NumberStatus::Normal,
        })
        .collect();
    // The same app's calls decided by its rule set instead, from data: no Block push.
    let mut ruled = x_app.clone();
    ruled.app_key = RULED_APP_KEY.into();
    ruled.ruleset_review = privnum::domain::ruleset::Review::Auto;
    ruled.numbers = (0..XMODE_NUMBERS)
        .map(|i| NumberConfig {
            number: format!("+{}", FIRST_RULED_X + i),
            area_code: AREA_CODE.into(),
            sms: true,
            status: NumberStatus::Normal,
        })
        .collect();
    let server = Server::start(vec![axb, x_app, ruled], args.levels.data_parent.as_deref()).await?;
    let axb_caller = Arc::new(Caller::new(&server.base, preload(&server, args.bindings).await?)?);
    let x_pairs = (0..10_000u64).map(|n| (format!("+86137{n:08}"), format!("+{}", FIRST_XMODE_X + n % XMODE_NUMBERS)));
    let x_caller = Arc::new(Caller::new(&server.base, x_pairs.collect())?);
    let ruled_pairs: Vec<_> =
        (0..10_000u64).map(|n| (format!("+86137{n:08}"), format!("+{}", FIRST_RULED_X + n % XMODE_NUMBERS))).collect();
    load_trips(&server, &ruled_pairs).await?;
    let ruled_caller = Arc::new(Caller::new(&server.base, ruled_pairs)?);
    print_header(
        &server,
        &format!(
            "X-mode callins (a Block push each; the customer answers connect after {} ms), X-mode callins its rule set decides from data (on_x_callin, no push), and AXB callins; {} AXB bindings",
            args.customer_delay_ms, args.bindings
        ),
    );
    let table = Table::new("calls/s");
    print!("{:>5} ", "");
    table.print_header();
    for &clients in &plan.clients {
        // The customer alone (a POST straight to it), then AXB callins, then X-mode callins.
        let (axb, x, ruled, direct, url) =
            (axb_caller.clone(), x_caller.clone(), ruled_caller.clone(), direct.clone(), customer_url.clone());
        let op = move |variant: usize| {
            let (axb, x, ruled, direct, url) = (axb.clone(), x.clone(), ruled.clone(), direct.clone(), url.clone());
            async move {
                match variant {
                    0 => {
                        let response = direct.post(&url).body("{}").send().await.map_err(|err| err.to_string())?;
                        response.bytes().await.map(|_| ()).map_err(|err| err.to_string())
                    }
                    1 => axb.call().await,
                    2 => x.call().await,
                    _ => ruled.call().await,
                }
            }
        };
        let samples = compare(op, &["cust", "axb", "x", "rules"], None, clients, &plan, &table, &server).await?;
        let p50: Vec<u64> = samples.iter().map(|sample| sample.percentile_us(0.50).unwrap_or(0)).collect();
        println!(
            "           privnum's own time on an X callin (its p50 minus the customer's alone): {}; an AXB callin's p50: {}",
            show_latency(Some(p50[2].saturating_sub(p50[0]))),
            show_latency(Some(p50[1]))
        );
        println!(
            "           an X callin its rule set decides: p50 {} ({:.1}x faster than the customer's server's)",
            show_latency(Some(p50[3])),
            p50[2] as f64 / p50[3].max(1) as f64
        );
    }
    server.stop().await
}

/// The rule-set X app of the `xmode` scenario, and its first number.
const RULED_APP_KEY: &str = "load-x-rules";
const FIRST_RULED_X: u64 = 8_617_600_000_000;

/// Gives the rule-set app its rule set (connect the caller's trip partner, from data) and a trip
/// for every caller of `pairs`, through the API, signed.
async fn load_trips(server: &Server, pairs: &[(String, String)]) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let source = include_str!("rulesets/trip-partner.rhai");
    let cases = serde_json::json!([{"handler": "on_x_callin", "event": {"caller": "+8613700000001"},
        "data": {"trip:+8613700000001": "+8613900000001"},
        "expect": {"operation": "connect", "connectInfo": {"calleeNum": "+8613900000001", "maxDuration": 10}}}]);
    let url = format!("{}/rest/privnum/ruleset/v1.0", server.base);
    let body = serde_json::json!({"source": source, "cases": cases});
    let answer: serde_json::Value =
        signed(client.post(&url), RULED_APP_KEY, APP_SECRET).json(&body).send().await?.json().await?;
    anyhow::ensure!(answer["state"] == "active", "the rule set was not made active: {answer}");
    let mut callers: Vec<&str> = pairs.iter().map(|(caller, _)| caller.as_str()).collect();
    callers.dedup();
    for chunk in callers.chunks(500) {
        let items: Vec<_> = chunk
            .iter()
            .map(|caller| serde_json::json!({"key": format!("trip:{caller}"), "value": "+8613900000001"}))
            .collect();
        let url = format!("{}/rest/privnum/data/v1.0", server.base);
        let answer: serde_json::Value = signed(client.put(&url), RULED_APP_KEY, APP_SECRET)
            .json(&serde_json::json!({"items": items}))
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(answer["resultcode"] == "0", "storing trips failed: {answer}");
    }
    Ok(())
}
