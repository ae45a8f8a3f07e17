//! A real privnum server on a loopback port and a temporary sled directory, and a signing client.
//!
//! The server's clock is a [`ManualClock`] starting at the real time, and requests are signed with
//! that clock's time, so a test can move time forward (expiry) without sleeping and without
//! tripping the `Created` skew check.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use privnum::auth::{self, Scheme};
use privnum::clock::{Clock, ManualClock};
use privnum::config::{AppConfig, Config, HumanDuration, NumberConfig};
use privnum::domain::{Mode, NumberStatus};
use privnum::server::{self, Running};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::receiver::Receiver;

pub const AXB_PATH: &str = "/rest/caas/relationnumber/partners/v1.0";
pub const AX_PATH: &str = "/rest/provision/caas/privatenumber/v1.0";
pub const AX_CALLEE_PATH: &str = "/rest/caas/privatenumber/calleenumber/v1.0";
pub const AXE_PATH: &str = "/rest/caas/extendnumber/v1.0";
pub const AXE_CURSOR_PATH: &str = "/rest/caas/extendnumber/v2.0";
pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const SWITCH_TOKEN: &str = "test-switch-token";

/// The AXB app of the test configuration: recording on, four numbers in 0755, one in 0756, one in 010.
pub const AXB_APP: (&str, &str) = ("axb-app", "axb-secret");
/// The AX app: three numbers in 0755, one in 0756, one in 010.
pub const AX_APP: (&str, &str) = ("ax-app", "ax-secret");
/// The AXE app: 4-digit extensions, two numbers in 0755, one in 0756.
pub const AXE_APP: (&str, &str) = ("axe-app", "axe-secret");
/// An AXE app with 1-digit extensions (nine per X), one number in 021.
pub const AXE1_APP: (&str, &str) = ("axe1-app", "axe1-secret");
/// An X-mode app (no callin_url or call_event_url unless a test gives them: `xmode.rs`).
pub const X_APP: (&str, &str) = ("x-app", "x-secret");
/// An AXB app with recording off.
pub const QUIET_APP: (&str, &str) = ("quiet-app", "quiet-secret");

pub fn number(number: &str, area_code: &str) -> NumberConfig {
    NumberConfig { number: number.into(), area_code: area_code.into(), sms: true, status: NumberStatus::Normal }
}

pub fn app(key_secret: (&str, &str), mode: Mode, numbers: Vec<NumberConfig>) -> AppConfig {
    let mut app = AppConfig::new(key_secret.0, key_secret.1, mode);
    app.scenario = "test".into();
    app.recording = true;
    // A debug build runs rule sets many times slower than a release build, beside other tests
    // on two cores: the longest budget keeps a loaded machine from refusing a probe (the
    // default, 5 ms, is what the bench and a release build run with).
    app.ruleset_deadline_ms = privnum::config::MAX_RULESET_DEADLINE_MS;
    app.numbers = numbers;
    app
}

/// The production scripts of this repository.
pub fn scripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

pub fn test_config(data_dir: PathBuf) -> Config {
    let mut quiet = app(QUIET_APP, Mode::Axb, vec![number("+8617100000001", "0755")]);
    quiet.recording = false;
    let mut axe = app(
        AXE_APP,
        Mode::Axe,
        vec![number("+8617600000001", "0755"), number("+8617600000002", "0755"), number("+8617600000003", "0756")],
    );
    axe.extension_prompt = "ext.wav".into();
    let mut axe1 = app(AXE1_APP, Mode::Axe, vec![number("+8617700000001", "021")]);
    axe1.extension_digits = 1;
    Config {
        listen: "127.0.0.1:0".parse().expect("loopback address"),
        data_dir,
        scripts_dir: scripts_dir(),
        admin_token: ADMIN_TOKEN.into(),
        switch_token: SWITCH_TOKEN.into(),
        // Tests refuse many requests on purpose, all from 127.0.0.1; `auth.rs` tests the limit.
        auth_failures_burst: 10_000,
        // A debug build runs scripts many times slower than a release build, beside other tests
        // on two cores: 100 ms keeps a loaded machine from turning a decision into the fallback
        // (the release default, 20 ms, is what the load harness and the crash loop run with).
        script_deadline_ms: 100,
        apps: vec![
            app(
                AXB_APP,
                Mode::Axb,
                vec![
                    number("+8617000000001", "0755"),
                    number("+8617000000002", "0755"),
                    number("+8617000000003", "0755"),
                    number("+8617000000004", "0755"),
                    number("+8617000000005", "0756"),
                    number("+8617000000006", "010"),
                ],
            ),
            app(
                AX_APP,
                Mode::Ax,
                vec![
                    number("+8617200000001", "0755"),
                    number("+8617200000002", "0755"),
                    number("+8617200000003", "0755"),
                    number("+8617200000004", "0756"),
                    number("+8617200000005", "010"),
                ],
            ),
            axe,
            axe1,
            app(X_APP, Mode::X, vec![number("+8617500000001", "0755")]),
            quiet,
        ],
        ..Config::default()
    }
}

pub struct TestServer {
    pub base: String,
    pub clock: ManualClock,
    pub config: Config,
    running: Option<Running>,
    _dir: Arc<tempfile::TempDir>,
    pub client: reqwest::Client,
}

/// A response: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["resultcode"].as_str().unwrap_or("<no resultcode>")
    }

    pub fn desc(&self) -> &str {
        self.body["resultdesc"].as_str().unwrap_or("<no resultdesc>")
    }

    /// A string field of the body, e.g. a bind's `subscriptionId`; fails showing the answer.
    #[track_caller]
    pub fn field(&self, name: &str) -> String {
        match self.body[name].as_str() {
            Some(value) => value.to_owned(),
            None => panic!("no string {name:?} in the answer: {self:?}"),
        }
    }

    /// Asserts the status and result code, showing the whole answer when they differ.
    #[track_caller]
    pub fn expect(&self, status: u16, code: &str) -> &Self {
        assert_eq!((self.status.as_u16(), self.code()), (status, code), "unexpected answer: {self:?}");
        self
    }
}

/// What a test changes in the test configuration before its server starts: the one way to start
/// an in-process [`TestServer`] (`TestServer::start()` is `TestServer::builder().start()`).
pub struct TestServerBuilder {
    dir: Arc<tempfile::TempDir>,
    config: Config,
    scripts_copy: bool,
}

impl TestServerBuilder {
    /// Every app pushes its call events and CDRs to `receiver`.
    pub fn pushing_to(mut self, receiver: &Receiver) -> Self {
        for app in &mut self.config.apps {
            app.call_event_url = format!("{}/events", receiver.base);
            app.cdr_url = format!("{}/cdr", receiver.base);
        }
        self
    }

    /// The waits before each retry of a push (`push_retry_schedule`), e.g. `&["100ms", "1s"]`.
    pub fn retries(mut self, waits: &[&str]) -> Self {
        self.config.push_retry_schedule =
            waits.iter().map(|wait| HumanDuration::parse(wait).expect("a valid retry wait")).collect();
        self
    }

    /// How long the oldest waiting CDR waits for others to merge with (`cdr_flush_ms`).
    pub fn cdr_flush_ms(mut self, ms: u64) -> Self {
        self.config.cdr_flush_ms = ms;
        self
    }

    /// privnum asks `receiver` (at `/control`) to stop calls (`switch_control_url`).
    pub fn switch_control(mut self, receiver: &Receiver) -> Self {
        self.config.switch_control_url = format!("{}/control", receiver.base);
        self
    }

    /// The AXB pair capacity of one X (`axb_max_pairs_per_x`).
    pub fn axb_max_pairs_per_x(mut self, pairs: u32) -> Self {
        self.config.axb_max_pairs_per_x = pairs;
        self
    }

    /// How long a call may go without news before the sweeper closes it (`session_timeout_secs`).
    pub fn session_timeout_secs(mut self, secs: u64) -> Self {
        self.config.session_timeout_secs = secs;
        self
    }

    /// Every app's `close_hint_tone`; the test still approves the tone once the server runs.
    pub fn close_hint_tone(mut self, tone: &str) -> Self {
        for app in &mut self.config.apps {
            app.close_hint_tone = tone.into();
        }
        self
    }

    /// The server speaks TLS only (`[tls]`), with a self-signed certificate for `127.0.0.1` and
    /// `localhost` made now, in the test's temporary directory; the server's `client` trusts it
    /// and its `base` is `https://`.
    pub fn tls(mut self) -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("a self-signed certificate");
        let (cert, key) = (self.dir.path().join("cert.pem"), self.dir.path().join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).expect("write the certificate");
        std::fs::write(&key, made.key_pair.serialize_pem()).expect("write the key");
        self.config.tls = Some(privnum::config::TlsConfig::new(cert, key));
        self
    }

    /// Any other change to the test configuration, e.g. a limit of the HTTP listener.
    pub fn configure(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    /// The server's scripts are a fresh copy of the repository's, in the test's temporary
    /// directory, for tests that edit them ([`TestServer::scripts_dir`] says where).
    pub fn scripts_copy(mut self) -> Self {
        self.scripts_copy = true;
        self
    }

    pub async fn start(mut self) -> TestServer {
        if self.scripts_copy {
            let scripts = self.dir.path().join("scripts");
            copy_dir(&scripts_dir(), &scripts);
            self.config.scripts_dir = scripts;
        }
        let clock = ManualClock::new(chrono::Utc::now().timestamp());
        TestServer::start_on(self.config, self.dir, clock).await
    }
}

impl TestServer {
    /// A builder over the test configuration, in a fresh temporary directory.
    pub fn builder() -> TestServerBuilder {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let config = test_config(dir.path().join("data"));
        TestServerBuilder { dir, config, scripts_copy: false }
    }

    /// A server on the test configuration as it is.
    pub async fn start() -> TestServer {
        TestServer::builder().start().await
    }

    async fn start_on(config: Config, dir: Arc<tempfile::TempDir>, clock: ManualClock) -> TestServer {
        let running = server::start(config.clone(), Arc::new(clock.clone())).await.expect("server starts");
        // With `[tls]`, HTTPS with a client that trusts the server's (self-signed) certificate.
        let (base, client) = match &config.tls {
            None => (format!("http://{}", running.addr), reqwest::Client::new()),
            Some(tls) => (format!("https://{}", running.addr), client_trusting(&tls.cert)),
        };
        TestServer { base, clock, config, running: Some(running), _dir: dir, client }
    }

    /// The scripts this server runs (a copy under the temporary directory with
    /// [`TestServerBuilder::scripts_copy`]).
    pub fn scripts_dir(&self) -> &Path {
        &self.config.scripts_dir
    }

    /// Stops the server gracefully and starts a new one on the same data directory.
    pub async fn restart(mut self) -> TestServer {
        if let Some(running) = self.running.take() {
            running.stop().await.expect("server stops");
        }
        let mut config = self.config.clone();
        config.apps.clear(); // everything must come back from the store, not from the config
        TestServer::start_on(config, self._dir.clone(), self.clock.clone()).await
    }

    pub fn clock_now(&self) -> i64 {
        self.clock.now()
    }

    pub fn state(&self) -> &privnum::http::AppState {
        &self.running.as_ref().expect("server is running").state
    }

    /// Signed headers for `app`, made at the server's clock time.
    pub fn signed(&self, app: (&str, &str), scheme: Scheme) -> Vec<(String, String)> {
        let created = chrono::DateTime::from_timestamp(self.clock.now(), 0).expect("valid time");
        let signed = auth::sign(scheme, app.0, app.1, &auth::new_nonce(), created);
        vec![("Authorization".into(), signed.authorization), (signed.token_name.into(), signed.token)]
    }

    /// Sends a request with the given headers and optional JSON body.
    pub async fn send(&self, method: Method, path: &str, headers: &[(String, String)], body: Option<&Value>) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request reaches the server");
        let status = response.status();
        let bytes = response.bytes().await.expect("response body");
        Answer { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }

    /// A provisioning request signed (AKSK) as `app`.
    pub async fn call(&self, app: (&str, &str), method: Method, path: &str, body: Option<&Value>) -> Answer {
        let headers = self.signed(app, Scheme::Aksk);
        self.send(method, path, &headers, body).await
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        let headers = vec![("Authorization".to_owned(), format!("Bearer {ADMIN_TOKEN}"))];
        self.send(method, &format!("/v1/admin{path}"), &headers, body).await
    }

    /// The switch asks what to do with a call from `caller` to `called`.
    pub async fn switch_call(&self, caller: &str, called: &str) -> Answer {
        let body = serde_json::json!({"caller": caller, "called": called});
        self.switch(Method::POST, "/calls", &body).await
    }

    pub async fn switch(&self, method: Method, path: &str, body: &Value) -> Answer {
        let headers = vec![("Authorization".to_owned(), format!("Bearer {SWITCH_TOKEN}"))];
        self.send(method, &format!("/v1/switch{path}"), &headers, Some(body)).await
    }

    /// Sends `bytes` as a raw body with the admin token; the answer as bytes.
    pub async fn admin_bytes(&self, method: Method, path: &str, bytes: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let response = self
            .client
            .request(method, format!("{}/v1/admin{path}", self.base))
            .header("Authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(bytes)
            .send()
            .await
            .expect("request reaches the server");
        (response.status(), response.bytes().await.expect("response body").to_vec())
    }

    /// Uploads a tone (the admin API) and returns the answer.
    pub async fn upload_tone(&self, app_key: &str, file_name: &str, wav: Vec<u8>) -> Answer {
        let (status, bytes) = self.admin_bytes(Method::PUT, &format!("/apps/{app_key}/tones/{file_name}"), wav).await;
        Answer { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }

    /// Uploads and approves a short tone under each name, as ops do before bindings, apps and
    /// scripts may use it.
    pub async fn approve_tones(&self, app_key: &str, names: &[&str]) {
        for name in names {
            self.upload_tone(app_key, name, silence_wav()).await.expect(200, "0");
            let review = serde_json::json!({"approve": true});
            self.admin(Method::POST, &format!("/apps/{app_key}/tones/{name}/review"), Some(&review))
                .await
                .expect(200, "0");
        }
    }

    /// Binds on the AXB app (`POST`, signed); the answer, whatever it is.
    pub async fn bind_axb(&self, body: Value) -> Answer {
        self.call(AXB_APP, Method::POST, AXB_PATH, Some(&body)).await
    }

    /// Binds on the AX app (`POST`, signed); the answer, whatever it is.
    pub async fn bind_ax(&self, body: Value) -> Answer {
        self.call(AX_APP, Method::POST, AX_PATH, Some(&body)).await
    }

    /// Binds on the AXE app (`POST`, signed); the answer, whatever it is.
    pub async fn bind_axe(&self, body: Value) -> Answer {
        self.call(AXE_APP, Method::POST, AXE_PATH, Some(&body)).await
    }
}

/// An HTTPS client that trusts the certificate in `cert` (PEM) and no other.
pub fn client_trusting(cert: &Path) -> reqwest::Client {
    let pem = std::fs::read(cert).expect("the test certificate");
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"))
        .https_only(true)
        .build()
        .expect("an HTTPS client")
}

/// `body` with the fields of `extra` added or replaced.
pub fn with(mut body: Value, extra: Value) -> Value {
    for (key, value) in extra.as_object().expect("extra fields are an object") {
        body[key] = value.clone();
    }
    body
}

/// Polls `probe` every 20 ms until it gives `Some`, for at most `limit`; `None` if it never did.
/// The one way a test waits for something another task does: no sleeps as synchronisation.
pub async fn eventually<T, F: Future<Output = Option<T>>>(limit: Duration, mut probe: impl FnMut() -> F) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(found) = probe().await {
            return Some(found);
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// How often [`eventually`] looks: short next to every limit the tests use (a second or more).
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A tenth of a second of silence, already in the carrier format.
/// Everything the server sends on `stream` until it closes the connection; `None` if it is still
/// open after `patience`.
pub async fn read_until_closed(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    patience: Duration,
) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let mut received = Vec::new();
    let read = tokio::time::timeout(patience, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| received)
}

pub fn silence_wav() -> Vec<u8> {
    privnum::tone::wav::write_alaw(&[0xD5; 800])
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("file name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy file");
        }
    }
}
