//! The `privnum` command: parse the command line, load the configuration, run.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use privnum::auth::{self, Scheme};
use privnum::clock::SystemClock;
use privnum::config::Config;

#[derive(Parser)]
#[command(name = "privnum", version, about = "A programmable rules engine for privacy-protected calls")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// The configuration file, which must exist. Without it, `privnum.toml` in the current
        /// directory, or the built-in defaults when there is none.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Compile the scripts, check their handlers and run their cases; non-zero exit on problems.
    Check {
        #[arg(default_value = "scripts")]
        dir: PathBuf,
    },
    /// Run the scripts' test cases and print a pass/fail summary.
    Test {
        #[arg(default_value = "scripts")]
        dir: PathBuf,
    },
    /// A virtual switch: drive one call through a running server and print what happens.
    Call {
        /// The calling number.
        #[arg(long)]
        from: String,
        /// The X dialled.
        #[arg(long)]
        to: String,
        /// The extension to key in when the call collects one (AXE).
        #[arg(long)]
        digits: Option<String>,
        /// Seconds until the callee answers; without it, nobody answers.
        #[arg(long)]
        answer_after: Option<u64>,
        /// Seconds of talk after the answer.
        #[arg(long, default_value_t = 10)]
        talk: u64,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// The server's switch_token.
        #[arg(long, default_value = "dev-switch-token")]
        switch_token: String,
    },
    /// A demo customer's server: prints every push privnum sends the configured apps, and
    /// answers X mode's Block callins from a table.
    Customer {
        #[arg(long, default_value = "privnum.toml")]
        config: PathBuf,
        /// Listen here instead of where the apps' push URLs point (their loopback http:// ones).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// A Block callin from CALLER is connected to CALLEE (`CALLER=CALLEE`) or closed
        /// (`CALLER=close`); `*` is any other caller. Repeatable. Unnamed callers are closed.
        #[arg(long = "answer", value_name = "CALLER=CALLEE")]
        answers: Vec<String>,
        /// More answers, one `CALLER CALLEE` or `CALLER close` per line (`#` comments).
        #[arg(long = "answers-file", value_name = "FILE")]
        answers_file: Option<PathBuf>,
    },
    /// Check a WAV against the carrier's tone format, or convert one into it.
    Tone {
        #[command(subcommand)]
        command: ToneCommand,
    },
    /// A customer rule set: check and test it offline, or submit, list and activate it on a
    /// server with the app's own key.
    Ruleset {
        #[command(subcommand)]
        command: RulesetCommand,
    },
    /// Print freshly signed authentication headers for one provisioning request.
    ///
    /// Each run makes a new Nonce, so run it once per request, e.g.
    /// `curl -K <(privnum sign --app demo-app --format curl) ...`
    Sign {
        #[command(flatten)]
        key: AppKeyArgs,
        /// Sign with the legacy WSSE scheme instead of AKSK.
        #[arg(long)]
        wsse: bool,
        /// `headers`: two header lines; `curl`: a curl config (`curl -K`).
        #[arg(long, value_enum, default_value_t = Format::Headers)]
        format: Format,
    },
}

#[derive(Subcommand)]
enum ToneCommand {
    /// Show a WAV's format, rate, channels and duration, and whether it meets the carrier format.
    Inspect { file: PathBuf },
    /// Convert a WAV to A-law, 8000 Hz, mono (a file already in that format is copied unchanged).
    Convert { input: PathBuf, output: PathBuf },
    /// Write a sine tone in the carrier's format, to try uploads and calls without an audio tool.
    Make {
        /// The tone's pitch, 20 to 3400 Hz.
        #[arg(long, default_value_t = 440.0)]
        hz: f64,
        /// Its length in seconds.
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
        output: PathBuf,
    },
}

#[derive(Subcommand)]
enum RulesetCommand {
    /// What a submission's check says, offline: compile, handlers, cases, the invariant probe.
    Check {
        file: PathBuf,
        #[command(flatten)]
        local: RulesetLocal,
    },
    /// Run the cases one by one, then the invariant probe, printing each result.
    Test {
        file: PathBuf,
        #[command(flatten)]
        local: RulesetLocal,
    },
    /// Submit FILE and its cases as the app's next version.
    Submit {
        file: PathBuf,
        #[command(flatten)]
        cases: RulesetCases,
        /// What this version changes, kept with it.
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        remote: RulesetRemote,
    },
    /// List the app's versions and which is active.
    List {
        #[command(flatten)]
        remote: RulesetRemote,
    },
    /// Make an approved version active (an earlier one: a rollback); "" turns the rule set off.
    Activate {
        version: String,
        #[command(flatten)]
        remote: RulesetRemote,
    },
}

#[derive(clap::Args)]
struct RulesetCases {
    /// Cases: a directory of .json files or a file (default: FILE's name with .cases).
    #[arg(long)]
    cases: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RulesetLocal {
    #[command(flatten)]
    cases: RulesetCases,
    /// The app's mode, to check what the server will (handlers it calls, the decisions probed).
    #[arg(long, value_parser = parse_mode)]
    mode: Option<privnum::domain::Mode>,
}

/// The app whose key signs a request, and where its secret comes from.
#[derive(clap::Args)]
struct AppKeyArgs {
    /// The app key to sign as.
    #[arg(long)]
    app: String,
    /// The app's secret; by default it is read from the configuration file.
    #[arg(long)]
    secret: Option<String>,
    #[arg(long, default_value = "privnum.toml")]
    config: PathBuf,
}

impl AppKeyArgs {
    /// The app key and its secret: given, or read from the configuration file.
    fn credentials(self) -> anyhow::Result<(String, String)> {
        let secret = match self.secret {
            Some(secret) => secret,
            None => Config::load(&self.config)?
                .apps
                .into_iter()
                .find(|app| app.app_key == self.app)
                .map(|app| app.app_secret)
                .with_context(|| format!("app {} is not in {}; pass --secret", self.app, self.config.display()))?,
        };
        Ok((self.app, secret))
    }
}

#[derive(clap::Args)]
struct RulesetRemote {
    #[command(flatten)]
    key: AppKeyArgs,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
}

fn parse_mode(text: &str) -> Result<privnum::domain::Mode, String> {
    serde_json::from_value(serde_json::Value::from(text.to_ascii_uppercase()))
        .map_err(|_| format!("{text:?} is not a mode: AXB, AX, AXE or X"))
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Headers,
    Curl,
}

fn main() {
    // Errors are for people: the message and its causes, no backtrace.
    if let Err(err) = run(Cli::parse()) {
        eprintln!("error: {err:#}");
        // As a shell reports a process stopped by SIGINT or SIGPIPE.
        let code = match err.downcast_ref::<privnum::cli::CallInterrupted>() {
            Some(privnum::cli::CallInterrupted::CtrlC) => 130,
            Some(privnum::cli::CallInterrupted::OutputClosed) => 141,
            None => 1,
        };
        std::process::exit(code);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Sign { key, wsse, format } => sign(key, wsse, format),
        Command::Check { dir } => privnum::cli::check(&dir),
        Command::Tone { command: ToneCommand::Inspect { file } } => privnum::cli::tone_inspect(&file),
        Command::Tone { command: ToneCommand::Convert { input, output } } => {
            privnum::cli::tone_convert(&input, &output)
        }
        Command::Tone { command: ToneCommand::Make { hz, secs, output } } => privnum::cli::tone_make(hz, secs, &output),
        Command::Test { dir } => privnum::cli::test(&dir),
        Command::Customer { config, listen, answers, answers_file } => {
            let mut table = privnum::cli::customer::Answers::from_items(&answers)?;
            if let Some(file) = &answers_file {
                table.add_file(file)?;
            }
            tokio::runtime::Runtime::new()
                .context("starting the tokio runtime")?
                .block_on(privnum::cli::customer::run(&config, listen, table))
        }
        Command::Ruleset { command } => ruleset(command),
        Command::Call { from, to, digits, answer_after, talk, server, switch_token } => {
            let plan = privnum::cli::CallPlan { server, switch_token, from, to, digits, answer_after, talk };
            tokio::runtime::Runtime::new().context("starting the tokio runtime")?.block_on(privnum::cli::call(plan))
        }
    }
}

fn serve(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(privnum::telemetry::OneLineLog)
        .with_ansi(false)
        .init();
    let (config, config_path) = match config_path {
        Some(path) => (Config::load_required(&path)?, path),
        None => {
            let path = PathBuf::from("privnum.toml");
            (Config::load(&path)?, path)
        }
    };
    tracing::info!(config = %config_path.display(), apps = config.apps.len(), "configuration loaded");
    if config.admin_token == privnum::config::DEMO_ADMIN_TOKEN
        || config.switch_token == privnum::config::DEMO_SWITCH_TOKEN
    {
        tracing::warn!(
            listen = %config.listen,
            "the admin or switch token is the well-known demo token: fine on loopback, refused beyond it; set your own"
        );
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async {
        let running = privnum::server::start(config, Arc::new(SystemClock)).await?;
        running.wait_for_signal().await
    })
}

fn ruleset(command: RulesetCommand) -> anyhow::Result<()> {
    use privnum::cli::ruleset;
    let remote = |remote: RulesetRemote| -> anyhow::Result<ruleset::Remote> {
        let (app, secret) = remote.key.credentials()?;
        Ok(ruleset::Remote { server: remote.server, app, secret })
    };
    let runtime = || tokio::runtime::Runtime::new().context("starting the tokio runtime");
    match command {
        RulesetCommand::Check { file, local } => ruleset::check_file(&file, local.cases.cases.as_deref(), local.mode),
        RulesetCommand::Test { file, local } => ruleset::test_file(&file, local.cases.cases.as_deref(), local.mode),
        RulesetCommand::Submit { file, cases, note, remote: to } => {
            let to = remote(to)?;
            runtime()?.block_on(ruleset::submit(&to, &file, cases.cases.as_deref(), &note))
        }
        RulesetCommand::List { remote: to } => {
            let to = remote(to)?;
            runtime()?.block_on(ruleset::list(&to))
        }
        RulesetCommand::Activate { version, remote: to } => {
            let to = remote(to)?;
            runtime()?.block_on(ruleset::activate(&to, &version))
        }
    }
}

fn sign(key: AppKeyArgs, wsse: bool, format: Format) -> anyhow::Result<()> {
    let (app_key, secret) = key.credentials()?;
    let scheme = if wsse { Scheme::Wsse } else { Scheme::Aksk };
    let signed = auth::sign(scheme, &app_key, &secret, &auth::new_nonce(), chrono::Utc::now());
    let lines =
        [format!("Authorization: {}", signed.authorization), format!("{}: {}", signed.token_name, signed.token)];
    for line in lines {
        match format {
            Format::Headers => println!("{line}"),
            Format::Curl => println!("header = \"{}\"", line.replace('\\', "\\\\").replace('"', "\\\"")),
        }
    }
    Ok(())
}
