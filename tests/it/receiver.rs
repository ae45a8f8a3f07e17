//! A real webhook receiver on loopback, standing in for a customer's server: it records every
//! push (path, body, whether its X-AKSK signature verifies) and can be told to fail or to hang.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Json;
use serde_json::Value;

use crate::support::eventually;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub body: Value,
    pub signed_by: Option<String>,
}

#[derive(Default)]
struct Inner {
    received: Mutex<Vec<Received>>,
    /// Answer 500 to this many more pushes.
    fail_next: AtomicUsize,
    /// 0 answer, 1 hang.
    hang: AtomicUsize,
    /// Answer 400 to this many more pushes.
    reject_next: AtomicUsize,
    secrets: Mutex<Vec<(String, String)>>,
    /// Answer each push this many milliseconds after it arrived.
    delay_ms: AtomicU64,
    /// Down: answer 503 to every push at once.
    down: AtomicBool,
    /// Answer 500 to every event of this session.
    failing_session: Mutex<Option<String>>,
    /// Every push that arrived (answered or not), and the most answered at once.
    attempts: AtomicUsize,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Inner>,
    pub base: String,
}

async fn receive(State(inner): State<Arc<Inner>>, uri: Uri, headers: HeaderMap, Json(body): Json<Value>) -> StatusCode {
    inner.attempts.fetch_add(1, Ordering::SeqCst);
    let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    inner.most_in_flight.fetch_max(now, Ordering::SeqCst);
    let status = answer(&inner, uri, headers, body).await;
    inner.in_flight.fetch_sub(1, Ordering::SeqCst);
    status
}

async fn answer(inner: &Inner, uri: Uri, headers: HeaderMap, body: Value) -> StatusCode {
    if inner.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let delay = inner.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let failing = inner.failing_session.lock().unwrap().clone();
    if failing.is_some_and(|session| body["statusInfo"]["sessionId"] == session.as_str()) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if inner.hang.load(Ordering::SeqCst) == 1 {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if inner.reject_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)).is_ok() {
        return StatusCode::BAD_REQUEST;
    }
    // Take one failure, atomically: concurrent lanes must not both take the last one.
    if inner.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)).is_ok() {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed_by = privnum::auth::parse(text("authorization"), text).ok().and_then(|credentials| {
        let secrets = inner.secrets.lock().unwrap();
        let secret = secrets.iter().find(|(app, _)| *app == credentials.app_key).map(|(_, s)| s.clone())?;
        credentials.verify(&secret).then_some(credentials.app_key)
    });
    inner.received.lock().unwrap().push(Received { path: uri.path().to_owned(), body, signed_by });
    StatusCode::OK
}

impl Receiver {
    /// Starts on a free loopback port; `secrets` are the apps whose signatures it checks.
    pub async fn start(secrets: &[(&str, &str)]) -> Receiver {
        let inner = Arc::new(Inner::default());
        *inner.secrets.lock().unwrap() = secrets.iter().map(|(a, s)| ((*a).to_owned(), (*s).to_owned())).collect();
        let router = axum::Router::new().fallback(axum::routing::post(receive)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver { inner, base }
    }

    /// Like [`Receiver::start`], over HTTPS with this certificate and key (PEM); its base is
    /// `https://127.0.0.1:port`.
    pub async fn start_tls(secrets: &[(&str, &str)], cert_pem: &str, key_pem: &str) -> Receiver {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let inner = Arc::new(Inner::default());
        *inner.secrets.lock().unwrap() = secrets.iter().map(|(a, s)| ((*a).to_owned(), (*s).to_owned())).collect();
        let router = axum::Router::new().fallback(axum::routing::post(receive)).with_state(inner.clone());
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tokio::spawn(async move {
                    // A client that does not trust the certificate ends the handshake.
                    let Ok(stream) = acceptor.accept(stream).await else { return };
                    let service = hyper_util::service::TowerToHyperService::new(router);
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Receiver { inner, base }
    }

    pub fn fail_next(&self, count: usize) {
        self.inner.fail_next.store(count, Ordering::SeqCst);
    }

    pub fn reject_next(&self, count: usize) {
        self.inner.reject_next.store(count, Ordering::SeqCst);
    }

    pub fn hang(&self, on: bool) {
        self.inner.hang.store(usize::from(on), Ordering::SeqCst);
    }

    /// Answers each push `ms` milliseconds after it arrived.
    pub fn delay_ms(&self, ms: u64) {
        self.inner.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Down: every push is answered 503 at once, until it is back.
    pub fn down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// Every event of `session` is answered 500 (`None`: none).
    pub fn fail_session(&self, session: Option<&str>) {
        *self.inner.failing_session.lock().unwrap() = session.map(str::to_owned);
    }

    /// Pushes that arrived, answered or not.
    pub fn attempts(&self) -> usize {
        self.inner.attempts.load(Ordering::SeqCst)
    }

    /// The most pushes it was answering at once.
    pub fn most_in_flight(&self) -> usize {
        self.inner.most_in_flight.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) until `done` holds for what was received; what was received then,
    /// or at the limit, for the test's assertions to judge.
    pub async fn wait_for(&self, limit: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let received = eventually(limit, || {
            let received = self.received();
            std::future::ready(done(&received).then_some(received))
        });
        received.await.unwrap_or_else(|| self.received())
    }
}

/// The event types pushed for one session, in arrival order.
pub fn events_of(received: &[Received], session_id: &str) -> Vec<String> {
    received
        .iter()
        .filter(|r| r.path == "/events" && r.body["statusInfo"]["sessionId"] == session_id)
        .map(|r| r.body["eventType"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Every CDR item received, in arrival order.
pub fn cdrs(received: &[Received]) -> Vec<Value> {
    received
        .iter()
        .filter(|r| r.path == "/cdr")
        .flat_map(|r| r.body["feeLst"].as_array().cloned().unwrap_or_default())
        .collect()
}
