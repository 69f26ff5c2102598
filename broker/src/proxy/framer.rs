//! Cuts the browser's byte stream into whole RFB client messages, so the broker knows which
//! are user input (session activity; dropped for view-only viewers) without re-encoding any.
//! Each message is checked by the VNC crate's own parser, with its bounds. A message's length
//! is read from its header once; its body is parsed once it is all there, so a message sent a
//! byte at a time (a 1 MiB clipboard in a million WebSocket messages) costs time in
//! proportion to its size, not to its size squared.

use std::io::{Cursor, ErrorKind};

use rfb::protocol::{ClientMessage, MAX_CUT_TEXT, ProtocolError, message_len, read_message};

/// Most bytes held while waiting for the end of a message: the largest message allowed
/// (clipboard text) and its header.
pub const MAX_PENDING: usize = MAX_CUT_TEXT as usize + 64;

/// What a client message is, for the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Keyboard or pointer input.
    Input,
    /// Clipboard text to the desktop.
    Clipboard,
    /// Everything else (formats, encodings, update requests, size requests).
    Control,
}

/// Splits a byte stream into messages.
#[derive(Debug, Default)]
pub struct Framer {
    pending: Vec<u8>,
    /// The length of the message at the start of `pending`, once its header is in.
    next_len: Option<usize>,
}

impl Framer {
    /// Adds bytes read from the browser.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        if self.pending.len() + bytes.len() > MAX_PENDING {
            return Err(ProtocolError::TooLong {
                what: "client message",
                len: (self.pending.len() + bytes.len()) as u64,
                max: MAX_PENDING as u64,
            });
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    /// The next whole message and its bytes, or `None` until more arrive.
    pub fn next_message(&mut self) -> Result<Option<(Kind, Vec<u8>)>, ProtocolError> {
        if self.next_len.is_none() {
            self.next_len = message_len(&self.pending)?;
        }
        match self.next_len {
            Some(len) if self.pending.len() >= len => {}
            _ => return Ok(None),
        }
        self.next_len = None;
        let mut cursor = Cursor::new(&self.pending[..]);
        let message = match read_message(&mut cursor) {
            Ok(message) => message,
            Err(ProtocolError::Io(e)) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = cursor.position() as usize;
        let kind = match message {
            ClientMessage::Key { .. }
            | ClientMessage::QemuKey { .. }
            | ClientMessage::Pointer { .. } => Kind::Input,
            ClientMessage::CutText(_) | ClientMessage::ExtendedClipboard { .. } => Kind::Clipboard,
            ClientMessage::SetPixelFormat(_)
            | ClientMessage::SetEncodings(_)
            | ClientMessage::UpdateRequest { .. }
            | ClientMessage::SetDesktopSize { .. } => Kind::Control,
        };
        let bytes = self.pending.drain(..len).collect();
        Ok(Some((kind, bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_across_reads_come_out_whole() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&[3, 1, 0, 0, 0, 0, 0, 10, 0, 10]); // update request
        stream.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0, 0x61]); // key 'a' down
        stream.extend_from_slice(&[5, 1, 0, 5, 0, 6]); // pointer
        stream.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']); // cut text
        let mut framer = Framer::default();
        let mut out = Vec::new();
        // One byte at a time: the worst a WebSocket can do.
        for b in &stream {
            framer.push(&[*b]).unwrap();
            while let Some(m) = framer.next_message().unwrap() {
                out.push(m);
            }
        }
        let kinds: Vec<Kind> = out.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [Kind::Control, Kind::Input, Kind::Input, Kind::Clipboard]
        );
        let rejoined: Vec<u8> = out.into_iter().flat_map(|(_, b)| b).collect();
        assert_eq!(rejoined, stream, "bytes pass unchanged");
    }

    #[test]
    fn a_message_a_byte_at_a_time_is_parsed_once() {
        // 1 MiB of clipboard text, a byte per push: linear, so this takes milliseconds (parsing
        // the pending bytes again on every push took minutes).
        let size = MAX_CUT_TEXT as usize;
        let mut stream = vec![6, 0, 0, 0];
        stream.extend_from_slice(&(size as u32).to_be_bytes());
        stream.resize(8 + size, b'x');
        stream.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0, 0x61]);
        let mut framer = Framer::default();
        let mut out = Vec::new();
        let started = std::time::Instant::now();
        for b in &stream {
            framer.push(&[*b]).unwrap();
            while let Some(m) = framer.next_message().unwrap() {
                out.push(m);
            }
        }
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].0, out[0].1.len()), (Kind::Clipboard, 8 + size));
        assert_eq!(out[1].0, Kind::Input);
        // Not a benchmark: a bound a quadratic framer misses by hours.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn hostile_streams_are_errors_not_allocations() {
        let mut framer = Framer::default();
        framer.push(&[99]).unwrap();
        assert!(matches!(
            framer.next_message(),
            Err(ProtocolError::UnknownMessage(99))
        ));
        let mut framer = Framer::default();
        framer.push(&[6, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]).unwrap();
        assert!(matches!(
            framer.next_message(),
            Err(ProtocolError::TooLong { .. })
        ));
        let mut framer = Framer::default();
        assert!(framer.push(&vec![0u8; MAX_PENDING + 1]).is_err());
    }
}
