//! The VNC server with clients we did not write: Debian's `vncsnapshot` (Raw and Tight, VNC
//! authentication), `vncdotool` (ZRLE, keys, pointer) and noVNC in headless Chromium (Tight,
//! UTF-8 clipboard, CopyRect), plus our own minimal client for what real clients would not do
//! (malformed messages, a viewer that stops reading). Each test skips, saying why, where
//! `/dev/kvm`, the test guests or its viewer is missing.

mod common;

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
        eprintln!("SKIP: vncsnapshot is not installed (Debian package vncsnapshot)");
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

mod client {
    //! Just enough of an RFB client to drive the server in ways real clients would not.
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use launcher::display::vnc::auth;

    /// Connects and authenticates; returns the stream after ServerInit.
    pub fn connect(port: u16, password: &str) -> std::io::Result<TcpStream> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut version = [0u8; 12];
        s.read_exact(&mut version)?;
        s.write_all(b"RFB 003.008\n")?;
        let mut types = [0u8; 2];
        s.read_exact(&mut types)?;
        s.write_all(&[2])?;
        let mut challenge = [0u8; 16];
        s.read_exact(&mut challenge)?;
        s.write_all(&auth::response(password.as_bytes(), &challenge))?;
        let mut result = [0u8; 4];
        s.read_exact(&mut result)?;
        if result != [0; 4] {
            return Err(std::io::Error::other("authentication failed"));
        }
        s.write_all(&[1])?;
        let mut init = [0u8; 24];
        s.read_exact(&mut init)?;
        let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
        let mut name = vec![0u8; name_len];
        s.read_exact(&mut name)?;
        Ok(s)
    }

    /// Asks for an update of the whole 640x480 screen.
    pub fn request(s: &mut TcpStream, incremental: bool) -> std::io::Result<()> {
        s.write_all(&[3, u8::from(incremental), 0, 0, 0, 0, 2, 128, 1, 224])
    }

    /// Reads one FramebufferUpdate (Raw, 32 bpp) and returns its rectangle count.
    pub fn read_update(s: &mut TcpStream) -> std::io::Result<usize> {
        let mut head = [0u8; 4];
        s.read_exact(&mut head)?;
        if head[0] != 0 {
            return Err(std::io::Error::other(format!("message type {}", head[0])));
        }
        let rects = usize::from(u16::from_be_bytes([head[2], head[3]]));
        for _ in 0..rects {
            let mut r = [0u8; 12];
            s.read_exact(&mut r)?;
            let (w, h) = (
                u16::from_be_bytes([r[4], r[5]]),
                u16::from_be_bytes([r[6], r[7]]),
            );
            let mut pixels = vec![0u8; usize::from(w) * usize::from(h) * 4];
            s.read_exact(&mut pixels)?;
        }
        Ok(rects)
    }

    /// Whether the server closes the connection within a few seconds.
    pub fn closed_by_server(s: &mut TcpStream) -> bool {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue, // drain whatever was in flight
                Err(e) => {
                    return e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut;
                }
            }
        }
    }
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
                let mut s = client::connect(port, "hunter22").unwrap();
                s.write_all(&[42]).unwrap();
                s
            }),
        ),
        (
            "absurd clipboard length",
            Box::new(move || {
                let mut s = client::connect(port, "hunter22").unwrap();
                s.write_all(&[6, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]).unwrap();
                s
            }),
        ),
        (
            "absurd encoding count",
            Box::new(move || {
                let mut s = client::connect(port, "hunter22").unwrap();
                s.write_all(&[2, 0, 0xff, 0xff]).unwrap();
                s
            }),
        ),
        (
            "colour-map pixel format",
            Box::new(move || {
                let mut s = client::connect(port, "hunter22").unwrap();
                s.write_all(&[0, 0, 0, 0, 8, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
                    .unwrap();
                s
            }),
        ),
        (
            "truncated message, then silence",
            Box::new(move || {
                let mut s = client::connect(port, "hunter22").unwrap();
                s.write_all(&[3, 1, 0]).unwrap();
                s.shutdown(std::net::Shutdown::Write).unwrap();
                s
            }),
        ),
    ];
    for (what, make) in &cases {
        let mut s = make();
        assert!(
            client::closed_by_server(&mut s),
            "{what}: the connection stayed open"
        );
        // Everyone else is still served.
        let mut good =
            client::connect(port, "hunter22").unwrap_or_else(|e| panic!("after {what}: {e}"));
        client::request(&mut good, false).unwrap();
        assert!(
            client::read_update(&mut good).unwrap() >= 1,
            "after {what}: no update"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn eight_viewers_get_updates_and_a_stalled_one_delays_nobody() {
    let Some((_launcher, port, dir)) = start_demo("viewers8") else {
        return;
    };
    let mut viewers: Vec<_> = (0..8)
        .map(|_| client::connect(port, "viewers8").unwrap())
        .collect();
    for v in &mut viewers {
        client::request(v, false).unwrap();
        assert!(client::read_update(v).unwrap() >= 1);
    }
    // How often does a viewer see the demo's clock change, incrementally?
    let rate = |v: &mut std::net::TcpStream, window: Duration| -> usize {
        let start = Instant::now();
        let mut updates = 0;
        while start.elapsed() < window {
            client::request(v, true).unwrap();
            client::read_update(v).unwrap();
            updates += 1;
        }
        updates
    };
    let window = Duration::from_secs(3);
    let alone = rate(&mut viewers[0], window);
    // A viewer that asks for whole frames and never reads them: its socket fills up.
    let mut stalled = client::connect(port, "viewers8").unwrap();
    for _ in 0..200 {
        if client::request(&mut stalled, false).is_err() {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let with_stalled = rate(&mut viewers[1], window);
    println!(
        "updates seen in {window:?} by one viewer: {alone} with 8 viewers, {with_stalled} with a ninth that stopped reading (ratio {:.2})",
        with_stalled as f64 / alone.max(1) as f64
    );
    assert!(with_stalled > 0, "the stalled viewer blocked the others");
    // Every viewer is still served.
    for v in &mut viewers[2..] {
        client::request(v, false).unwrap();
        assert!(client::read_update(v).unwrap() >= 1);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keys_typed_in_vncdotool_show_up_in_the_next_capture() {
    if Command::new("vncdo").arg("--version").output().is_err() {
        eprintln!("SKIP: vncdotool is not installed (pip install vncdotool)");
        return;
    }
    if Command::new("vncsnapshot").arg("-h").output().is_err() {
        eprintln!("SKIP: vncsnapshot is not installed (Debian package vncsnapshot)");
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
        eprintln!("SKIP: the vncdotool Python package is not installed (pip install vncdotool)");
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
        eprintln!("SKIP: noVNC is not installed (npm ci in launcher/tests/novnc)");
        return None;
    }
    if !std::path::Path::new("/usr/bin/chromium").exists() {
        eprintln!("SKIP: chromium is not installed (Debian package chromium)");
        return None;
    }
    if Command::new("websockify").arg("--help").output().is_err() {
        eprintln!("SKIP: websockify is not installed (pip install websockify)");
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
    use std::io::{Read, Write};
    let Some((_launcher, port, dir)) = start_demo("paste") else {
        return;
    };
    // A viewer that only speaks the original Latin-1 cut-text messages.
    let mut legacy = client::connect(port, "paste").unwrap();
    let relay = std::thread::spawn(move || {
        let mut head = [0u8; 8];
        legacy.read_exact(&mut head).unwrap();
        assert_eq!(head[0], 3, "ServerCutText");
        let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let mut got = vec![0u8; len];
        legacy.read_exact(&mut got).unwrap();
        // Then it copies text of its own, in Latin-1.
        let text = b"caf\xe9 cr\xe8me";
        let mut cut = vec![6, 0, 0, 0];
        cut.extend_from_slice(&(text.len() as u32).to_be_bytes());
        cut.extend_from_slice(text);
        legacy.write_all(&cut).unwrap();
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
    use std::io::{Read, Write};
    let Some((_launcher, port, dir)) = start_demo("clippy") else {
        return;
    };
    let mut a = client::connect(port, "clippy").unwrap();
    let mut b = client::connect(port, "clippy").unwrap();
    let mut c = client::connect(port, "clippy").unwrap();
    let text = b"copied on viewer A";
    let mut cut = vec![6, 0, 0, 0];
    cut.extend_from_slice(&(text.len() as u32).to_be_bytes());
    cut.extend_from_slice(text);
    a.write_all(&cut).unwrap();
    for viewer in [&mut b, &mut c] {
        let mut head = [0u8; 8];
        viewer.read_exact(&mut head).unwrap();
        assert_eq!(head[0], 3, "ServerCutText");
        let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let mut got = vec![0u8; len];
        viewer.read_exact(&mut got).unwrap();
        assert_eq!(got, text);
    }
    // Not echoed back to A: its next message is the update it asks for.
    client::request(&mut a, false).unwrap();
    assert!(client::read_update(&mut a).unwrap() >= 1);
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
    use launcher::arch::layout::FRAMEBUFFER_START;
    use launcher::display::Framebuffer;
    use launcher::display::vnc::{Security, ServerOptions, Stats, serve};
    use launcher_api::DisplayConfig;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    // The server on a framebuffer in plain memory, no VM: the test draws as the guest would.
    let (w, h) = (640u32, 480u32);
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(
        GuestAddress(FRAMEBUFFER_START),
        (w * h * 4) as usize,
    )])
    .unwrap();
    let draw = |window: (u32, u32)| {
        let bytes: Vec<u8> = noisy_desktop(w, h, window)
            .iter()
            .flat_map(|p| p.to_le_bytes())
            .collect();
        mem.write_slice(&bytes, GuestAddress(FRAMEBUFFER_START))
            .unwrap();
    };
    draw((96, 96));
    let stats = Arc::new(Stats::default());
    let display = DisplayConfig {
        width: w,
        height: h,
    };
    let options = ServerOptions {
        name: "moves".into(),
        security: Security::Password(b"mover".to_vec()),
        max_fps: 30,
        input: None,
        stats: Arc::clone(&stats),
    };
    let (addr, _) = serve(
        "127.0.0.1:0".parse().unwrap(),
        Framebuffer::new(mem.clone(), display),
        options,
    )
    .unwrap();

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
