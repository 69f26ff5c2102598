//! What the server shows and where viewers' input goes: a [`FrameSource`] (the guest's
//! framebuffer in the launcher; plain memory in tests) and an [`InputSink`] (the guest's
//! keyboard and mouse). The server knows nothing else of what is behind them.

use std::sync::Mutex;

/// A frame of x8r8g8b8 pixels (blue in the low byte; the top byte ignored), `width * 4` bytes
/// a row, that something else draws in.
pub trait FrameSource: Send + Sync {
    /// Width in pixels.
    fn width(&self) -> u32;
    /// Height in pixels.
    fn height(&self) -> u32;
    /// Copies row `y` into `out` (`width * 4` bytes); false when it cannot be read now.
    fn read_row(&self, y: u32, out: &mut [u8]) -> bool;
    /// The rows (one flag each) that may have been written since the last call, or `None`
    /// when the source cannot tell: then any row may have changed and the server compares.
    fn written_rows(&self) -> Option<Vec<bool>> {
        None
    }
}

/// Where viewers' keystrokes and pointer go.
pub trait InputSink: Send + Sync {
    /// A key by X keysym.
    fn keysym(&self, keysym: u32, down: bool);
    /// A key by XT keycode (QEMU extended key event), with its keysym as the fallback.
    fn xt_key(&self, keycode: u32, keysym: u32, down: bool);
    /// The pointer at (x, y) with VNC's button mask.
    fn pointer(&self, x: u16, y: u16, buttons: u8);
}

/// A frame in plain memory, drawn by whoever holds it: for tests and benchmarks, and for
/// anything that renders a desktop itself. It cannot tell which rows were written.
#[derive(Debug)]
pub struct MemoryFrame {
    width: u32,
    height: u32,
    pixels: Mutex<Vec<u32>>,
}

impl MemoryFrame {
    /// A black `width` x `height` frame.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            pixels: Mutex::new(vec![0; width as usize * height as usize]),
        }
    }

    fn pixels(&self) -> std::sync::MutexGuard<'_, Vec<u32>> {
        self.pixels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the pixel at (x, y) to `value` (0xRRGGBB; the top byte is kept but not shown).
    /// Outside the frame, nothing happens.
    pub fn set(&self, x: u32, y: u32, value: u32) {
        if x < self.width && y < self.height {
            self.pixels()[(y * self.width + x) as usize] = value;
        }
    }

    /// Draws `pixels`, rows of `w`, with their top-left at (x, y), clipped to the frame.
    pub fn draw(&self, (x, y): (u32, u32), w: u32, pixels: &[u32]) {
        let mut frame = self.pixels();
        for (row, line) in pixels.chunks(w.max(1) as usize).enumerate() {
            let y = y + row as u32;
            if y >= self.height || x >= self.width {
                break;
            }
            let n = line.len().min((self.width - x) as usize);
            let start = (y * self.width + x) as usize;
            frame[start..start + n].copy_from_slice(&line[..n]);
        }
    }

    /// Replaces the whole frame with `pixels` (`width` a row).
    pub fn draw_all(&self, pixels: &[u32]) {
        self.draw((0, 0), self.width, pixels);
    }
}

impl FrameSource for MemoryFrame {
    fn width(&self) -> u32 {
        self.width
    }

    fn height(&self) -> u32 {
        self.height
    }

    fn read_row(&self, y: u32, out: &mut [u8]) -> bool {
        if y >= self.height || out.len() < self.width as usize * 4 {
            return false;
        }
        let start = (y * self.width) as usize;
        let frame = self.pixels();
        for (bytes, pixel) in out
            .chunks_exact_mut(4)
            .zip(&frame[start..start + self.width as usize])
        {
            bytes.copy_from_slice(&pixel.to_le_bytes());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_frame_reads_back_what_was_drawn_clipped() {
        let frame = MemoryFrame::new(4, 3);
        frame.draw((2, 1), 3, &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        frame.set(0, 0, 0xff12_3456);
        frame.set(9, 9, 1);
        let mut row = [0u8; 16];
        assert!(frame.read_row(0, &mut row));
        assert_eq!(&row[..4], &0xff12_3456u32.to_le_bytes());
        assert!(frame.read_row(1, &mut row));
        assert_eq!(&row[8..16], &[1, 0, 0, 0, 2, 0, 0, 0]);
        assert!(frame.read_row(2, &mut row));
        assert_eq!(&row[8..16], &[4, 0, 0, 0, 5, 0, 0, 0]);
        assert!(!frame.read_row(3, &mut row));
        assert_eq!(frame.written_rows(), None);
    }
}
