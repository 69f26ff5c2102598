//! The VNC server with clients we did not write: Debian's `vncsnapshot` (Raw and Tight, VNC
//! authentication), `vncdotool` (ZRLE, keys, pointer) and noVNC in headless Chromium (Tight,
//! UTF-8 clipboard, CopyRect), plus our own minimal client for what real clients would not do
//! (malformed messages, a viewer that stops reading). Each test skips, saying why, where
//! `/dev/kvm`, the test guests or its viewer is missing.
//!
//! The tests with our own client are here; those with real viewers are in `viewers`
//! (vncsnapshot, vncdotool) and `novnc`, and what they all share is in `helpers`.

#[path = "../common/mod.rs"]
mod common;
mod helpers;
mod novnc;
mod viewers;

use std::time::{Duration, Instant};

use helpers::{connect, start_demo, unread_bytes};
use rfb::client::{Client, closed_by_server};

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
