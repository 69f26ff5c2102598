//! A small RFB 3.8 client: the one every test and benchmark of ours uses, against our server
//! and others (TigerVNC). It asks for an update, reads it off the wire (following just enough
//! of each encoding to find its end), notes the bytes and the time, then decodes it into its
//! own copy of the framebuffer ([`decode`]), checking every length and index. Decoding after
//! the last byte keeps this client's speed out of a server's times.
//!
//! Built with the `client` feature (and in this crate's own tests); the launcher does not
//! link it.

pub mod decode;

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub use crate::encoding::{COPY_RECT, RAW, TIGHT, ZRLE};
use decode::{Decoder, compact_length, invalid};

/// The CompressLevel pseudo-encoding for level 2, the TigerVNC viewer's default.
pub const COMPRESS_LEVEL_2: i32 = crate::encoding::COMPRESS_LEVEL_0 + 2;

/// One update as the client saw it.
#[derive(Debug, Clone, Copy)]
pub struct Update {
    /// Bytes of the FramebufferUpdate message, header included.
    pub bytes: u64,
    /// Rectangles in it.
    pub rects: u16,
    /// From sending the request (or from starting to read, for [`Client::read`]) to having
    /// read the last byte.
    pub elapsed: Duration,
}

/// A connection to one server, and the framebuffer as this client has decoded it.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Framebuffer width.
    pub width: u32,
    /// Framebuffer height.
    pub height: u32,
    /// The decoded framebuffer, 0x00RRGGBB.
    pub pixels: Vec<u32>,
    /// The encoding asked for (ZRLE or Tight).
    encoding: i32,
    decoder: Decoder,
    /// The last update as read, kept to reuse its allocation.
    message: Vec<u8>,
}

impl Client {
    /// Connects, authenticates with `password` (VNC authentication) or with none, shares the
    /// desktop, and asks for 32-bit little-endian x8r8g8b8 pixels in `encoding` (Raw, ZRLE or
    /// Tight) at compression level 2.
    pub fn connect(addr: SocketAddr, password: Option<&[u8]>, encoding: i32) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut client = Client {
            writer: stream.try_clone()?,
            reader: BufReader::with_capacity(1 << 18, stream),
            width: 0,
            height: 0,
            pixels: Vec::new(),
            encoding,
            decoder: Decoder::new(encoding),
            message: Vec::new(),
        };
        client.handshake(password)?;
        Ok(client)
    }

    fn handshake(&mut self, password: Option<&[u8]>) -> io::Result<()> {
        let version = self.bytes(12)?;
        if !version.starts_with(b"RFB 003.") {
            return Err(invalid(format!("not an RFB server: {version:?}")));
        }
        self.writer.write_all(b"RFB 003.008\n")?;
        let count = self.u8()?;
        if count == 0 {
            return Err(self.reason("the server refused the connection"));
        }
        let types = self.bytes(count.into())?;
        let wanted = if password.is_some() { 2 } else { 1 };
        if !types.contains(&wanted) {
            return Err(invalid(format!(
                "the server offers security types {types:?}, not {wanted}"
            )));
        }
        self.writer.write_all(&[wanted])?;
        if let Some(password) = password {
            let mut challenge = [0u8; crate::auth::CHALLENGE_LEN];
            self.reader.read_exact(&mut challenge)?;
            self.writer
                .write_all(&crate::auth::response(password, &challenge))?;
        }
        if self.u32()? != 0 {
            let error = self.reason("security handshake failed");
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, error));
        }
        self.writer.write_all(&[1])?; // ClientInit: shared
        self.width = self.u16()?.into();
        self.height = self.u16()?.into();
        self.bytes(16)?; // the server's pixel format; ours replaces it
        let name_len = self.u32()?;
        if name_len > 4096 {
            return Err(invalid(format!("desktop name of {name_len} bytes")));
        }
        self.bytes(name_len as usize)?;
        self.pixels = vec![0; (self.width * self.height) as usize];

        // SetPixelFormat: 32 bpp, depth 24, little-endian, true colour, 255 a channel,
        // red at bit 16, green at 8, blue at 0.
        let mut message = vec![0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0];
        message.extend_from_slice(&[0, 0, 0]);
        // SetEncodings: the encoding, CopyRect (every viewer we know offers it; a server uses
        // it only where it knows what moved), then CompressLevel 2; no JPEG quality, so
        // lossless; no pseudo-encodings beyond that, so no pseudo-rectangles come.
        message.extend_from_slice(&[2, 0, 0, 3]);
        message.extend_from_slice(&self.encoding.to_be_bytes());
        message.extend_from_slice(&COPY_RECT.to_be_bytes());
        message.extend_from_slice(&COMPRESS_LEVEL_2.to_be_bytes());
        self.writer.write_all(&message)
    }

    /// Reads a failure reason (u32 length, text) into an error.
    fn reason(&mut self, what: &str) -> io::Error {
        let reason = self
            .u32()
            .and_then(|len| self.bytes(len.min(4096) as usize))
            .map(|text| String::from_utf8_lossy(&text).into_owned())
            .unwrap_or_default();
        io::Error::other(format!("{what}: {reason}"))
    }

    /// Asks for an update of the whole screen, reads it (waiting at most `timeout`), then
    /// decodes it.
    pub fn update(&mut self, incremental: bool, timeout: Duration) -> io::Result<Update> {
        self.reader.get_ref().set_read_timeout(Some(timeout))?;
        let start = Instant::now();
        self.request(incremental)?;
        let update = self.read()?;
        Ok(Update {
            elapsed: start.elapsed().max(update.elapsed),
            ..update
        })
    }

    /// Asks for an update of the whole screen, without reading it.
    pub fn request(&mut self, incremental: bool) -> io::Result<()> {
        let mut request = vec![3, u8::from(incremental), 0, 0, 0, 0];
        request.extend_from_slice(&(self.width as u16).to_be_bytes());
        request.extend_from_slice(&(self.height as u16).to_be_bytes());
        self.writer.write_all(&request)
    }

    /// Reads the next update (skipping bells, clipboard text and colour maps) and decodes it.
    pub fn read(&mut self) -> io::Result<Update> {
        let start = Instant::now();
        let mut message = std::mem::take(&mut self.message);
        self.read_update(&mut message)?;
        let elapsed = start.elapsed();
        let decoded = self
            .decoder
            .update(&message, &mut self.pixels, self.width, self.height);
        let bytes = message.len() as u64;
        let rects = u16::from_be_bytes([message[2], message[3]]);
        self.message = message;
        decoded?;
        Ok(Update {
            bytes,
            rects,
            elapsed,
        })
    }

    /// Sends ClientCutText: `text` copied on this viewer, in Latin-1.
    pub fn cut_text(&mut self, text: &[u8]) -> io::Result<()> {
        let len = u32::try_from(text.len())
            .map_err(|_| invalid(format!("{} bytes of cut text", text.len())))?;
        let mut message = vec![6, 0, 0, 0];
        message.extend_from_slice(&len.to_be_bytes());
        message.extend_from_slice(text);
        self.writer.write_all(&message)
    }

    /// Reads the next server message, which must be ServerCutText, and returns its text.
    pub fn read_cut_text(&mut self) -> io::Result<Vec<u8>> {
        let kind = self.u8()?;
        if kind != 3 {
            return Err(invalid(format!(
                "server message type {kind}, not ServerCutText (3)"
            )));
        }
        self.bytes(3)?;
        let len = self.u32()?;
        if len > 1 << 20 {
            return Err(invalid(format!("ServerCutText of {len} bytes")));
        }
        self.bytes(len as usize)
    }

    /// Sends `bytes` as they are: for messages this client does not make itself (malformed
    /// ones, in tests of the server).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// How long reads wait before they fail.
    pub fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.reader.get_ref().set_read_timeout(Some(timeout))
    }

    /// Whether the server closes the connection within `wait` (see [`closed_by_server`]).
    pub fn closed_by_server(&mut self, wait: Duration) -> bool {
        closed_by_server(self.reader.get_mut(), wait)
    }

    /// The stream to the server, for what this client does not do itself.
    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }

    /// The first pixel (x, y, ours, expected) where this client's framebuffer differs.
    pub fn first_difference(&self, expected: &[u32]) -> Option<(u32, u32, u32, u32)> {
        let i = self.pixels.iter().zip(expected).position(|(a, b)| a != b)?;
        let (x, y) = (i as u32 % self.width, i as u32 / self.width);
        Some((x, y, self.pixels[i], expected[i]))
    }

    /// Rectangles decoded so far, by encoding and kind (e.g. "tight palette").
    pub fn tally(&self) -> &BTreeMap<&'static str, u64> {
        &self.decoder.tally
    }

    /// Reads server messages until a FramebufferUpdate, which it reads whole into `message`.
    fn read_update(&mut self, message: &mut Vec<u8>) -> io::Result<()> {
        loop {
            match self.u8()? {
                0 => break,
                1 => {
                    // SetColourMapEntries: not used with true colour, but harmless.
                    self.bytes(3)?;
                    let colours = self.u16()?;
                    self.bytes(6 * usize::from(colours))?;
                }
                2 => {} // Bell
                3 => {
                    self.bytes(3)?;
                    let len = self.u32()?;
                    if len > 1 << 20 {
                        return Err(invalid(format!("ServerCutText of {len} bytes")));
                    }
                    self.bytes(len as usize)?;
                }
                other => return Err(invalid(format!("unknown server message type {other}"))),
            }
        }
        message.clear();
        message.push(0);
        let r = &mut self.reader;
        let header = keep(r, message, 3)?;
        let rects = u16::from_be_bytes([header[1], header[2]]);
        for _ in 0..rects {
            let h = keep(r, message, 12)?;
            let (w, h, encoding) = (
                usize::from(u16::from_be_bytes([h[4], h[5]])),
                usize::from(u16::from_be_bytes([h[6], h[7]])),
                i32::from_be_bytes([h[8], h[9], h[10], h[11]]),
            );
            let len = match encoding {
                RAW => w * h * 4,
                COPY_RECT => 4,
                ZRLE if self.encoding == ZRLE => {
                    let b = keep(r, message, 4)?;
                    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
                }
                TIGHT if self.encoding == TIGHT => tight_length(r, message, w, h)?,
                ..0 => {
                    return Err(invalid(format!(
                        "pseudo-rectangle of encoding {encoding}, which the client did not ask for"
                    )));
                }
                _ => {
                    return Err(invalid(format!(
                        "rectangle in encoding {encoding}, which the client did not ask for"
                    )));
                }
            };
            if len > 64 << 20 {
                return Err(invalid(format!("a rectangle of {len} bytes")));
            }
            keep(r, message, len)?;
        }
        Ok(())
    }

    fn bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; n];
        self.reader.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> io::Result<u16> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> io::Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Whether the server closes `stream` within `wait`, draining whatever it still sends
/// meanwhile.
pub fn closed_by_server(stream: &mut TcpStream, wait: Duration) -> bool {
    let _ = stream.set_read_timeout(Some(wait));
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                );
            }
        }
    }
}

/// Reads `n` more bytes of the update into `message`; returns them.
fn keep<'m>(reader: &mut impl Read, message: &'m mut Vec<u8>, n: usize) -> io::Result<&'m [u8]> {
    let start = message.len();
    message.resize(start + n, 0);
    reader.read_exact(&mut message[start..])?;
    Ok(&message[start..])
}

/// Reads a Tight rectangle's control, filter and palette into `message`; returns how many bytes
/// of it are left (the fill colour, or the pixel data, raw or compressed).
fn tight_length(r: &mut impl Read, message: &mut Vec<u8>, w: usize, h: usize) -> io::Result<usize> {
    let control = keep(r, message, 1)?[0];
    let kind = control >> 4;
    match kind {
        8 => return Ok(3), // fill: one pixel
        9 => {
            return Err(invalid(
                "Tight JPEG, though the client sent no quality level".into(),
            ));
        }
        10.. => {
            return Err(invalid(format!(
                "Tight compression control 0x{control:02x}"
            )));
        }
        _ => {}
    }
    let filter = if kind & 4 != 0 {
        keep(r, message, 1)?[0]
    } else {
        0
    };
    let len = match filter {
        0 | 2 => w * h * 3,
        1 => {
            let colours = usize::from(keep(r, message, 1)?[0]) + 1;
            keep(r, message, colours * 3)?;
            if colours == 2 {
                w.div_ceil(8) * h
            } else {
                w * h
            }
        }
        other => return Err(invalid(format!("Tight filter {other} is not defined"))),
    };
    if len < 12 {
        return Ok(len);
    }
    let compressed = compact_length(|| Ok(keep(r, message, 1)?[0]))?;
    Ok(compressed)
}
