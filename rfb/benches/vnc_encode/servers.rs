//! The two servers under test, behind one trait: ours, serving a frame in plain memory as the
//! launcher serves guest memory (without a VM), and TigerVNC's Xvnc, drawn on through X11.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use rfb::{FrameSource, MemoryFrame, Security, ServerOptions, serve};

use crate::canvas::Rect;
use crate::desktop::{HEIGHT, WIDTH};
use crate::x11;

/// A VNC server under test.
pub trait Server {
    /// Its name in the report.
    fn name(&self) -> &'static str;
    /// Where viewers connect.
    fn addr(&self) -> SocketAddr;
    /// Makes it show `frame` (`WIDTH` pixels a row), which changed inside `damage`; returns
    /// once a viewer asking now would be shown the change.
    fn show(&mut self, frame: &[u32], damage: &[Rect]) -> Result<(), String>;
}

/// Our server, on a frame in plain memory that nothing but this benchmark draws in.
pub struct Verdant {
    frame: Arc<MemoryFrame>,
    addr: SocketAddr,
}

impl Verdant {
    /// Makes the frame and starts serving it on a free local port.
    pub fn start() -> Result<Verdant, String> {
        let frame = Arc::new(MemoryFrame::new(WIDTH, HEIGHT));
        let options = ServerOptions {
            max_fps: 60,
            ..ServerOptions::new("bench", Security::None)
        };
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        let (addr, _thread) = serve(local, Arc::clone(&frame) as Arc<dyn FrameSource>, options)
            .map_err(|e| format!("start our VNC server: {e}"))?;
        Ok(Verdant { frame, addr })
    }
}

impl Server for Verdant {
    fn name(&self) -> &'static str {
        "ours"
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn show(&mut self, frame: &[u32], damage: &[Rect]) -> Result<(), String> {
        let mut rows = Vec::new();
        for &(x, y, w, h) in damage {
            rows.clear();
            for row in y..y + h {
                let start = (row * WIDTH + x) as usize;
                rows.extend_from_slice(&frame[start..start + w as usize]);
            }
            self.frame.draw((x, y), w, &rows);
        }
        Ok(())
    }
}

/// An Xvnc process, stopped when dropped, panics included.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        // SIGTERM first: Xvnc then removes its socket and lock file, which SIGKILL leaves.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// TigerVNC's Xvnc on a display of its own, and an X connection to draw on it.
pub struct TigerVnc {
    display: x11::Display,
    addr: SocketAddr,
    // Dropped last: the X connection closes before the server goes.
    _process: Process,
}

impl TigerVnc {
    /// Starts `Xvnc` on a free display and port, or says why it cannot.
    pub fn start() -> Result<TigerVnc, String> {
        if Command::new("Xvnc").arg("-version").output().is_err() {
            return Err("Xvnc is not on PATH (Debian package tigervnc-standalone-server)".into());
        }
        let number = (20..200)
            .find(|n| {
                !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                    && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
            })
            .ok_or("no free X display number in :20 to :199")?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("find a free port: {e}"))?
            .port();
        let log = std::env::temp_dir().join(format!("verdant-bench-xvnc-{number}.log"));
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new("Xvnc")
            .arg(format!(":{number}"))
            .args(["-geometry", &format!("{WIDTH}x{HEIGHT}"), "-depth", "24"])
            .args(["-rfbport", &port.to_string()])
            .args(["-SecurityTypes", "None", "-localhost", "-AlwaysShared"])
            // TigerVNC 1.12 has no -DeferUpdate: it takes damage on its own frame clock
            // (FrameRate, 60 a second), which the pause before each request lets tick.
            .args(["-nolisten", "tcp"])
            // No screen saver blanking the screen in a long run.
            .args(["-s", "0"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("start Xvnc: {e}"))?;
        let mut process = Process(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let display = wait_until_up(&mut process, number, addr, &log)?;
        Ok(TigerVnc {
            display,
            addr,
            _process: process,
        })
    }
}

/// Waits for Xvnc's X socket and RFB port, and connects to its display.
fn wait_until_up(
    process: &mut Process,
    number: u32,
    addr: SocketAddr,
    log: &Path,
) -> Result<x11::Display, String> {
    let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = process.0.try_wait() {
            return Err(format!("Xvnc exited ({status}); see {}", log.display()));
        }
        if socket.exists() && TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            return x11::Display::connect(&format!(":{number}"));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "Xvnc :{number} did not come up in 15 s; see {}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Server for TigerVnc {
    fn name(&self) -> &'static str {
        "TigerVNC"
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn show(&mut self, frame: &[u32], damage: &[Rect]) -> Result<(), String> {
        for &rect in damage {
            self.display.upload(frame, WIDTH, rect)?;
        }
        Ok(())
    }
}
