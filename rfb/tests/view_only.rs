//! A server with a full and a view-only password (TigerVNC's pair): a viewer that gave the
//! view-only one sees the desktop and nothing else. Its keys, pointer and clipboard go
//! nowhere, and the clipboard the user copies is never sent to it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rfb::client::Client;
use rfb::{FrameSource, InputSink, MemoryFrame, Security, ServerOptions, serve};

/// The input the server passed on, as text, in order.
#[derive(Default)]
struct Recorded(Mutex<Vec<String>>);

impl Recorded {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl InputSink for Recorded {
    fn keysym(&self, keysym: u32, down: bool) {
        self.0
            .lock()
            .unwrap()
            .push(format!("key {keysym:#x} {down}"));
    }
    fn xt_key(&self, keycode: u32, _keysym: u32, down: bool) {
        self.0
            .lock()
            .unwrap()
            .push(format!("xt {keycode:#x} {down}"));
    }
    fn pointer(&self, x: u16, y: u16, buttons: u8) {
        self.0
            .lock()
            .unwrap()
            .push(format!("pointer {x},{y} {buttons}"));
    }
}

fn server(input: &Arc<Recorded>) -> SocketAddr {
    let frame: Arc<dyn FrameSource> = Arc::new(MemoryFrame::new(64, 64));
    let sink: Arc<dyn InputSink> = input.clone();
    let options = ServerOptions {
        input: Some(sink),
        ..ServerOptions::new(
            "watched",
            Security::Passwords {
                full: b"the-user".to_vec(),
                view_only: b"helpdesk".to_vec(),
            },
        )
    };
    serve("127.0.0.1:0".parse().unwrap(), frame, options)
        .unwrap()
        .0
}

fn key_and_click(viewer: &mut Client) {
    // KeyEvent 'x' down, PointerEvent at (5, 6) with the left button.
    viewer.send(&[4, 1, 0, 0, 0, 0, 0, b'x']).unwrap();
    viewer.send(&[5, 1, 0, 5, 0, 6]).unwrap();
}

/// Whether a ServerCutText comes within `wait` (nothing else is asked for, so nothing else
/// comes).
fn clipboard_within(viewer: &mut Client, wait: Duration) -> Option<Vec<u8>> {
    viewer.set_read_timeout(wait).unwrap();
    viewer.read_cut_text().ok()
}

#[test]
fn a_view_only_viewer_gets_no_clipboard_and_sends_no_input() {
    let input = Arc::new(Recorded::default());
    let addr = server(&input);
    let raw = rfb::encoding::RAW;
    let mut user = Client::connect(addr, Some(b"the-user"), raw).unwrap();
    let mut second = Client::connect(addr, Some(b"the-user"), raw).unwrap();
    let mut watcher = Client::connect(addr, Some(b"helpdesk"), raw).unwrap();
    assert!(
        Client::connect(addr, Some(b"guessed!"), raw).is_err(),
        "a third password is refused"
    );

    // The user's input lands; the watcher's does not.
    key_and_click(&mut user);
    key_and_click(&mut watcher);
    user.cut_text(b"the user's clipboard").unwrap();
    // The user's other viewer gets the clipboard: it was shared, and in time.
    assert_eq!(
        clipboard_within(&mut second, Duration::from_secs(5)).as_deref(),
        Some(&b"the user's clipboard"[..])
    );
    // The watcher's would have come at the same wake-up (every 100 ms); give it 2 s.
    assert_eq!(
        clipboard_within(&mut watcher, Duration::from_secs(2)),
        None,
        "the view-only viewer was sent the user's clipboard"
    );
    // The watcher's own clipboard reaches nobody.
    watcher.cut_text(b"planted by the watcher").unwrap();
    assert_eq!(clipboard_within(&mut user, Duration::from_secs(2)), None);
    assert_eq!(
        clipboard_within(&mut second, Duration::from_millis(500)),
        None
    );
    assert_eq!(
        input.take(),
        ["key 0x78 true", "pointer 5,6 1"],
        "only the user's key and click reached the desktop"
    );
}

#[test]
fn one_password_gives_full_access_as_before() {
    let input = Arc::new(Recorded::default());
    let frame: Arc<dyn FrameSource> = Arc::new(MemoryFrame::new(64, 64));
    let sink: Arc<dyn InputSink> = input.clone();
    let options = ServerOptions {
        input: Some(sink),
        ..ServerOptions::new("alone", Security::Password(b"only-one".to_vec()))
    };
    let addr = serve("127.0.0.1:0".parse().unwrap(), frame, options)
        .unwrap()
        .0;
    let raw = rfb::encoding::RAW;
    let mut user = Client::connect(addr, Some(b"only-one"), raw).unwrap();
    let mut other = Client::connect(addr, Some(b"only-one"), raw).unwrap();
    key_and_click(&mut user);
    user.cut_text(b"shared").unwrap();
    assert_eq!(
        clipboard_within(&mut other, Duration::from_secs(5)).as_deref(),
        Some(&b"shared"[..])
    );
    assert_eq!(input.take(), ["key 0x78 true", "pointer 5,6 1"]);
}
