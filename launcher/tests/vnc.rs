//! The VNC server with clients we did not write: Debian's `vncsnapshot` (Raw and Tight, VNC
//! authentication), `vncdotool` (ZRLE, keys, pointer) and noVNC in headless Chromium (Tight,
//! UTF-8 clipboard, CopyRect), plus our own minimal client for what real clients would not do
//! (malformed messages, a viewer that stops reading). Each test skips, saying why, where
//! `/dev/kvm`, the test guests or its viewer is missing.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::guest;
use rfb::auth::obfuscated_password_file;
use rfb::client::{Client, RAW, closed_by_server};

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
    if Command::new("vncsnapshot").arg("-h").output().is_err() {
        testkit::skip(
            testkit::VIEWERS,
            "vncsnapshot is not installed (Debian package vncsnapshot)",
        );
        return;
    }
    let Some((_launcher, port, dir)) = start_demo("pa55word") else {
        return;
    };
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, obfuscated_password_file(b"pa55word")).unwrap();
    let wrong = dir.join("wrong");
    std::fs::write(&wrong, obfuscated_password_file(b"guess")).unwrap();

    // A wrong password is refused; the server carries on.
    let refused = snapshot(port, &wrong, &dir.join("refused.jpg"), "raw");
    assert!(refused.is_err(), "a wrong password got a picture");

    // Raw, then Tight as TightVNC 1.2.8 (vncsnapshot's decoder) reads it.
    for encodings in ["raw", "tight"] {
        let (pixels, width, height) = snapshot(port, &passwd, &dir.join("desktop.jpg"), encodings)
            .unwrap_or_else(|e| panic!("capture with {encodings}: {e}"));
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
                "{encodings}: {what} at ({x},{y}) is {:?}, want {colour:06x}",
                at(x, y)
            );
        }
    }
    assert!(
        launcher_log(&dir).contains(": Tight, compression level"),
        "vncsnapshot was served Tight"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A launcher running the demo desktop behind VNC with `password`, and its port.
fn start_demo(password: &str) -> Option<(Launcher, u16, std::path::PathBuf)> {
    let kernel = guest("demo")?;
    let dir = std::env::temp_dir().join(format!("verdant-vnc-{}-{password}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("password");
    std::fs::write(&file, password).unwrap();
    let port = free_port();
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
    let deadline = Instant::now() + Duration::from_secs(60);
    // The guest says so once its whole first frame is drawn.
    while !launcher_log(&dir).contains("demo desktop drawn") {
        assert!(
            Instant::now() < deadline,
            "the demo desktop was never drawn: {}",
            launcher_log(&dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((launcher, port, dir))
}

/// What the launcher that `start_demo` started in `dir` has logged so far.
fn launcher_log(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("launcher.log")).unwrap_or_default()
}

/// Bytes received on `stream` that nobody has read yet.
fn unread_bytes(stream: &std::net::TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at `queued`.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut queued) };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    usize::try_from(queued).unwrap_or(0)
}

/// Our shared RFB client (Raw), authenticated with `password`, on the launcher at `port`.
fn connect(port: u16, password: &str) -> std::io::Result<Client> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    Client::connect(addr, Some(password.as_bytes()), RAW)
}

#[test]
fn each_malformed_client_is_closed_and_the_server_carries_on() {
    let Some((_launcher, port, dir)) = start_demo("hunter22") else {
        return;
    };
    use std::io::{Read, Write};
    let raw = move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut version = [0u8; 12];
        s.read_exact(&mut version).unwrap();
        s
    };
    type Case = (&'static str, Box<dyn Fn() -> std::net::TcpStream>);
    let cases: Vec<Case> = vec![
        (
            "bad version",
            Box::new(move || {
                let mut s = raw();
                s.write_all(b"HTTP/1.1 GET").unwrap();
                s
            }),
        ),
        (
            "unoffered security type",
            Box::new(move || {
                let mut s = raw();
                s.write_all(b"RFB 003.008\n").unwrap();
                let mut types = [0u8; 2];
                s.read_exact(&mut types).unwrap();
                s.write_all(&[1]).unwrap(); // None, which was not offered
                s
            }),
        ),
        (
            "wrong password",
            Box::new(move || {
                let mut s = raw();
                s.write_all(b"RFB 003.008\n").unwrap();
                let mut types = [0u8; 2];
                s.read_exact(&mut types).unwrap();
                s.write_all(&[2]).unwrap();
                let mut challenge = [0u8; 16];
                s.read_exact(&mut challenge).unwrap();
                s.write_all(&[0u8; 16]).unwrap();
                s
            }),
        ),
        (
            "unknown message type",
            Box::new(move || {
                let mut s = connect(port, "hunter22").unwrap();
                s.send(&[42]).unwrap();
                s.stream().try_clone().unwrap()
            }),
        ),
        (
            "absurd clipboard length",
            Box::new(move || {
                let mut s = connect(port, "hunter22").unwrap();
                s.send(&[6, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]).unwrap();
                s.stream().try_clone().unwrap()
            }),
        ),
        (
            "absurd encoding count",
            Box::new(move || {
                let mut s = connect(port, "hunter22").unwrap();
                s.send(&[2, 0, 0xff, 0xff]).unwrap();
                s.stream().try_clone().unwrap()
            }),
        ),
        (
            "colour-map pixel format",
            Box::new(move || {
                let mut s = connect(port, "hunter22").unwrap();
                s.send(&[0, 0, 0, 0, 8, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
                    .unwrap();
                s.stream().try_clone().unwrap()
            }),
        ),
        (
            "truncated message, then silence",
            Box::new(move || {
                let mut s = connect(port, "hunter22").unwrap();
                s.send(&[3, 1, 0]).unwrap();
                s.stream().shutdown(std::net::Shutdown::Write).unwrap();
                s.stream().try_clone().unwrap()
            }),
        ),
    ];
    for (what, make) in &cases {
        let mut s = make();
        assert!(
            closed_by_server(&mut s, Duration::from_secs(5)),
            "{what}: the connection stayed open"
        );
        // Everyone else is still served.
        let mut good = connect(port, "hunter22").unwrap_or_else(|e| panic!("after {what}: {e}"));
        good.request(false).unwrap();
        assert!(good.read().unwrap().rects >= 1, "after {what}: no update");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn slow_handshakes_take_no_viewer_slot_and_end_at_their_deadline() {
    let Some((_launcher, port, dir)) = start_demo("slowhand") else {
        return;
    };
    use std::io::{Read, Write};
    // As many viewers as there are slots, each sending its version a byte every 4 s: within
    // any per-read timeout, but never done.
    let started = Instant::now();
    let slow: Vec<std::thread::JoinHandle<(Duration, bool)>> = (0..rfb::server::MAX_VIEWERS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                let mut version = [0u8; 12];
                s.read_exact(&mut version).unwrap();
                let opened = Instant::now();
                for byte in b"RFB 003.008\n" {
                    // Closed meanwhile? (Reads what the server sent: nothing, or its end.)
                    if closed_by_server(&mut s, Duration::from_millis(10)) {
                        return (opened.elapsed(), true);
                    }
                    let _ = s.write_all(&[*byte]);
                    std::thread::sleep(Duration::from_secs(4));
                }
                (opened.elapsed(), false)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    // A real viewer meanwhile: in at once, and served.
    let mut viewer = connect(port, "slowhand")
        .unwrap_or_else(|e| panic!("a viewer behind 16 slow handshakes: {e}"));
    viewer.request(false).unwrap();
    assert!(
        viewer.read().unwrap().rects >= 1,
        "the viewer got no update"
    );
    let entered = started.elapsed();
    // Each slow one was closed by the handshake's deadline, not after its 48 s of bytes.
    for t in slow {
        let (lasted, closed) = t.join().unwrap();
        assert!(closed, "a slow handshake was left open after {lasted:?}");
        assert!(
            lasted < rfb::handshake::HANDSHAKE_DEADLINE + Duration::from_secs(6),
            "a slow handshake lasted {lasted:?}"
        );
    }
    eprintln!(
        "a viewer got in {entered:?} after {} slow handshakes began; they were closed within {:?}",
        rfb::server::MAX_VIEWERS,
        rfb::handshake::HANDSHAKE_DEADLINE
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn eight_viewers_get_updates_and_a_stalled_one_delays_nobody() {
    let Some((_launcher, port, dir)) = start_demo("viewers8") else {
        return;
    };
    let mut viewers: Vec<_> = (0..8).map(|_| connect(port, "viewers8").unwrap()).collect();
    for v in &mut viewers {
        v.request(false).unwrap();
        assert!(v.read().unwrap().rects >= 1);
    }
    // How often does a viewer see the demo's clock change, incrementally?
    let rate = |v: &mut Client, window: Duration| -> usize {
        let start = Instant::now();
        let mut updates = 0;
        while start.elapsed() < window {
            v.request(true).unwrap();
            v.read().unwrap();
            updates += 1;
        }
        updates
    };
    let window = Duration::from_secs(3);
    let alone = rate(&mut viewers[0], window);
    // A viewer that asks for whole frames and never reads them: its socket fills up.
    let mut stalled = connect(port, "viewers8").unwrap();
    for _ in 0..200 {
        if stalled.request(false).is_err() {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    // It is stalled indeed: the server sent it more than it read, and now waits on it.
    let queued = unread_bytes(stalled.stream());
    assert!(
        queued >= 64 << 10,
        "the ninth viewer has only {queued} bytes unread: it is not stalled"
    );
    let with_stalled = rate(&mut viewers[1], window);
    println!(
        "updates seen in {window:?} by one viewer: {alone} with 8 viewers, {with_stalled} with a ninth that stopped reading ({queued} bytes unread; ratio {:.2})",
        with_stalled as f64 / alone.max(1) as f64
    );
    // Delaying nobody: the others keep seeing the clock change as often as before (the
    // machine is noisy, so at least half as often, never not at all).
    assert!(
        with_stalled * 2 >= alone && with_stalled > 0,
        "the stalled viewer slowed the others: {with_stalled} updates against {alone} before"
    );
    // Every viewer is still served.
    for v in &mut viewers[2..] {
        v.request(false).unwrap();
        assert!(v.read().unwrap().rects >= 1);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keys_typed_in_vncdotool_show_up_in_the_next_capture() {
    if Command::new("vncdo").arg("--version").output().is_err() {
        testkit::skip(
            testkit::VIEWERS,
            "vncdotool is not installed (pip install vncdotool)",
        );
        return;
    }
    if Command::new("vncsnapshot").arg("-h").output().is_err() {
        testkit::skip(
            testkit::VIEWERS,
            "vncsnapshot is not installed (Debian package vncsnapshot)",
        );
        return;
    }
    let Some((_launcher, port, dir)) = start_demo("typist") else {
        return;
    };
    let typed = Command::new("vncdo")
        .args([
            "-s",
            &format!("127.0.0.1::{port}"),
            "-p",
            "typist",
            "type",
            "abc",
        ])
        .output()
        .expect("vncdo runs");
    assert!(
        typed.status.success(),
        "vncdo: {}",
        String::from_utf8_lossy(&typed.stderr)
    );
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, obfuscated_password_file(b"typist")).unwrap();
    // The demo draws the n-th key pressed at x = 100 + 20n, y = 120, coloured make code
    // (scancode set 2) * 0x010203: a = 0x1c, b = 0x32, c = 0x21.
    let expected = [
        (108, 128, 0x1c_3854),
        (128, 128, 0x32_6496),
        (148, 128, 0x21_4263),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (pixels, _, _) =
            snapshot(port, &passwd, &dir.join("keys.jpg"), "tight").expect("capture");
        let at = |x: usize, y: usize| pixels[(y * 640 + x) * 3..(y * 640 + x) * 3 + 3].to_vec();
        if expected.iter().all(|&(x, y, c)| close(&at(x, y), c)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "typed keys never showed: {:?}",
            expected
                .iter()
                .map(|&(x, y, _)| at(x, y))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs a vncdotool `script` with `args`; its output lines, or `None` (having said why) when
/// the vncdotool Python package is missing.
fn run_vncdotool(script: &str, args: &[&str]) -> Option<Vec<String>> {
    let missing = Command::new("python3")
        .args(["-c", "import vncdotool"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true);
    if missing {
        testkit::skip(
            testkit::VIEWERS,
            "the vncdotool Python package is not installed (pip install vncdotool)",
        );
        return None;
    }
    let out = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "vncdotool: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout.lines().map(str::to_owned).collect())
}

/// vncdotool as a library, told to ask for ZRLE and to use QEMU extended key events: it types
/// `keys`, captures the screen (a lossless PNG) and prints the RGB of `points`.
const VNCDOTOOL_ZRLE: &str = r#"
import sys
from vncdotool import api, client, rfb
server, password, keys, points = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
client.VNCDoToolClient.encoding = rfb.Encoding.ZRLE
client.VNCDoToolFactory.qemu_extended_key = True
c = api.connect(server, password=password)
try:
    for key in keys:
        c.keyPress(key)
    c.pause(1.0)
    c.refreshScreen()
    image = c.screen.convert("RGB")
    for point in points:
        x, y = map(int, point.split(","))
        print("%d,%d %02x%02x%02x" % ((x, y) + image.getpixel((x, y))))
finally:
    c.disconnect()
    api.shutdown()
"#;

#[test]
fn zrle_and_qemu_key_events_work_with_vncdotool() {
    let Some((_launcher, port, dir)) = start_demo("zrle-key") else {
        return;
    };
    let server = format!("127.0.0.1::{port}");
    let points = [
        "10,10", "320,470", "600,300", "100,90", "150,180", "108,128", "128,128",
    ];
    let mut args = vec![server.as_str(), "zrle-key", "xy"];
    args.extend(points);
    let Some(lines) = run_vncdotool(VNCDOTOOL_ZRLE, &args) else {
        return;
    };
    // Exact colours: the capture is lossless, so ZRLE decoded to the very pixels. The two keys
    // arrived through QEMU extended key events: x = set 2 code 0x22, y = 0x35.
    let expected = [
        "10,10 202020",
        "320,470 303030",
        "600,300 306090",
        "100,90 4060a0",
        "150,180 f0f0f0",
        "108,128 224466",
        "128,128 356a9f",
    ];
    assert_eq!(lines, expected);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs noVNC in headless Chromium against the VNC server on `port` (check.mjs, through
/// websockify) with `env`, calling `on_line` with each line it prints as it prints it; all the
/// lines: the RRGGBB at each of `points`, then what the later steps print. `None`, after
/// saying why, when noVNC, Chromium or websockify is missing.
fn run_novnc(
    port: u16,
    password: &str,
    screenshot: &std::path::Path,
    points: &[&str],
    env: &[(&str, &str)],
    mut on_line: impl FnMut(&str),
) -> Option<Vec<String>> {
    let novnc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/novnc");
    if !novnc.join("node_modules/@novnc/novnc/core/rfb.js").exists()
        || !novnc.join("node_modules/playwright-core").exists()
    {
        testkit::skip(
            testkit::VIEWERS,
            "noVNC is not installed (npm ci in launcher/tests/novnc)",
        );
        return None;
    }
    if !std::path::Path::new("/usr/bin/chromium").exists() {
        testkit::skip(
            testkit::VIEWERS,
            "chromium is not installed (Debian package chromium)",
        );
        return None;
    }
    if Command::new("websockify").arg("--help").output().is_err() {
        testkit::skip(
            testkit::VIEWERS,
            "websockify is not installed (pip install websockify)",
        );
        return None;
    }
    let ws_port = free_port();
    // websockify bridges WebSocket to the VNC port and serves the page and noVNC.
    let bridge = Command::new("websockify")
        .arg("--web")
        .arg(&novnc)
        .arg(format!("127.0.0.1:{ws_port}"))
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("websockify starts");
    let _bridge = Launcher(bridge);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", ws_port)).is_err() {
        assert!(Instant::now() < deadline, "websockify never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut node = Command::new("node")
        .current_dir(&novnc)
        .arg("check.mjs")
        .arg(format!(
            "http://127.0.0.1:{ws_port}/index.html?password={password}"
        ))
        .arg(screenshot)
        .args(points)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut lines = Vec::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(node.stdout.take().unwrap())) {
        let line = line.expect("node's output");
        on_line(&line);
        lines.push(line);
    }
    let out = node.wait_with_output().expect("node exits");
    assert!(
        out.status.success(),
        "check.mjs: {}{}",
        lines.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(lines)
}

#[test]
fn novnc_in_headless_chromium_renders_the_desktop() {
    let Some((_launcher, port, dir)) = start_demo("browser") else {
        return;
    };
    let screenshot = dir.join("novnc.png");
    let points = ["10,10", "320,470", "600,300", "100,90", "150,180"];
    let Some(lines) = run_novnc(port, "browser", &screenshot, &points, &[], |_| {}) else {
        return;
    };
    assert_eq!(
        lines,
        [
            "10,10 202020",
            "320,470 303030",
            "600,300 306090",
            "100,90 4060a0",
            "150,180 f0f0f0"
        ]
    );
    assert!(screenshot.exists());
    assert!(
        launcher_log(&dir).contains(": Tight, compression level"),
        "noVNC prefers Tight: {}",
        launcher_log(&dir)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn utf8_text_pasted_in_novnc_reaches_a_latin1_viewer_and_back() {
    let Some((_launcher, port, dir)) = start_demo("paste") else {
        return;
    };
    // A viewer that only speaks the original Latin-1 cut-text messages.
    let mut legacy = connect(port, "paste").unwrap();
    let relay = std::thread::spawn(move || {
        let got = legacy.read_cut_text().unwrap();
        // Then it copies text of its own, in Latin-1.
        legacy.cut_text(b"caf\xe9 cr\xe8me").unwrap();
        got
    });
    let env = [
        ("PASTE", "Grüße, 世界\nzweite Zeile"),
        ("EXPECT_CLIPBOARD", "café crème"),
    ];
    let Some(lines) = run_novnc(
        port,
        "paste",
        &dir.join("paste.png"),
        &["10,10"],
        &env,
        |_| {},
    ) else {
        return;
    };
    assert_eq!(lines, ["10,10 202020", "pasted", "clipboard café crème"]);
    // noVNC pasted through Extended Clipboard (UTF-8); the Latin-1 viewer got what Latin-1
    // can hold, the rest as '?'.
    assert_eq!(relay.join().unwrap(), b"Gr\xfc\xdfe, ??\nzweite Zeile");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn text_copied_on_one_viewer_reaches_the_others() {
    let Some((_launcher, port, dir)) = start_demo("clippy") else {
        return;
    };
    let mut a = connect(port, "clippy").unwrap();
    let mut b = connect(port, "clippy").unwrap();
    let mut c = connect(port, "clippy").unwrap();
    let text = b"copied on viewer A";
    a.cut_text(text).unwrap();
    for viewer in [&mut b, &mut c] {
        assert_eq!(viewer.read_cut_text().unwrap(), text);
    }
    // Not echoed back to A: its next message is the update it asks for (a cut text first
    // would fail the read: the client reads an update only after cut texts it skips, so
    // look at the raw bytes).
    a.request(false).unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut a.stream(), &mut first).unwrap();
    assert_eq!(
        first[0], 0,
        "a FramebufferUpdate, not an echo of A's own text"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// vncdotool moves the pointer twice and prints, after each move, the RGB at the given points.
const VNCDOTOOL_POINTER: &str = r#"
import sys
from vncdotool import api
server, password = sys.argv[1], sys.argv[2]
c = api.connect(server, password=password)
try:
    for (x, y) in ((200, 150), (300, 200)):
        c.mouseMove(x, y)
        c.pause(1.0)
        c.refreshScreen()
        image = c.screen.convert("RGB")
        print(" ".join("%02x%02x%02x" % image.getpixel(p) for p in ((204, 154), (304, 204))))
finally:
    c.disconnect()
    api.shutdown()
"#;

#[test]
fn pointer_moves_in_vncdotool_move_the_guests_pointer() {
    let Some((_launcher, port, dir)) = start_demo("pointer") else {
        return;
    };
    let server = format!("127.0.0.1::{port}");
    let Some(lines) = run_vncdotool(VNCDOTOOL_POINTER, &[&server, "pointer"]) else {
        return;
    };
    // The demo's 8x8 pointer (0xff8000) follows, and what it covered comes back (the window's
    // white body).
    assert_eq!(lines, ["ff8000 f0f0f0", "f0f0f0 ff8000"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A desktop of noise (any 24 pixels in a row are distinctive) with a 256x192 window of other
/// noise at `window`.
fn noisy_desktop(width: u32, height: u32, window: (u32, u32)) -> Vec<u32> {
    (0..height)
        .flat_map(|y| {
            (0..width).map(move |x| {
                let inside = (window.0..window.0 + 256).contains(&x)
                    && (window.1..window.1 + 192).contains(&y);
                let (u, v, salt) = if inside {
                    (x - window.0, y - window.1, 0x9e37_79b9u32)
                } else {
                    (x, y, 0x85eb_ca6b)
                };
                let mut h = u.wrapping_mul(0x0100_0193) ^ v.wrapping_mul(0x2c1b_3c6d) ^ salt;
                h ^= h >> 13;
                h = h.wrapping_mul(0x5bd1_e995);
                h ^= h >> 15;
                h & 0x00ff_ffff
            })
        })
        .collect()
}

#[test]
fn a_window_moved_under_novnc_arrives_as_copyrect() {
    use rfb::{FrameSource, MemoryFrame, Security, ServerOptions, Stats, serve};
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    // The server on a frame in plain memory, no VM: the test draws as the guest would.
    let (w, h) = (640u32, 480u32);
    let frame = Arc::new(MemoryFrame::new(w, h));
    let draw = |window: (u32, u32)| frame.draw_all(&noisy_desktop(w, h, window));
    draw((96, 96));
    let stats = Arc::new(Stats::default());
    let options = ServerOptions {
        stats: Arc::clone(&stats),
        ..ServerOptions::new("moves", Security::Password(b"mover".to_vec()))
    };
    let source: Arc<dyn FrameSource> = frame.clone();
    let (addr, _) = serve("127.0.0.1:0".parse().unwrap(), source, options).unwrap();

    // Once noVNC shows the desktop, the window moves by (64, 32); noVNC waits until points
    // inside the moved window, on what it uncovered and elsewhere show the moved desktop (the
    // server may catch the move half-drawn, as it would a guest's: the rest comes next frame).
    let after = noisy_desktop(w, h, (160, 128));
    let colour = |(x, y): (u32, u32)| format!("{x},{y} {:06x}", after[(y * w + x) as usize]);
    let points = [(250, 200), (300, 250), (380, 300), (100, 100), (600, 400)];
    let args: Vec<String> = points.iter().map(|(x, y)| format!("{x},{y}")).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let expected: Vec<String> = points.iter().map(|&p| colour(p)).collect();
    let wait = expected.join(";");
    let dir = std::env::temp_dir().join(format!("verdant-vnc-{}-moves", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let Some(lines) = run_novnc(
        addr.port(),
        "mover",
        &dir.join("moves.png"),
        &args,
        &[("THEN_WAIT", wait.as_str())],
        |line| {
            if line == "ready" {
                draw((160, 128));
            }
        },
    ) else {
        return;
    };
    assert_eq!(lines[points.len()], "ready");
    assert_eq!(
        lines[points.len() + 1..],
        expected[..],
        "noVNC shows the moved window"
    );
    assert!(
        stats.copies.load(Ordering::Relaxed) > 0,
        "the move went as CopyRect: {stats:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
