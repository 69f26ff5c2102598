//! The launcher's HTTP endpoints, for the kubelet's probes and for people:
//! `/healthz` (the process is alive), `/readyz` (the VM runs), `/console` (the serial history).
//!
//! A deliberately tiny HTTP/1.1 server on one thread: three GET routes do not need a framework,
//! and the VMM's memory overhead stays small. It serves every connection at once from one
//! `poll(2)` loop (no new dependency, and only calls the seccomp profile already allows), so
//! no client, slow or many, can keep the kubelet's probes from an answer: a probe that would
//! go unanswered gets the launcher killed and the user's VM lost. Every connection gets one
//! response and is closed; a malformed or slow client gets an error or a timeout, never a
//! crash. `/console` (the guest's boot command line and output) answers the pod itself only,
//! never the network: `kubectl logs` shows the same console.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use launcher_api::endpoints::{CONSOLE, HEALTHZ, READYZ};

use crate::devices::serial::ConsoleBuffer;

/// Longest request head we read.
const MAX_REQUEST_HEAD: usize = 8 << 10;
/// Most bytes drained from a client after answering it.
const LINGER_MAX_BYTES: usize = 64 << 10;
/// How long a client may take to send its whole request head, from its connection.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// How long a client may take to take its answer.
const RESPONSE_DEADLINE: Duration = Duration::from_secs(2);
/// How long an answered client's leftover input is drained.
const LINGER: Duration = Duration::from_millis(200);
/// Most connections open at once; one more closes the oldest.
pub const MAX_CONNECTIONS: usize = 128;
/// Longest wait for something to do when nothing has a deadline.
const IDLE_WAIT: Duration = Duration::from_secs(1);

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

/// Routes one request head (pure: no I/O); `local`: it came from the pod itself.
pub fn respond(head: &[u8], local: bool, health: &Health) -> Response {
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
    if path == CONSOLE && !local {
        return Response::text(
            403,
            "Forbidden",
            "the console is served to the pod itself only; kubectl logs shows it\n",
        );
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
    // Before the seccomp profile goes on (it allows no ioctl but KVM's): accepting never
    // waits for a client, so one loop can serve them all.
    listener.set_nonblocking(true)?;
    let thread = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || Server::new(listener, health).run())?;
    Ok((bound, thread))
}

/// Where a connection is.
enum Stage {
    /// Reading the request head.
    Reading(Vec<u8>),
    /// Writing the response, from this offset.
    Writing(Vec<u8>, usize),
    /// Answered: draining what the client still sends, so closing does not reset the
    /// connection before the client has read the answer.
    Draining(usize),
}

/// One client connection.
struct Connection {
    stream: TcpStream,
    /// From the pod itself (loopback): the only peer `/console` answers.
    local: bool,
    /// When it must be done with its stage.
    deadline: Instant,
    stage: Stage,
}

/// The endpoints' event loop: one thread, every connection at once, none able to hold the
/// others up. Each connection has a deadline for its whole request (not per read, so a
/// client trickling a byte at a time gets 408 within it), another for its answer, and at
/// most [`MAX_CONNECTIONS`] are open; one more closes the oldest. A probe that sends its
/// request at once is answered in the same round of the loop, whatever else is connected.
struct Server {
    listener: TcpListener,
    health: Arc<Health>,
    connections: Vec<Connection>,
}

impl Server {
    fn new(listener: TcpListener, health: Arc<Health>) -> Self {
        Self {
            listener,
            health,
            connections: Vec::new(),
        }
    }

    fn run(mut self) {
        loop {
            if let Err(e) = self.round() {
                eprintln!("verdant-launcher: http: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Waits for something to do (or a deadline), then does it.
    fn round(&mut self) -> std::io::Result<()> {
        let now = Instant::now();
        let mut fds = Vec::with_capacity(self.connections.len() + 1);
        fds.push(libc::pollfd {
            fd: self.listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for c in &self.connections {
            let events = match c.stage {
                Stage::Writing(..) => libc::POLLOUT,
                Stage::Reading(_) | Stage::Draining(_) => libc::POLLIN,
            };
            fds.push(libc::pollfd {
                fd: c.stream.as_raw_fd(),
                events,
                revents: 0,
            });
        }
        let wait = self
            .connections
            .iter()
            .map(|c| c.deadline.saturating_duration_since(now))
            .min()
            .unwrap_or(IDLE_WAIT)
            .min(IDLE_WAIT);
        // Rounded up, so a deadline is never polled for in a busy loop.
        let timeout = wait.as_millis().min(i32::MAX as u128) as i32 + 1;
        // SAFETY: `fds` is a valid, initialised array of `fds.len()` pollfd structs that
        // outlives the call; poll writes only their `revents`.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if ready < 0 {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                std::io::ErrorKind::Interrupted => Ok(()),
                _ => Err(e),
            };
        }
        let now = Instant::now();
        // Connections first (indices match `fds` until accepting adds more).
        let mut keep = Vec::with_capacity(self.connections.len());
        for (c, fd) in std::mem::take(&mut self.connections)
            .into_iter()
            .zip(&fds[1..])
        {
            let active = fd.revents != 0;
            if let Some(c) = self.advance(c, active, now) {
                keep.push(c);
            }
        }
        self.connections = keep;
        if fds[0].revents != 0 {
            self.accept(now);
        }
        Ok(())
    }

    /// Accepts every waiting client; past the cap, the oldest connection makes room.
    fn accept(&mut self, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    if self.connections.len() >= MAX_CONNECTIONS {
                        // The oldest is the one that had its chance longest (dropping closes it).
                        self.connections.remove(0);
                    }
                    let mut c = Connection {
                        stream,
                        local: peer.ip().is_loopback(),
                        deadline: now + REQUEST_DEADLINE,
                        stage: Stage::Reading(Vec::with_capacity(512)),
                    };
                    // Most clients sent their request with the handshake: answer it now.
                    c = match self.advance(c, true, now) {
                        Some(c) => c,
                        None => continue,
                    };
                    self.connections.push(c);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // Out of descriptors and the like: the next round tries again.
                Err(e) => {
                    eprintln!("verdant-launcher: http: accept: {e}");
                    return;
                }
            }
        }
    }

    /// Moves `c` on as far as it can go without waiting (`active`: poll said it can); `None`
    /// once it is closed.
    fn advance(&self, mut c: Connection, active: bool, now: Instant) -> Option<Connection> {
        loop {
            match &mut c.stage {
                Stage::Reading(head) => {
                    if let Some(response) = complete(head, c.local, &self.health) {
                        c.stage = Stage::Writing(encode(&response), 0);
                        c.deadline = now + RESPONSE_DEADLINE;
                        continue;
                    }
                    if now >= c.deadline {
                        let late = Response::text(
                            408,
                            "Request Timeout",
                            "request not received in time\n",
                        );
                        c.stage = Stage::Writing(encode(&late), 0);
                        c.deadline = now + RESPONSE_DEADLINE;
                        continue;
                    }
                    if !active {
                        return Some(c);
                    }
                    let mut buf = [0u8; 1024];
                    match receive(&c.stream, &mut buf) {
                        Ok(Some(0)) | Err(_) => return None,
                        Ok(Some(n)) => head.extend_from_slice(&buf[..n]),
                        Ok(None) => return Some(c),
                    }
                }
                Stage::Writing(out, at) => {
                    if now >= c.deadline {
                        return None;
                    }
                    match send(&c.stream, &out[*at..]) {
                        Ok(Some(n)) => *at += n,
                        Ok(None) => return Some(c),
                        Err(_) => return None,
                    }
                    if *at == out.len() {
                        c.stream.shutdown(Shutdown::Write).ok()?;
                        c.stage = Stage::Draining(0);
                        c.deadline = now + LINGER;
                    }
                }
                Stage::Draining(drained) => {
                    if now >= c.deadline || *drained >= LINGER_MAX_BYTES {
                        return None;
                    }
                    let mut buf = [0u8; 4096];
                    match receive(&c.stream, &mut buf) {
                        Ok(Some(0)) | Err(_) => return None,
                        Ok(Some(n)) => *drained += n,
                        Ok(None) => return Some(c),
                    }
                }
            }
        }
    }
}

/// The response to a request head read so far, once there is one to give.
fn complete(head: &[u8], local: bool, health: &Health) -> Option<Response> {
    if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
        return Some(respond(head, local, health));
    }
    (head.len() > MAX_REQUEST_HEAD).then(|| {
        Response::text(
            431,
            "Request Header Fields Too Large",
            "request head too large\n",
        )
    })
}

fn encode(response: &Response) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        response.reason,
        response.body.len()
    )
    .into_bytes();
    out.extend_from_slice(&response.body);
    out
}

/// Reads what is there without waiting: `Some(0)` at the end, `None` when nothing is.
fn receive(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the call; the descriptor is
    // the stream's own, open while it lives.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    settle(n)
}

/// Writes what fits without waiting: `None` when nothing does.
fn send(stream: &TcpStream, bytes: &[u8]) -> std::io::Result<Option<usize>> {
    // SAFETY: `bytes` is valid for reads of `bytes.len()` bytes for the call; the descriptor
    // is the stream's own. MSG_NOSIGNAL: a client gone is an error here, not SIGPIPE.
    let n = unsafe {
        libc::send(
            stream.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    settle(n)
}

fn settle(n: isize) -> std::io::Result<Option<usize>> {
    if n >= 0 {
        return Ok(Some(n as usize));
    }
    let e = std::io::Error::last_os_error();
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(None),
        _ => Err(e),
    }
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
        assert_eq!(
            respond(b"GET /healthz HTTP/1.1\r\n\r\n", true, &h).status,
            200
        );
        assert_eq!(
            respond(b"GET /readyz HTTP/1.1\r\n\r\n", true, &h).body,
            b"ready\n"
        );
        assert_eq!(
            respond(b"GET /console?x=1 HTTP/1.0\r\n\r\n", true, &h).body,
            b"guest says hi\n"
        );
        assert!(
            respond(b"HEAD /console HTTP/1.1\r\n\r\n", true, &h)
                .body
                .is_empty()
        );
        assert_eq!(
            respond(b"GET /readyz HTTP/1.1\r\n\r\n", true, &health(false)).status,
            503
        );
        // Running, but the guest has drawn nothing yet: not ready for a user.
        let blank = health(true);
        blank.set_display_live(false);
        let response = respond(b"GET /readyz HTTP/1.1\r\n\r\n", true, &blank);
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
                respond(head, true, &h).status,
                status,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
        assert_eq!(
            respond(b"GET /healthz HTTP/2\r\n\r\n", true, &h).status,
            505
        );
    }

    #[test]
    fn the_console_answers_the_pod_itself_only() {
        let h = health(true);
        let from_network = respond(b"GET /console HTTP/1.1\r\n\r\n", false, &h);
        assert_eq!(from_network.status, 403);
        assert!(!String::from_utf8_lossy(&from_network.body).contains("guest says hi"));
        assert_eq!(
            respond(b"GET /healthz HTTP/1.1\r\n\r\n", false, &h).status,
            200,
            "probes come from the node"
        );
    }

    /// Sends `request` on a new connection and reads the status code.
    fn probe(addr: SocketAddr, request: &[u8]) -> u16 {
        use std::io::{Read, Write};
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn slow_and_many_clients_never_hold_up_a_probe() {
        use std::io::Write;
        let (addr, _thread) =
            serve("127.0.0.1:0".parse().unwrap(), Arc::new(health(true))).unwrap();
        // Twice the cap of idle clients, then 50 trickling a request a byte at a time.
        let idle: Vec<TcpStream> = (0..2 * MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let mut slow: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let started = Instant::now();
        let mut answered = 0;
        for round in 0..20 {
            for s in &mut slow {
                let _ = s.write_all(&b"GET /healthz HTTP/1.1\r\n"[round % 8..round % 8 + 1]);
            }
            let asked = Instant::now();
            if probe(addr, b"GET /healthz HTTP/1.1\r\n\r\n") == 200 {
                answered += 1;
            }
            assert!(
                asked.elapsed() < Duration::from_secs(1),
                "a probe waited {:?} behind slow clients",
                asked.elapsed()
            );
        }
        assert_eq!(answered, 20, "probes answered of 20");
        // The trickling clients got their 408 within the whole-request deadline, not per byte.
        let mut timed_out = 0;
        for s in &mut slow {
            use std::io::Read;
            s.set_read_timeout(Some(REQUEST_DEADLINE + Duration::from_secs(3)))
                .unwrap();
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 408") {
                timed_out += 1;
            }
        }
        assert!(
            started.elapsed() < REQUEST_DEADLINE + Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
        // The idle clients, the oldest, made room (the cap); every trickling one got its 408.
        assert_eq!(timed_out, 50, "trickling clients answered 408");
        drop(idle);
    }
}
