//! noVNC in headless Chromium, through websockify: Tight, UTF-8 clipboard and CopyRect.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::{Launcher, connect, launcher_log, start_demo};
use testkit::net::free_port;

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
    testkit::eventually_blocking(
        &format!("websockify to listen on 127.0.0.1:{ws_port}"),
        Duration::from_secs(20),
        || std::net::TcpStream::connect(("127.0.0.1", ws_port)).ok(),
    );
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
