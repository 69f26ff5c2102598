//! The clipboard viewers share: text copied on one viewer reaches the others, as Latin-1
//! through the original ServerCutText/ClientCutText messages or as UTF-8 through the Extended
//! Clipboard extension (rfbproto's pseudo-encoding 0xC0A1E5CE), which noVNC and TigerVNC use.

use std::sync::Mutex;

use flate2::{Compression, Decompress, FlushDecompress, Status, write::ZlibEncoder};

use crate::protocol::{MAX_CUT_TEXT, ProtocolError};

/// The Extended Clipboard pseudo-encoding.
pub const EXTENDED_CLIPBOARD: i32 = 0xc0a1_e5ce_u32 as i32;
/// Format bit: UTF-8 text.
pub const TEXT: u32 = 1;
/// Action bit: the sender's capabilities.
pub const CAPS: u32 = 1 << 24;
/// Action bit: please provide these formats.
pub const REQUEST: u32 = 1 << 25;
/// Action bit: please say which formats you have.
pub const PEEK: u32 = 1 << 26;
/// Action bit: these formats are available.
pub const NOTIFY: u32 = 1 << 27;
/// Action bit: here is the data.
pub const PROVIDE: u32 = 1 << 28;
/// Every action bit.
const ACTIONS: u32 = CAPS | REQUEST | PEEK | NOTIFY | PROVIDE;

/// The text last copied on any viewer, handed to the others.
#[derive(Default)]
pub struct Clipboard {
    /// (version, the viewer it came from, the text).
    inner: Mutex<(u64, usize, String)>,
}

impl Clipboard {
    /// Viewer `from` copied `text`.
    pub fn set(&self, from: usize, text: String) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *inner = (inner.0 + 1, from, text);
    }

    /// The current version; it changes with every copy.
    pub fn version(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// The text, whoever copied it.
    pub fn text(&self) -> String {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .2
            .clone()
    }

    /// The text, if it changed since version `seen` and came from another viewer than
    /// `viewer`; `seen` moves on either way.
    pub fn newer(&self, seen: &mut u64, viewer: usize) -> Option<String> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.0 == *seen {
            return None;
        }
        *seen = inner.0;
        (inner.1 != viewer).then(|| inner.2.clone())
    }
}

/// Latin-1 bytes (what ClientCutText carries) as text.
pub fn from_latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Text as Latin-1 bytes for ServerCutText: characters Latin-1 lacks become `?`.
pub fn to_latin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

/// An Extended Clipboard message from a viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extended {
    /// The viewer's capabilities: the actions it takes, and the longest text it accepts
    /// unasked (0 when it wants a notify first).
    Caps {
        /// Action bits.
        actions: u32,
        /// Unsolicited text limit in bytes.
        text_limit: u32,
    },
    /// The viewer wants our text.
    Request {
        /// Whether text is among the formats asked for.
        text: bool,
    },
    /// The viewer asks which formats we have.
    Peek,
    /// The viewer has new clipboard data in these formats.
    Notify {
        /// Whether text is among them.
        text: bool,
    },
    /// The viewer's clipboard text (none when it sent only other formats).
    Provide(Option<String>),
}

/// Parses an Extended Clipboard message: `flags`, then `payload`.
pub fn parse(flags: u32, payload: &[u8]) -> Result<Extended, ProtocolError> {
    let text = flags & TEXT != 0;
    // A caps message also carries the actions its sender takes; any other has one action.
    let action = if flags & CAPS != 0 {
        CAPS
    } else {
        flags & ACTIONS
    };
    Ok(match action {
        CAPS => {
            // One size a format bit set, lowest bit first; text is bit 0, so it comes first.
            let text_limit = match (text, payload) {
                (true, [a, b, c, d, ..]) => u32::from_be_bytes([*a, *b, *c, *d]),
                (true, _) => return Err(malformed("caps without the text size")),
                (false, _) => 0,
            };
            Extended::Caps {
                actions: flags & ACTIONS,
                text_limit,
            }
        }
        REQUEST => Extended::Request { text },
        PEEK => Extended::Peek,
        NOTIFY => Extended::Notify { text },
        PROVIDE => Extended::Provide(if text {
            Some(provided_text(payload)?)
        } else {
            None
        }),
        other => {
            return Err(malformed(&format!(
                "action bits {other:#x}: exactly one action is allowed"
            )));
        }
    })
}

fn malformed(what: &str) -> ProtocolError {
    ProtocolError::Malformed(format!("extended clipboard: {what}"))
}

/// Inflates `data`, which may end unfinished (noVNC flushes its stream but never ends it), and
/// fails once the output passes `limit`, so a zip bomb is an error, not an allocation.
fn inflate_bounded(data: &[u8], limit: usize) -> Result<Vec<u8>, ProtocolError> {
    let mut zlib = Decompress::new(true);
    let mut out = Vec::with_capacity(4096);
    loop {
        if out.len() > limit {
            return Err(ProtocolError::TooLong {
                what: "inflated clipboard data",
                len: out.len() as u64,
                max: limit as u64,
            });
        }
        if out.len() == out.capacity() {
            out.reserve(out.len());
        }
        let (read, written) = (zlib.total_in(), zlib.total_out());
        let status = zlib
            .decompress_vec(&data[read as usize..], &mut out, FlushDecompress::Sync)
            .map_err(|e| malformed(&format!("bad zlib data: {e}")))?;
        let stuck = zlib.total_in() == read && zlib.total_out() == written;
        if status == Status::StreamEnd || (stuck && out.len() < out.capacity()) {
            return Ok(out);
        }
    }
}

/// The text of a provide message: zlib data holding, per format, a size and the bytes; text
/// is the first.
fn provided_text(payload: &[u8]) -> Result<String, ProtocolError> {
    let inflated = inflate_bounded(payload, MAX_CUT_TEXT as usize + 4)?;
    let Some((size, rest)) = inflated.split_first_chunk::<4>() else {
        return Err(malformed("provide without a text size"));
    };
    let size = u32::from_be_bytes(*size);
    if size > MAX_CUT_TEXT {
        return Err(ProtocolError::TooLong {
            what: "clipboard text",
            len: u64::from(size),
            max: u64::from(MAX_CUT_TEXT),
        });
    }
    let bytes = rest
        .get(..size as usize)
        .ok_or_else(|| malformed("text shorter than its size"))?;
    // UTF-8 with a terminating NUL and CRLF line ends on the wire.
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|_| malformed("text is not UTF-8"))?;
    Ok(text.replace("\r\n", "\n"))
}

/// A ServerCutText message carrying an Extended Clipboard payload.
fn message(flags: u32, payload: &[u8]) -> Vec<u8> {
    let len = -((4 + payload.len()) as i32);
    let mut out = Vec::with_capacity(12 + payload.len());
    out.extend_from_slice(&[3, 0, 0, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Our capabilities: text, every action, and texts up to the limit sent unasked.
pub fn caps_message() -> Vec<u8> {
    message(
        CAPS | REQUEST | PEEK | NOTIFY | PROVIDE | TEXT,
        &MAX_CUT_TEXT.to_be_bytes(),
    )
}

/// Tells a viewer we have text.
pub fn notify_message() -> Vec<u8> {
    message(NOTIFY | TEXT, &[])
}

/// Asks a viewer for its text.
pub fn request_message() -> Vec<u8> {
    message(REQUEST | TEXT, &[])
}

/// Hands a viewer `text`: UTF-8, CRLF line ends, a terminating NUL, compressed.
pub fn provide_message(text: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let wire = format!("{}\0", text.replace("\r\n", "\n").replace('\n', "\r\n"));
    let mut zlib = ZlibEncoder::new(Vec::new(), Compression::new(6));
    zlib.write_all(&(wire.len() as u32).to_be_bytes())?;
    zlib.write_all(wire.as_bytes())?;
    Ok(message(PROVIDE | TEXT, &zlib.finish()?))
}

/// A legacy ServerCutText message with `text` in Latin-1.
pub fn latin1_message(text: &str) -> Vec<u8> {
    let bytes = to_latin1(text);
    let mut out = Vec::with_capacity(8 + bytes.len());
    out.extend_from_slice(&[3, 0, 0, 0]);
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits one of our messages into (flags, payload).
    fn split(message: Vec<u8>) -> (u32, Vec<u8>) {
        assert_eq!(message[0], 3);
        let len = i32::from_be_bytes([message[4], message[5], message[6], message[7]]);
        assert_eq!(-len as usize, message.len() - 8);
        let flags = u32::from_be_bytes([message[8], message[9], message[10], message[11]]);
        (flags, message[12..].to_vec())
    }

    #[test]
    fn clipboard_text_goes_to_the_other_viewers_once() {
        let clipboard = Clipboard::default();
        let (mut seen_a, mut seen_b) = (clipboard.version(), clipboard.version());
        clipboard.set(1, "copied".into());
        assert_eq!(
            clipboard.newer(&mut seen_a, 1),
            None,
            "not back to its own viewer"
        );
        assert_eq!(clipboard.newer(&mut seen_b, 2).as_deref(), Some("copied"));
        assert_eq!(clipboard.newer(&mut seen_b, 2), None, "once");
    }

    #[test]
    fn utf8_text_survives_a_provide_and_latin1_gets_what_it_can_hold() {
        let text = "Grüße, 世界\nline two";
        let (flags, payload) = split(provide_message(text).unwrap());
        assert_eq!(flags, PROVIDE | TEXT);
        assert_eq!(
            parse(flags, &payload).unwrap(),
            Extended::Provide(Some(text.into()))
        );
        assert_eq!(to_latin1(text), b"Gr\xfc\xdfe, ??\nline two");
        assert_eq!(from_latin1(b"caf\xe9"), "café");
        let legacy = latin1_message("café");
        assert_eq!(legacy, [3, 0, 0, 0, 0, 0, 0, 4, b'c', b'a', b'f', 0xe9]);
    }

    #[test]
    fn an_unfinished_stream_as_novnc_sends_it_still_gives_its_text() {
        use std::io::Write;
        let mut z = ZlibEncoder::new(Vec::new(), Compression::new(6));
        z.write_all(&[0, 0, 0, 5]).unwrap();
        z.write_all(b"a\r\nb\0").unwrap();
        z.flush().unwrap(); // a sync flush, and no end of stream
        let unfinished = z.get_ref().clone();
        assert_eq!(
            parse(PROVIDE | TEXT, &unfinished).unwrap(),
            Extended::Provide(Some("a\nb".into()))
        );
    }

    #[test]
    fn caps_and_small_messages_parse() {
        let (flags, payload) = split(caps_message());
        assert_eq!(
            parse(flags, &payload).unwrap(),
            Extended::Caps {
                actions: CAPS | REQUEST | PEEK | NOTIFY | PROVIDE,
                text_limit: MAX_CUT_TEXT
            }
        );
        let (flags, payload) = split(notify_message());
        assert_eq!(
            parse(flags, &payload).unwrap(),
            Extended::Notify { text: true }
        );
        let (flags, payload) = split(request_message());
        assert_eq!(
            parse(flags, &payload).unwrap(),
            Extended::Request { text: true }
        );
        assert_eq!(parse(PEEK, &[]).unwrap(), Extended::Peek);
    }

    #[test]
    fn hostile_messages_are_errors() {
        use std::io::Write;
        let bomb = {
            let mut z = ZlibEncoder::new(Vec::new(), Compression::new(9));
            z.write_all(&(MAX_CUT_TEXT * 4).to_be_bytes()).unwrap();
            z.write_all(&vec![b'a'; (MAX_CUT_TEXT * 4) as usize])
                .unwrap();
            z.finish().unwrap()
        };
        assert!(bomb.len() < 20_000, "small on the wire");
        let oversized = {
            let mut z = ZlibEncoder::new(Vec::new(), Compression::new(9));
            z.write_all(&(MAX_CUT_TEXT + 1).to_be_bytes()).unwrap();
            z.finish().unwrap()
        };
        let cases: [(u32, &[u8], &str); 7] = [
            (PROVIDE | TEXT, &bomb, "is longer than the 1048580 allowed"),
            (
                PROVIDE | TEXT,
                &oversized,
                "clipboard text of 1048577 bytes",
            ),
            (PROVIDE | TEXT, b"not zlib", "bad zlib data"),
            (CAPS | TEXT, &[0, 1], "caps without the text size"),
            (NOTIFY | PROVIDE, &[], "exactly one action"),
            (TEXT, &[], "exactly one action"),
            (
                PROVIDE | TEXT,
                &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
                "provide without a text size",
            ),
        ];
        for (flags, payload, says) in cases {
            let err = parse(flags, payload).expect_err(says);
            assert!(err.to_string().contains(says), "{flags:#x}: {err}");
        }
    }
}
