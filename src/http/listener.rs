//! The HTTP listener: accepts TCP connections and serves the router on each, with the limits a
//! server facing the internet needs.
//!
//! - **Idle and slow headers.** A connection that has not sent a complete request head within
//!   `http_idle_timeout_secs` of connecting, or of its last response, is closed. One timer covers
//!   both, because HTTP/1 cannot tell a slow header from a keep-alive connection that is idle
//!   until its first byte arrives (hyper starts the timer when it waits for the next request).
//! - **Slow bodies** are bounded where bodies are read (`request::read_body`), with
//!   `http_body_timeout_secs`.
//! - **TLS** (`[tls]`): the listener speaks TLS only, and a handshake that has not completed
//!   within `tls.handshake_timeout_secs` of connecting is closed; a client that speaks plain HTTP
//!   is answered `400` telling it to use `https://` (`http::tls`). The idle timeout starts once the
//!   handshake is done. A connection in its handshake holds its place under the cap like any other.
//! - **Too many connections.** At most `max_connections` are served at once. One more is
//!   accepted and answered `503` with `Connection: close` at once, so a client learns why instead
//!   of timing out, and the descriptors held stay bounded.
//!
//! Invariant: every accepted connection holds one permit of the connection semaphore for as long
//! as it is open, and none holds a lock across an `.await`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::tls::Tls;
use crate::domain::codes;
use crate::telemetry::{ConnectionRefused, Metrics, TlsHandshakeFailed};

/// The limits of [`serve`], from `privnum.toml`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// How long a refused connection may take (its TLS handshake, its request, the answer) before
/// the socket is dropped.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// How long a refused connection's request is waited for before it is answered.
const REFUSAL_READ: Duration = Duration::from_millis(200);

/// How long a failing `accept` (out of descriptors, say) waits before trying again: long
/// enough for open connections to close, short enough that the listener recovers quickly.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` (TLS only, with `tls`) until `stop` changes; then stops accepting and lets the open
/// connections finish the request they are on.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Option<Tls>,
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
            tokio::spawn(refuse(stream, tls.clone()));
            continue;
        };
        // Answers are written whole; Nagle's delay would only hold back their last segment.
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let closed = closed.clone();
        let tls = tls.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(TokioIo::new(stream), peer, router, limits, closed).await,
                Some(tls) => match tls.handshake(stream).await {
                    Ok(stream) => serve_connection(TokioIo::new(stream), peer, router, limits, closed).await,
                    Err(failure) => TlsHandshakeFailed { peer, reason: failure.label() }.emit(&metrics),
                },
            }
            drop(permit);
        });
    }
    let _ = closing.send(true);
}

/// Serves HTTP/1.1 on one connection (plain or TLS) until it closes, or, once `closed`
/// changes, until the request it is on is answered.
async fn serve_connection<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    mut closed: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Each request carries the address it came from (failed authentication is limited per
    // address).
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(super::throttle::ClientAddr(peer));
        tower::ServiceExt::oneshot(router.clone(), request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.idle_timeout).keep_alive(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => log_end(result),
        _ = closed.changed() => {
            connection.as_mut().graceful_shutdown();
            log_end(connection.await);
        }
    }
}

fn log_end(result: Result<(), hyper::Error>) {
    if let Err(err) = result {
        tracing::debug!(error = %err, "a connection ended with an error");
    }
}

/// Tells a connection over the limit why it is refused (over TLS on a TLS listener), then
/// closes it; all within [`REFUSAL_WRITE`].
async fn refuse(stream: TcpStream, tls: Option<Tls>) {
    let body =
        format!(r#"{{"resultcode":"{}","resultdesc":"Too many connections; try again later"}}"#, codes::INTERNAL_ERROR);
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    async fn write(mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin, answer: &[u8]) {
        // The request first, if it comes soon: a client (hyper's, for one) that is answered
        // before it has sent its request takes the answer for a broken connection.
        let mut request = [0u8; 4096];
        let _ = tokio::time::timeout(REFUSAL_READ, stream.read(&mut request)).await;
        let _ = stream.write_all(answer).await;
        let _ = stream.shutdown().await;
    }
    let _ = tokio::time::timeout(REFUSAL_WRITE, async {
        match tls {
            None => write(stream, answer.as_bytes()).await,
            Some(tls) => {
                if let Ok(stream) = tls.accept(stream).await {
                    write(stream, answer.as_bytes()).await;
                }
            }
        }
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
