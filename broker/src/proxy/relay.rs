//! The WebSocket <-> launcher VNC relay, after the launcher handshake: the browser half of the
//! handshake, then bytes both ways.
//!
//! Backpressure: the relay reads from the launcher only when the previous chunk has gone out
//! to the browser, so a slow browser holds at most one chunk (and the socket buffers) here;
//! the launcher's own VNC server then sees a slow viewer and sends it fewer frames.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::framer::{Framer, Kind};
use super::handshake::{self, BROWSER_SECURITY_TYPES, SECURITY_NONE, SECURITY_OK};
use super::pace::Pace;

/// Bytes read from the launcher per WebSocket message.
pub const CHUNK: usize = 64 * 1024;

/// How a relayed session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The browser closed it.
    Browser,
    /// The launcher closed it.
    Launcher,
    /// The broker is shutting down; the browser was told to reconnect.
    Shutdown,
    /// What the relay was opened under no longer holds (the desktop changed hands, the
    /// session was ended); the browser was told why.
    Ended(String),
    /// Something broke the protocol or the connection.
    Error(String),
}

/// What the relay reports to while it runs.
#[derive(Clone)]
pub struct Relay {
    /// Drop keyboard, pointer and clipboard input (a shadowing viewer).
    pub view_only: bool,
    /// Unix seconds of the last input relayed.
    pub last_input: Arc<AtomicI64>,
    /// Turns true when the broker shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// Turns `Some(reason)` when this relay must end ([`crate::relays`]).
    pub ended: watch::Receiver<Option<String>>,
    /// Adds bytes relayed: (to the browser, to the launcher).
    pub count: Arc<dyn Fn(u64, u64) + Send + Sync>,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Bytes from the browser, as a stream over its WebSocket messages.
struct Inbound {
    stream: futures::stream::SplitStream<WebSocket>,
    buf: Vec<u8>,
}

impl Inbound {
    /// Reads messages until `n` bytes are buffered; `Err` says how the session ended.
    async fn fill(&mut self, n: usize) -> Result<(), End> {
        while self.buf.len() < n {
            match self.stream.next().await {
                Some(Ok(Message::Binary(bytes))) => self.buf.extend_from_slice(&bytes),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    return Err(End::Error("the viewer sent text; RFB is binary".into()));
                }
                Some(Ok(Message::Close(_))) | None => return Err(End::Browser),
                Some(Err(e)) => return Err(End::Error(format!("viewer WebSocket: {e}"))),
            }
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        self.buf.drain(..n).collect()
    }
}

/// Relays between `socket` and `launcher` (already past its security handshake) until one
/// side closes or the broker shuts down.
pub async fn run(socket: WebSocket, launcher: TcpStream, relay: Relay) -> End {
    let (mut sink, stream) = socket.split();
    let mut inbound = Inbound {
        stream,
        buf: Vec::new(),
    };
    let (mut from_launcher, mut to_launcher) = launcher.into_split();

    // The browser's half of the handshake: version, security None, OK, then ClientInit.
    let browser = async {
        let send = |bytes: &'static [u8]| Message::Binary(bytes.into());
        sink.send(send(handshake::browser_greeting()))
            .await
            .map_err(|e| End::Error(e.to_string()))?;
        inbound.fill(12).await?;
        let version: [u8; 12] = inbound.take(12).try_into().unwrap_or([0; 12]);
        handshake::browser_version(&version).map_err(End::Error)?;
        sink.send(send(&BROWSER_SECURITY_TYPES))
            .await
            .map_err(|e| End::Error(e.to_string()))?;
        inbound.fill(1).await?;
        if inbound.take(1) != [SECURITY_NONE] {
            return Err(End::Error(
                "the viewer chose a security type not offered".into(),
            ));
        }
        sink.send(send(&SECURITY_OK))
            .await
            .map_err(|e| End::Error(e.to_string()))?;
        inbound.fill(1).await?;
        inbound.take(1);
        // ClientInit: always shared, so no viewer (a shadowing helpdesk least of all) can
        // disconnect the others.
        to_launcher
            .write_all(&[1])
            .await
            .map_err(|e| End::Error(format!("launcher: {e}")))
    };
    // A viewer that opens the WebSocket and never finishes its handshake does not hold the
    // launcher connection for long.
    match tokio::time::timeout(handshake::STEP_TIMEOUT, browser).await {
        Ok(Ok(())) => {}
        Ok(Err(end)) => return end,
        Err(_) => return End::Error("the viewer did not finish its RFB handshake in time".into()),
    }

    let mut shutdown = relay.shutdown.clone();
    let mut ended = relay.ended.clone();
    let down = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            // (The guards wait_for returns are dropped inside; they are not Send.)
            let stopping = async {
                let _ = shutdown.wait_for(|down| *down).await;
            };
            let ending = async {
                let why = (ended.wait_for(Option::is_some).await)
                    .map(|why| why.clone().unwrap_or_default());
                match why {
                    Ok(why) => why,
                    // The registry is gone: nothing will end this relay but its ends.
                    Err(_) => std::future::pending().await,
                }
            };
            let read = tokio::select! {
                read = from_launcher.read(&mut buf) => Ok(read),
                () = stopping => Err(None),
                why = ending => Err(Some(why)),
            };
            let n = match read {
                Ok(Ok(0)) => return End::Launcher,
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return End::Error(format!("launcher: {e}")),
                Err(None) => {
                    let close = CloseFrame {
                        code: close_code::RESTART,
                        reason: "the broker is restarting; reconnect".into(),
                    };
                    let _ = sink.send(Message::Close(Some(close))).await;
                    return End::Shutdown;
                }
                Err(Some(why)) => {
                    // 1008: the viewer may not stay (and must not reconnect on its own).
                    let close = CloseFrame {
                        code: close_code::POLICY,
                        reason: why.clone().into(),
                    };
                    let _ = sink.send(Message::Close(Some(close))).await;
                    return End::Ended(why);
                }
            };
            if let Err(e) = sink.send(Message::Binary(buf[..n].to_vec().into())).await {
                return End::Error(format!("viewer WebSocket: {e}"));
            }
            (relay.count)(n as u64, 0);
        }
    };
    let up = async {
        let mut framer = Framer::default();
        let mut pace = Pace::default();
        // What arrived with the handshake's last message.
        let early = std::mem::take(&mut inbound.buf);
        let mut incoming = Some(early);
        loop {
            // Each message from the viewer costs the task cooperative budget, so it yields to
            // the other sessions on its worker every so often. Without this, one viewer's
            // flood of tiny messages (a clipboard a byte a message) is parsed from the socket
            // buffer thousands at a time, never touching the socket, which is where tokio
            // counts the budget otherwise: the other relays on that worker wait meanwhile.
            tokio::task::coop::consume_budget().await;
            let bytes = match incoming.take() {
                Some(bytes) => bytes,
                None => {
                    let next = inbound.stream.next().await;
                    // Every message counts, pings too; over its allowance, the viewer's socket
                    // is left unread a while.
                    if matches!(next, Some(Ok(_)))
                        && let Some(wait) = pace.take(Instant::now())
                    {
                        tokio::time::sleep(wait).await;
                    }
                    match next {
                        Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Text(_))) => {
                            return End::Error("the viewer sent text; RFB is binary".into());
                        }
                        Some(Ok(Message::Close(_))) | None => return End::Browser,
                        Some(Err(e)) => return End::Error(format!("viewer WebSocket: {e}")),
                    }
                }
            };
            if let Err(e) = framer.push(&bytes) {
                return End::Error(format!("viewer: {e}"));
            }
            loop {
                let (kind, message) = match framer.next_message() {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(e) => return End::Error(format!("viewer: {e}")),
                };
                let input = matches!(kind, Kind::Input | Kind::Clipboard);
                if input && relay.view_only {
                    continue;
                }
                if input {
                    relay.last_input.store(unix_now(), Ordering::Relaxed);
                }
                if let Err(e) = to_launcher.write_all(&message).await {
                    return End::Error(format!("launcher: {e}"));
                }
                (relay.count)(0, message.len() as u64);
            }
        }
    };
    tokio::select! {
        end = down => end,
        end = up => end,
    }
}
