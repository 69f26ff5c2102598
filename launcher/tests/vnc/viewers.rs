//! Viewers we did not write, run as they are: `vncsnapshot` (Raw and Tight, VNC authentication)
//! and `vncdotool` (ZRLE, keys, pointer).

use std::process::Command;
use std::time::Duration;

use rfb::auth::obfuscated_password_file;

use crate::helpers::{close, launcher_log, snapshot, start_demo};

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
    // The pixels where the keys show, at the last look.
    let mut seen = Vec::new();
    let shown = testkit::within_blocking(Duration::from_secs(30), || {
        let (pixels, _, _) =
            snapshot(port, &passwd, &dir.join("keys.jpg"), "tight").expect("capture");
        let at = |x: usize, y: usize| pixels[(y * 640 + x) * 3..(y * 640 + x) * 3 + 3].to_vec();
        seen = expected.iter().map(|&(x, y, _)| at(x, y)).collect();
        expected
            .iter()
            .all(|&(x, y, c)| close(&at(x, y), c))
            .then_some(())
    });
    assert!(shown.is_some(), "typed keys never showed: {seen:?}");
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
