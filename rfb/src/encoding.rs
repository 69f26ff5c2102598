//! Rectangle encodings: which one a viewer gets (its order of preference among the ones we
//! speak), and the encoders themselves: Raw here, ZRLE and Tight in their own files. Every
//! encoder writes the client's pixel format through one [`Packer`].

mod palette;
mod tight;
mod zrle;

pub use tight::Tight;
pub use zrle::Zrle;

use flate2::{Compress, FlushCompress};

use crate::protocol::PixelFormat;

/// The Raw encoding.
pub const RAW: i32 = 0;
/// The CopyRect encoding.
pub const COPY_RECT: i32 = 1;
/// The Tight encoding.
pub const TIGHT: i32 = 7;
/// The ZRLE encoding.
pub const ZRLE: i32 = 16;
/// Cursor pseudo-encoding: the viewer draws the pointer shape itself.
pub const CURSOR: i32 = -239;
/// DesktopSize pseudo-encoding.
pub const DESKTOP_SIZE: i32 = -223;
/// LastRect pseudo-encoding.
pub const LAST_RECT: i32 = -224;
/// QEMU Extended Key Event pseudo-encoding.
pub const QEMU_EXTENDED_KEY: i32 = -258;
/// ExtendedDesktopSize pseudo-encoding.
pub const EXTENDED_DESKTOP_SIZE: i32 = -308;
/// CompressLevel pseudo-encodings: level 0 is this one, level 9 this plus 9.
pub const COMPRESS_LEVEL_0: i32 = -256;
/// The compression level a viewer gets when it names none (TigerVNC's viewer asks for it too).
pub const DEFAULT_COMPRESS_LEVEL: u8 = 2;

/// What a viewer asked for in SetEncodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The rectangle encoding to use: the first one in the client's list that we speak.
    pub encoding: i32,
    /// The zlib effort the viewer asked for, 0 (fastest) to 9 (smallest).
    pub compress_level: u8,
    /// The client understands CopyRect.
    pub copy_rect: bool,
    /// The client understands DesktopSize.
    pub desktop_size: bool,
    /// The client speaks Extended Clipboard (UTF-8 text).
    pub extended_clipboard: bool,
    /// The client understands ExtendedDesktopSize.
    pub extended_desktop_size: bool,
    /// The client sends QEMU extended key events once told it may.
    pub qemu_extended_key: bool,
}

impl Default for Negotiated {
    fn default() -> Self {
        Self {
            encoding: RAW,
            compress_level: DEFAULT_COMPRESS_LEVEL,
            copy_rect: false,
            desktop_size: false,
            extended_clipboard: false,
            extended_desktop_size: false,
            qemu_extended_key: false,
        }
    }
}

/// Honours the client's order of preference among the encodings we speak.
pub fn negotiate(list: &[i32]) -> Negotiated {
    Negotiated {
        encoding: list
            .iter()
            .copied()
            .find(|e| matches!(*e, RAW | ZRLE | TIGHT))
            .unwrap_or(RAW),
        compress_level: list
            .iter()
            .find(|e| (COMPRESS_LEVEL_0..=COMPRESS_LEVEL_0 + 9).contains(*e))
            .map_or(DEFAULT_COMPRESS_LEVEL, |e| (e - COMPRESS_LEVEL_0) as u8),
        copy_rect: list.contains(&COPY_RECT),
        desktop_size: list.contains(&DESKTOP_SIZE),
        extended_clipboard: list.contains(&super::clipboard::EXTENDED_CLIPBOARD),
        extended_desktop_size: list.contains(&EXTENDED_DESKTOP_SIZE),
        qemu_extended_key: list.contains(&QEMU_EXTENDED_KEY),
    }
}

/// The name of an encoding we speak, for logs.
pub fn name(encoding: i32) -> &'static str {
    match encoding {
        ZRLE => "ZRLE",
        TIGHT => "Tight",
        COPY_RECT => "CopyRect",
        _ => "Raw",
    }
}

/// Writes 0xRRGGBB pixels in a client's format: whole (Raw), compact (ZRLE's CPIXEL) and
/// Tight's TPIXEL, with a fast path for the format nearly every viewer asks for.
#[derive(Debug, Clone, Copy)]
pub struct Packer {
    format: PixelFormat,
    /// The format is the server's own (x8r8g8b8 little-endian): a pixel is its colour.
    native: bool,
    /// Where ZRLE's compact pixel starts in the whole pixel's bytes, and how long it is.
    cpixel: (usize, usize),
    /// Tight sends 24-bit colour as three bytes, red first.
    tpixel24: bool,
}

impl Packer {
    /// A packer for `format`.
    pub fn new(format: PixelFormat) -> Self {
        let channels = [
            (format.red_max, format.red_shift),
            (format.green_max, format.green_shift),
            (format.blue_max, format.blue_shift),
        ];
        // RFC 6143 7.7.6: 3 bytes when the format is 32 bits of depth 24 or less and the
        // colours fit in the low or the high three bytes. In memory order, the low three bytes
        // are the first three of a little-endian pixel and the last three of a big-endian one.
        let compact = format.bits_per_pixel == 32 && format.depth <= 24;
        let fits_low = compact
            && channels
                .iter()
                .all(|&(max, shift)| u32::from(shift) + (16 - max.leading_zeros()) <= 24);
        let fits_high = compact && channels.iter().all(|&(_, shift)| shift >= 8);
        let cpixel = match (fits_low, fits_high, format.big_endian) {
            (true, _, false) | (false, true, true) => (0, 3),
            (true, _, true) | (false, true, false) => (1, 3),
            (false, false, _) => (0, format.bytes_per_pixel()),
        };
        Self {
            format,
            native: format == PixelFormat::NATIVE,
            cpixel,
            tpixel24: format.bits_per_pixel == 32
                && format.depth == 24
                && channels.iter().all(|&(max, _)| max == 255),
        }
    }

    /// The client's format.
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// The pixel value of colour `rgb` in the client's format.
    #[inline]
    fn value(&self, rgb: u32) -> u32 {
        if self.native {
            return rgb;
        }
        let f = self.format;
        let channel = |value: u32, max: u16, shift: u8| (value * u32::from(max) / 255) << shift;
        channel((rgb >> 16) & 0xff, f.red_max, f.red_shift)
            | channel((rgb >> 8) & 0xff, f.green_max, f.green_shift)
            | channel(rgb & 0xff, f.blue_max, f.blue_shift)
    }

    /// The whole pixel's bytes in memory order (the first `bytes_per_pixel` count).
    #[inline]
    fn bytes(&self, rgb: u32) -> [u8; 4] {
        let v = self.value(rgb);
        match (self.format.bits_per_pixel, self.format.big_endian) {
            (8, _) => [v as u8, 0, 0, 0],
            (16, false) => {
                let [a, b] = (v as u16).to_le_bytes();
                [a, b, 0, 0]
            }
            (16, true) => {
                let [a, b] = (v as u16).to_be_bytes();
                [a, b, 0, 0]
            }
            (_, false) => v.to_le_bytes(),
            (_, true) => v.to_be_bytes(),
        }
    }

    /// Bytes of a whole pixel.
    pub fn pixel_len(&self) -> usize {
        self.format.bytes_per_pixel()
    }

    /// Appends a whole pixel.
    #[inline]
    pub fn pixel(&self, rgb: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes(rgb)[..self.pixel_len()]);
    }

    /// Bytes of a ZRLE compact pixel.
    pub fn cpixel_len(&self) -> usize {
        self.cpixel.1
    }

    /// Appends a ZRLE compact pixel.
    #[inline]
    pub fn cpixel(&self, rgb: u32, out: &mut Vec<u8>) {
        if self.native {
            out.extend_from_slice(&[rgb as u8, (rgb >> 8) as u8, (rgb >> 16) as u8]);
            return;
        }
        let (start, len) = self.cpixel;
        out.extend_from_slice(&self.bytes(rgb)[start..start + len]);
    }

    /// Bytes of a Tight pixel.
    pub fn tpixel_len(&self) -> usize {
        if self.tpixel24 { 3 } else { self.pixel_len() }
    }

    /// Appends a Tight pixel.
    #[inline]
    pub fn tpixel(&self, rgb: u32, out: &mut Vec<u8>) {
        if !self.tpixel24 {
            return self.pixel(rgb, out);
        }
        let v = self.value(rgb);
        let f = self.format;
        out.extend_from_slice(&[
            (v >> f.red_shift) as u8,
            (v >> f.green_shift) as u8,
            (v >> f.blue_shift) as u8,
        ]);
    }
}

/// Appends the pixels of rectangle (x, y, w, h) of `frame` (`width` wide) in Raw.
pub fn raw(
    frame: &[u32],
    width: u32,
    rect: (u32, u32, u32, u32),
    packer: Packer,
    out: &mut Vec<u8>,
) {
    let (x, y, w, h) = rect;
    out.reserve((w * h) as usize * packer.pixel_len());
    for row in y..y + h {
        let start = (row * width + x) as usize;
        for &pixel in &frame[start..start + w as usize] {
            packer.pixel(pixel, out);
        }
    }
}

/// Appends `input` compressed on `zlib` with a sync flush (so the viewer can decode it now
/// while the stream carries on); returns how many bytes it appended.
pub(crate) fn deflate(
    zlib: &mut Compress,
    input: &[u8],
    out: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let start = out.len();
    let mut consumed = 0;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(input.len() / 2 + 4096);
        }
        let before = zlib.total_in();
        zlib.compress_vec(&input[consumed..], out, FlushCompress::Sync)
            .map_err(std::io::Error::other)?;
        consumed += (zlib.total_in() - before) as usize;
        // A sync flush is complete once all input is in and the output did not fill up.
        if consumed == input.len() && out.capacity() > out.len() {
            return Ok(out.len() - start);
        }
    }
}

/// Appends a rectangle header: position, size and encoding.
pub fn rect_header(out: &mut Vec<u8>, rect: (u32, u32, u32, u32), encoding: i32) {
    let (x, y, w, h) = rect;
    for v in [x, y, w, h] {
        out.extend_from_slice(&(v as u16).to_be_bytes());
    }
    out.extend_from_slice(&encoding.to_be_bytes());
}

/// One viewer's encoder. The zlib streams of ZRLE and Tight live as long as the connection
/// (the viewer's decoder keeps its side of them), so a viewer that changes its encodings keeps
/// the streams it had.
pub struct Encoder {
    encoding: i32,
    compress_level: u8,
    zrle: Option<Zrle>,
    tight: Option<Tight>,
}

impl Encoder {
    /// An encoder for `encoding` (Raw, ZRLE or Tight; anything else is Raw) at zlib effort
    /// `compress_level` (0 to 9).
    pub fn new(encoding: i32, compress_level: u8) -> Self {
        let mut encoder = Self {
            encoding: RAW,
            compress_level,
            zrle: None,
            tight: None,
        };
        encoder.set(encoding, compress_level);
        encoder
    }

    /// Switches to `encoding` at `compress_level`, as a new SetEncodings asks.
    pub fn set(&mut self, encoding: i32, compress_level: u8) {
        self.encoding = match encoding {
            ZRLE | TIGHT => encoding,
            _ => RAW,
        };
        self.compress_level = compress_level.min(9);
        if let Some(tight) = &mut self.tight {
            tight.set_level(self.compress_level);
        }
    }

    /// The encoding in use.
    pub fn encoding(&self) -> i32 {
        self.encoding
    }

    /// Appends complete rectangles (headers included) that cover `rect` of `frame` (`width`
    /// pixels a row) in `format`; returns how many it appended.
    pub fn encode(
        &mut self,
        frame: &[u32],
        width: u32,
        rect: (u32, u32, u32, u32),
        format: PixelFormat,
        out: &mut Vec<u8>,
    ) -> std::io::Result<u16> {
        let packer = Packer::new(format);
        match self.encoding {
            ZRLE => {
                let level = self.compress_level;
                rect_header(out, rect, ZRLE);
                self.zrle
                    .get_or_insert_with(|| Zrle::new(level))
                    .encode(frame, width, rect, packer, out)?;
                Ok(1)
            }
            TIGHT => {
                let level = self.compress_level;
                self.tight
                    .get_or_insert_with(|| Tight::new(level))
                    .encode(frame, width, rect, packer, out)
            }
            _ => {
                rect_header(out, rect, RAW);
                raw(frame, width, rect, packer, out);
                Ok(1)
            }
        }
    }
}

/// Test helpers shared by the encoders' tests.
#[cfg(test)]
pub(crate) mod testing {
    /// A test picture: solid areas, two-colour text-like areas, a many-colour gradient.
    pub fn picture(width: u32, height: u32) -> Vec<u32> {
        (0..height)
            .flat_map(|y| {
                (0..width).map(move |x| match (x / 50, y / 40) {
                    (0, _) => 0x20_4080,
                    (1, _) => {
                        if (x * 7 + y * 3) % 11 < 3 {
                            0x00_0000
                        } else {
                            0xff_ffff
                        }
                    }
                    (2, 0) => [0xff_0000, 0x00_ff00, 0x00_00ff, 0xff_ff00][(x % 4) as usize],
                    _ => (x * 3 % 256) << 16 | (y * 5 % 256) << 8 | ((x + y) % 256),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_clients_order() {
        assert_eq!(negotiate(&[ZRLE, RAW]).encoding, ZRLE);
        assert_eq!(negotiate(&[RAW, ZRLE]).encoding, RAW);
        assert_eq!(negotiate(&[TIGHT, ZRLE]).encoding, TIGHT);
        assert_eq!(
            negotiate(&[7 + 100, 5, ZRLE]).encoding,
            ZRLE,
            "unknown ones are skipped"
        );
        assert_eq!(negotiate(&[]).encoding, RAW);
        let n = negotiate(&[ZRLE, QEMU_EXTENDED_KEY, EXTENDED_DESKTOP_SIZE, -250]);
        assert!(n.qemu_extended_key && n.extended_desktop_size && !n.desktop_size);
        assert_eq!(n.compress_level, 6);
        assert_eq!(negotiate(&[ZRLE]).compress_level, DEFAULT_COMPRESS_LEVEL);
        assert!(negotiate(&[COPY_RECT, ZRLE]).copy_rect);
    }

    #[test]
    fn raw_writes_rows_in_the_clients_format() {
        let frame = [0x01_0203, 0x04_0506, 0x07_0809, 0x0a_0b0c];
        let mut out = Vec::new();
        raw(
            &frame,
            2,
            (1, 0, 1, 2),
            Packer::new(PixelFormat::NATIVE),
            &mut out,
        );
        assert_eq!(out, [0x06, 0x05, 0x04, 0, 0x0c, 0x0b, 0x0a, 0]);
    }

    #[test]
    fn packers_write_every_kind_of_pixel() {
        let native = Packer::new(PixelFormat::NATIVE);
        let mut out = Vec::new();
        native.pixel(0x12_3456, &mut out);
        native.cpixel(0x12_3456, &mut out);
        native.tpixel(0x12_3456, &mut out);
        assert_eq!(
            out,
            [0x56, 0x34, 0x12, 0, 0x56, 0x34, 0x12, 0x12, 0x34, 0x56],
            "whole, compact (memory order), Tight (red first)"
        );
        let high = Packer::new(PixelFormat {
            red_shift: 24,
            green_shift: 16,
            blue_shift: 8,
            ..PixelFormat::NATIVE
        });
        out.clear();
        high.cpixel(0x12_3456, &mut out);
        high.tpixel(0x12_3456, &mut out);
        assert_eq!(out, [0x56, 0x34, 0x12, 0x12, 0x34, 0x56]);
        let big = Packer::new(PixelFormat {
            big_endian: true,
            ..PixelFormat::NATIVE
        });
        out.clear();
        big.pixel(0x12_3456, &mut out);
        big.cpixel(0x12_3456, &mut out);
        assert_eq!(out, [0, 0x12, 0x34, 0x56, 0x12, 0x34, 0x56]);
        let rgb565 = Packer::new(PixelFormat {
            bits_per_pixel: 16,
            depth: 16,
            big_endian: true,
            red_max: 31,
            green_max: 63,
            blue_max: 31,
            red_shift: 11,
            green_shift: 5,
            blue_shift: 0,
        });
        out.clear();
        rgb565.pixel(0xff_0000, &mut out);
        rgb565.cpixel(0xff_0000, &mut out);
        rgb565.tpixel(0xff_0000, &mut out);
        assert_eq!(out, [0xf8, 0, 0xf8, 0, 0xf8, 0]);
    }
}
