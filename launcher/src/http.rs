//! The launcher's HTTP endpoints, for the kubelet's probes and for people:
//! `/healthz` (the process is alive), `/readyz` (the VM runs), `/console` (the serial history).
//!
//! A deliberately tiny HTTP/1.1 server on one thread: three GET routes do not need a framework,
//! and the VMM's memory overhead stays small. Every connection gets one response and is closed;
//! a malformed or slow client gets an error or a timeout, never a crash.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use launcher_api::endpoints::{CONSOLE, HEALTHZ, READYZ};

use crate::devices::serial::ConsoleBuffer;

/// Longest request head we read.
const MAX_REQUEST_HEAD: usize = 8 << 10;
/// Most bytes drained from a client after answering it.
const LINGER_MAX_BYTES: usize = 64 << 10;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// What the endpoints report.
#[derive(Debug)]
pub struct Health {
    running: AtomicBool,
    display_live: AtomicBool,
    console: ConsoleBuffer,
}

impl Health {
    /// Not running yet; `console` is served on `/console`.
    pub fn new(console: ConsoleBuffer) -> Self {
        Self {
            running: AtomicBool::new(false),
            display_live: AtomicBool::new(false),
            console,
        }
    }

    /// Marks the guest display live (drawn); a VM without a display is marked so at once.
    pub fn set_display_live(&self, live: bool) {
        self.display_live.store(live, Ordering::Release);
    }

    /// Marks whether the VM runs (what `/readyz` reports).
    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Release);
    }
}

/// A response: status code, reason, content type and body.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            reason,
            body: body.into(),
        }
    }
}

/// Routes one request head (pure: no I/O).
pub fn respond(head: &[u8], health: &Health) -> Response {
    let Ok(head) = std::str::from_utf8(head) else {
        return Response::text(400, "Bad Request", "request is not UTF-8\n");
    };
    let mut parts = head.lines().next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::text(400, "Bad Request", "malformed request line\n");
    };
    if !version.starts_with("HTTP/1.") {
        return Response::text(505, "HTTP Version Not Supported", "HTTP/1.x only\n");
    }
    let path = target.split('?').next().unwrap_or(target);
    if ![HEALTHZ, READYZ, CONSOLE].contains(&path) {
        return Response::text(
            404,
            "Not Found",
            format!("endpoints: {HEALTHZ} {READYZ} {CONSOLE}\n"),
        );
    }
    if method != "GET" && method != "HEAD" {
        return Response::text(405, "Method Not Allowed", "use GET\n");
    }
    let running = health.running.load(Ordering::Acquire);
    let live = health.display_live.load(Ordering::Acquire);
    let mut response = match path {
        HEALTHZ => Response::text(200, "OK", "ok\n"),
        READYZ if running && live => Response::text(200, "OK", "ready\n"),
        READYZ if !running => Response::text(
            503,
            "Service Unavailable",
            "not ready: the VM is not running\n",
        ),
        READYZ => Response::text(
            503,
            "Service Unavailable",
            "not ready: the guest has not drawn its display yet\n",
        ),
        _ => Response::text(200, "OK", health.console.snapshot()),
    };
    if method == "HEAD" {
        response.body.clear();
    }
    response
}

/// Binds `addr` and serves on a new thread; returns the bound address (useful with port 0).
pub fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let thread = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = handle(stream, &health) {
                    eprintln!("verdant-launcher: http: {e}");
                }
            }
        })?;
    Ok((bound, thread))
}

fn handle(mut stream: TcpStream, health: &Health) -> std::io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let response = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break respond(&head, health);
        }
        if head.len() > MAX_REQUEST_HEAD {
            break Response::text(
                431,
                "Request Header Fields Too Large",
                "request head too large\n",
            );
        }
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()), // the client went away
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break Response::text(408, "Request Timeout", "request not received in time\n");
            }
            Err(e) => return Err(e),
        }
    };
    let content_type = "text/plain; charset=utf-8";
    write!(
        stream,
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        response.reason,
        response.body.len()
    )?;
    stream.write_all(&response.body)?;
    stream.flush()?;
    linger(&mut stream)
}

/// Closes gracefully: stop writing, then drain what the client still sends (a bounded amount,
/// briefly), so that closing with unread input does not reset the connection and destroy the
/// response before the client reads it.
fn linger(stream: &mut TcpStream) -> std::io::Result<()> {
    stream.shutdown(std::net::Shutdown::Write)?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_MAX_BYTES {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(running: bool) -> Health {
        let console = ConsoleBuffer::new(64);
        console.push(b"guest says hi\n");
        let h = Health::new(console);
        h.set_running(running);
        h.set_display_live(true);
        h
    }

    #[test]
    fn routes_answer_as_documented() {
        let h = health(true);
        assert_eq!(respond(b"GET /healthz HTTP/1.1\r\n\r\n", &h).status, 200);
        assert_eq!(
            respond(b"GET /readyz HTTP/1.1\r\n\r\n", &h).body,
            b"ready\n"
        );
        assert_eq!(
            respond(b"GET /console?x=1 HTTP/1.0\r\n\r\n", &h).body,
            b"guest says hi\n"
        );
        assert!(
            respond(b"HEAD /console HTTP/1.1\r\n\r\n", &h)
                .body
                .is_empty()
        );
        assert_eq!(
            respond(b"GET /readyz HTTP/1.1\r\n\r\n", &health(false)).status,
            503
        );
        // Running, but the guest has drawn nothing yet: not ready for a user.
        let blank = health(true);
        blank.set_display_live(false);
        let response = respond(b"GET /readyz HTTP/1.1\r\n\r\n", &blank);
        assert_eq!(response.status, 503);
        assert!(String::from_utf8_lossy(&response.body).contains("display"));
    }

    #[test]
    fn bad_requests_get_4xx_not_a_crash() {
        let h = health(true);
        let cases: [(&[u8], u16); 7] = [
            (b"", 400),
            (b"GET\r\n\r\n", 400),
            (b"GET /healthz\r\n\r\n", 400),
            (b"GET /healthz HTTP/1.1 extra\r\n\r\n", 400),
            (b"\xff\xfe /x HTTP/1.1\r\n\r\n", 400),
            (b"GET /nope HTTP/1.1\r\n\r\n", 404),
            (b"POST /readyz HTTP/1.1\r\n\r\n", 405),
        ];
        for (head, status) in cases {
            assert_eq!(
                respond(head, &h).status,
                status,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
        assert_eq!(respond(b"GET /healthz HTTP/2\r\n\r\n", &h).status, 505);
    }
}
