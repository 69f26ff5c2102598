//! What the VNC tests share: the launcher running the demo desktop, and ways to look at it.

use std::process::{Child, Command};
use std::time::Duration;

use crate::common::guest;
use rfb::client::{Client, RAW};

/// A child process, killed and reaped when dropped.
pub struct Launcher(pub Child);

impl Drop for Launcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs vncsnapshot against `port` with the password file `passwd`; the decoded capture.
pub fn snapshot(
    port: u16,
    passwd: &std::path::Path,
    out: &std::path::Path,
    encodings: &str,
) -> Result<(Vec<u8>, u16, u16), String> {
    let result = Command::new("vncsnapshot")
        .args([
            "-quiet",
            "-quality",
            "100",
            "-nojpeg",
            "-encodings",
            encodings,
        ])
        .arg("-passwd")
        .arg(passwd)
        .arg(format!("127.0.0.1::{port}"))
        .arg(out)
        .output()
        .map_err(|e| e.to_string())?;
    if !result.status.success() {
        return Err(format!(
            "vncsnapshot failed: {}",
            String::from_utf8_lossy(&result.stderr)
        ));
    }
    let file = std::fs::File::open(out).map_err(|e| e.to_string())?;
    let mut decoder = jpeg_decoder::Decoder::new(std::io::BufReader::new(file));
    let pixels = decoder.decode().map_err(|e| e.to_string())?;
    let info = decoder.info().ok_or("no JPEG info")?;
    Ok((pixels, info.width, info.height))
}

/// Whether the RGB bytes `actual` are within 12 per channel of the 0xRRGGBB `expected`.
pub fn close(actual: &[u8], expected: u32) -> bool {
    let want = [
        (expected >> 16) as u8,
        (expected >> 8) as u8,
        expected as u8,
    ];
    actual.iter().zip(want).all(|(&a, w)| a.abs_diff(w) <= 12)
}

/// A launcher running the demo desktop behind VNC with `password`, and its port.
pub fn start_demo(password: &str) -> Option<(Launcher, u16, std::path::PathBuf)> {
    let kernel = guest("demo")?;
    let dir = std::env::temp_dir().join(format!("verdant-vnc-{}-{password}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("password");
    std::fs::write(&file, password).unwrap();
    let port = testkit::net::free_port();
    let log = std::fs::File::create(dir.join("launcher.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_verdant-launcher"))
        .args([
            "run",
            "--kernel",
            kernel.to_str().unwrap(),
            "--memory",
            "64Mi",
            "--display",
            "640x480",
        ])
        .args(["--vnc", &format!("127.0.0.1:{port}"), "--vnc-password-file"])
        .arg(&file)
        // The guest's console (stdout) and the launcher's log (stderr) in one file.
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("launcher starts");
    let launcher = Launcher(child);
    // The guest says so once its whole first frame is drawn.
    let drawn = || {
        launcher_log(&dir)
            .contains("demo desktop drawn")
            .then_some(())
    };
    testkit::within_blocking(Duration::from_secs(60), drawn)
        .unwrap_or_else(|| panic!("the demo desktop was never drawn: {}", launcher_log(&dir)));
    Some((launcher, port, dir))
}

/// What the launcher that `start_demo` started in `dir` has logged so far.
pub fn launcher_log(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("launcher.log")).unwrap_or_default()
}

/// Bytes received on `stream` that nobody has read yet.
pub fn unread_bytes(stream: &std::net::TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at `queued`.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut queued) };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    usize::try_from(queued).unwrap_or(0)
}

/// Our shared RFB client (Raw), authenticated with `password`, on the launcher at `port`.
pub fn connect(port: u16, password: &str) -> std::io::Result<Client> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    Client::connect(addr, Some(password.as_bytes()), RAW)
}
