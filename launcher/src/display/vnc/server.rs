//! The VNC server: one listener thread, and per viewer a reader thread (parses its messages)
//! and a writer thread (sends updates at its own pace), so a slow viewer stalls only itself.
//! Every viewer shares the desktop; a misbehaving one is closed with a logged reason.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::auth;
use super::encoding::{self, Negotiated, Zrle};
use super::protocol::{self, ClientMessage, PixelFormat, ProtocolError};
use crate::display::Framebuffer;

/// Most viewers at once; more are turned away politely.
pub const MAX_VIEWERS: usize = 16;
/// Frames per second a viewer gets at most, unless configured otherwise.
pub const DEFAULT_MAX_FPS: u32 = 30;
/// Side of the square tiles compared to find what changed.
const TILE: u32 = 64;
/// How long a viewer may take to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where viewers' keystrokes and pointer go (the guest's keyboard and mouse).
pub trait Input: Send + Sync {
    /// A key by X keysym.
    fn keysym(&self, keysym: u32, down: bool);
    /// A key by XT keycode (QEMU extended key event), with its keysym as the fallback.
    fn xt_key(&self, keycode: u32, keysym: u32, down: bool);
    /// The pointer at (x, y) with VNC's button mask.
    fn pointer(&self, x: u16, y: u16, buttons: u8);
}

/// The text last copied on any viewer, handed to the others.
#[derive(Default)]
pub struct Clipboard {
    /// (version, the viewer it came from, the Latin-1 text).
    inner: std::sync::Mutex<(u64, usize, Vec<u8>)>,
}

impl Clipboard {
    fn set(&self, from: usize, text: Vec<u8>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *inner = (inner.0 + 1, from, text);
    }

    fn version(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// The text, if it changed since version `seen` and came from another viewer.
    fn newer(&self, seen: &mut u64, viewer: usize) -> Option<Vec<u8>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.0 == *seen {
            return None;
        }
        *seen = inner.0;
        (inner.1 != viewer).then(|| inner.2.clone())
    }
}

/// What every viewer of one server shares.
struct Shared {
    framebuffer: Framebuffer,
    security: Security,
    name: String,
    input: Option<Arc<dyn Input>>,
    clipboard: Clipboard,
    frame_interval: Duration,
}

/// How viewers authenticate.
#[derive(Clone)]
pub enum Security {
    /// VNC authentication with this password (its first 8 bytes count).
    Password(Vec<u8>),
    /// None: anyone who can connect sees the desktop. For local development only.
    None,
}

/// How a server behaves.
pub struct ServerOptions {
    /// The desktop name viewers show.
    pub name: String,
    /// How viewers authenticate.
    pub security: Security,
    /// Frames per second a viewer gets at most (1 or more).
    pub max_fps: u32,
    /// Where keystrokes and the pointer go; none ignores them.
    pub input: Option<Arc<dyn Input>>,
}

/// Starts serving `framebuffer` on `addr` as `options` say; returns the bound address.
pub fn serve(
    addr: SocketAddr,
    framebuffer: Framebuffer,
    options: ServerOptions,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let ServerOptions {
        name,
        security,
        max_fps,
        input,
    } = options;
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let shared = Arc::new(Shared {
        framebuffer,
        security,
        name,
        input,
        clipboard: Clipboard::default(),
        frame_interval: Duration::from_secs(1) / max_fps.max(1),
    });
    let viewers = Arc::new(AtomicUsize::new(0));
    let thread = std::thread::Builder::new()
        .name("vnc".into())
        .spawn(move || {
            for (id, stream) in listener.incoming().flatten().enumerate() {
                let peer = stream
                    .peer_addr()
                    .map_or_else(|_| "?".into(), |a| a.to_string());
                if viewers.load(Ordering::Acquire) >= MAX_VIEWERS {
                    eprintln!(
                        "verdant-launcher: vnc {peer}: refused, {MAX_VIEWERS} viewers already"
                    );
                    continue;
                }
                viewers.fetch_add(1, Ordering::AcqRel);
                let (shared, count) = (Arc::clone(&shared), Arc::clone(&viewers));
                let spawned =
                    std::thread::Builder::new()
                        .name("vnc-viewer".into())
                        .spawn(move || {
                            match serve_viewer(stream, &shared, id) {
                                Ok(()) => eprintln!("verdant-launcher: vnc {peer}: disconnected"),
                                Err(e) => eprintln!("verdant-launcher: vnc {peer}: closed: {e}"),
                            }
                            count.fetch_sub(1, Ordering::AcqRel);
                        });
                if spawned.is_err() {
                    viewers.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
    Ok((bound, thread))
}

fn write_reason(stream: &mut TcpStream, reason: &str) -> std::io::Result<()> {
    stream.write_all(&(reason.len() as u32).to_be_bytes())?;
    stream.write_all(reason.as_bytes())
}

/// Handshake (RFC 6143 7.1-7.3), then the update loop.
fn serve_viewer(mut stream: TcpStream, shared: &Shared, id: usize) -> Result<(), ProtocolError> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.write_all(b"RFB 003.008\n")?;
    let mut version = [0u8; 12];
    stream.read_exact(&mut version)?;
    let minor = protocol::parse_version(&version)?;

    let (fb, security, name) = (&shared.framebuffer, &shared.security, shared.name.as_str());
    let wanted: u8 = match security {
        Security::Password(_) => 2,
        Security::None => 1,
    };
    if minor == 3 {
        stream.write_all(&u32::from(wanted).to_be_bytes())?;
    } else {
        stream.write_all(&[1, wanted])?;
        let mut chosen = [0u8; 1];
        stream.read_exact(&mut chosen)?;
        if chosen[0] != wanted {
            stream.write_all(&1u32.to_be_bytes())?;
            if minor == 8 {
                write_reason(&mut stream, "unsupported security type")?;
            }
            return Err(ProtocolError::BadVersion(format!(
                "security type {} chosen, {wanted} offered",
                chosen[0]
            )));
        }
    }
    match security {
        Security::Password(password) => {
            let challenge = auth::challenge().map_err(|e| std::io::Error::other(e.to_string()))?;
            stream.write_all(&challenge)?;
            let mut answer = [0u8; auth::CHALLENGE_LEN];
            stream.read_exact(&mut answer)?;
            if !auth::verify(password, &challenge, &answer) {
                stream.write_all(&1u32.to_be_bytes())?;
                if minor == 8 {
                    write_reason(&mut stream, "authentication failed")?;
                }
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "wrong password",
                )
                .into());
            }
            stream.write_all(&0u32.to_be_bytes())?;
        }
        Security::None if minor == 8 => stream.write_all(&0u32.to_be_bytes())?,
        Security::None => {}
    }

    let mut client_init = [0u8; 1];
    stream.read_exact(&mut client_init)?; // every viewer shares the desktop, whatever it asks
    let mut init = Vec::with_capacity(24 + name.len());
    init.extend_from_slice(&(fb.width as u16).to_be_bytes());
    init.extend_from_slice(&(fb.height as u16).to_be_bytes());
    init.extend_from_slice(&PixelFormat::NATIVE.to_bytes());
    init.extend_from_slice(&(name.len() as u32).to_be_bytes());
    init.extend_from_slice(name.as_bytes());
    stream.write_all(&init)?;

    // The reader thread parses; this thread writes. A bounded queue: a client that floods
    // us with messages blocks its own reader, nobody else.
    stream.set_read_timeout(None)?;
    let (tx, rx) = mpsc::sync_channel::<Result<ClientMessage, ProtocolError>>(256);
    let reader_stream = stream.try_clone()?;
    std::thread::Builder::new()
        .name("vnc-reader".into())
        .spawn(move || {
            let mut reader = BufReader::new(reader_stream);
            loop {
                let message = protocol::read_message(&mut reader);
                let failed = message.is_err();
                if tx.send(message).is_err() || failed {
                    return;
                }
            }
        })?;
    let result = update_loop(&mut stream, shared, id, &rx);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    result
}

/// A viewer's update state.
struct Viewer {
    format: PixelFormat,
    negotiated: Negotiated,
    zrle: Zrle,
    /// Pseudo-rectangles owed to the viewer: (encoding, x, y), e.g. the QEMU key event
    /// acknowledgement or an ExtendedDesktopSize answer (x = reason, y = status).
    owed: Vec<(i32, u16, u16)>,
    /// An update is wanted: `Some(incremental)`.
    pending: Option<bool>,
    /// The frame this viewer last saw, as 0xRRGGBB pixels.
    seen: Option<Vec<u32>>,
    last_sent: Option<Instant>,
}

fn update_loop(
    stream: &mut TcpStream,
    shared: &Shared,
    id: usize,
    rx: &mpsc::Receiver<Result<ClientMessage, ProtocolError>>,
) -> Result<(), ProtocolError> {
    let frame_interval = shared.frame_interval;
    let (fb, input) = (&shared.framebuffer, shared.input.as_deref());
    let mut clipboard_seen = shared.clipboard.version();
    let mut viewer = Viewer {
        format: PixelFormat::NATIVE,
        negotiated: Negotiated::default(),
        zrle: Zrle::default(),
        owed: Vec::new(),
        pending: None,
        seen: None,
        last_sent: None,
    };
    loop {
        let wait = match (viewer.pending, viewer.last_sent) {
            (Some(_), Some(at)) => frame_interval.saturating_sub(at.elapsed()),
            (Some(_), None) => Duration::ZERO,
            // Idle: wake now and then for clipboard text from other viewers.
            (None, _) => Duration::from_millis(100),
        };
        match rx.recv_timeout(wait) {
            // The viewer hung up between messages: a normal end.
            Ok(Err(ProtocolError::Io(e))) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(());
            }
            Ok(message) => match message? {
                ClientMessage::SetPixelFormat(format) => {
                    viewer.format = format;
                    viewer.seen = None; // the next update must be whole
                }
                ClientMessage::UpdateRequest { incremental, .. } => {
                    // A full request wins over an incremental one already waiting.
                    viewer.pending = Some(
                        viewer.pending.unwrap_or(true) && incremental && viewer.seen.is_some(),
                    );
                }
                ClientMessage::SetEncodings(list) => {
                    let before = viewer.negotiated;
                    viewer.negotiated = encoding::negotiate(&list);
                    if viewer.negotiated.qemu_extended_key && !before.qemu_extended_key {
                        viewer.owed.push((encoding::QEMU_EXTENDED_KEY, 0, 0));
                    }
                    if viewer.negotiated.extended_desktop_size && !before.extended_desktop_size {
                        viewer.owed.push((encoding::EXTENDED_DESKTOP_SIZE, 0, 0));
                    }
                }
                // The guest's display cannot change size from outside: say so, honestly.
                ClientMessage::SetDesktopSize { .. } => {
                    if viewer.negotiated.extended_desktop_size {
                        viewer.owed.push((encoding::EXTENDED_DESKTOP_SIZE, 1, 1));
                    }
                }
                ClientMessage::Key { down, keysym } => {
                    if let Some(input) = input {
                        input.keysym(keysym, down);
                    }
                }
                ClientMessage::QemuKey {
                    down,
                    keysym,
                    keycode,
                } => {
                    if let Some(input) = input {
                        input.xt_key(keycode, keysym, down);
                    }
                }
                ClientMessage::CutText(text) => shared.clipboard.set(id, text),
                ClientMessage::Pointer { buttons, x, y } => {
                    if let Some(input) = input {
                        input.pointer(
                            x.min(fb.width as u16 - 1),
                            y.min(fb.height as u16 - 1),
                            buttons,
                        );
                    }
                }
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
        if let Some(text) = shared.clipboard.newer(&mut clipboard_seen, id) {
            let mut out = Vec::with_capacity(8 + text.len());
            out.extend_from_slice(&[3, 0, 0, 0]);
            out.extend_from_slice(&(text.len() as u32).to_be_bytes());
            out.extend_from_slice(&text);
            stream.write_all(&out)?;
        }
        if !viewer.owed.is_empty() {
            // Pseudo-rectangles go out at once, with no pixels.
            let owed = std::mem::take(&mut viewer.owed);
            send_update(stream, &mut viewer, &[], fb, &owed, &[])?;
        }
        let due = viewer
            .last_sent
            .is_none_or(|at| at.elapsed() >= frame_interval);
        if let (Some(incremental), true) = (viewer.pending, due) {
            let frame = read_frame(fb);
            let rects = match (&viewer.seen, incremental) {
                (Some(seen), true) => changed_tiles(seen, &frame, fb.width, fb.height),
                _ => vec![(0, 0, fb.width, fb.height)],
            };
            if !rects.is_empty() {
                send_update(stream, &mut viewer, &frame, fb, &[], &rects)?;
                viewer.seen = Some(frame);
                viewer.pending = None;
                viewer.last_sent = Some(Instant::now());
            }
        }
    }
}

/// The current frame as 0xRRGGBB pixels.
fn read_frame(fb: &Framebuffer) -> Vec<u32> {
    let mut frame = Vec::with_capacity((fb.width * fb.height) as usize);
    let mut row = vec![0u8; fb.stride()];
    for y in 0..fb.height {
        if !fb.read_row(y, &mut row) {
            row.fill(0);
        }
        frame.extend(
            row.chunks_exact(4)
                .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0])),
        );
    }
    frame
}

/// The tiles (x, y, w, h) where `now` differs from `before`.
pub fn changed_tiles(
    before: &[u32],
    now: &[u32],
    width: u32,
    height: u32,
) -> Vec<(u32, u32, u32, u32)> {
    let mut rects = Vec::new();
    for ty in (0..height).step_by(TILE as usize) {
        for tx in (0..width).step_by(TILE as usize) {
            let (w, h) = (TILE.min(width - tx), TILE.min(height - ty));
            let differs = (ty..ty + h).any(|y| {
                let start = (y * width + tx) as usize;
                before[start..start + w as usize] != now[start..start + w as usize]
            });
            if differs {
                rects.push((tx, ty, w, h));
            }
        }
    }
    rects
}

fn send_update(
    stream: &mut TcpStream,
    viewer: &mut Viewer,
    frame: &[u32],
    fb: &Framebuffer,
    pseudo: &[(i32, u16, u16)],
    rects: &[(u32, u32, u32, u32)],
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(4 + (pseudo.len() + rects.len()) * 12);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&((pseudo.len() + rects.len()) as u16).to_be_bytes());
    let header = |out: &mut Vec<u8>, x: u16, y: u16, w: u16, h: u16, enc: i32| {
        for v in [x, y, w, h] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&enc.to_be_bytes());
    };
    let (fw, fh) = (fb.width as u16, fb.height as u16);
    for &(enc, x, y) in pseudo {
        match enc {
            encoding::EXTENDED_DESKTOP_SIZE => {
                header(&mut out, x, y, fw, fh, enc);
                // One screen, id 0, covering the whole framebuffer.
                out.extend_from_slice(&[1, 0, 0, 0]);
                out.extend_from_slice(&0u32.to_be_bytes());
                for v in [0, 0, fw, fh] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                out.extend_from_slice(&0u32.to_be_bytes());
            }
            _ => header(&mut out, 0, 0, 0, 0, enc),
        }
    }
    for &rect in rects {
        let (x, y, w, h) = rect;
        header(
            &mut out,
            x as u16,
            y as u16,
            w as u16,
            h as u16,
            viewer.negotiated.encoding,
        );
        if viewer.negotiated.encoding == encoding::ZRLE {
            viewer
                .zrle
                .encode(frame, fb.width, rect, viewer.format, &mut out)?;
        } else {
            encoding::raw(frame, fb.width, rect, viewer.format, &mut out);
        }
    }
    stream.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipboard_text_goes_to_the_other_viewers_once() {
        let clipboard = Clipboard::default();
        let (mut seen_a, mut seen_b) = (clipboard.version(), clipboard.version());
        clipboard.set(1, b"copied".to_vec());
        assert_eq!(
            clipboard.newer(&mut seen_a, 1),
            None,
            "not back to its own viewer"
        );
        assert_eq!(clipboard.newer(&mut seen_b, 2), Some(b"copied".to_vec()));
        assert_eq!(clipboard.newer(&mut seen_b, 2), None, "once");
    }

    #[test]
    fn only_changed_tiles_are_sent() {
        let (w, h) = (130, 70);
        let before = vec![0u32; (w * h) as usize];
        let mut now = before.clone();
        assert!(changed_tiles(&before, &now, w, h).is_empty());
        now[(65 * w + 129) as usize] = 1; // the bottom-right corner tile
        assert_eq!(changed_tiles(&before, &now, w, h), vec![(128, 64, 2, 6)]);
        now[0] = 1;
        assert_eq!(changed_tiles(&before, &now, w, h).len(), 2);
    }
}
