//! Decoding a FramebufferUpdate already read off the wire: Raw, CopyRect, ZRLE (RFC 6143
//! 7.7.6) and Tight, for the one pixel format the client asks for (32 bits, depth 24,
//! little-endian, red at bit 16). Every length and index is checked; anything the client did
//! not ask for is an error.

use std::collections::BTreeMap;
use std::io;

use flate2::{Decompress, FlushDecompress, Status};

use crate::encoding::{COPY_RECT, RAW, TIGHT, ZRLE};

/// ZRLE's tile side.
const ZRLE_TILE: u32 = 64;

/// An error for bytes that break the protocol.
pub fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The framebuffer being decoded into.
struct Screen<'a> {
    pixels: &'a mut [u32],
    width: u32,
}

impl Screen<'_> {
    /// Writes `pixels`, rows of `w`, with their top-left at (x, y).
    fn put(&mut self, (x, y, w, _): (u32, u32, u32, u32), pixels: &[u32]) {
        for (row, line) in pixels.chunks_exact(w as usize).enumerate() {
            let start = ((y + row as u32) * self.width + x) as usize;
            self.pixels[start..start + w as usize].copy_from_slice(line);
        }
    }
}

/// One connection's decoding state: its zlib streams live as long as the connection.
pub struct Decoder {
    /// The encoding asked for (ZRLE or Tight).
    encoding: i32,
    /// ZRLE's one zlib stream.
    zrle: Decompress,
    /// Tight's four zlib streams.
    tight: [Decompress; 4],
    /// Rectangles decoded so far, by encoding and kind (e.g. "tight palette").
    pub tally: BTreeMap<&'static str, u64>,
}

impl Decoder {
    /// A decoder for a connection that asked for `encoding`.
    pub fn new(encoding: i32) -> Self {
        Self {
            encoding,
            zrle: Decompress::new(true),
            tight: std::array::from_fn(|_| Decompress::new(true)),
            tally: BTreeMap::new(),
        }
    }

    /// Decodes a FramebufferUpdate `message` (from its type byte) into `pixels`, a `width` x
    /// `height` framebuffer.
    pub fn update(
        &mut self,
        message: &[u8],
        pixels: &mut [u32],
        width: u32,
        height: u32,
    ) -> io::Result<()> {
        let mut data = Parser::new(message, "FramebufferUpdate");
        data.take(2)?; // type, padding
        let rects = data.u16()?;
        let mut screen = Screen { pixels, width };
        for _ in 0..rects {
            let (x, y, w, h) = (data.u16()?, data.u16()?, data.u16()?, data.u16()?);
            let rect = (u32::from(x), u32::from(y), u32::from(w), u32::from(h));
            let encoding = data.u32()? as i32;
            if rect.0 + rect.2 > width || rect.1 + rect.3 > height {
                return Err(invalid(format!(
                    "rectangle {rect:?} outside the {width}x{height} screen"
                )));
            }
            let decoded = match encoding {
                RAW => self.raw(&mut data, rect)?,
                COPY_RECT => {
                    self.count("copyrect");
                    copy_rect(&mut data, &screen, rect, height)?
                }
                ZRLE if self.encoding == ZRLE => self.zrle(&mut data, rect)?,
                // Tight's rectangles are at most 2048 pixels wide (its gradient filter's rows).
                TIGHT if self.encoding == TIGHT && rect.2 > 2048 => {
                    return Err(invalid(format!("Tight rectangle {rect:?} wider than 2048")));
                }
                TIGHT if self.encoding == TIGHT => self.tight(&mut data, rect)?,
                other => {
                    return Err(invalid(format!(
                        "rectangle in encoding {other}, which the client did not ask for"
                    )));
                }
            };
            screen.put(rect, &decoded);
        }
        data.finished()
    }

    fn count(&mut self, kind: &'static str) {
        *self.tally.entry(kind).or_default() += 1;
    }

    fn raw(
        &mut self,
        data: &mut Parser,
        (_, _, w, h): (u32, u32, u32, u32),
    ) -> io::Result<Vec<u32>> {
        self.count("raw");
        let bytes = data.take((w * h * 4) as usize)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0]))
            .collect())
    }

    /// ZRLE: a length, then zlib data on the connection's one stream, holding 64x64 tiles
    /// left to right, top to bottom.
    fn zrle(
        &mut self,
        data: &mut Parser,
        (_, _, w, h): (u32, u32, u32, u32),
    ) -> io::Result<Vec<u32>> {
        let len = data.u32()? as usize;
        // RLE can take four bytes a pixel, and each tile a palette.
        let limit = (w * h * 4) as usize + 64 * ((w * h) as usize / 64 + 16);
        let mut plain = Vec::new();
        inflate(&mut self.zrle, data.take(len)?, &mut plain, limit)?;
        let mut tiles = Parser::new(&plain, "ZRLE");
        let mut pixels = vec![0; (w * h) as usize];
        for ty in (0..h).step_by(ZRLE_TILE as usize) {
            for tx in (0..w).step_by(ZRLE_TILE as usize) {
                let (tw, th) = (ZRLE_TILE.min(w - tx), ZRLE_TILE.min(h - ty));
                let tile = self.zrle_tile(&mut tiles, tw, th)?;
                for (row, line) in tile.chunks_exact(tw as usize).enumerate() {
                    let start = ((ty + row as u32) * w + tx) as usize;
                    pixels[start..start + tw as usize].copy_from_slice(line);
                }
            }
        }
        tiles.finished()?;
        Ok(pixels)
    }

    fn zrle_tile(&mut self, data: &mut Parser, tw: u32, th: u32) -> io::Result<Vec<u32>> {
        let total = (tw * th) as usize;
        let mut tile = Vec::with_capacity(total);
        let subencoding = data.u8()?;
        let past_end = || invalid("ZRLE run past the tile's end".into());
        match subencoding {
            0 => {
                self.count("zrle raw");
                for _ in 0..total {
                    tile.push(data.cpixel()?);
                }
            }
            1 => {
                self.count("zrle solid");
                tile.resize(total, data.cpixel()?);
            }
            2..=16 => {
                self.count("zrle packed palette");
                let palette = (0..subencoding)
                    .map(|_| data.cpixel())
                    .collect::<io::Result<Vec<_>>>()?;
                let bits = match subencoding {
                    2 => 1,
                    3 | 4 => 2,
                    _ => 4,
                };
                for _ in 0..th {
                    let row = data.take((tw * bits).div_ceil(8) as usize)?;
                    for column in 0..tw {
                        let bit = column * bits;
                        let byte = row[(bit / 8) as usize];
                        let index = (byte >> (8 - bits - bit % 8)) & ((1 << bits) - 1) as u8;
                        tile.push(*palette.get(usize::from(index)).ok_or_else(|| {
                            invalid(format!("ZRLE palette index {index} of {subencoding}"))
                        })?);
                    }
                }
            }
            128 => {
                self.count("zrle plain rle");
                while tile.len() < total {
                    let rgb = data.cpixel()?;
                    let run = data.run_length()?;
                    if tile.len() + run > total {
                        return Err(past_end());
                    }
                    tile.resize(tile.len() + run, rgb);
                }
            }
            130..=255 => {
                self.count("zrle palette rle");
                let size = usize::from(subencoding - 128);
                let palette = (0..size)
                    .map(|_| data.cpixel())
                    .collect::<io::Result<Vec<_>>>()?;
                while tile.len() < total {
                    let byte = data.u8()?;
                    let index = usize::from(byte & 0x7f);
                    let rgb = *palette.get(index).ok_or_else(|| {
                        invalid(format!("ZRLE palette RLE index {index} of {size}"))
                    })?;
                    let run = if byte & 0x80 != 0 {
                        data.run_length()?
                    } else {
                        1
                    };
                    if tile.len() + run > total {
                        return Err(past_end());
                    }
                    tile.resize(tile.len() + run, rgb);
                }
            }
            other => return Err(invalid(format!("ZRLE subencoding {other} is not defined"))),
        }
        Ok(tile)
    }

    /// Tight: a compression-control byte, then a fill colour, or filtered pixels that are
    /// zlib-compressed on one of four streams when 12 bytes or longer.
    fn tight(
        &mut self,
        data: &mut Parser,
        (_, _, w, h): (u32, u32, u32, u32),
    ) -> io::Result<Vec<u32>> {
        let control = data.u8()?;
        for (stream, zlib) in self.tight.iter_mut().enumerate() {
            if control & (1 << stream) != 0 {
                *zlib = Decompress::new(true);
            }
        }
        let pixels = (w * h) as usize;
        match control >> 4 {
            8 => {
                self.count("tight fill");
                Ok(vec![tpixel(data.take(3)?); pixels])
            }
            9 => Err(invalid(
                "Tight JPEG, though the client sent no quality level".into(),
            )),
            10.. => Err(invalid(format!(
                "Tight compression control 0x{control:02x} is not defined"
            ))),
            kind => {
                let stream = usize::from(kind & 3);
                let filter = if kind & 4 != 0 { data.u8()? } else { 0 };
                match filter {
                    0 => {
                        self.count("tight copy");
                        let bytes = self.tight_data(data, stream, pixels * 3)?;
                        Ok(bytes.chunks_exact(3).map(tpixel).collect())
                    }
                    1 => self.tight_palette(data, stream, w, h),
                    2 => {
                        self.count("tight gradient");
                        let bytes = self.tight_data(data, stream, pixels * 3)?;
                        Ok(ungradient(&bytes, w as usize))
                    }
                    other => Err(invalid(format!("Tight filter {other} is not defined"))),
                }
            }
        }
    }

    fn tight_palette(
        &mut self,
        data: &mut Parser,
        stream: usize,
        w: u32,
        h: u32,
    ) -> io::Result<Vec<u32>> {
        let colours = usize::from(data.u8()?) + 1;
        let palette: Vec<u32> = data
            .take(colours * 3)?
            .chunks_exact(3)
            .map(tpixel)
            .collect();
        let mut pixels = Vec::with_capacity((w * h) as usize);
        if colours == 2 {
            self.count("tight palette 2");
            let row_bytes = w.div_ceil(8) as usize;
            let bits = self.tight_data(data, stream, row_bytes * h as usize)?;
            for row in bits.chunks_exact(row_bytes) {
                for column in 0..w as usize {
                    let index = usize::from(row[column / 8] >> (7 - column % 8) & 1);
                    pixels.push(palette[index]);
                }
            }
        } else {
            self.count("tight palette");
            for &index in &self.tight_data(data, stream, (w * h) as usize)? {
                let index = usize::from(index);
                pixels.push(
                    *palette.get(index).ok_or_else(|| {
                        invalid(format!("Tight palette index {index} of {colours}"))
                    })?,
                );
            }
        }
        Ok(pixels)
    }

    /// `len` bytes of Tight data: sent as they are when under 12 bytes, else a compact length
    /// and that much zlib data for `stream`.
    fn tight_data(&mut self, data: &mut Parser, stream: usize, len: usize) -> io::Result<Vec<u8>> {
        if len < 12 {
            return Ok(data.take(len)?.to_vec());
        }
        let compressed = compact_length(|| data.u8())?;
        let mut plain = Vec::with_capacity(len);
        inflate(
            &mut self.tight[stream],
            data.take(compressed)?,
            &mut plain,
            len,
        )?;
        if plain.len() != len {
            return Err(invalid(format!(
                "Tight stream {stream} gave {} bytes, {len} expected",
                plain.len()
            )));
        }
        Ok(plain)
    }
}

fn copy_rect(
    data: &mut Parser,
    screen: &Screen,
    (_, _, w, h): (u32, u32, u32, u32),
    height: u32,
) -> io::Result<Vec<u32>> {
    let (sx, sy) = (u32::from(data.u16()?), u32::from(data.u16()?));
    if sx + w > screen.width || sy + h > height {
        return Err(invalid(format!("CopyRect source ({sx}, {sy}) off screen")));
    }
    let mut copy = Vec::with_capacity((w * h) as usize);
    for row in sy..sy + h {
        let start = (row * screen.width + sx) as usize;
        copy.extend_from_slice(&screen.pixels[start..start + w as usize]);
    }
    Ok(copy)
}

/// A Tight compact length, its bytes from `next`: 7 bits a byte, low first, the high bit saying
/// more follow; a third byte holds 8.
pub fn compact_length(mut next: impl FnMut() -> io::Result<u8>) -> io::Result<usize> {
    let mut len = 0;
    for (k, shift) in [0, 7, 14].into_iter().enumerate() {
        let byte = next()?;
        let bits = if k == 2 { byte } else { byte & 0x7f };
        len |= usize::from(bits) << shift;
        if k == 2 || byte & 0x80 == 0 {
            break;
        }
    }
    Ok(len)
}

/// A Tight TPIXEL of this pixel format: red, green, blue.
fn tpixel(b: &[u8]) -> u32 {
    u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2])
}

/// Undoes Tight's gradient filter: each channel was sent as its difference from
/// left + above - above-left (clamped), with zero outside the rectangle.
fn ungradient(data: &[u8], width: usize) -> Vec<u32> {
    let mut values: Vec<[u8; 3]> = Vec::with_capacity(data.len() / 3);
    for (i, error) in data.chunks_exact(3).enumerate() {
        let (row, column) = (i / width, i % width);
        let at = |r: usize, c: usize| values[r * width + c];
        let left = if column > 0 {
            at(row, column - 1)
        } else {
            [0; 3]
        };
        let up = if row > 0 { at(row - 1, column) } else { [0; 3] };
        let corner = if row > 0 && column > 0 {
            at(row - 1, column - 1)
        } else {
            [0; 3]
        };
        let mut pixel = [0u8; 3];
        for c in 0..3 {
            let predicted =
                (i32::from(left[c]) + i32::from(up[c]) - i32::from(corner[c])).clamp(0, 255);
            pixel[c] = (predicted as u8).wrapping_add(error[c]);
        }
        values.push(pixel);
    }
    values.iter().map(|p| tpixel(p)).collect()
}

/// Feeds `input` to the persistent stream `zlib`, appending what comes out to `out`; more than
/// `limit` bytes out is an error.
fn inflate(zlib: &mut Decompress, input: &[u8], out: &mut Vec<u8>, limit: usize) -> io::Result<()> {
    let mut consumed = 0;
    loop {
        if out.capacity() - out.len() < 1 << 15 {
            out.reserve((input.len() * 4).max(1 << 16));
        }
        let (in_before, out_before) = (zlib.total_in(), zlib.total_out());
        let status = zlib
            .decompress_vec(&input[consumed..], out, FlushDecompress::Sync)
            .map_err(|e| invalid(format!("zlib: {e}")))?;
        consumed += (zlib.total_in() - in_before) as usize;
        if out.len() > limit {
            return Err(invalid(format!("zlib data inflates past {limit} bytes")));
        }
        let drained = out.len() < out.capacity() || status == Status::BufError;
        if consumed == input.len() && drained {
            return Ok(());
        }
        if status == Status::StreamEnd {
            return Err(invalid("zlib stream ended inside a rectangle".into()));
        }
        if zlib.total_in() == in_before && zlib.total_out() == out_before {
            return Err(invalid("zlib made no progress".into()));
        }
    }
}

/// Reads a byte buffer, with errors that say what ran short.
pub struct Parser<'a> {
    data: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Parser<'a> {
    /// A parser at the start of `data`, which holds `what`.
    pub fn new(data: &'a [u8], what: &'static str) -> Self {
        Self { data, at: 0, what }
    }

    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let slice = self
            .data
            .get(self.at..self.at + n)
            .ok_or_else(|| invalid(format!("{} data ends early", self.what)))?;
        self.at += n;
        Ok(slice)
    }

    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> io::Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A ZRLE CPIXEL of this pixel format: the three low bytes, little-endian.
    fn cpixel(&mut self) -> io::Result<u32> {
        let b = self.take(3)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }

    /// A ZRLE run length: bytes summed while they are 255, plus one.
    fn run_length(&mut self) -> io::Result<usize> {
        let mut run = 1;
        loop {
            let byte = self.u8()?;
            run += usize::from(byte);
            if byte != 255 {
                return Ok(run);
            }
        }
    }

    fn finished(&self) -> io::Result<()> {
        match self.data.len() - self.at {
            0 => Ok(()),
            left => Err(invalid(format!(
                "{} data has {left} bytes left over",
                self.what
            ))),
        }
    }
}
