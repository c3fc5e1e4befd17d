//! The sandbox over HTTPS: a TLS identity (certificate chain and key, PEM)
//! turned into a rustls server config, and the accept loop that serves the
//! router over it: TLS by tokio-rustls, HTTP/1.1 by hyper, graceful
//! shutdown by hyper-util, as `axum::serve` does for plain HTTP. Gateway
//! clients reach it exactly as they reach a real gateway: HTTPS, verifying
//! the certificate against the roots they were told to trust.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::{SandboxError, SandboxTls};

/// How long a client may take over its TLS handshake; a client that
/// connects and says nothing must not hold a task for ever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to pause accepting after an error such as too many open files,
/// rather than spin on it (as `axum::serve` does).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The acceptor for `identity`, on ring (the provider reqwest's rustls
/// uses, so one crypto library serves both ends).
pub(super) fn acceptor(identity: &SandboxTls) -> Result<TlsAcceptor, SandboxError> {
    let invalid = |field: &'static str, reason: &str| SandboxError::Config {
        field,
        reason: reason.to_owned(),
    };
    let chain = CertificateDer::pem_slice_iter(identity.cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| invalid("tls.cert_chain_pem", "is not PEM certificates"))?;
    if chain.is_empty() {
        return Err(invalid("tls.cert_chain_pem", "holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(identity.private_key_pem.expose_secret().as_bytes())
        .map_err(|_| invalid("tls.private_key_pem", "holds no PEM private key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| invalid("tls", "no TLS version is available"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|_| {
            invalid(
                "tls.private_key_pem",
                "does not match the first certificate, or is of a kind rustls refuses",
            )
        })?;
    // HTTP/1.1 only, as the plain listener: hyper here speaks nothing else.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` over TLS on `listener` until `stopped` turns true, then
/// waits for the requests in flight (the caller bounds the wait).
pub(super) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    mut stopped: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        // The stop signal's guard is dropped inside its own future: held
        // across the pause below it would make this future not `Send`.
        let stop = async {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "sandbox: accepting a connection failed; pausing");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        // The handshake runs in the connection's task, so one slow client
        // does not hold up the next accept.
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        // Typically a client that does not trust our certificate.
                        tracing::debug!(client = %peer, %error, "sandbox: TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(client = %peer, "sandbox: TLS handshake timed out");
                        return;
                    }
                };
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(client = %peer, %error, "sandbox: connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
