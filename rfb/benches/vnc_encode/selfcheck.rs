//! A check of the client's decoders on hand-made updates, for the paths the servers may never
//! take (Raw, CopyRect, Tight's gradient filter, two-colour palettes and data under 12 bytes,
//! ZRLE runs longer than 255): a decoder bug must not pass for a server's encoder bug.

use flate2::{Compress, Compression, FlushCompress};

use rfb::client::decode::Decoder;
use rfb::client::{COPY_RECT, RAW, TIGHT, ZRLE};

/// The check's screen.
const W: u32 = 80;
const H: u32 = 8;

/// Decodes one hand-made update per encoding and compares it with what it should show.
pub fn decoders() -> Result<(), String> {
    // A different colour at every pixel, so a misplaced one shows.
    let image: Vec<u32> = (0..W * H)
        .map(|i| (i * 37 % 256) << 16 | (i * 11 % 256) << 8 | (255 - i % 256))
        .collect();
    let (a, b) = (0x12_3456, 0xfe_dcba);

    // Tight: the whole screen through the gradient filter on stream 1, a two-colour palette
    // rectangle on stream 2, a palette rectangle short enough to go uncompressed, a fill,
    // Raw, and a CopyRect that overlaps its source.
    let mut streams: [Compress; 3] =
        std::array::from_fn(|_| Compress::new(Compression::new(6), true));
    let mut expected = image.clone();
    let mut rects = Vec::new();
    header(&mut rects, (0, 0, W, H), TIGHT);
    rects.extend_from_slice(&[0x50 | 0x02, 2]); // stream 1, reset, filter; gradient
    tight_data(&mut rects, &gradient(&image), &mut streams[1]);
    let bits: Vec<bool> = (0..10 * 8).map(|i| i % 3 == 0).collect();
    header(&mut rects, (5, 0, 10, 8), TIGHT);
    rects.extend_from_slice(&[0x60, 1, 1]); // stream 2, filter; palette of 2
    rects.extend_from_slice(&[0x12, 0x34, 0x56, 0xfe, 0xdc, 0xba]);
    let mut packed = Vec::new();
    for row in bits.chunks(10) {
        for byte in row.chunks(8) {
            packed.push(
                byte.iter()
                    .enumerate()
                    .fold(0u8, |acc, (k, &on)| acc | u8::from(on) << (7 - k)),
            );
        }
    }
    tight_data(&mut rects, &packed, &mut streams[2]);
    paint(
        &mut expected,
        (5, 0, 10, 8),
        |i| if bits[i] { b } else { a },
    );
    header(&mut rects, (20, 1, 3, 2), TIGHT);
    rects.extend_from_slice(&[0x40, 1, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9]); // palette of 3
    rects.extend_from_slice(&[0, 1, 2, 2, 1, 0]); // 6 bytes: sent as they are
    paint(&mut expected, (20, 1, 3, 2), |i| {
        [0x01_0203, 0x04_0506, 0x07_0809][[0, 1, 2, 2, 1, 0][i]]
    });
    header(&mut rects, (30, 0, 4, 4), TIGHT);
    rects.extend_from_slice(&[0x80, 0xfe, 0xdc, 0xba]);
    paint(&mut expected, (30, 0, 4, 4), |_| b);
    raw_and_copy(&mut rects, &mut expected);
    check(TIGHT, &rects, 6, &expected)?;

    // ZRLE: a 64x8 tile in plain RLE with a run of 300, a 16x8 tile with a 5-colour packed
    // palette, then Raw and CopyRect.
    let mut plain = vec![128];
    plain.extend_from_slice(&[0x56, 0x34, 0x12, 255, 44]); // 300 = 1 + 255 + 44
    plain.extend_from_slice(&[0xba, 0xdc, 0xfe, 211]); // 212
    let palette = [a, b, 0x00_00ff, 0x00_ff00, 0xff_0000];
    plain.push(5);
    for c in palette {
        plain.extend_from_slice(&c.to_le_bytes()[..3]);
    }
    for i in 0..16 * 8u32 {
        if i % 2 == 1 {
            *plain.last_mut().expect("a byte") |= (i % 5) as u8;
        } else {
            plain.push(((i % 5) as u8) << 4);
        }
    }
    let mut expected = image.clone();
    paint(
        &mut expected,
        (0, 0, 64, 8),
        |i| if i < 300 { a } else { b },
    );
    paint(&mut expected, (64, 0, 16, 8), |i| palette[i % 5]);
    let mut rects = Vec::new();
    header(&mut rects, (0, 0, W, H), ZRLE);
    let compressed = deflate(&mut Compress::new(Compression::new(6), true), &plain);
    rects.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
    rects.extend_from_slice(&compressed);
    raw_and_copy(&mut rects, &mut expected);
    check(ZRLE, &rects, 3, &expected)?;
    Ok(())
}

/// Appends a Raw rectangle and a CopyRect one that overlaps its source.
fn raw_and_copy(rects: &mut Vec<u8>, expected: &mut [u32]) {
    header(rects, (40, 2, 3, 2), RAW);
    for i in 0..6u32 {
        rects.extend_from_slice(&(0xff00_0000 | (i * 0x10_1010)).to_le_bytes());
    }
    paint(expected, (40, 2, 3, 2), |i| i as u32 * 0x10_1010);
    header(rects, (42, 3, 4, 4), COPY_RECT);
    rects.extend_from_slice(&[0, 40, 0, 2]);
    let source: Vec<u32> = (0..16)
        .map(|i| expected[((2 + i / 4) * W + 40 + i % 4) as usize])
        .collect();
    paint(expected, (42, 3, 4, 4), |i| source[i]);
}

/// Decodes `rects` (`count` of them) on a screen showing nothing and compares.
fn check(encoding: i32, rects: &[u8], count: u16, expected: &[u32]) -> Result<(), String> {
    let mut message = vec![0, 0];
    message.extend_from_slice(&count.to_be_bytes());
    message.extend_from_slice(rects);
    let mut pixels = vec![0; (W * H) as usize];
    Decoder::new(encoding)
        .update(&message, &mut pixels, W, H)
        .map_err(|e| format!("decoder self-check, encoding {encoding}: {e}"))?;
    match pixels.iter().zip(expected).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(i) => Err(format!(
            "decoder self-check, encoding {encoding}: pixel ({}, {}) is 0x{:06x}, expected 0x{:06x}",
            i as u32 % W,
            i as u32 / W,
            pixels[i],
            expected[i]
        )),
    }
}

fn header(out: &mut Vec<u8>, (x, y, w, h): (u32, u32, u32, u32), encoding: i32) {
    for v in [x, y, w, h] {
        out.extend_from_slice(&(v as u16).to_be_bytes());
    }
    out.extend_from_slice(&encoding.to_be_bytes());
}

/// Sets each pixel of `rect` to `colour(its index in the rectangle)`.
fn paint(frame: &mut [u32], (x, y, w, h): (u32, u32, u32, u32), colour: impl Fn(usize) -> u32) {
    for i in 0..(w * h) as usize {
        let (cx, cy) = (x + i as u32 % w, y + i as u32 / w);
        frame[(cy * W + cx) as usize] = colour(i);
    }
}

/// Tight's gradient filter over the whole screen: each channel minus its prediction.
fn gradient(image: &[u32]) -> Vec<u8> {
    let channel = |x: u32, y: u32, c: u32| -> i32 {
        ((image[(y * W + x) as usize] >> (16 - 8 * c)) & 0xff) as i32
    };
    let mut out = Vec::new();
    for y in 0..H {
        for x in 0..W {
            for c in 0..3 {
                let left = if x > 0 { channel(x - 1, y, c) } else { 0 };
                let up = if y > 0 { channel(x, y - 1, c) } else { 0 };
                let corner = if x > 0 && y > 0 {
                    channel(x - 1, y - 1, c)
                } else {
                    0
                };
                let predicted = (left + up - corner).clamp(0, 255);
                out.push((channel(x, y, c) - predicted) as u8);
            }
        }
    }
    out
}

/// Appends Tight data: under 12 bytes as it is, else a compact length, then zlib data.
fn tight_data(out: &mut Vec<u8>, data: &[u8], zlib: &mut Compress) {
    if data.len() < 12 {
        out.extend_from_slice(data);
        return;
    }
    let compressed = deflate(zlib, data);
    let mut len = compressed.len();
    while len >= 0x80 {
        out.push((len & 0x7f) as u8 | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(&compressed);
}

fn deflate(zlib: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 2 + 64);
    zlib.compress_vec(data, &mut out, FlushCompress::Sync)
        .expect("deflate in memory");
    out
}
