//! RFB wire format (RFC 6143): the handshake's pieces and the client-to-server messages, parsed
//! with a bound on every length, so a hostile client gets an error, never an allocation of its
//! choosing or a panic.

use std::io::Read;

/// Longest clipboard text a client may send.
pub const MAX_CUT_TEXT: u32 = 1 << 20;
/// Most encodings a client may list.
pub const MAX_ENCODINGS: u16 = 1024;

/// What is wrong with a client's bytes.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The connection failed or closed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The version string is not RFB 3.x.
    #[error("bad protocol version {0:?}")]
    BadVersion(String),
    /// A message type we do not know.
    #[error("unknown message type {0}")]
    UnknownMessage(u8),
    /// A length beyond what we accept.
    #[error("{what} of {len} bytes is longer than the {max} allowed")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A message that breaks its own format.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A pixel format we cannot produce.
    #[error("unsupported pixel format: {0}")]
    BadPixelFormat(String),
}

/// A client's pixel format (RFC 6143, 7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    /// Bits per pixel: 8, 16 or 32.
    pub bits_per_pixel: u8,
    /// Useful bits.
    pub depth: u8,
    /// Multi-byte pixels are big-endian.
    pub big_endian: bool,
    /// Maximum red value.
    pub red_max: u16,
    /// Maximum green value.
    pub green_max: u16,
    /// Maximum blue value.
    pub blue_max: u16,
    /// Red shift.
    pub red_shift: u8,
    /// Green shift.
    pub green_shift: u8,
    /// Blue shift.
    pub blue_shift: u8,
}

impl PixelFormat {
    /// The server's native format: 32 bits, depth 24, little-endian x8r8g8b8.
    pub const NATIVE: PixelFormat = PixelFormat {
        bits_per_pixel: 32,
        depth: 24,
        big_endian: false,
        red_max: 255,
        green_max: 255,
        blue_max: 255,
        red_shift: 16,
        green_shift: 8,
        blue_shift: 0,
    };

    /// The 16 bytes of the format on the wire.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.bits_per_pixel;
        b[1] = self.depth;
        b[2] = u8::from(self.big_endian);
        b[3] = 1; // true colour
        b[4..6].copy_from_slice(&self.red_max.to_be_bytes());
        b[6..8].copy_from_slice(&self.green_max.to_be_bytes());
        b[8..10].copy_from_slice(&self.blue_max.to_be_bytes());
        b[10] = self.red_shift;
        b[11] = self.green_shift;
        b[12] = self.blue_shift;
        b
    }

    /// Parses and checks a format a client asks for.
    pub fn from_bytes(b: &[u8; 16]) -> Result<Self, ProtocolError> {
        let pf = PixelFormat {
            bits_per_pixel: b[0],
            depth: b[1],
            big_endian: b[2] != 0,
            red_max: u16::from_be_bytes([b[4], b[5]]),
            green_max: u16::from_be_bytes([b[6], b[7]]),
            blue_max: u16::from_be_bytes([b[8], b[9]]),
            red_shift: b[10],
            green_shift: b[11],
            blue_shift: b[12],
        };
        if b[3] == 0 {
            return Err(ProtocolError::BadPixelFormat(
                "colour-map formats are not supported".into(),
            ));
        }
        if !matches!(pf.bits_per_pixel, 8 | 16 | 32) {
            return Err(ProtocolError::BadPixelFormat(format!(
                "{} bits per pixel",
                pf.bits_per_pixel
            )));
        }
        for (max, shift) in [
            (pf.red_max, pf.red_shift),
            (pf.green_max, pf.green_shift),
            (pf.blue_max, pf.blue_shift),
        ] {
            let bits = 16 - max.leading_zeros();
            if max == 0
                || u32::from(shift) + bits > u32::from(pf.bits_per_pixel)
                || (max & (max + 1)) != 0
            {
                return Err(ProtocolError::BadPixelFormat(format!(
                    "channel max {max} at shift {shift}"
                )));
            }
        }
        Ok(pf)
    }

    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> usize {
        usize::from(self.bits_per_pixel / 8)
    }
}

/// The RFB version a client chose: 3.3, 3.7 or 3.8.
pub fn parse_version(bytes: &[u8; 12]) -> Result<u8, ProtocolError> {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let minor = text
        .strip_prefix("RFB 003.")
        .and_then(|rest| rest.strip_suffix('\n'))
        .and_then(|m| m.parse::<u16>().ok())
        .ok_or_else(|| ProtocolError::BadVersion(text.clone()))?;
    // RFC 6143 7.1.1: unknown 3.x minors are treated as 3.3; later ones speak 3.8.
    Ok(match minor {
        7 => 7,
        m if m >= 8 => 8,
        _ => 3,
    })
}

/// A message from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// SetPixelFormat.
    SetPixelFormat(PixelFormat),
    /// SetEncodings, in the client's order of preference.
    SetEncodings(Vec<i32>),
    /// FramebufferUpdateRequest.
    UpdateRequest {
        /// Only changes are wanted.
        incremental: bool,
        /// Left.
        x: u16,
        /// Top.
        y: u16,
        /// Width.
        width: u16,
        /// Height.
        height: u16,
    },
    /// KeyEvent.
    Key {
        /// Pressed (or released).
        down: bool,
        /// The X keysym.
        keysym: u32,
    },
    /// PointerEvent.
    Pointer {
        /// Button mask.
        buttons: u8,
        /// X.
        x: u16,
        /// Y.
        y: u16,
    },
    /// ClientCutText (Latin-1 text).
    CutText(Vec<u8>),
    /// ClientCutText with a negative length: an Extended Clipboard message.
    ExtendedClipboard {
        /// Action and format bits.
        flags: u32,
        /// What follows the flags.
        payload: Vec<u8>,
    },
    /// SetDesktopSize (ExtendedDesktopSize extension): the client asks for another size.
    SetDesktopSize {
        /// Width asked for.
        width: u16,
        /// Height asked for.
        height: u16,
    },
    /// QEMU Extended Key Event.
    QemuKey {
        /// Pressed (or released).
        down: bool,
        /// The X keysym.
        keysym: u32,
        /// The XT scancode.
        keycode: u32,
    },
}

fn read_array<const N: usize>(r: &mut impl Read) -> Result<[u8; N], ProtocolError> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

/// Reads one client message.
pub fn read_message(r: &mut impl Read) -> Result<ClientMessage, ProtocolError> {
    let [kind] = read_array::<1>(r)?;
    Ok(match kind {
        0 => {
            let b = read_array::<19>(r)?;
            let mut pf = [0u8; 16];
            pf.copy_from_slice(&b[3..19]);
            ClientMessage::SetPixelFormat(PixelFormat::from_bytes(&pf)?)
        }
        2 => {
            let b = read_array::<3>(r)?;
            let count = u16::from_be_bytes([b[1], b[2]]);
            if count > MAX_ENCODINGS {
                return Err(ProtocolError::TooLong {
                    what: "encoding list",
                    len: u64::from(count) * 4,
                    max: u64::from(MAX_ENCODINGS) * 4,
                });
            }
            let mut list = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                list.push(i32::from_be_bytes(read_array::<4>(r)?));
            }
            ClientMessage::SetEncodings(list)
        }
        3 => {
            let b = read_array::<9>(r)?;
            let word = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
            ClientMessage::UpdateRequest {
                incremental: b[0] != 0,
                x: word(1),
                y: word(3),
                width: word(5),
                height: word(7),
            }
        }
        4 => {
            let b = read_array::<7>(r)?;
            ClientMessage::Key {
                down: b[0] != 0,
                keysym: u32::from_be_bytes([b[3], b[4], b[5], b[6]]),
            }
        }
        5 => {
            let b = read_array::<5>(r)?;
            ClientMessage::Pointer {
                buttons: b[0],
                x: u16::from_be_bytes([b[1], b[2]]),
                y: u16::from_be_bytes([b[3], b[4]]),
            }
        }
        6 => {
            let b = read_array::<7>(r)?;
            let len = i32::from_be_bytes([b[3], b[4], b[5], b[6]]);
            let size = u64::from(len.unsigned_abs());
            if size > u64::from(MAX_CUT_TEXT) {
                return Err(ProtocolError::TooLong {
                    what: "clipboard text",
                    len: size,
                    max: u64::from(MAX_CUT_TEXT),
                });
            }
            let mut bytes = vec![0u8; size as usize];
            r.read_exact(&mut bytes)?;
            if len >= 0 {
                ClientMessage::CutText(bytes)
            } else {
                // Extended Clipboard: the length is negated, and flags start the payload.
                let Some((flags, payload)) = bytes.split_first_chunk::<4>() else {
                    return Err(ProtocolError::Malformed(
                        "extended clipboard message without flags".into(),
                    ));
                };
                ClientMessage::ExtendedClipboard {
                    flags: u32::from_be_bytes(*flags),
                    payload: payload.to_vec(),
                }
            }
        }
        251 => {
            let b = read_array::<7>(r)?;
            let screens = usize::from(b[5]);
            // Up to 255 screens of 16 bytes: bounded by the format itself.
            let mut layout = vec![0u8; screens * 16];
            r.read_exact(&mut layout)?;
            ClientMessage::SetDesktopSize {
                width: u16::from_be_bytes([b[1], b[2]]),
                height: u16::from_be_bytes([b[3], b[4]]),
            }
        }
        255 => {
            let [sub] = read_array::<1>(r)?;
            if sub != 0 {
                return Err(ProtocolError::UnknownMessage(255));
            }
            let b = read_array::<10>(r)?;
            ClientMessage::QemuKey {
                down: u16::from_be_bytes([b[0], b[1]]) != 0,
                keysym: u32::from_be_bytes([b[2], b[3], b[4], b[5]]),
                keycode: u32::from_be_bytes([b[6], b[7], b[8], b[9]]),
            }
        }
        other => return Err(ProtocolError::UnknownMessage(other)),
    })
}

/// The length of the client message that starts `bytes`, from its header alone: `Ok(None)`
/// until enough of the header is there. Refuses what [`read_message`] refuses from a header
/// (an unknown type, a length over its bound). A reader buffering a stream (the broker's
/// relay) waits for this many bytes before it parses, instead of parsing again with every
/// byte that arrives.
pub fn message_len(bytes: &[u8]) -> Result<Option<usize>, ProtocolError> {
    let Some(&kind) = bytes.first() else {
        return Ok(None);
    };
    let header = |n: usize| bytes.get(..n);
    Ok(match kind {
        0 => Some(20),
        3 => Some(10),
        4 => Some(8),
        5 => Some(6),
        2 => header(4)
            .map(|h| {
                let count = u16::from_be_bytes([h[2], h[3]]);
                if count > MAX_ENCODINGS {
                    return Err(ProtocolError::TooLong {
                        what: "encoding list",
                        len: u64::from(count) * 4,
                        max: u64::from(MAX_ENCODINGS) * 4,
                    });
                }
                Ok(4 + 4 * usize::from(count))
            })
            .transpose()?,
        6 => header(8)
            .map(|h| {
                let len = i32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                let size = len.unsigned_abs();
                if size > MAX_CUT_TEXT {
                    return Err(ProtocolError::TooLong {
                        what: "clipboard text",
                        len: u64::from(size),
                        max: u64::from(MAX_CUT_TEXT),
                    });
                }
                Ok(8 + size as usize)
            })
            .transpose()?,
        251 => header(8).map(|h| 8 + 16 * usize::from(h[6])),
        255 => match bytes.get(1) {
            None => None,
            Some(0) => Some(12),
            Some(_) => return Err(ProtocolError::UnknownMessage(255)),
        },
        other => return Err(ProtocolError::UnknownMessage(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_len_is_what_read_message_reads() {
        let messages: [&[u8]; 9] = [
            &[
                0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0,
            ],
            &[2, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 0],
            &[3, 1, 0, 0, 0, 0, 0, 10, 0, 10],
            &[4, 1, 0, 0, 0, 0, 0, 0x61],
            &[5, 1, 0, 5, 0, 6],
            &[6, 0, 0, 0, 0, 0, 0, 2, b'h', b'i'],
            &[6, 0, 0, 0, 0xff, 0xff, 0xff, 0xfa, 0, 0, 0, 1, b'h', b'i'],
            &[
                251, 0, 0, 10, 0, 10, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 10, 0, 10, 0, 0, 0, 0,
            ],
            &[255, 0, 0, 1, 0, 0, 0, 0x61, 0, 0, 0, 30],
        ];
        for m in messages {
            let mut cursor = std::io::Cursor::new(m);
            read_message(&mut cursor).unwrap_or_else(|e| panic!("{m:?}: {e}"));
            assert_eq!(cursor.position() as usize, m.len(), "{m:?}");
            assert_eq!(message_len(m).unwrap(), Some(m.len()), "{m:?}");
            // Any shorter start either knows the length already or waits for more header.
            for cut in 0..m.len() {
                let known = message_len(&m[..cut]).unwrap();
                assert!(
                    known.is_none() || known == Some(m.len()),
                    "{m:?} cut at {cut}"
                );
            }
        }
        assert!(matches!(
            message_len(&[99]),
            Err(ProtocolError::UnknownMessage(99))
        ));
        assert!(matches!(
            message_len(&[255, 1]),
            Err(ProtocolError::UnknownMessage(255))
        ));
        assert!(matches!(
            message_len(&[6, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]),
            Err(ProtocolError::TooLong { .. })
        ));
        assert!(matches!(
            message_len(&[2, 0, 0xff, 0xff]),
            Err(ProtocolError::TooLong { .. })
        ));
    }

    fn parse(bytes: &[u8]) -> Result<ClientMessage, ProtocolError> {
        read_message(&mut &bytes[..])
    }

    #[test]
    fn well_formed_messages_parse() {
        assert_eq!(
            parse(&[3, 1, 0, 1, 0, 2, 0, 3, 0, 4]).unwrap(),
            ClientMessage::UpdateRequest {
                incremental: true,
                x: 1,
                y: 2,
                width: 3,
                height: 4
            }
        );
        assert_eq!(
            parse(&[2, 0, 0, 2, 0, 0, 0, 16, 0xff, 0xff, 0xff, 0x21]).unwrap(),
            ClientMessage::SetEncodings(vec![16, -223])
        );
        assert_eq!(
            parse(&[4, 1, 0, 0, 0, 0, 0, 0x61]).unwrap(),
            ClientMessage::Key {
                down: true,
                keysym: 0x61
            }
        );
        assert_eq!(
            parse(&[5, 1, 0, 10, 0, 20]).unwrap(),
            ClientMessage::Pointer {
                buttons: 1,
                x: 10,
                y: 20
            }
        );
        assert_eq!(
            parse(&[6, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']).unwrap(),
            ClientMessage::CutText(b"hi".to_vec())
        );
        assert_eq!(
            parse(&[6, 0, 0, 0, 0xff, 0xff, 0xff, 0xfb, 0x08, 0, 0, 1, 7]).unwrap(),
            ClientMessage::ExtendedClipboard {
                flags: 0x0800_0001,
                payload: vec![7]
            }
        );
        let mut spf = vec![0, 0, 0, 0];
        spf.extend_from_slice(&PixelFormat::NATIVE.to_bytes());
        assert_eq!(
            parse(&spf).unwrap(),
            ClientMessage::SetPixelFormat(PixelFormat::NATIVE)
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        let huge_cut = [6, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff];
        let huge_extended = [6, 0, 0, 0, 0x80, 0, 0, 0];
        let flagless_extended = [6, 0, 0, 0, 0xff, 0xff, 0xff, 0xfe, 0, 0];
        let many_encodings = [2, 0, 0xff, 0xff];
        let truncated_request = [3, 1, 0];
        let mut colour_map = vec![0, 0, 0, 0];
        let mut pf = PixelFormat::NATIVE.to_bytes();
        pf[3] = 0;
        colour_map.extend_from_slice(&pf);
        let mut bad_bpp = vec![0, 0, 0, 0];
        let mut pf = PixelFormat::NATIVE.to_bytes();
        pf[0] = 24;
        bad_bpp.extend_from_slice(&pf);
        let mut bad_shift = vec![0, 0, 0, 0];
        let mut pf = PixelFormat::NATIVE.to_bytes();
        pf[10] = 30;
        bad_shift.extend_from_slice(&pf);
        let cases: [(&[u8], &str); 10] = [
            (&[], "connection"),
            (&[9], "unknown message type 9"),
            (&huge_cut, "clipboard text of 2147483647 bytes"),
            (&huge_extended, "clipboard text of 2147483648 bytes"),
            (&flagless_extended, "without flags"),
            (&many_encodings, "encoding list"),
            (&truncated_request, "connection"),
            (&colour_map, "colour-map"),
            (&bad_bpp, "24 bits per pixel"),
            (&bad_shift, "channel max 255 at shift 30"),
        ];
        for (bytes, says) in cases {
            let err = parse(bytes).expect_err("malformed");
            assert!(err.to_string().contains(says), "{bytes:?}: {err}");
        }
        assert!(parse(&[255, 1]).is_err(), "unknown QEMU submessage");
    }

    #[test]
    fn versions_follow_the_rfc() {
        assert_eq!(parse_version(b"RFB 003.008\n").unwrap(), 8);
        assert_eq!(parse_version(b"RFB 003.007\n").unwrap(), 7);
        assert_eq!(parse_version(b"RFB 003.003\n").unwrap(), 3);
        assert_eq!(parse_version(b"RFB 003.005\n").unwrap(), 3);
        assert_eq!(parse_version(b"RFB 003.889\n").unwrap(), 8);
        assert!(parse_version(b"HTTP/1.1 200").is_err());
        assert!(parse_version(b"RFB 004.000\n").is_err());
    }
}
