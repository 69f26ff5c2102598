//! Reading the guest's framebuffer from the VMM side.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::layout::FRAMEBUFFER_START;
use crate::config::DisplayConfig;

/// The guest framebuffer: x8r8g8b8 pixels (blue in the low byte), `width * 4` bytes a row.
#[derive(Clone)]
pub struct Framebuffer {
    mem: GuestMemoryMmap,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Framebuffer {
    /// The framebuffer of `display` size in `mem` (which maps it at [`FRAMEBUFFER_START`]).
    pub fn new(mem: GuestMemoryMmap, display: DisplayConfig) -> Self {
        Self {
            mem,
            width: display.width,
            height: display.height,
        }
    }

    /// Bytes per row.
    pub fn stride(&self) -> usize {
        self.width as usize * 4
    }

    /// Copies row `y` (as bytes) into `out`, which must hold one row.
    pub fn read_row(&self, y: u32, out: &mut [u8]) -> bool {
        let addr = FRAMEBUFFER_START + u64::from(y) * self.stride() as u64;
        self.mem.read_slice(out, GuestAddress(addr)).is_ok()
    }

    /// The pixel at (x, y) as 0xRRGGBB, or `None` outside the frame.
    pub fn pixel(&self, x: u32, y: u32) -> Option<u32> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let addr = FRAMEBUFFER_START + u64::from(y) * self.stride() as u64 + u64::from(x) * 4;
        let value: u32 = self.mem.read_obj(GuestAddress(addr)).ok()?;
        Some(value & 0x00ff_ffff)
    }

    /// Whether nothing has been drawn: every pixel black (the reserved byte ignored).
    pub fn is_blank(&self) -> bool {
        let mut row = vec![0u8; self.stride()];
        (0..self.height).all(|y| {
            self.read_row(y, &mut row)
                && row
                    .chunks_exact(4)
                    .all(|p| p[0] == 0 && p[1] == 0 && p[2] == 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_and_blankness() {
        let display = DisplayConfig {
            width: 32,
            height: 16,
        };
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(FRAMEBUFFER_START), 32 * 16 * 4)])
            .unwrap();
        let fb = Framebuffer::new(mem.clone(), display);
        assert!(fb.is_blank());
        // Only the reserved byte set: still blank.
        mem.write_obj(0xff00_0000u32, GuestAddress(FRAMEBUFFER_START))
            .unwrap();
        assert!(fb.is_blank());
        let at = FRAMEBUFFER_START + (5 * 32 + 7) * 4;
        mem.write_obj(0x0012_3456u32, GuestAddress(at)).unwrap();
        assert!(!fb.is_blank());
        assert_eq!(fb.pixel(7, 5), Some(0x12_3456));
        assert_eq!(fb.pixel(32, 0), None);
        assert_eq!(fb.pixel(0, 16), None);
    }
}
