//! Tight (the RFB community's encoding 7, as TightVNC, TigerVNC and noVNC speak it), lossless:
//! the rectangle is cut into 64x64 tiles, each found to be one colour, a few colours or many;
//! neighbours of a kind merge, and each merged piece goes out as a fill, a palette (1 bit a
//! pixel for two colours, one byte for up to 256) or full colour, on Tight's zlib streams.
//! JPEG is not used: every pixel arrives exactly.

use flate2::{Compress, Compression};

use super::palette::Palette;
use super::{Packer, TIGHT, deflate, rect_header};

/// Side of the tiles classified.
const TILE: u32 = 64;
/// Tight rectangles are at most this wide (decoders size their buffers by it).
const MAX_WIDTH: u32 = 2048;
/// Shorter data goes uncompressed, with no length (the protocol says so).
const MIN_TO_COMPRESS: usize = 12;
/// Largest palette.
const MAX_PALETTE: usize = 256;
/// Largest length a compact length can say.
const MAX_COMPACT_LEN: usize = (1 << 22) - 1;

/// Stream for full-colour data.
const STREAM_FULL: usize = 0;
/// Stream for two-colour data.
const STREAM_MONO: usize = 1;
/// Stream for indexed data.
const STREAM_INDEXED: usize = 2;
/// Stream for gradient-filtered data.
const STREAM_GRADIENT: usize = 3;

/// Control byte of a fill.
const FILL: u8 = 0x80;
/// Control-byte bit: a filter id follows.
const EXPLICIT_FILTER: u8 = 0x40;
/// Palette filter id.
const FILTER_PALETTE: u8 = 1;
/// Gradient filter id.
const FILTER_GRADIENT: u8 = 2;
/// Mean prediction error (per colour channel, on sampled rows) below which an area counts as
/// smooth.
const SMOOTH_ERROR: u32 = 12;

/// What a tile (and a merged run of tiles) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One colour.
    Solid(u32),
    /// Two to 256 colours.
    Palette,
    /// More.
    Full,
}

/// One viewer's Tight state: four zlib streams (three used) that live as long as the
/// connection.
pub struct Tight {
    streams: [Compress; 4],
    level: u8,
    /// Streams the viewer must reset before the next rectangle (bit n: stream n).
    reset: u8,
    tile_palette: Palette,
    group_palette: Palette,
    /// The tiles of the row being encoded.
    tiles: Vec<Tile>,
    /// The colours of the row's palette tiles, one tile after another.
    row_colours: Vec<u32>,
    /// The pixels of the row's palette tiles as indexes into their own colours, one tile
    /// after another, each row by row.
    row_indexes: Vec<u8>,
    plain: Vec<u8>,
}

/// One classified tile of the row being encoded.
struct Tile {
    x: u32,
    y: u32,
    w: u32,
    kind: Kind,
    /// Its colours in the row's colour buffer (palette tiles).
    colours: std::ops::Range<usize>,
    /// Where its indexes start in the row's index buffer (palette tiles).
    indexes: usize,
}

fn zlib(level: u8) -> Compress {
    Compress::new(Compression::new(u32::from(level.min(9))), true)
}

/// Appends Tight's compact length: 7 bits a byte, low bits first.
fn compact_len(len: usize, out: &mut Vec<u8>) {
    let more = |bit: bool| if bit { 0x80 } else { 0 };
    out.push((len & 0x7f) as u8 | more(len > 0x7f));
    if len > 0x7f {
        out.push(((len >> 7) & 0x7f) as u8 | more(len > 0x3fff));
        if len > 0x3fff {
            out.push((len >> 14) as u8);
        }
    }
}

/// A channel's gradient prediction: left + above - above-left, kept within 0 to 255.
#[inline]
fn predict(left: u8, above: u8, above_left: u8) -> u8 {
    (i16::from(left) + i16::from(above) - i16::from(above_left)).clamp(0, 255) as u8
}

fn channels(p: u32) -> [u8; 3] {
    [(p >> 16) as u8, (p >> 8) as u8, p as u8]
}

/// Appends rectangle (x, y, w, h) of `frame` through Tight's gradient filter: per pixel and
/// channel, red first, the difference (mod 256) from its prediction; pixels outside the
/// rectangle count as black.
fn gradient(frame: &[u32], width: u32, rect: (u32, u32, u32, u32), out: &mut Vec<u8>) {
    let (x, y, w, h) = rect;
    let mut above = vec![[0u8; 3]; w as usize];
    for row in y..y + h {
        let start = (row * width + x) as usize;
        let (mut left, mut above_left) = ([0u8; 3], [0u8; 3]);
        for (i, &p) in frame[start..start + w as usize].iter().enumerate() {
            let here = channels(p);
            let up = above[i];
            for c in 0..3 {
                out.push(here[c].wrapping_sub(predict(left[c], up[c], above_left[c])));
            }
            (left, above_left, above[i]) = (here, up, here);
        }
    }
}

/// Whether the gradient filter suits rectangle (x, y, w, h): the mean prediction error on
/// every fourth row is small.
fn smooth(frame: &[u32], width: u32, rect: (u32, u32, u32, u32)) -> bool {
    let (x, y, w, h) = rect;
    let (mut error, mut samples) = (0u32, 0u32);
    for row in (y + 1..y + h).step_by(4) {
        let line = &frame[(row * width + x) as usize..][..w as usize];
        let upper = &frame[((row - 1) * width + x) as usize..][..w as usize];
        for i in 1..w as usize {
            let (here, left, up, up_left) = (
                channels(line[i]),
                channels(line[i - 1]),
                channels(upper[i]),
                channels(upper[i - 1]),
            );
            for c in 0..3 {
                error += u32::from(here[c].abs_diff(predict(left[c], up[c], up_left[c])));
            }
            samples += 3;
        }
    }
    samples > 0 && error < SMOOTH_ERROR * samples
}

impl Tight {
    /// Streams at zlib effort `level` (0 to 9).
    pub fn new(level: u8) -> Self {
        Self {
            streams: std::array::from_fn(|_| zlib(level)),
            level,
            reset: 0,
            tile_palette: Palette::default(),
            group_palette: Palette::default(),
            tiles: Vec::new(),
            row_colours: Vec::new(),
            row_indexes: Vec::new(),
            plain: Vec::new(),
        }
    }

    /// Changes the zlib effort: fresh streams, which the viewer is told to reset too.
    pub fn set_level(&mut self, level: u8) {
        if level != self.level {
            self.level = level;
            self.streams = std::array::from_fn(|_| zlib(level));
            self.reset = 0x0f;
        }
    }

    /// Appends Tight rectangles covering rectangle (x, y, w, h) of `frame`; returns how many.
    pub fn encode(
        &mut self,
        frame: &[u32],
        width: u32,
        rect: (u32, u32, u32, u32),
        packer: Packer,
        out: &mut Vec<u8>,
    ) -> std::io::Result<u16> {
        let (x, y, w, h) = rect;
        let mut count = 0u16;
        // Fills (x, y, w, h, colour) wait so that equal ones in consecutive rows merge.
        let mut fills: Vec<(u32, u32, u32, u32, u32)> = Vec::new();
        let mut tiles = std::mem::take(&mut self.tiles);
        for ty in (y..y + h).step_by(TILE as usize) {
            let th = TILE.min(y + h - ty);
            tiles.clear();
            self.row_colours.clear();
            self.row_indexes.clear();
            for tx in (x..x + w).step_by(TILE as usize) {
                let tw = TILE.min(x + w - tx);
                tiles.push(self.classify(frame, width, (tx, ty, tw, th)));
            }
            // Runs of tiles that merge: [first, end) of `tiles`.
            let mut first = 0;
            for end in 1..=tiles.len() {
                let width_so_far = tiles[end - 1].x + tiles[end - 1].w - tiles[first].x;
                let joins = end < tiles.len()
                    && width_so_far + tiles[end].w <= MAX_WIDTH
                    && self.merges(&tiles[first..end], &tiles[end]);
                if !joins {
                    count += self.flush(
                        frame,
                        width,
                        &tiles[first..end],
                        th,
                        packer,
                        &mut fills,
                        out,
                    )?;
                    first = end;
                }
            }
        }
        self.tiles = tiles;
        // Merge fills stacked exactly on each other, then send them.
        fills.sort_unstable_by_key(|&(fx, fy, fw, _, colour)| (fx, fw, colour, fy));
        let mut merged: Vec<(u32, u32, u32, u32, u32)> = Vec::with_capacity(fills.len());
        for fill in fills {
            match merged.last_mut() {
                Some(last)
                    if (last.0, last.2, last.4) == (fill.0, fill.2, fill.4)
                        && last.1 + last.3 == fill.1 =>
                {
                    last.3 += fill.3
                }
                _ => merged.push(fill),
            }
        }
        for (fx, fy, fw, fh, colour) in merged {
            rect_header(out, (fx, fy, fw, fh), TIGHT);
            out.push(FILL | self.take_reset());
            packer.tpixel(colour, out);
            count += 1;
        }
        Ok(count)
    }

    /// What tile (x, y, w, h) is. A palette tile's colours and its pixels as indexes into
    /// them go to the row's buffers.
    fn classify(&mut self, frame: &[u32], width: u32, tile: (u32, u32, u32, u32)) -> Tile {
        let (x, y, w, _) = tile;
        let colours = self.row_colours.len();
        let indexes = self.row_indexes.len();
        self.tile_palette.reset(MAX_PALETTE);
        let kind = if !self
            .tile_palette
            .collect(frame, width, tile, &mut self.row_indexes)
        {
            self.row_indexes.truncate(indexes);
            Kind::Full
        } else if let [only] = self.tile_palette.colours() {
            Kind::Solid(*only)
        } else {
            self.row_colours
                .extend_from_slice(self.tile_palette.colours());
            Kind::Palette
        };
        Tile {
            x,
            y,
            w,
            kind,
            colours: colours..self.row_colours.len(),
            indexes,
        }
    }

    /// Whether `next` joins the run `run` of tiles: a palette run takes palette tiles while
    /// the union of their colours fits a palette (left in `group_palette`).
    fn merges(&mut self, run: &[Tile], next: &Tile) -> bool {
        match (run[0].kind, next.kind) {
            (Kind::Palette, Kind::Palette) => {
                if run.len() == 1 {
                    self.start_run(&run[0]);
                }
                let colours = &self.row_colours[next.colours.clone()];
                let new = colours
                    .iter()
                    .filter(|&&c| self.group_palette.index(c).is_none())
                    .count();
                if self.group_palette.len() + new > MAX_PALETTE {
                    return false;
                }
                for &c in colours {
                    self.group_palette.insert(c);
                }
                true
            }
            (a, b) => a == b,
        }
    }

    /// Starts a run's palette with the colours of its first tile.
    fn start_run(&mut self, tile: &Tile) {
        self.group_palette.reset(MAX_PALETTE);
        for &c in &self.row_colours[tile.colours.clone()] {
            self.group_palette.insert(c);
        }
    }

    /// Sends a run of tiles `th` high (a fill waits in `fills`); returns rectangles sent.
    #[allow(clippy::too_many_arguments)]
    fn flush(
        &mut self,
        frame: &[u32],
        width: u32,
        run: &[Tile],
        th: u32,
        packer: Packer,
        fills: &mut Vec<(u32, u32, u32, u32, u32)>,
        out: &mut Vec<u8>,
    ) -> std::io::Result<u16> {
        let (first, last) = (&run[0], &run[run.len() - 1]);
        let rect = (first.x, first.y, last.x + last.w - first.x, th);
        match first.kind {
            Kind::Solid(colour) => {
                fills.push((rect.0, rect.1, rect.2, rect.3, colour));
                return Ok(0);
            }
            Kind::Palette => {
                if run.len() == 1 {
                    // A lone tile: its own palette is the run's.
                    self.start_run(first);
                }
                self.palette_rect(run, rect, packer, out)?
            }
            Kind::Full => self.full_rect(frame, width, rect, packer, out)?,
        }
        Ok(1)
    }

    /// The stream-reset bits owed, once.
    fn take_reset(&mut self) -> u8 {
        std::mem::take(&mut self.reset)
    }

    /// A run of palette tiles, as one rectangle with the palette filter and the run's palette
    /// (in `group_palette`): each tile's indexes are mapped to the run's.
    fn palette_rect(
        &mut self,
        run: &[Tile],
        rect: (u32, u32, u32, u32),
        packer: Packer,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let (_, _, _, h) = rect;
        let reset = self.take_reset();
        let palette = &self.group_palette;
        let mono = palette.len() == 2;
        let stream = if mono { STREAM_MONO } else { STREAM_INDEXED };
        rect_header(out, rect, TIGHT);
        let control = ((stream as u8) << 4) | EXPLICIT_FILTER | reset;
        out.extend_from_slice(&[control, FILTER_PALETTE, (palette.len() - 1) as u8]);
        for &c in palette.colours() {
            packer.tpixel(c, out);
        }
        // Per tile, its index to the run's.
        let maps: Vec<[u8; MAX_PALETTE]> = run
            .iter()
            .map(|tile| {
                let mut map = [0u8; MAX_PALETTE];
                for (i, &c) in self.row_colours[tile.colours.clone()].iter().enumerate() {
                    map[i] = palette.index(c).unwrap_or(0);
                }
                map
            })
            .collect();
        let mut plain = std::mem::take(&mut self.plain);
        plain.clear();
        for row in 0..h as usize {
            let (mut byte, mut used) = (0u8, 0);
            for (tile, map) in run.iter().zip(&maps) {
                let start = tile.indexes + row * tile.w as usize;
                let indexes = &self.row_indexes[start..start + tile.w as usize];
                if mono {
                    // One bit a pixel, most significant first, each row padded to a byte.
                    for &i in indexes {
                        byte |= map[usize::from(i)] << (7 - used);
                        used += 1;
                        if used == 8 {
                            plain.push(byte);
                            (byte, used) = (0, 0);
                        }
                    }
                } else {
                    plain.extend(indexes.iter().map(|&i| map[usize::from(i)]));
                }
            }
            if used > 0 {
                plain.push(byte);
            }
        }
        let result = self.data(stream, &plain, out);
        self.plain = plain;
        result
    }

    /// A rectangle of many colours: Tight pixels, no filter.
    fn full_rect(
        &mut self,
        frame: &[u32],
        width: u32,
        rect: (u32, u32, u32, u32),
        packer: Packer,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let (x, y, w, h) = rect;
        rect_header(out, rect, TIGHT);
        let mut plain = std::mem::take(&mut self.plain);
        plain.clear();
        plain.reserve((w * h) as usize * packer.tpixel_len());
        // Smooth areas (gradients, photos) go through the gradient filter: what is left after
        // predicting each pixel from its neighbours is mostly small numbers, which zlib
        // shrinks better and faster than the pixels.
        let stream = if packer.tpixel24 && smooth(frame, width, rect) {
            out.extend_from_slice(&[
                ((STREAM_GRADIENT as u8) << 4) | EXPLICIT_FILTER | self.take_reset(),
                FILTER_GRADIENT,
            ]);
            gradient(frame, width, rect, &mut plain);
            STREAM_GRADIENT
        } else {
            out.push(((STREAM_FULL as u8) << 4) | self.take_reset());
            for row in y..y + h {
                let start = (row * width + x) as usize;
                for &p in &frame[start..start + w as usize] {
                    packer.tpixel(p, &mut plain);
                }
            }
            STREAM_FULL
        };
        let result = self.data(stream, &plain, out);
        self.plain = plain;
        result
    }

    /// Appends a rectangle's data: as is when short, else a compact length and zlib data.
    fn data(&mut self, stream: usize, plain: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        if plain.len() < MIN_TO_COMPRESS {
            out.extend_from_slice(plain);
            return Ok(());
        }
        // Room for the longest compact length; the real one is written after compressing.
        let at = out.len();
        let mut body = Vec::with_capacity(plain.len() / 4 + 64);
        deflate(&mut self.streams[stream], plain, &mut body)?;
        if body.len() > MAX_COMPACT_LEN {
            return Err(std::io::Error::other(format!(
                "a Tight rectangle compressed to {} bytes, more than a compact length holds",
                body.len()
            )));
        }
        compact_len(body.len(), out);
        debug_assert!(out.len() - at <= 3);
        out.extend_from_slice(&body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::picture;
    use super::*;
    use crate::client::decode::Decoder;
    use crate::protocol::PixelFormat;

    /// Decodes `count` Tight rectangles in `data` with the client's decoder onto `frame`
    /// (`width` x `height`).
    fn decode(decoder: &mut Decoder, data: &[u8], count: u16, size: (u32, u32), frame: &mut [u32]) {
        let mut message = vec![0, 0];
        message.extend_from_slice(&count.to_be_bytes());
        message.extend_from_slice(data);
        decoder.update(&message, frame, size.0, size.1).unwrap();
    }

    #[test]
    fn rectangles_decode_to_the_frame() {
        let (w, h) = (300u32, 170u32);
        let frame = picture(w, h);
        let mut tight = Tight::new(2);
        let packer = Packer::new(PixelFormat::NATIVE);
        let mut decoder = Decoder::new(TIGHT);
        let mut out = Vec::new();
        let count = tight
            .encode(&frame, w, (0, 0, w, h), packer, &mut out)
            .unwrap();
        let mut decoded = vec![0; (w * h) as usize];
        decode(&mut decoder, &out, count, (w, h), &mut decoded);
        assert_eq!(decoded, frame);
        // Many colours, two colours, a few colours and one colour all occur in the picture.
        let kinds: std::collections::BTreeSet<u8> = (0..h)
            .step_by(64)
            .flat_map(|ty| (0..w).step_by(64).map(move |tx| (tx, ty)))
            .map(|(tx, ty)| {
                match tight
                    .classify(&frame, w, (tx, ty, 64.min(w - tx), 64.min(h - ty)))
                    .kind
                {
                    Kind::Solid(_) => 1,
                    Kind::Palette if tight.tile_palette.len() == 2 => 2,
                    Kind::Palette => 3,
                    Kind::Full => 4,
                }
            })
            .collect();
        assert!(kinds.contains(&4) && kinds.contains(&3), "{kinds:?}");
        assert!(
            out.windows(2)
                .any(|w| w == [0x70, FILTER_GRADIENT] || w == [0x7f, FILTER_GRADIENT]),
            "the gradient is sent through the gradient filter"
        );

        // A part of the frame, after a level change: the streams are reset on both sides.
        tight.set_level(6);
        out.clear();
        let mut changed = frame.clone();
        for p in &mut changed[..(w * 20) as usize] {
            *p ^= 0x00_00ff;
        }
        let count = tight
            .encode(&changed, w, (0, 0, 128, 64), packer, &mut out)
            .unwrap();
        assert_eq!(
            out[12] & 0x0f,
            0x0f,
            "the first rectangle resets every stream"
        );
        decode(&mut decoder, &out, count, (w, h), &mut decoded);
        for row in 0..h {
            for col in 0..w {
                let i = (row * w + col) as usize;
                let want = if row < 64 && col < 128 {
                    changed[i]
                } else {
                    frame[i]
                };
                assert_eq!(decoded[i], want, "pixel {col},{row}");
            }
        }
    }

    #[test]
    fn solid_areas_become_few_fills_and_wide_areas_are_cut() {
        let (w, h) = (2500u32, 256u32);
        let frame = vec![0x33_6699u32; (w * h) as usize];
        let mut tight = Tight::new(2);
        let mut out = Vec::new();
        let count = tight
            .encode(
                &frame,
                w,
                (0, 0, w, h),
                Packer::new(PixelFormat::NATIVE),
                &mut out,
            )
            .unwrap();
        assert_eq!(
            count, 2,
            "two fills: a Tight rectangle is at most 2048 wide"
        );
        assert_eq!(out.len(), 2 * (12 + 1 + 3));
        assert_eq!(&out[12..16], &[FILL, 0x33, 0x66, 0x99]);
    }

    #[test]
    fn compact_lengths_take_one_to_three_bytes() {
        let mut out = Vec::new();
        compact_len(10, &mut out);
        compact_len(300, &mut out);
        compact_len(MAX_COMPACT_LEN, &mut out);
        assert_eq!(out, [10, 0xac, 0x02, 0xff, 0xff, 0xff]);
    }
}
