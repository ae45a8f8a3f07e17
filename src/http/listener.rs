//! The HTTP listener: accepts TCP connections and serves the router on each, with the limits a
//! server facing the internet needs.
//!
//! - **Idle and slow headers.** A connection that has not sent a complete request head within
//!   `http_idle_timeout_secs` of connecting, or of its last response, is closed. One timer covers
//!   both, because HTTP/1 cannot tell a slow header from a keep-alive connection that is idle
//!   until its first byte arrives (hyper starts the timer when it waits for the next request).
//! - **Slow bodies** are bounded where bodies are read (`request::read_body`), with
//!   `http_body_timeout_secs`.
//! - **Too many connections.** At most `max_connections` are served at once. One more is
//!   accepted and answered `503` with `Connection: close` at once, so a client learns why instead
//!   of timing out, and the descriptors held stay bounded.
//!
//! Invariant: every accepted connection holds one permit of the connection semaphore for as long
//! as it is open, and none holds a lock across an `.await`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::domain::codes;
use crate::telemetry::{ConnectionRefused, Metrics};

/// The limits of [`serve`], from `privnum.toml`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// How long a refused connection's answer may take to write before the socket is dropped.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// How long a failing `accept` (out of descriptors, say) waits before trying again: long
/// enough for open connections to close, short enough that the listener recovers quickly.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `stop` changes; then stops accepting and lets the open
/// connections finish the request they are on.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closed) = watch::channel(false);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    if !is_connection_error(&err) {
                        tracing::error!(error = %err, "accepting a connection failed; trying again shortly");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            ConnectionRefused { peer, limit: limits.max_connections }.emit(&metrics);
            tokio::spawn(refuse(stream));
            continue;
        };
        // Answers are written whole; Nagle's delay would only hold back their last segment.
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let mut closed = closed.clone();
        tokio::spawn(async move {
            // Each request carries the address it came from (failed authentication is limited
            // per address).
            let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(super::throttle::ClientAddr(peer));
                tower::ServiceExt::oneshot(router.clone(), request)
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.idle_timeout).keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => log_end(result),
                _ = closed.changed() => {
                    connection.as_mut().graceful_shutdown();
                    log_end(connection.await);
                }
            }
            drop(permit);
        });
    }
    let _ = closing.send(true);
}

fn log_end(result: Result<(), hyper::Error>) {
    if let Err(err) = result {
        tracing::debug!(error = %err, "a connection ended with an error");
    }
}

/// Tells a connection over the limit why it is refused, then closes it.
async fn refuse(mut stream: TcpStream) {
    let body =
        format!(r#"{{"resultcode":"{}","resultdesc":"Too many connections; try again later"}}"#, codes::INTERNAL_ERROR);
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_WRITE, async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Errors of one connection, not of the listener: the next `accept` may well succeed.
fn is_connection_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(err.kind(), ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset)
}

/// Raises this process's open-file limit to the hard limit the system allows, and returns the
/// limit in force (or `None` where it cannot be read). Each connection holds one descriptor.
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(err) => {
            tracing::warn!(error = %err, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
        }
    }
}
