//! An RFB client over any byte stream, async: the same code reads a launcher directly (TCP)
//! and through the broker (a WebSocket, bridged to a byte stream in memory), so the two can
//! be compared side by side. Raw encoding only: tests read pixels, the benchmark reads small
//! regions, and neither wants a codec in the measurement.

use std::io;
use std::path::Path;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use url::Url;

/// Raw encoding.
const RAW: i32 = 0;

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// What a WebSocket handshake was refused with.
#[derive(Debug)]
pub enum WsError {
    /// The server answered the upgrade with this HTTP status.
    Status(u16),
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(code) => write!(f, "HTTP {code}"),
            Self::Other(e) => f.write_str(e),
        }
    }
}

/// A WebSocket over TLS, as [`connect`] opens it.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to `url` (wss, trusting `ca`) with `headers` (cookie, origin).
pub async fn connect(url: &Url, ca: &Path, headers: &[(&str, &str)]) -> Result<Ws, WsError> {
    let other = |e: &dyn std::fmt::Display| WsError::Other(e.to_string());
    let host = url.host_str().ok_or_else(|| other(&"no host"))?.to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| other(&e))?;
    tcp.set_nodelay(true).map_err(|e| other(&e))?;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).map_err(|e| other(&e))?;
    use rustls_pki_types::pem::PemObject;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| other(&e))?)
            .map_err(|e| other(&e))?;
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| other(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| other(&e))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| other(&e))?;
    let mut request = url.as_str().into_client_request().map_err(|e| other(&e))?;
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| other(&e))?,
            http::HeaderValue::from_str(value).map_err(|e| other(&e))?,
        );
    }
    let (ws, _) = match tokio_tungstenite::client_async(request, tls).await {
        Ok(done) => done,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            return Err(WsError::Status(response.status().as_u16()));
        }
        Err(e) => return Err(other(&e)),
    };
    Ok(ws)
}

/// Opens a WebSocket to `url` (wss, trusting `ca`) with `headers` (cookie, origin), and
/// returns it as a byte stream: binary messages in, binary messages out.
pub async fn websocket(
    url: &Url,
    ca: &Path,
    headers: &[(&str, &str)],
) -> Result<DuplexStream, WsError> {
    Ok(websocket_closing(url, ca, headers).await?.0)
}

/// How the server closed a WebSocket: its close code and reason (`None`: no close frame,
/// the connection just ended).
pub type Closed = Option<(u16, String)>;

/// [`websocket`], and how the server closes it, once it does.
pub async fn websocket_closing(
    url: &Url,
    ca: &Path,
    headers: &[(&str, &str)],
) -> Result<(DuplexStream, tokio::sync::oneshot::Receiver<Closed>), WsError> {
    let ws = connect(url, ca, headers).await?;
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let (mut read, mut write) = tokio::io::split(theirs);
        let up = async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sink
                            .send(Message::Binary(buf[..n].to_vec().into()))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
            let _ = sink.close().await;
        };
        let down = async {
            let mut close = None;
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    Message::Binary(bytes) if write.write_all(&bytes).await.is_err() => break,
                    Message::Close(frame) => {
                        close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                        break;
                    }
                    _ => {}
                }
            }
            let _ = write.shutdown().await;
            let _ = closed_tx.send(close);
        };
        tokio::select! { () = up => {}, () = down => {} }
    });
    Ok((ours, closed))
}

/// What one update brought.
#[derive(Debug, Clone, Copy, Default)]
pub struct Update {
    /// Rectangles.
    pub rects: u16,
    /// Bytes of pixel data.
    pub bytes: u64,
}

/// An RFB 3.8 client over `S`.
pub struct RfbClient<S> {
    stream: S,
    /// Framebuffer width.
    pub width: u16,
    /// Framebuffer height.
    pub height: u16,
    /// The framebuffer as decoded, 0x00RRGGBB.
    pub pixels: Vec<u32>,
    /// The last clipboard text the server sent.
    pub cut_text: Option<Vec<u8>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RfbClient<S> {
    /// Connects: version, security (VNC authentication with `password`, else None), shared
    /// ClientInit, 32-bit x8r8g8b8 pixels, Raw encoding.
    pub async fn handshake(mut stream: S, password: Option<&[u8]>) -> io::Result<Self> {
        let mut version = [0u8; 12];
        stream.read_exact(&mut version).await?;
        if !version.starts_with(b"RFB 003.") {
            return Err(invalid(format!("not an RFB server: {version:?}")));
        }
        stream.write_all(b"RFB 003.008\n").await?;
        let count = stream.read_u8().await?;
        if count == 0 {
            return Err(invalid("the server refused the connection".into()));
        }
        let mut types = vec![0u8; count.into()];
        stream.read_exact(&mut types).await?;
        match password {
            Some(password) if types.contains(&2) => {
                stream.write_all(&[2]).await?;
                let mut challenge = [0u8; 16];
                stream.read_exact(&mut challenge).await?;
                stream
                    .write_all(&rfb::auth::response(password, &challenge))
                    .await?;
            }
            _ if types.contains(&1) => stream.write_all(&[1]).await?,
            _ => return Err(invalid(format!("security types {types:?}"))),
        }
        if stream.read_u32().await? != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "security handshake failed",
            ));
        }
        stream.write_all(&[1]).await?;
        let width = stream.read_u16().await?;
        let height = stream.read_u16().await?;
        let mut format = [0u8; 16];
        stream.read_exact(&mut format).await?;
        let name_len = stream.read_u32().await?;
        if name_len > 4096 {
            return Err(invalid(format!("desktop name of {name_len} bytes")));
        }
        let mut name = vec![0u8; name_len as usize];
        stream.read_exact(&mut name).await?;
        let mut message = vec![
            0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0,
        ];
        message.extend_from_slice(&[2, 0, 0, 1]);
        message.extend_from_slice(&RAW.to_be_bytes());
        stream.write_all(&message).await?;
        Ok(Self {
            stream,
            width,
            height,
            pixels: vec![0; usize::from(width) * usize::from(height)],
            cut_text: None,
        })
    }

    /// Asks for an update of a region.
    pub async fn request(
        &mut self,
        incremental: bool,
        x: u16,
        y: u16,
        w: u16,
        h: u16,
    ) -> io::Result<()> {
        let mut m = vec![3, u8::from(incremental)];
        for v in [x, y, w, h] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        self.stream.write_all(&m).await
    }

    /// Reads server messages until a framebuffer update is complete (clipboard text on the
    /// way is kept in [`Self::cut_text`]).
    pub async fn read_update(&mut self) -> io::Result<Update> {
        loop {
            match self.stream.read_u8().await? {
                0 => return self.read_rects().await,
                2 => {} // bell
                3 => {
                    let mut pad = [0u8; 3];
                    self.stream.read_exact(&mut pad).await?;
                    let len = self.stream.read_i32().await?;
                    let size = len.unsigned_abs() as usize;
                    if size > 1 << 20 {
                        return Err(invalid(format!("cut text of {size} bytes")));
                    }
                    let mut text = vec![0u8; size];
                    self.stream.read_exact(&mut text).await?;
                    if len >= 0 {
                        self.cut_text = Some(text);
                    }
                }
                other => return Err(invalid(format!("server message type {other}"))),
            }
        }
    }

    /// Reads the next clipboard text the server sends, skipping updates.
    pub async fn read_cut_text(&mut self) -> io::Result<Vec<u8>> {
        self.cut_text = None;
        loop {
            self.read_update().await?;
            if let Some(text) = self.cut_text.take() {
                return Ok(text);
            }
            // An update came first: ask for more so the server keeps talking.
            self.request(true, 0, 0, self.width, self.height).await?;
        }
    }

    async fn read_rects(&mut self) -> io::Result<Update> {
        let mut pad = [0u8; 1];
        self.stream.read_exact(&mut pad).await?;
        let rects = self.stream.read_u16().await?;
        let mut bytes = 0u64;
        let mut row = Vec::new();
        for _ in 0..rects {
            let x = self.stream.read_u16().await?;
            let y = self.stream.read_u16().await?;
            let w = self.stream.read_u16().await?;
            let h = self.stream.read_u16().await?;
            let encoding = self.stream.read_i32().await?;
            if encoding != RAW {
                return Err(invalid(format!("encoding {encoding} was not asked for")));
            }
            if u32::from(x) + u32::from(w) > u32::from(self.width)
                || u32::from(y) + u32::from(h) > u32::from(self.height)
            {
                return Err(invalid(format!(
                    "rectangle {w}x{h}+{x}+{y} outside the screen"
                )));
            }
            row.resize(usize::from(w) * 4, 0);
            for line in 0..h {
                self.stream.read_exact(&mut row).await?;
                let start =
                    (usize::from(y) + usize::from(line)) * usize::from(self.width) + usize::from(x);
                for (i, px) in row.chunks_exact(4).enumerate() {
                    self.pixels[start + i] = u32::from_le_bytes([px[0], px[1], px[2], 0]);
                }
            }
            bytes += u64::from(w) * u64::from(h) * 4;
        }
        Ok(Update { rects, bytes })
    }

    /// Presses and releases a key.
    pub async fn key(&mut self, keysym: u32) -> io::Result<()> {
        for down in [1u8, 0] {
            let mut m = vec![4, down, 0, 0];
            m.extend_from_slice(&keysym.to_be_bytes());
            self.stream.write_all(&m).await?;
        }
        Ok(())
    }

    /// Sends clipboard text (Latin-1).
    pub async fn send_cut_text(&mut self, text: &[u8]) -> io::Result<()> {
        let mut m = vec![6, 0, 0, 0];
        m.extend_from_slice(&(text.len() as u32).to_be_bytes());
        m.extend_from_slice(text);
        self.stream.write_all(&m).await
    }

    /// The pixel at (x, y), 0xRRGGBB.
    pub fn pixel(&self, x: u16, y: u16) -> u32 {
        self.pixels[usize::from(y) * usize::from(self.width) + usize::from(x)]
    }
}
