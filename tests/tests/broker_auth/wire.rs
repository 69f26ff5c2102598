//! The requests on the wire: a viewer's WebSocket with RFB through it, a raw request over TLS.

use std::sync::Arc;
use std::time::Duration;

use tests::env::Env;
use tests::wsrfb::{RfbClient, WsError, websocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// Opens the viewer WebSocket at `path` with `headers` and speaks RFB through it: "101+RFB"
/// and the client, or the status it was refused with.
pub(crate) async fn open(
    s: &Env,
    path: &str,
    headers: &[(&str, &str)],
) -> (String, Option<RfbClient<DuplexStream>>) {
    let mut url = s.broker().at(path);
    url.set_scheme("wss").unwrap();
    match websocket(&url, &s.broker().ca, headers).await {
        Ok(stream) => match RfbClient::handshake(stream, None).await {
            Ok(client) => ("101+RFB".into(), Some(client)),
            Err(e) => (format!("101, then RFB failed: {e}"), None),
        },
        Err(WsError::Status(code)) => (code.to_string(), None),
        Err(e) => (format!("error: {e}"), None),
    }
}

/// Sends a request byte for byte over TLS (a form `body` when not empty), so no client
/// normalises the path or balks at a huge head; the status code of the answer.
pub(crate) async fn raw(
    s: &Env,
    method: &str,
    path: &str,
    with: &[(&str, &str)],
    body: &str,
) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", s.broker().addr);
    for (name, value) in with {
        head += &format!("{name}: {value}\r\n");
    }
    if !body.is_empty() {
        head += "content-type: application/x-www-form-urlencoded\r\n";
    }
    let length = body.len();
    head += &format!("content-length: {length}\r\nconnection: close\r\n\r\n{body}");
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&s.broker().ca).unwrap();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(s.broker().addr.ip().to_string()).unwrap();
    let tcp = tokio::net::TcpStream::connect(s.broker().addr)
        .await
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let (mut read, mut write) = tokio::io::split(connector.connect(name, tcp).await.unwrap());
    // Written while the answer is read: the broker answers a head too large before reading all.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(head.as_bytes()).await;
        let _ = write.flush().await;
        write
    });
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        while !got.windows(2).any(|w| w == b"\r\n") {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    let text = String::from_utf8_lossy(&got);
    let code = text.split_whitespace().nth(1).map(str::to_owned);
    code.unwrap_or_else(|| format!("no answer ({} bytes)", got.len()))
}
