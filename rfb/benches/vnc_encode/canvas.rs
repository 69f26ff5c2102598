//! Drawing on 0x00RRGGBB pixel buffers: rectangles, gradients, anti-aliased discs, text; and
//! the fixed-seed generator every "random" choice in the desktop comes from.

use crate::font;

/// A rectangle (x, y, w, h) in pixels.
pub type Rect = (u32, u32, u32, u32);

/// SplitMix64 with a fixed seed: the same desktop on every run and every machine.
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u32) as usize]
    }
}

/// Hashes a lattice point to 0.0..1.0, for value noise that needs no state.
pub fn hash01(x: i32, y: i32, seed: u32) -> f32 {
    let mut h = (x as u32).wrapping_mul(0x8da6_b343)
        ^ (y as u32).wrapping_mul(0xd816_3841)
        ^ seed.wrapping_mul(0xcb1a_b31f);
    h ^= h >> 13;
    h = h.wrapping_mul(0x5bd1_e995);
    h ^= h >> 15;
    (h & 0xffff) as f32 / 65535.0
}

/// Smooth value noise at (x, y) with lattice spacing `scale`, in 0.0..1.0.
pub fn value_noise(x: f32, y: f32, scale: f32, seed: u32) -> f32 {
    let (fx, fy) = (x / scale, y / scale);
    let (ix, iy) = (fx.floor() as i32, fy.floor() as i32);
    let smooth = |t: f32| t * t * (3.0 - 2.0 * t);
    let (tx, ty) = (smooth(fx - ix as f32), smooth(fy - iy as f32));
    let top = hash01(ix, iy, seed) * (1.0 - tx) + hash01(ix + 1, iy, seed) * tx;
    let bottom = hash01(ix, iy + 1, seed) * (1.0 - tx) + hash01(ix + 1, iy + 1, seed) * tx;
    top * (1.0 - ty) + bottom * ty
}

/// The colour `t` (0.0..=1.0) of the way from `a` to `b`.
pub fn mix(a: u32, b: u32, t: f32) -> u32 {
    let t = t.clamp(0.0, 1.0);
    let channel = |shift: u32| {
        let (ca, cb) = (((a >> shift) & 0xff) as f32, ((b >> shift) & 0xff) as f32);
        ((ca + (cb - ca) * t).round() as u32) << shift
    };
    channel(16) | channel(8) | channel(0)
}

/// `rgb` with `delta` added to each channel, clamped.
pub fn shade(rgb: u32, delta: i32) -> u32 {
    let channel = |shift: u32| (((rgb >> shift) & 0xff) as i32 + delta).clamp(0, 255) as u32;
    channel(16) << 16 | channel(8) << 8 | channel(0)
}

/// A pixel buffer with drawing operations, clipped to its bounds.
pub struct Canvas {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Rows top to bottom, 0x00RRGGBB.
    pub pixels: Vec<u32>,
}

impl Canvas {
    /// A canvas filled with `colour`.
    pub fn new(width: u32, height: u32, colour: u32) -> Self {
        Self {
            width,
            height,
            pixels: vec![colour; (width * height) as usize],
        }
    }

    /// The pixel at (x, y), which must be inside.
    pub fn get(&self, x: u32, y: u32) -> u32 {
        self.pixels[(y * self.width + x) as usize]
    }

    /// Sets (x, y) if it is inside.
    pub fn set(&mut self, x: i32, y: i32, colour: u32) {
        if x >= 0 && y >= 0 && (x as u32) < self.width && (y as u32) < self.height {
            self.pixels[(y as u32 * self.width + x as u32) as usize] = colour;
        }
    }

    /// Blends `colour` over (x, y) with opacity `alpha` (0.0..=1.0).
    pub fn blend(&mut self, x: i32, y: i32, colour: u32, alpha: f32) {
        if x >= 0 && y >= 0 && (x as u32) < self.width && (y as u32) < self.height {
            let i = (y as u32 * self.width + x as u32) as usize;
            self.pixels[i] = mix(self.pixels[i], colour, alpha);
        }
    }

    /// Fills (x, y, w, h), clipped.
    pub fn fill(&mut self, x: i32, y: i32, w: u32, h: u32, colour: u32) {
        for row in y..y + h as i32 {
            for column in x..x + w as i32 {
                self.set(column, row, colour);
            }
        }
    }

    /// Fills (x, y, w, h) with a vertical gradient from `top` to `bottom`.
    pub fn vgradient(&mut self, x: i32, y: i32, w: u32, h: u32, top: u32, bottom: u32) {
        for row in 0..h {
            let colour = mix(top, bottom, row as f32 / (h.max(2) - 1) as f32);
            self.fill(x, y + row as i32, w, 1, colour);
        }
    }

    /// A one-pixel outline of (x, y, w, h).
    pub fn outline(&mut self, x: i32, y: i32, w: u32, h: u32, colour: u32) {
        self.fill(x, y, w, 1, colour);
        self.fill(x, y + h as i32 - 1, w, 1, colour);
        self.fill(x, y, 1, h, colour);
        self.fill(x + w as i32 - 1, y, 1, h, colour);
    }

    /// A rectangle with corners rounded by `radius`, edges anti-aliased.
    pub fn rounded(&mut self, x: i32, y: i32, w: u32, h: u32, radius: f32, colour: u32) {
        let (w, h) = (w as f32, h as f32);
        for row in 0..h as i32 {
            for column in 0..w as i32 {
                // Distance outside the rounded shape, measured from pixel centres.
                let (px, py) = (column as f32 + 0.5, row as f32 + 0.5);
                let qx = (px - w / 2.0).abs() - (w / 2.0 - radius);
                let qy = (py - h / 2.0).abs() - (h / 2.0 - radius);
                let outside = qx.max(0.0).hypot(qy.max(0.0)) - radius;
                let alpha = (0.5 - outside).clamp(0.0, 1.0);
                if alpha > 0.0 {
                    self.blend(x + column, y + row, colour, alpha);
                }
            }
        }
    }

    /// A disc of radius `r` centred on (cx, cy), edge anti-aliased.
    pub fn disc(&mut self, cx: f32, cy: f32, r: f32, colour: u32) {
        let (x0, y0) = ((cx - r - 1.0) as i32, (cy - r - 1.0) as i32);
        let size = (2.0 * r + 3.0) as i32;
        for row in y0..y0 + size {
            for column in x0..x0 + size {
                let d = (column as f32 + 0.5 - cx).hypot(row as f32 + 0.5 - cy);
                let alpha = (r + 0.5 - d).clamp(0.0, 1.0);
                if alpha > 0.0 {
                    self.blend(column, row, colour, alpha);
                }
            }
        }
    }

    /// Draws `text` with its top-left at (x, y); a faint fringe right of each stroke stands in
    /// for anti-aliasing, as on a real desktop. Returns the x after the last character.
    pub fn text(&mut self, x: i32, y: i32, text: &str, colour: u32) -> i32 {
        let mut pen = x;
        for c in text.chars() {
            for row in 0..font::HEIGHT {
                for column in 0..font::ADVANCE {
                    let (px, py) = (pen + column as i32, y + row as i32);
                    if font::ink(c, column, row) {
                        self.set(px, py, colour);
                    } else if column > 0 && font::ink(c, column - 1, row) {
                        self.blend(px, py, colour, 0.35);
                    }
                }
            }
            pen += font::ADVANCE as i32;
        }
        pen
    }

    /// Copies `other` with its top-left at (x, y), clipped.
    pub fn blit(&mut self, x: i32, y: i32, other: &Canvas) {
        for row in 0..other.height {
            for column in 0..other.width {
                self.set(x + column as i32, y + row as i32, other.get(column, row));
            }
        }
    }
}
