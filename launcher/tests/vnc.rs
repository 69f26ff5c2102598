//! The VNC server with a client we did not write: Debian's `vncsnapshot` captures the demo
//! desktop through VNC authentication, and the test checks known pixels of the capture.
//! Skips, saying why, without `/dev/kvm`, the test guests or `vncsnapshot`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::guest;
use launcher::display::vnc::auth::obfuscated_password_file;

struct Launcher(Child);

impl Drop for Launcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs vncsnapshot against `port` with the password file `passwd`; the decoded capture.
fn snapshot(
    port: u16,
    passwd: &std::path::Path,
    out: &std::path::Path,
) -> Result<(Vec<u8>, u16, u16), String> {
    let result = Command::new("vncsnapshot")
        .args(["-quiet", "-quality", "100", "-passwd"])
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

fn close(actual: &[u8], expected: u32) -> bool {
    let want = [
        (expected >> 16) as u8,
        (expected >> 8) as u8,
        expected as u8,
    ];
    actual.iter().zip(want).all(|(&a, w)| a.abs_diff(w) <= 12)
}

#[test]
fn vncsnapshot_captures_the_demo_desktop_with_vnc_authentication() {
    let Some(kernel) = guest("demo") else { return };
    if Command::new("vncsnapshot").arg("-h").output().is_err() {
        eprintln!("SKIP: vncsnapshot is not installed (Debian package vncsnapshot)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("verdant-vnc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password = dir.join("password");
    std::fs::write(&password, "pa55word\n").unwrap();
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, obfuscated_password_file(b"pa55word")).unwrap();
    let wrong = dir.join("wrong");
    std::fs::write(&wrong, obfuscated_password_file(b"guess")).unwrap();

    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdant-launcher"))
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
        .arg(&password)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("launcher starts");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let _launcher = Launcher(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the display goes live");
        if line.contains("the guest display is live") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(500)); // let the first frame complete

    // A wrong password is refused; the server carries on.
    let refused = snapshot(port, &wrong, &dir.join("refused.jpg"));
    assert!(refused.is_err(), "a wrong password got a picture");

    let (pixels, width, height) =
        snapshot(port, &passwd, &dir.join("desktop.jpg")).expect("capture");
    assert_eq!((width, height), (640, 480));
    let at = |x: usize, y: usize| &pixels[(y * 640 + x) * 3..(y * 640 + x) * 3 + 3];
    for (x, y, colour, what) in [
        (10, 10, 0x20_2020, "top panel"),
        (320, 470, 0x30_3030, "task bar"),
        (600, 300, 0x30_6090, "background"),
        (100, 90, 0x40_60a0, "window title bar"),
        (150, 180, 0xf0_f0f0, "window body"),
    ] {
        assert!(
            close(at(x, y), colour),
            "{what} at ({x},{y}) is {:?}, want {colour:06x}",
            at(x, y)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
