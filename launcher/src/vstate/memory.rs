//! Guest memory: anonymous mappings laid out around the 32-bit MMIO hole.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::Error;
use crate::arch::layout::{FRAMEBUFFER_START, ram_regions};

/// Maps `size` bytes of guest RAM, and `framebuffer` bytes at [`FRAMEBUFFER_START`] when the
/// guest has a display. Pages are touched only when the guest uses them, so an idle guest costs
/// little host memory.
pub fn create(size: u64, framebuffer: Option<u64>) -> Result<GuestMemoryMmap, Error> {
    let fb = framebuffer.map(|bytes| (FRAMEBUFFER_START, bytes.div_ceil(4096) * 4096));
    let ranges: Vec<(GuestAddress, usize)> = ram_regions(size)
        .into_iter()
        .chain(fb)
        .map(|(start, len)| {
            Ok((
                GuestAddress(start),
                usize::try_from(len).map_err(|_| Error::MemoryTooLarge(size))?,
            ))
        })
        .collect::<Result<_, Error>>()?;
    GuestMemoryMmap::from_ranges(&ranges).map_err(|e| Error::Memory(e.to_string()))
}
