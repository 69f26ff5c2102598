//! Reading the guest's framebuffer from the VMM side, and finding which rows the guest wrote
//! since the last look (KVM's dirty-page log, where KVM keeps one).

use launcher_api::DisplayConfig;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::layout::FRAMEBUFFER_START;
use crate::vstate::vm::DirtyLog;

/// The guest framebuffer: x8r8g8b8 pixels (blue in the low byte), `width * 4` bytes a row.
#[derive(Clone)]
pub struct Framebuffer {
    mem: GuestMemoryMmap,
    dirty_log: Option<DirtyLog>,
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
            dirty_log: None,
            width: display.width,
            height: display.height,
        }
    }

    /// The same framebuffer, with KVM's log of the guest's writes to it.
    pub fn with_dirty_log(self, log: DirtyLog) -> Self {
        Self {
            dirty_log: Some(log),
            ..self
        }
    }

    /// Whether KVM tells which rows the guest wrote.
    pub fn has_dirty_log(&self) -> bool {
        self.dirty_log.is_some()
    }

    /// The rows (one flag each) the guest may have written since the last call, or `None`
    /// when there is no dirty log to ask: then any row may have changed.
    pub fn written_rows(&self) -> Option<Vec<bool>> {
        let bitmap = self.dirty_log.as_ref()?.take()?;
        Some(rows_of_pages(&bitmap, self.stride(), self.height))
    }

    /// Bytes per row.
    pub fn stride(&self) -> usize {
        self.width as usize * 4
    }

    /// Copies row `y` (as bytes) into `out`, which must hold one row; false outside the frame.
    pub fn read_row(&self, y: u32, out: &mut [u8]) -> bool {
        let Some(row) = out.get_mut(..self.stride()).filter(|_| y < self.height) else {
            return false;
        };
        let addr = FRAMEBUFFER_START + u64::from(y) * self.stride() as u64;
        self.mem.read_slice(row, GuestAddress(addr)).is_ok()
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

/// The VNC server reads the guest's frame through this.
impl rfb::FrameSource for Framebuffer {
    fn width(&self) -> u32 {
        self.width
    }

    fn height(&self) -> u32 {
        self.height
    }

    fn read_row(&self, y: u32, out: &mut [u8]) -> bool {
        Framebuffer::read_row(self, y, out)
    }

    fn written_rows(&self) -> Option<Vec<bool>> {
        Framebuffer::written_rows(self)
    }
}

/// The rows that dirty pages (`bitmap`, one bit a 4 KiB page) touch, for rows of `stride`
/// bytes.
fn rows_of_pages(bitmap: &[u64], stride: usize, height: u32) -> Vec<bool> {
    const PAGE: usize = 4096;
    let mut rows = vec![false; height as usize];
    for (word_index, &word) in bitmap.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            let page = word_index * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let first = page * PAGE / stride;
            let last = ((page + 1) * PAGE - 1) / stride;
            for row in rows.iter_mut().take(last + 1).skip(first) {
                *row = true;
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_pages_map_to_the_rows_they_hold() {
        // 640-pixel rows: 2560 bytes, so page 0 holds rows 0-1 and page 1 rows 1-3.
        let rows = rows_of_pages(&[0b10], 2560, 8);
        assert_eq!(rows, [false, true, true, true, false, false, false, false]);
        // A page past the last row (the slot is rounded up to whole pages) is ignored.
        let rows = rows_of_pages(&[1 << 5], 2560, 8);
        assert!(rows.iter().all(|r| !r));
        // Page 64 lives in the second word.
        let rows = rows_of_pages(&[0, 1], 4096, 70);
        assert_eq!(rows.iter().position(|&r| r), Some(64));
    }

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
