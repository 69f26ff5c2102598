//! Serving the router: HTTP/1.1 through hyper directly (for a bound on request heads, TLS
//! and WebSocket upgrades on one listener) and a graceful shutdown that tells every viewer
//! to reconnect (WebSocket close 1012) before the process goes.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::context::Broker;

/// The address a request came from (its TCP peer: behind an Ingress, the Ingress).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// Largest request head (request line and headers) accepted; a larger one gets 431.
pub const MAX_HEAD: usize = 32 * 1024;
/// How long a client may take to send its request head, or its TLS handshake; also how long
/// an idle keep-alive connection stays open (hyper starts the timer when it waits for a
/// head), so it matches what browsers and proxies expect of an idle connection.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// A TLS acceptor for the certificate chain and key in PEM files.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in it",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `broker` on `listener` until `shutdown` resolves; then stops accepting, tells
/// viewers to reconnect, and waits up to the drain time for requests and viewers to end.
pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let router = crate::routes::router(Arc::clone(&broker));
    let watchdog = tokio::spawn(crate::watchdog::run(Arc::clone(&broker)));
    let refresher = tokio::spawn(crate::refresher::run(Arc::clone(&broker)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // Who is at the other end, for the per-client limits ([`crate::routes`]).
        let service = TowerToHyperService::new(router.clone().layer(axum::Extension(Peer(peer))));
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let mut http = Builder::new(TokioExecutor::new());
            http.http1()
                .max_buf_size(MAX_HEAD)
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT);
            let http = http.http1_only();
            let result = match tls {
                None => {
                    let conn = http.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                return tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            }
                            Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                        };
                    let conn = http.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    watchdog.abort();
    refresher.abort();
    tracing::info!("shutting down: telling viewers to reconnect");
    broker.shutdown.send_replace(true);
    let drain = broker.options.drain;
    let requests = graceful.shutdown();
    let viewers = async {
        while broker.metrics.sessions.get() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    if tokio::time::timeout(drain, async { tokio::join!(requests, viewers) })
        .await
        .is_err()
    {
        tracing::warn!(
            seconds = drain.as_secs_f64(),
            "some connections outlived the drain time"
        );
    }
}
