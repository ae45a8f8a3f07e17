//! TLS for the listener (`[tls]` in `privnum.toml`): the certificate chain and key, read once at
//! start, and the handshake of each connection, bounded in time.
//!
//! The provisioning API's signature (AKSK/WSSE) covers only its `Nonce` and `Created`, not the
//! method, path or body, so TLS is what protects a request on the way (README, Reliability and
//! security). rustls with the `ring` provider; TLS 1.2 and 1.3, HTTP/1.1 by ALPN.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;
use crate::domain::codes;

/// What the listener needs to speak TLS: the acceptor (certificate and key loaded) and how long
/// a handshake may take. Cheap to clone.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("handshake_timeout", &self.handshake_timeout).finish_non_exhaustive()
    }
}

/// A `[tls]` file that cannot be used, naming the key and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.{key}: cannot read {path}: {source}")]
    Read { key: &'static str, path: PathBuf, source: io::Error },
    #[error("tls.{key}: {path} holds {what}: {problem}")]
    Pem { key: &'static str, path: PathBuf, what: &'static str, problem: String },
    #[error("tls: the key in {key} does not serve the certificate in {cert}: {source}")]
    Unusable { cert: PathBuf, key: PathBuf, source: rustls::Error },
}

/// Reads `[tls]`'s certificate chain and key and builds the acceptor. Blocking file reads: call
/// it at start, before serving.
pub fn load(config: &TlsConfig) -> Result<Tls, TlsError> {
    let chain = read_certificates(&config.cert)?;
    let key = read_key(&config.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let unusable =
        |source: rustls::Error| TlsError::Unusable { cert: config.cert.clone(), key: config.key.clone(), source };
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(unusable)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(unusable)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        handshake_timeout: Duration::from_secs(config.handshake_timeout_secs),
    })
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { key, path: path.to_owned(), source })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read("cert", path)?;
    let pem =
        |problem: String| TlsError::Pem { key: "cert", path: path.to_owned(), what: "no usable certificate", problem };
    let chain =
        CertificateDer::pem_slice_iter(&text).collect::<Result<Vec<_>, _>>().map_err(|err| pem(err.to_string()))?;
    if chain.is_empty() {
        return Err(pem("no \"BEGIN CERTIFICATE\" section".to_owned()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read("key", path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|err| TlsError::Pem {
        key: "key",
        path: path.to_owned(),
        what: "no usable private key",
        problem: match err {
            pem::Error::NoItemsFound => {
                "no \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\" section".to_owned()
            }
            other => other.to_string(),
        },
    })
}

/// Why a connection never got past its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// It did not complete within `tls.handshake_timeout_secs`.
    Timeout,
    /// The client spoke plain HTTP; it was answered 400 saying to use `https://`.
    PlainHttp,
    /// The client closed, or its handshake was refused (no common version or cipher, a bad
    /// record).
    Refused,
}

impl HandshakeFailure {
    /// The `reason` label of `privnum_tls_handshakes_failed_total`.
    pub fn label(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::PlainHttp => "plain_http",
            HandshakeFailure::Refused => "refused",
        }
    }
}

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// How long the answer to a plain-HTTP client may take to write, and how long its request is
/// drained afterwards (closing with unread data would reset the connection before the client
/// reads the answer).
const PLAIN_HTTP_ANSWER: Duration = Duration::from_secs(1);

/// The most of a plain-HTTP client's request that is drained before closing.
const PLAIN_HTTP_DRAIN: usize = 64 * 1024;

impl Tls {
    /// Completes the server side of the handshake within the handshake timeout. A client whose
    /// first byte is not a TLS handshake record but a letter (an HTTP method) is answered 400 in
    /// plain HTTP, telling it to use `https://`, and closed.
    pub async fn handshake(&self, stream: TcpStream) -> Result<TlsStream<TcpStream>, HandshakeFailure> {
        let deadline = tokio::time::Instant::now() + self.handshake_timeout;
        let mut first = [0u8; 1];
        match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
            Err(_) => return Err(HandshakeFailure::Timeout),
            Ok(Ok(0) | Err(_)) => return Err(HandshakeFailure::Refused),
            Ok(Ok(_)) if first[0] != TLS_HANDSHAKE_RECORD && first[0].is_ascii_alphabetic() => {
                answer_plain_http(stream).await;
                return Err(HandshakeFailure::PlainHttp);
            }
            Ok(Ok(_)) => {}
        }
        match tokio::time::timeout_at(deadline, self.acceptor.accept(stream)).await {
            Err(_) => Err(HandshakeFailure::Timeout),
            Ok(Err(_)) => Err(HandshakeFailure::Refused),
            Ok(Ok(stream)) => Ok(stream),
        }
    }

    /// The handshake alone, unbounded: the caller bounds it (the listener's refusal of a
    /// connection over the cap).
    pub async fn accept(&self, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        self.acceptor.accept(stream).await
    }
}

/// Tells a plain-HTTP client on the TLS port to use `https://`, then closes.
async fn answer_plain_http(mut stream: TcpStream) {
    let body = format!(
        r#"{{"resultcode":"{}","resultdesc":"This port speaks HTTPS only: use https://"}}"#,
        codes::INVALID_REQUEST
    );
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(PLAIN_HTTP_ANSWER, async {
        if stream.write_all(answer.as_bytes()).await.is_err() || stream.shutdown().await.is_err() {
            return;
        }
        let mut drained = 0;
        let mut buffer = [0u8; 4096];
        while drained < PLAIN_HTTP_DRAIN {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}
