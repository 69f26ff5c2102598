//! The VNC server: one listener thread, and per viewer a reader thread (parses its messages)
//! and a writer thread (sends updates at its own pace), so a slow viewer stalls only itself.
//! Every viewer shares the desktop; a misbehaving one is closed with a logged reason.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clipboard::{self, Clipboard, Extended};
use crate::encoding::{self, Encoder, Negotiated};
use crate::frame::{FrameSource, InputSink};
use crate::handshake::{self, Access};
use crate::protocol::{self, ClientMessage, PixelFormat, ProtocolError};
use crate::tiles::{self, Rect};
use crate::tracker::{Ask, FrameTracker, Look};

/// Most viewers at once; more are turned away politely.
pub const MAX_VIEWERS: usize = 16;
/// Frames per second a viewer gets at most, unless configured otherwise.
pub const DEFAULT_MAX_FPS: u32 = 30;
/// The largest frame RFB can describe (its sizes are 16-bit).
pub const MAX_SIDE: u32 = u16::MAX as u32;
/// How often an idle viewer's thread wakes (for clipboard text from other viewers, and to
/// look at the frame should the frame watcher lag).
const IDLE_WAKE: Duration = Duration::from_millis(100);
/// Handshakes under way at once; more are turned away (each is a thread, and a deadline ends
/// it, so this bounds what slow ones cost).
pub const MAX_HANDSHAKES: usize = 64;
/// How long a write to a viewer may wait for it to read: one that stops reading is closed.
const VIEWER_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What every viewer of one server shares.
struct Shared {
    framebuffer: Arc<dyn FrameSource>,
    /// The frame's size, as read once: a frame does not change size under its viewers.
    width: u32,
    height: u32,
    security: Security,
    name: String,
    log_prefix: String,
    input: Option<Arc<dyn InputSink>>,
    clipboard: Clipboard,
    frame_interval: Duration,
    frames: FrameTracker,
    stats: Arc<Stats>,
    /// Viewers connected (past their handshake).
    viewers: AtomicUsize,
    /// Handshakes under way.
    handshakes: AtomicUsize,
    /// Where to tell viewers that the frame changed.
    listeners: std::sync::Mutex<Vec<mpsc::SyncSender<Event>>>,
}

/// What wakes a viewer's writer thread.
enum Event {
    /// A message from the viewer (or why none could be read).
    Client(Result<ClientMessage, ProtocolError>),
    /// The frame changed.
    Frame,
}

/// How viewers authenticate.
#[derive(Clone)]
pub enum Security {
    /// VNC authentication with this password (its first 8 bytes count).
    Password(Vec<u8>),
    /// VNC authentication with either of two passwords, as TigerVNC's password file holds
    /// them. Their first 8 bytes must differ.
    Passwords {
        /// Gives the desktop.
        full: Vec<u8>,
        /// Gives its picture alone: no keys, no pointer, no clipboard either way, for
        /// someone watching over the user's shoulder.
        view_only: Vec<u8>,
    },
    /// None: anyone who can connect sees the desktop. For local development only.
    None,
}

/// Names the kind of security, never a password.
impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Security::Password(_) => "Password(..)",
            Security::Passwords { .. } => "Passwords { full: .., view_only: .. }",
            Security::None => "None",
        })
    }
}

impl Security {
    /// The full password and the view-only one, if any; none without authentication.
    pub(crate) fn passwords(&self) -> Option<(&[u8], Option<&[u8]>)> {
        match self {
            Security::Password(full) => Some((full, None)),
            Security::Passwords { full, view_only } => Some((full, Some(view_only))),
            Security::None => None,
        }
    }
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
    pub input: Option<Arc<dyn InputSink>>,
    /// Counters the server adds to, over all its viewers.
    pub stats: Arc<Stats>,
    /// What the server's log lines start with (e.g. `verdant-launcher`).
    pub log_prefix: String,
}

impl ServerOptions {
    /// Options with `security`, at the default frame rate, with no input and fresh counters.
    pub fn new(name: impl Into<String>, security: Security) -> Self {
        Self {
            name: name.into(),
            security,
            max_fps: DEFAULT_MAX_FPS,
            input: None,
            stats: Arc::default(),
            log_prefix: "rfb".into(),
        }
    }
}

/// What a server has sent, over all its viewers.
#[derive(Debug, Default)]
pub struct Stats {
    /// Framebuffer updates.
    pub updates: AtomicU64,
    /// Rectangles sent as CopyRect (pixels the viewer already had, moved).
    pub copies: AtomicU64,
    /// Bytes of framebuffer updates.
    pub bytes: AtomicU64,
}

/// Starts serving `framebuffer` on `addr` as `options` say; returns the bound address. A frame
/// larger than RFB can describe (65535 pixels a side) is refused.
pub fn serve(
    addr: SocketAddr,
    framebuffer: Arc<dyn FrameSource>,
    options: ServerOptions,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let ServerOptions {
        name,
        security,
        max_fps,
        input,
        stats,
        log_prefix,
    } = options;
    let (width, height) = (framebuffer.width(), framebuffer.height());
    if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("a {width}x{height} frame: RFB frames are 1 to {MAX_SIDE} pixels a side"),
        ));
    }
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let frames = FrameTracker::new(width, height);
    let shared = Arc::new(Shared {
        framebuffer,
        width,
        height,
        security,
        name,
        log_prefix,
        input,
        clipboard: Clipboard::default(),
        frame_interval: Duration::from_secs(1) / max_fps.max(1),
        frames,
        stats,
        viewers: AtomicUsize::new(0),
        handshakes: AtomicUsize::new(0),
        listeners: std::sync::Mutex::new(Vec::new()),
    });
    // One thread reads the frame for every viewer, once a frame interval while any is
    // connected, and wakes them when it changed: a viewer's request is answered at once.
    let watched = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("vnc-frames".into())
        .spawn(move || watch_frames(&watched))?;
    let thread = std::thread::Builder::new()
        .name("vnc".into())
        .spawn(move || {
            for (id, stream) in listener.incoming().flatten().enumerate() {
                let peer = stream
                    .peer_addr()
                    .map_or_else(|_| "?".into(), |a| a.to_string());
                let handshakes = &shared.handshakes;
                if handshakes.load(Ordering::Acquire) >= MAX_HANDSHAKES {
                    eprintln!(
                        "{}: vnc {peer}: refused, {MAX_HANDSHAKES} handshakes under way already",
                        shared.log_prefix
                    );
                    continue;
                }
                handshakes.fetch_add(1, Ordering::AcqRel);
                let viewer = Arc::clone(&shared);
                let spawned =
                    std::thread::Builder::new()
                        .name("vnc-viewer".into())
                        .spawn(move || {
                            let log = &viewer.log_prefix;
                            match serve_viewer(stream, &viewer, id, &peer) {
                                Ok(()) => eprintln!("{log}: vnc {peer}: disconnected"),
                                Err(e) => eprintln!("{log}: vnc {peer}: closed: {e}"),
                            }
                        });
                if spawned.is_err() {
                    handshakes.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
    Ok((bound, thread))
}

/// Reads the frame once a frame interval while viewers are connected; tells them when it
/// changed. A viewer that is not listening (its queue full, or gone) is skipped.
fn watch_frames(shared: &Shared) {
    loop {
        std::thread::sleep(shared.frame_interval);
        if shared.viewers.load(Ordering::Acquire) == 0 {
            continue;
        }
        if shared.frames.refresh(&*shared.framebuffer) {
            let mut listeners = shared.listeners.lock().unwrap_or_else(|e| e.into_inner());
            listeners.retain(|tx| {
                !matches!(
                    tx.try_send(Event::Frame),
                    Err(mpsc::TrySendError::Disconnected(_))
                )
            });
        }
    }
}

/// A viewer slot, given back when dropped.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Handshake (RFC 6143 7.1-7.3, [`crate::handshake`]: one deadline for all of it), then a
/// viewer slot, then the update loop.
fn serve_viewer(
    mut stream: TcpStream,
    shared: &Shared,
    id: usize,
    peer: &str,
) -> Result<(), ProtocolError> {
    stream.set_nodelay(true)?;
    let deadline = Instant::now() + handshake::HANDSHAKE_DEADLINE;
    let greeted = handshake::greet(&mut stream, &shared.security, deadline);
    shared.handshakes.fetch_sub(1, Ordering::AcqRel);
    let access = greeted?;
    // A viewer slot, only now: handshakes (slow ones included) never hold one.
    if shared.viewers.fetch_add(1, Ordering::AcqRel) >= MAX_VIEWERS {
        shared.viewers.fetch_sub(1, Ordering::AcqRel);
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!("{MAX_VIEWERS} viewers already"),
        )
        .into());
    }
    let _slot = Slot(&shared.viewers);
    // Text copied from here on reaches this viewer, however soon after it is told the size.
    let clipboard_seen = shared.clipboard.version();
    handshake::server_init(
        &mut stream,
        (shared.width, shared.height),
        &shared.name,
        deadline,
    )?;
    // A viewer that stops reading is closed, not waited for: its writes time out.
    stream.set_write_timeout(Some(VIEWER_WRITE_TIMEOUT))?;

    // The reader thread parses; this thread writes. A bounded queue: a client that floods
    // us with messages blocks its own reader, nobody else.
    stream.set_read_timeout(None)?;
    let (tx, rx) = mpsc::sync_channel::<Event>(256);
    shared
        .listeners
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(tx.clone());
    let reader_stream = stream.try_clone()?;
    std::thread::Builder::new()
        .name("vnc-reader".into())
        .spawn(move || {
            let mut reader = BufReader::new(reader_stream);
            loop {
                let message = protocol::read_message(&mut reader);
                let failed = message.is_err();
                if tx.send(Event::Client(message)).is_err() || failed {
                    return;
                }
            }
        })?;
    let result = update_loop(&mut stream, shared, (id, peer, access), clipboard_seen, &rx);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    result
}

/// A viewer's update state.
struct Viewer {
    format: PixelFormat,
    negotiated: Negotiated,
    encoder: Encoder,
    /// Pseudo-rectangles owed to the viewer: (encoding, x, y), e.g. the QEMU key event
    /// acknowledgement or an ExtendedDesktopSize answer (x = reason, y = status).
    owed: Vec<(i32, u16, u16)>,
    /// An update is wanted: whether incremental, and the region (the union of those asked
    /// for since the last update).
    pending: Option<(bool, Rect)>,
    /// Per tile: changed while outside the regions asked for (see [`Ask::owed`]).
    owed_tiles: Vec<bool>,
    /// The frame generation this viewer has (0: it needs a whole frame).
    generation: u64,
    /// When the viewer last looked for changes (whether or not it found some).
    last_look: Option<Instant>,
    /// The frame changed since the viewer last looked.
    frame_changed: bool,
    /// The longest clipboard text the viewer takes unasked through Extended Clipboard.
    clipboard_limit: u32,
    /// Server messages owed to the viewer (clipboard ones), sent before any update.
    outbox: Vec<u8>,
}

fn update_loop(
    stream: &mut TcpStream,
    shared: &Shared,
    (id, peer, access): (usize, &str, Access),
    mut clipboard_seen: u64,
    rx: &mpsc::Receiver<Event>,
) -> Result<(), ProtocolError> {
    let frame_interval = shared.frame_interval;
    // A view-only viewer's keys and pointer go nowhere, and the clipboard is neither taken
    // from it nor given to it: what the user copies is not on their screen.
    let full = access == Access::Full;
    let input = shared.input.as_deref().filter(|_| full);
    let size = (shared.width, shared.height);
    let mut viewer = Viewer {
        format: PixelFormat::NATIVE,
        negotiated: Negotiated::default(),
        encoder: Encoder::new(encoding::RAW, encoding::DEFAULT_COMPRESS_LEVEL),
        owed: Vec::new(),
        pending: None,
        owed_tiles: Vec::new(),
        generation: 0,
        last_look: None,
        frame_changed: true,
        clipboard_limit: 0,
        outbox: Vec::new(),
    };
    loop {
        // At most one look a frame interval (the frame-rate cap), when the frame changed or,
        // should the frame watcher lag, now and then; wake now and then anyway for clipboard
        // text from other viewers.
        let since_look = viewer.last_look.map(|at| at.elapsed());
        let wait = match (viewer.pending, since_look) {
            (Some(_), None) => Duration::ZERO,
            (Some(_), Some(ago)) if viewer.frame_changed => frame_interval.saturating_sub(ago),
            _ => IDLE_WAKE,
        };
        match rx.recv_timeout(wait) {
            Ok(Event::Frame) => viewer.frame_changed = true,
            // The viewer hung up between messages: a normal end.
            Ok(Event::Client(Err(ProtocolError::Io(e))))
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                return Ok(());
            }
            Ok(Event::Client(message)) => match message? {
                ClientMessage::SetPixelFormat(format) => {
                    viewer.format = format;
                    viewer.generation = 0; // the next update must be whole
                }
                ClientMessage::UpdateRequest {
                    incremental,
                    x,
                    y,
                    width,
                    height,
                } => {
                    let region = (x.into(), y.into(), width.into(), height.into());
                    // A full request wins over an incremental one already waiting; the
                    // regions join.
                    viewer.pending = Some(match viewer.pending {
                        None => (incremental, region),
                        Some((waiting, before)) => {
                            (waiting && incremental, tiles::enclose(before, region))
                        }
                    });
                }
                ClientMessage::SetEncodings(list) => {
                    let before = viewer.negotiated;
                    viewer.negotiated = encoding::negotiate(&list);
                    let (encoding, level) =
                        (viewer.negotiated.encoding, viewer.negotiated.compress_level);
                    if (encoding, level) != (before.encoding, before.compress_level) {
                        eprintln!(
                            "{}: vnc {peer}: {}, compression level {level}",
                            shared.log_prefix,
                            encoding::name(encoding)
                        );
                    }
                    viewer.encoder.set(encoding, level);
                    if viewer.negotiated.qemu_extended_key && !before.qemu_extended_key {
                        viewer.owed.push((encoding::QEMU_EXTENDED_KEY, 0, 0));
                    }
                    if full && viewer.negotiated.extended_clipboard && !before.extended_clipboard {
                        viewer.outbox.extend(clipboard::caps_message());
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
                ClientMessage::CutText(_) | ClientMessage::ExtendedClipboard { .. } if !full => {}
                ClientMessage::CutText(text) => {
                    shared.clipboard.set(id, clipboard::from_latin1(&text));
                }
                ClientMessage::ExtendedClipboard { flags, payload } => {
                    match clipboard::parse(flags, &payload)? {
                        Extended::Caps { text_limit, .. } => viewer.clipboard_limit = text_limit,
                        Extended::Request { text: true } => viewer
                            .outbox
                            .extend(clipboard::provide_message(&shared.clipboard.text())?),
                        Extended::Peek => viewer.outbox.extend(clipboard::notify_message()),
                        Extended::Notify { text: true } => {
                            viewer.outbox.extend(clipboard::request_message());
                        }
                        Extended::Provide(Some(text)) => shared.clipboard.set(id, text),
                        // Formats other than text: nothing to do.
                        Extended::Request { text: false }
                        | Extended::Notify { text: false }
                        | Extended::Provide(None) => {}
                    }
                }
                ClientMessage::Pointer { buttons, x, y } => {
                    if let Some(input) = input {
                        input.pointer(
                            x.min(shared.width as u16 - 1),
                            y.min(shared.height as u16 - 1),
                            buttons,
                        );
                    }
                }
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
        let newer = if full {
            shared.clipboard.newer(&mut clipboard_seen, id)
        } else {
            None
        };
        if let Some(text) = newer {
            let message = if !viewer.negotiated.extended_clipboard {
                clipboard::latin1_message(&text)
            } else if text.len() <= viewer.clipboard_limit as usize {
                clipboard::provide_message(&text)?
            } else {
                // Too long to send unasked: the viewer requests it if it wants it.
                clipboard::notify_message()
            };
            viewer.outbox.extend(message);
        }
        if !viewer.outbox.is_empty() {
            stream.write_all(&std::mem::take(&mut viewer.outbox))?;
        }
        if !viewer.owed.is_empty() {
            // Pseudo-rectangles go out at once, with no pixels.
            let owed = std::mem::take(&mut viewer.owed);
            send_update(
                stream,
                &mut viewer,
                &Look::default(),
                size,
                &owed,
                &shared.stats,
            )?;
        }
        let since_look = viewer.last_look.map(|at| at.elapsed());
        let due = since_look
            .is_none_or(|ago| ago >= frame_interval && (viewer.frame_changed || ago >= IDLE_WAKE));
        if let (Some((incremental, region)), true) = (viewer.pending, due) {
            let ask = Ask {
                since: viewer.generation,
                incremental,
                region,
                copy_rect: viewer.negotiated.copy_rect,
                owed: &mut viewer.owed_tiles,
            };
            // The watcher keeps the copy fresh; read the frame here only if it lags.
            let look = shared
                .frames
                .look(&*shared.framebuffer, frame_interval * 2, ask);
            viewer.last_look = Some(Instant::now());
            viewer.frame_changed = false;
            if !look.changed.is_empty() || !look.copies.is_empty() {
                send_update(stream, &mut viewer, &look, size, &[], &shared.stats)?;
                viewer.generation = look.generation;
                viewer.pending = None;
            }
        }
    }
}

/// Sends one update: pseudo-rectangles, then copies of what moved (before anything overwrites
/// their sources), then the changed rectangles.
fn send_update(
    stream: &mut TcpStream,
    viewer: &mut Viewer,
    look: &Look,
    (fw, fh): (u32, u32),
    pseudo: &[(i32, u16, u16)],
    stats: &Stats,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(4 + (pseudo.len() + look.copies.len()) * 16);
    out.extend_from_slice(&[0, 0, 0, 0]); // the rectangle count is filled in at the end
    for &(enc, x, y) in pseudo {
        match enc {
            encoding::EXTENDED_DESKTOP_SIZE => {
                encoding::rect_header(&mut out, (x.into(), y.into(), fw, fh), enc);
                // One screen, id 0, covering the whole framebuffer.
                out.extend_from_slice(&[1, 0, 0, 0]);
                out.extend_from_slice(&0u32.to_be_bytes());
                for v in [0, 0, fw as u16, fh as u16] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                out.extend_from_slice(&0u32.to_be_bytes());
            }
            _ => encoding::rect_header(&mut out, (0, 0, 0, 0), enc),
        }
    }
    for m in &look.copies {
        encoding::rect_header(&mut out, m.dest, encoding::COPY_RECT);
        out.extend_from_slice(&(m.source.0 as u16).to_be_bytes());
        out.extend_from_slice(&(m.source.1 as u16).to_be_bytes());
    }
    let mut count = pseudo.len() + look.copies.len();
    for &rect in &look.changed {
        count +=
            usize::from(
                viewer
                    .encoder
                    .encode(&look.frame, fw, rect, viewer.format, &mut out)?,
            );
    }
    let count = u16::try_from(count)
        .map_err(|_| std::io::Error::other(format!("{count} rectangles in one update")))?;
    out[2..4].copy_from_slice(&count.to_be_bytes());
    stats.updates.fetch_add(1, Ordering::Relaxed);
    stats
        .copies
        .fetch_add(look.copies.len() as u64, Ordering::Relaxed);
    stats.bytes.fetch_add(out.len() as u64, Ordering::Relaxed);
    stream.write_all(&out)
}
