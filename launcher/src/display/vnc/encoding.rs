//! Rectangle encodings: Raw, and ZRLE (RFC 6143 7.7.6) with solid, packed-palette and raw
//! tiles over one zlib stream per viewer.

use flate2::{Compress, Compression, FlushCompress};

use super::protocol::PixelFormat;

/// The Raw encoding.
pub const RAW: i32 = 0;
/// The ZRLE encoding.
pub const ZRLE: i32 = 16;
/// DesktopSize pseudo-encoding.
pub const DESKTOP_SIZE: i32 = -223;
/// LastRect pseudo-encoding.
pub const LAST_RECT: i32 = -224;
/// QEMU Extended Key Event pseudo-encoding.
pub const QEMU_EXTENDED_KEY: i32 = -258;
/// ExtendedDesktopSize pseudo-encoding.
pub const EXTENDED_DESKTOP_SIZE: i32 = -308;

/// ZRLE's tile side.
const ZRLE_TILE: u32 = 64;

/// What a viewer asked for in SetEncodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The rectangle encoding to use: the first one in the client's list that we speak.
    pub encoding: i32,
    /// The client understands DesktopSize.
    pub desktop_size: bool,
    /// The client understands ExtendedDesktopSize.
    pub extended_desktop_size: bool,
    /// The client sends QEMU extended key events once told it may.
    pub qemu_extended_key: bool,
}

impl Default for Negotiated {
    fn default() -> Self {
        Self {
            encoding: RAW,
            desktop_size: false,
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
            .find(|e| matches!(*e, RAW | ZRLE))
            .unwrap_or(RAW),
        desktop_size: list.contains(&DESKTOP_SIZE),
        extended_desktop_size: list.contains(&EXTENDED_DESKTOP_SIZE),
        qemu_extended_key: list.contains(&QEMU_EXTENDED_KEY),
    }
}

/// Appends the pixels of rectangle (x, y, w, h) of `frame` (`width` wide) in Raw.
pub fn raw(
    frame: &[u32],
    width: u32,
    rect: (u32, u32, u32, u32),
    format: PixelFormat,
    out: &mut Vec<u8>,
) {
    let (x, y, w, h) = rect;
    out.reserve((w * h) as usize * format.bytes_per_pixel());
    for row in y..y + h {
        let start = (row * width + x) as usize;
        for &pixel in &frame[start..start + w as usize] {
            format.encode(pixel, out);
        }
    }
}

/// One viewer's ZRLE state: its zlib stream lives as long as the connection.
pub struct Zrle {
    zlib: Compress,
}

impl Default for Zrle {
    fn default() -> Self {
        Self {
            zlib: Compress::new(Compression::new(3), true),
        }
    }
}

/// A compact pixel (RFC 6143 7.7.6): 3 bytes when the format is 32 bits of depth 24 or less
/// and the colours fit in the low or the high three bytes, else a whole pixel.
fn cpixel(format: PixelFormat, rgb: u32, out: &mut Vec<u8>) {
    let channels = [
        (format.red_max, format.red_shift),
        (format.green_max, format.green_shift),
        (format.blue_max, format.blue_shift),
    ];
    let compact = format.bits_per_pixel == 32 && format.depth <= 24;
    let fits_low = compact
        && channels
            .iter()
            .all(|&(max, shift)| u32::from(shift) + (16 - max.leading_zeros()) <= 24);
    let fits_high = compact && channels.iter().all(|&(_, shift)| shift >= 8);
    let mut full = Vec::with_capacity(4);
    format.encode(rgb, &mut full);
    // In memory order, the low three bytes are the first three of a little-endian pixel and
    // the last three of a big-endian one; the high three, the other way round.
    match (fits_low, fits_high, format.big_endian) {
        (true, _, false) | (false, true, true) => out.extend_from_slice(&full[0..3]),
        (true, _, true) | (false, true, false) => out.extend_from_slice(&full[1..4]),
        (false, false, _) => out.extend_from_slice(&full),
    }
}

impl Zrle {
    /// Appends rectangle (x, y, w, h) of `frame` in ZRLE: a length, then zlib data.
    pub fn encode(
        &mut self,
        frame: &[u32],
        width: u32,
        rect: (u32, u32, u32, u32),
        format: PixelFormat,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let (x, y, w, h) = rect;
        let mut plain = Vec::with_capacity((w * h) as usize * 3 / 4 + 64);
        let mut palette: Vec<u32> = Vec::with_capacity(16);
        for ty in (y..y + h).step_by(ZRLE_TILE as usize) {
            for tx in (x..x + w).step_by(ZRLE_TILE as usize) {
                let (tw, th) = (ZRLE_TILE.min(x + w - tx), ZRLE_TILE.min(y + h - ty));
                let pixels = || {
                    (ty..ty + th).flat_map(move |row| {
                        let start = (row * width + tx) as usize;
                        frame[start..start + tw as usize].iter().copied()
                    })
                };
                palette.clear();
                for p in pixels() {
                    if !palette.contains(&p) {
                        palette.push(p);
                        if palette.len() > 16 {
                            break;
                        }
                    }
                }
                match palette.len() {
                    1 => {
                        plain.push(1); // solid
                        cpixel(format, palette[0], &mut plain);
                    }
                    2..=16 => {
                        // Packed palette: 1, 2 or 4 bits an index, rows padded to a byte.
                        let n = palette.len();
                        plain.push(n as u8);
                        for &c in &palette {
                            cpixel(format, c, &mut plain);
                        }
                        let bits = match n {
                            2 => 1,
                            3..=4 => 2,
                            _ => 4,
                        };
                        for row in ty..ty + th {
                            let (mut byte, mut used) = (0u8, 0);
                            let start = (row * width + tx) as usize;
                            for p in &frame[start..start + tw as usize] {
                                let index = palette.iter().position(|c| c == p).unwrap_or(0) as u8;
                                byte |= index << (8 - bits - used);
                                used += bits;
                                if used == 8 {
                                    plain.push(byte);
                                    byte = 0;
                                    used = 0;
                                }
                            }
                            if used > 0 {
                                plain.push(byte);
                            }
                        }
                    }
                    _ => {
                        plain.push(0); // raw CPIXELs
                        for p in pixels() {
                            cpixel(format, p, &mut plain);
                        }
                    }
                }
            }
        }
        let compressed = self.compress(&plain)?;
        out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
        out.extend_from_slice(&compressed);
        Ok(())
    }

    fn compress(&mut self, input: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut output = Vec::with_capacity(input.len() / 2 + 64);
        let mut consumed = 0;
        loop {
            if output.capacity() - output.len() < 1024 {
                output.reserve(input.len().max(4096));
            }
            let before_in = self.zlib.total_in();
            self.zlib
                .compress_vec(&input[consumed..], &mut output, FlushCompress::Sync)
                .map_err(std::io::Error::other)?;
            consumed += (self.zlib.total_in() - before_in) as usize;
            // A sync flush is complete once all input is in and the output did not fill up.
            if consumed == input.len() && output.capacity() > output.len() {
                return Ok(output);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn inflate(stream: &mut Decompress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 << 20);
        stream
            .decompress_vec(data, &mut out, FlushDecompress::Sync)
            .unwrap();
        out
    }

    #[test]
    fn negotiation_follows_the_clients_order() {
        assert_eq!(negotiate(&[ZRLE, RAW]).encoding, ZRLE);
        assert_eq!(negotiate(&[RAW, ZRLE]).encoding, RAW);
        assert_eq!(
            negotiate(&[7, 5, ZRLE]).encoding,
            ZRLE,
            "unknown ones are skipped"
        );
        assert_eq!(negotiate(&[]).encoding, RAW);
        let n = negotiate(&[ZRLE, QEMU_EXTENDED_KEY, EXTENDED_DESKTOP_SIZE]);
        assert!(n.qemu_extended_key && n.extended_desktop_size && !n.desktop_size);
    }

    #[test]
    fn zrle_tiles_decode_to_the_frame() {
        // 100x70: a solid tile, a two-colour tile, and busy tiles at the edges.
        let (w, h) = (100u32, 70u32);
        let mut frame = vec![0x11_2233u32; (w * h) as usize];
        for y in 0..h {
            for x in 64..w {
                frame[(y * w + x) as usize] = if (x + y) % 2 == 0 {
                    0xff_0000
                } else {
                    0x00_ff00
                };
            }
        }
        for y in 64..h {
            for x in 0..64 {
                frame[(y * w + x) as usize] = x * 65_536 + y * 256 + 7;
            }
        }
        let mut zrle = Zrle::default();
        let mut out = Vec::new();
        zrle.encode(&frame, w, (0, 0, w, h), PixelFormat::NATIVE, &mut out)
            .unwrap();
        let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert_eq!(len, out.len() - 4);
        let mut z = Decompress::new(true);
        let plain = inflate(&mut z, &out[4..]);
        // Tile 1 (0,0 64x64): solid 0x112233 as a 3-byte CPIXEL, little-endian.
        assert_eq!(&plain[..4], &[1, 0x33, 0x22, 0x11]);
        // Tile 2 (64,0 36x64): a 2-colour packed palette, 1 bit a pixel, 5 bytes a row.
        assert_eq!(plain[4], 2);
        assert_eq!(&plain[5..11], &[0x00, 0x00, 0xff, 0x00, 0xff, 0x00]);
        assert_eq!(plain[11], 0b0101_0101, "first row: red, green, red, ...");
        let tile2 = 1 + 6 + 5 * 64;
        // Tile 3 (0,64 64x6): many colours: raw CPIXELs.
        assert_eq!(plain[4 + tile2], 0);
        assert_eq!(&plain[5 + tile2..8 + tile2], &[7, 64, 0]);
        // The stream carries on across rectangles.
        let mut again = Vec::new();
        zrle.encode(&frame, w, (0, 0, 64, 64), PixelFormat::NATIVE, &mut again)
            .unwrap();
        assert_eq!(inflate(&mut z, &again[4..]), vec![1, 0x33, 0x22, 0x11]);
    }

    #[test]
    fn cpixels_take_the_three_bytes_that_carry_colour() {
        let mut out = Vec::new();
        cpixel(PixelFormat::NATIVE, 0x12_3456, &mut out);
        assert_eq!(out, [0x56, 0x34, 0x12]);
        let high = PixelFormat {
            red_shift: 24,
            green_shift: 16,
            blue_shift: 8,
            ..PixelFormat::NATIVE
        };
        out.clear();
        cpixel(high, 0x12_3456, &mut out);
        assert_eq!(
            out,
            [0x56, 0x34, 0x12],
            "little-endian, colours in the high bytes"
        );
        let big = PixelFormat {
            big_endian: true,
            ..PixelFormat::NATIVE
        };
        out.clear();
        cpixel(big, 0x12_3456, &mut out);
        assert_eq!(out, [0x12, 0x34, 0x56]);
    }

    #[test]
    fn raw_writes_rows_in_the_clients_format() {
        let frame = [0x01_0203, 0x04_0506, 0x07_0809, 0x0a_0b0c];
        let mut out = Vec::new();
        raw(&frame, 2, (1, 0, 1, 2), PixelFormat::NATIVE, &mut out);
        assert_eq!(out, [0x06, 0x05, 0x04, 0, 0x0c, 0x0b, 0x0a, 0]);
    }
}
