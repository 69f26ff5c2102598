//! What a hostile viewer can send the broker that a well-behaved browser does not: RFB over
//! a WebSocket whose messages it cuts itself ([`RawViewer`]), and a clipboard flood that runs
//! while a test or benchmark measures everyone else ([`Flood`]).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use url::Url;

use crate::wsrfb::Ws;

/// Raw encoding.
const RAW: i32 = 0;

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A viewer that cuts its own WebSocket messages, as a hostile browser can: RFB over a raw
/// WebSocket to the broker (security None, the broker's side of the handshake), reading no
/// more of the server's messages than it must to stay in step.
pub struct RawViewer {
    sink: futures::stream::SplitSink<Ws, Message>,
    stream: futures::stream::SplitStream<Ws>,
    buf: Vec<u8>,
    /// Bytes per pixel of the server's own format (from ServerInit; this viewer sets none).
    bytes_per_pixel: usize,
}

/// A ClientCutText message of `size` bytes of text.
pub fn cut_text_message(size: u32) -> Vec<u8> {
    let mut message = vec![6, 0, 0, 0];
    message.extend_from_slice(&size.to_be_bytes());
    message.extend((0..size).map(|i| b'a' + (i % 26) as u8));
    message
}

fn ws_error(e: tokio_tungstenite::tungstenite::Error) -> io::Error {
    io::Error::other(format!("WebSocket: {e}"))
}

impl RawViewer {
    /// Takes `ws` (opened with [`connect`]) through the RFB handshake: version 3.8, security
    /// None, shared ClientInit, ServerInit.
    pub async fn handshake(ws: Ws) -> io::Result<Self> {
        let (sink, stream) = ws.split();
        let mut viewer = Self {
            sink,
            stream,
            buf: Vec::new(),
            bytes_per_pixel: 4,
        };
        let version = viewer.take(12).await?;
        if version != b"RFB 003.008\n" {
            return Err(invalid(format!("not RFB 3.8: {version:?}")));
        }
        viewer.send(b"RFB 003.008\n".to_vec()).await?;
        let count = viewer.take(1).await?[0] as usize;
        let types = viewer.take(count).await?;
        if !types.contains(&1) {
            return Err(invalid(format!("security None not offered: {types:?}")));
        }
        viewer.send(vec![1]).await?;
        if viewer.take(4).await? != [0, 0, 0, 0] {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "security handshake failed",
            ));
        }
        viewer.send(vec![1]).await?;
        let init = viewer.take(24).await?;
        viewer.bytes_per_pixel = usize::from(init[4] / 8).max(1);
        let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
        if name_len > 4096 {
            return Err(invalid(format!("desktop name of {name_len} bytes")));
        }
        viewer.take(name_len).await?;
        Ok(viewer)
    }

    async fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            match self.stream.next().await {
                Some(Ok(Message::Binary(bytes))) => self.buf.extend_from_slice(&bytes),
                Some(Ok(Message::Close(close))) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("the broker closed the viewer: {close:?}"),
                    ));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(ws_error(e)),
                None => return Err(io::ErrorKind::UnexpectedEof.into()),
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Sends `bytes` as one WebSocket message.
    pub async fn send(&mut self, bytes: Vec<u8>) -> io::Result<()> {
        self.sink
            .send(Message::Binary(bytes.into()))
            .await
            .map_err(ws_error)
    }

    /// Sends `bytes` one byte per WebSocket message, flushing every 4096; how many it sent.
    /// Stops early, after a flush, once `stop` turns true.
    pub async fn send_bytewise(
        &mut self,
        bytes: &[u8],
        stop: Option<&AtomicBool>,
    ) -> io::Result<usize> {
        let mut sent = 0;
        for chunk in bytes.chunks(4096) {
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                break;
            }
            for &byte in chunk {
                self.sink
                    .feed(Message::Binary(vec![byte].into()))
                    .await
                    .map_err(ws_error)?;
            }
            self.sink.flush().await.map_err(ws_error)?;
            sent += chunk.len();
        }
        Ok(sent)
    }

    /// Asks for a 16x16 update and reads it (skipping bells and clipboard text). The broker
    /// relays messages in order, so once it is read, everything sent before it has been
    /// framed and passed on.
    pub async fn round_trip(&mut self) -> io::Result<()> {
        self.send(vec![3, 0, 0, 0, 0, 0, 0, 16, 0, 16]).await?;
        loop {
            match self.take(1).await?[0] {
                0 => break,
                2 => {}
                3 => {
                    let header = self.take(7).await?;
                    let len = i32::from_be_bytes([header[3], header[4], header[5], header[6]]);
                    self.take(len.unsigned_abs() as usize).await?;
                }
                other => return Err(invalid(format!("server message type {other}"))),
            }
        }
        let header = self.take(3).await?;
        for _ in 0..u16::from_be_bytes([header[1], header[2]]) {
            let rect = self.take(12).await?;
            let (w, h) = (
                usize::from(u16::from_be_bytes([rect[4], rect[5]])),
                usize::from(u16::from_be_bytes([rect[6], rect[7]])),
            );
            let encoding = i32::from_be_bytes([rect[8], rect[9], rect[10], rect[11]]);
            if encoding != RAW {
                return Err(invalid(format!("encoding {encoding} was not asked for")));
            }
            self.take(w * h * self.bytes_per_pixel).await?;
        }
        Ok(())
    }
}

/// What a [`Flood`] came to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flooded {
    /// Whole clipboards sent and seen relayed (an update asked for after each came back).
    pub clipboards: usize,
    /// One-byte WebSocket messages sent (the last clipboard may be cut short).
    pub messages: usize,
    /// Seconds from the first byte to the stop.
    pub seconds: f64,
}

impl Flooded {
    /// Adds another flood's figures to these.
    pub fn add(&mut self, other: &Flooded) {
        self.clipboards += other.clipboards;
        self.messages += other.messages;
        self.seconds += other.seconds;
    }
}

/// A viewer sending clipboards of `size` bytes one after another, each a byte a WebSocket
/// message, until it is stopped. It runs on a thread of its own, with its own runtime: it
/// stands for a client elsewhere, so the measuring side's tasks never wait behind it on a
/// worker thread. It does share the machine's CPUs, at the same priority ([`Flooded`] says
/// how fast it went).
pub struct Flood {
    thread: std::thread::JoinHandle<io::Result<Flooded>>,
    started: tokio::sync::watch::Receiver<bool>,
    stop: Arc<AtomicBool>,
}

impl Flood {
    /// Opens a viewer on the WebSocket at `url` (trusting `ca`, with `headers`) and starts
    /// the flood on it.
    pub fn start(url: Url, ca: PathBuf, headers: Vec<(String, String)>, size: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (started_tx, started) = tokio::sync::watch::channel(false);
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let ws = crate::wsrfb::connect(&url, &ca, &headers)
                    .await
                    .map_err(|e| io::Error::other(format!("WebSocket: {e}")))?;
                let mut viewer = RawViewer::handshake(ws).await?;
                let clipboard = cut_text_message(size);
                let began = Instant::now();
                let (mut clipboards, mut messages) = (0, 0);
                let _ = started_tx.send(true);
                loop {
                    let sent = viewer.send_bytewise(&clipboard, Some(&flag)).await?;
                    messages += sent;
                    if sent < clipboard.len() {
                        break;
                    }
                    viewer.round_trip().await?;
                    clipboards += 1;
                }
                Ok(Flooded {
                    clipboards,
                    messages,
                    seconds: began.elapsed().as_secs_f64(),
                })
            })
        });
        Self {
            thread,
            started,
            stop,
        }
    }

    /// Runs `work` while the flood runs (once it has begun), then stops the flood and says
    /// what it came to. An error of the flooding viewer (the broker refused or closed it)
    /// is the error: the work did not run under a flood.
    pub async fn during<T>(mut self, work: impl Future<Output = T>) -> io::Result<(T, Flooded)> {
        let began = self.started.wait_for(|s| *s).await.is_ok();
        let out = if began { Some(work.await) } else { None };
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread;
        let flooded = tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| io::Error::other(format!("the flood's thread: {e}")))?
            .map_err(|_| io::Error::other("the flood's thread panicked"))??;
        let out = out.ok_or_else(|| io::Error::other("the flood never began"))?;
        Ok((out, flooded))
    }
}
