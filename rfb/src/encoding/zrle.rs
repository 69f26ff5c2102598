//! ZRLE (RFC 6143 7.7.6): 64x64 tiles, each sent as whichever of solid, packed palette,
//! palette RLE, plain RLE or raw is smallest, all through one zlib stream per viewer.

use flate2::{Compress, Compression};

use super::Packer;
use super::palette::Palette;

/// ZRLE's tile side.
const TILE: u32 = 64;
/// Palette RLE indexes have 7 bits.
const MAX_RLE_PALETTE: usize = 127;

/// One viewer's ZRLE state: its zlib stream lives as long as the connection.
pub struct Zrle {
    zlib: Compress,
    palette: Palette,
    /// A tile's pixels as palette indexes.
    indexes: Vec<u8>,
    plain: Vec<u8>,
}

/// Appends a run length (RFC 6143: (length - 1) as a sum of bytes, 255 meaning more follow).
fn run_length(len: usize, out: &mut Vec<u8>) {
    let mut rest = len - 1;
    while rest >= 255 {
        out.push(255);
        rest -= 255;
    }
    out.push(rest as u8);
}

/// Bytes a run length takes.
fn run_length_bytes(len: usize) -> usize {
    (len - 1) / 255 + 1
}

/// Calls `each(index, length)` for every run of one index, rows joined.
fn index_runs(indexes: &[u8], mut each: impl FnMut(u8, usize)) {
    let mut rest = indexes;
    while let Some(&first) = rest.first() {
        let len = rest.iter().position(|&i| i != first).unwrap_or(rest.len());
        each(first, len);
        rest = &rest[len..];
    }
}

/// Calls `each(colour, length)` for every run of one colour in the tile, rows joined.
fn runs(frame: &[u32], width: u32, tile: (u32, u32, u32, u32), mut each: impl FnMut(u32, usize)) {
    let (x, y, w, h) = tile;
    let mut current = frame[(y * width + x) as usize];
    let mut len = 0;
    for row in y..y + h {
        let start = (row * width + x) as usize;
        for &p in &frame[start..start + w as usize] {
            if p == current {
                len += 1;
            } else {
                each(current, len);
                current = p;
                len = 1;
            }
        }
    }
    each(current, len);
}

impl Zrle {
    /// A stream at zlib effort `level` (0 to 9).
    pub fn new(level: u8) -> Self {
        Self {
            zlib: Compress::new(Compression::new(u32::from(level.min(9))), true),
            palette: Palette::default(),
            indexes: Vec::with_capacity((TILE * TILE) as usize),
            plain: Vec::new(),
        }
    }

    /// Appends rectangle (x, y, w, h) of `frame` in ZRLE: a length, then zlib data.
    pub fn encode(
        &mut self,
        frame: &[u32],
        width: u32,
        rect: (u32, u32, u32, u32),
        packer: Packer,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let (x, y, w, h) = rect;
        let mut plain = std::mem::take(&mut self.plain);
        plain.clear();
        plain.reserve((w * h) as usize + 64);
        for ty in (y..y + h).step_by(TILE as usize) {
            for tx in (x..x + w).step_by(TILE as usize) {
                let tile = (tx, ty, TILE.min(x + w - tx), TILE.min(y + h - ty));
                self.tile(frame, width, tile, packer, &mut plain);
            }
        }
        let result = compress(&mut self.zlib, &plain, out);
        self.plain = plain;
        result
    }

    /// One tile, in whichever subencoding is smallest.
    fn tile(
        &mut self,
        frame: &[u32],
        width: u32,
        tile: (u32, u32, u32, u32),
        packer: Packer,
        plain: &mut Vec<u8>,
    ) {
        let (tx, ty, tw, th) = tile;
        let cpixel = packer.cpixel_len();
        let palette = &mut self.palette;
        palette.reset(MAX_RLE_PALETTE);
        let indexes = &mut self.indexes;
        indexes.clear();
        let fits = palette.collect(frame, width, tile, indexes);
        if fits && palette.len() == 1 {
            plain.push(1);
            packer.cpixel(palette.colours()[0], plain);
            return;
        }
        let (mut run_count, mut run_bytes, mut single) = (0usize, 0usize, 0usize);
        let mut count = |len: usize| {
            run_count += 1;
            run_bytes += run_length_bytes(len);
            single += usize::from(len == 1);
        };
        if fits {
            index_runs(indexes, |_, len| count(len));
        } else {
            runs(frame, width, tile, |_, len| count(len));
        }
        let pixels = (tw * th) as usize;
        let raw_size = pixels * cpixel;
        let plain_rle_size = run_count * cpixel + run_bytes;
        let (mut best, mut best_size) = (0u8, raw_size);
        if plain_rle_size < best_size {
            (best, best_size) = (128, plain_rle_size);
        }
        if fits {
            let n = palette.len();
            let colours = n * cpixel;
            // Palette RLE: an index a run, plus a length for runs longer than one.
            let palette_rle_size = colours + run_count + run_bytes - single;
            if palette_rle_size < best_size {
                (best, best_size) = (128 + n as u8, palette_rle_size);
            }
            if n <= 16 {
                let bits = packed_bits(n);
                let packed_size = colours + (tw as usize * bits).div_ceil(8) * th as usize;
                if packed_size <= best_size {
                    best = n as u8;
                }
            }
        }
        plain.push(best);
        match best {
            0 => {
                for row in ty..ty + th {
                    let start = (row * width + tx) as usize;
                    for &p in &frame[start..start + tw as usize] {
                        packer.cpixel(p, plain);
                    }
                }
            }
            128 => runs(frame, width, tile, |colour, len| {
                packer.cpixel(colour, plain);
                run_length(len, plain);
            }),
            2..=16 => {
                for &c in palette.colours() {
                    packer.cpixel(c, plain);
                }
                let bits = packed_bits(usize::from(best));
                for row in indexes.chunks(tw as usize) {
                    let (mut byte, mut used) = (0u8, 0);
                    for &index in row {
                        byte |= index << (8 - bits - used);
                        used += bits;
                        if used == 8 {
                            plain.push(byte);
                            (byte, used) = (0, 0);
                        }
                    }
                    if used > 0 {
                        plain.push(byte);
                    }
                }
            }
            _ => {
                for &c in palette.colours() {
                    packer.cpixel(c, plain);
                }
                index_runs(indexes, |index, len| {
                    if len == 1 {
                        plain.push(index);
                    } else {
                        plain.push(index | 128);
                        run_length(len, plain);
                    }
                });
            }
        }
    }
}

/// Bits an index takes in a packed palette of `n` colours.
fn packed_bits(n: usize) -> usize {
    match n {
        2 => 1,
        3..=4 => 2,
        _ => 4,
    }
}

/// Appends a big-endian length, then `input` compressed on `zlib`.
fn compress(zlib: &mut Compress, input: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    let len = super::deflate(zlib, input, out)?;
    out[at..at + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::picture;
    use super::super::{Encoder, ZRLE};
    use super::*;
    use crate::client::decode::Decoder;
    use crate::protocol::PixelFormat;

    /// Encodes `rect` of `frame` with `encoder` and decodes it with the client's decoder onto
    /// `decoded`, which must then equal `frame` there.
    fn round_trip(
        encoder: &mut Encoder,
        decoder: &mut Decoder,
        frame: &[u32],
        (w, h): (u32, u32),
        rect: (u32, u32, u32, u32),
        decoded: &mut [u32],
    ) {
        let mut out = Vec::new();
        let count = encoder
            .encode(frame, w, rect, PixelFormat::NATIVE, &mut out)
            .unwrap();
        let mut message = vec![0, 0];
        message.extend_from_slice(&count.to_be_bytes());
        message.extend_from_slice(&out);
        decoder.update(&message, decoded, w, h).unwrap();
    }

    #[test]
    fn tiles_decode_to_the_frame_in_every_subencoding() {
        let (w, h) = (200u32, 150u32);
        let frame = picture(w, h);
        let mut zrle = Zrle::new(2);
        let packer = Packer::new(PixelFormat::NATIVE);
        let mut out = Vec::new();
        zrle.encode(&frame, w, (0, 0, w, h), packer, &mut out)
            .unwrap();
        let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert_eq!(len, out.len() - 4);
        let mut encoder = Encoder::new(ZRLE, 2);
        let mut decoder = Decoder::new(ZRLE);
        let mut decoded = vec![0; (w * h) as usize];
        round_trip(
            &mut encoder,
            &mut decoder,
            &frame,
            (w, h),
            (0, 0, w, h),
            &mut decoded,
        );
        assert_eq!(decoded, frame);
        let kinds: Vec<u8> = {
            // The first byte of each tile, found by re-encoding tile by tile.
            let mut kinds = Vec::new();
            for ty in (0..h).step_by(64) {
                for tx in (0..w).step_by(64) {
                    let mut plain = Vec::new();
                    let tile = (tx, ty, 64.min(w - tx), 64.min(h - ty));
                    zrle.tile(&frame, w, tile, packer, &mut plain);
                    kinds.push(plain[0]);
                }
            }
            kinds
        };
        // Solid, text-like and striped columns take a palette RLE; the gradient, raw pixels.
        assert_eq!(kinds[0], 128 + 3, "{kinds:?}");
        assert!(kinds.contains(&0), "{kinds:?}");
        assert!(decoder.tally["zrle raw"] > 0 && decoder.tally["zrle palette rle"] > 0);
        // The stream carries on across rectangles: a one-colour corner decodes as one solid
        // tile on the same zlib stream.
        let mut changed = frame.clone();
        for y in 0..30 {
            for x in 0..40 {
                changed[(y * w + x) as usize] = 0x12_3456;
            }
        }
        round_trip(
            &mut encoder,
            &mut decoder,
            &changed,
            (w, h),
            (0, 0, 40, 30),
            &mut decoded,
        );
        assert_eq!(decoded, changed);
        assert_eq!(decoder.tally.get("zrle solid"), Some(&1));
    }

    #[test]
    fn runs_pick_rle_and_long_runs_take_several_length_bytes() {
        // Horizontal stripes of 8 colours: palette RLE beats everything else.
        let (w, h) = (64u32, 64u32);
        let frame: Vec<u32> = (0..w * h).map(|i| (i / w % 8) * 0x01_0101).collect();
        let mut zrle = Zrle::new(2);
        let mut plain = Vec::new();
        zrle.tile(
            &frame,
            w,
            (0, 0, w, h),
            Packer::new(PixelFormat::NATIVE),
            &mut plain,
        );
        assert_eq!(plain[0], 128 + 8, "palette RLE with 8 colours");
        let mut decoder = Decoder::new(ZRLE);
        let mut decoded = vec![0; (w * h) as usize];
        round_trip(
            &mut Encoder::new(ZRLE, 2),
            &mut decoder,
            &frame,
            (w, h),
            (0, 0, w, h),
            &mut decoded,
        );
        assert_eq!(decoded, frame);
        assert_eq!(decoder.tally.get("zrle palette rle"), Some(&1));
        let mut out = Vec::new();
        run_length(1, &mut out);
        run_length(256, &mut out);
        run_length(600, &mut out);
        assert_eq!(out, [0, 255, 0, 255, 255, 89]);
    }
}
