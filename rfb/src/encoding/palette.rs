//! The distinct colours of a block of pixels, up to a limit, with a fast colour-to-index lookup:
//! what ZRLE's packed palettes and Tight's palette filter are built from.

/// Slots in the hash table: four times the largest palette, so probes stay short.
const SLOTS: usize = 1024;

#[derive(Clone, Copy, Default)]
struct Slot {
    colour: u32,
    index: u8,
    /// The `generation` this slot was filled in; older slots count as empty.
    generation: u32,
}

/// Up to 256 colours in the order first seen.
pub struct Palette {
    colours: Vec<u32>,
    slots: Box<[Slot]>,
    generation: u32,
    limit: usize,
}

impl Default for Palette {
    fn default() -> Self {
        Self {
            colours: Vec::with_capacity(256),
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
            generation: 1,
            limit: 256,
        }
    }
}

fn slot_of(colour: u32) -> usize {
    (colour.wrapping_mul(0x9e37_79b1) >> 22) as usize
}

impl Palette {
    /// Empties the palette; it will hold at most `limit` (at most 256) colours.
    pub fn reset(&mut self, limit: usize) {
        self.colours.clear();
        self.limit = limit.min(256);
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // Once every 4 billion resets: forget the stale stamps for real.
            self.slots.fill(Slot::default());
            self.generation = 1;
        }
    }

    /// The colours, in the order first seen (index order).
    pub fn colours(&self) -> &[u32] {
        &self.colours
    }

    /// How many colours.
    pub fn len(&self) -> usize {
        self.colours.len()
    }

    /// The index of `colour`, if it is in the palette.
    pub fn index(&self, colour: u32) -> Option<u8> {
        let mut at = slot_of(colour);
        loop {
            let slot = self.slots[at];
            if slot.generation != self.generation {
                return None;
            }
            if slot.colour == colour {
                return Some(slot.index);
            }
            at = (at + 1) % SLOTS;
        }
    }

    /// Adds `colour` and returns its index; `None` when it is new and the palette is full.
    #[inline]
    pub fn insert(&mut self, colour: u32) -> Option<u8> {
        let mut at = slot_of(colour);
        loop {
            let slot = &mut self.slots[at];
            if slot.generation != self.generation {
                if self.colours.len() == self.limit {
                    return None;
                }
                let index = self.colours.len() as u8;
                *slot = Slot {
                    colour,
                    index,
                    generation: self.generation,
                };
                self.colours.push(colour);
                return Some(index);
            }
            if slot.colour == colour {
                return Some(slot.index);
            }
            at = (at + 1) % SLOTS;
        }
    }

    /// Collects the colours of rectangle (x, y, w, h) of `frame` (`width` wide), appending
    /// each pixel's index to `indexes`, row by row; false (with `indexes` cut short) if there
    /// are more colours than the limit.
    pub fn collect(
        &mut self,
        frame: &[u32],
        width: u32,
        rect: (u32, u32, u32, u32),
        indexes: &mut Vec<u8>,
    ) -> bool {
        let (x, y, w, h) = rect;
        indexes.reserve((w * h) as usize);
        let (mut last, mut index) = (None, 0);
        for row in y..y + h {
            let start = (row * width + x) as usize;
            for &p in &frame[start..start + w as usize] {
                // Neighbours are mostly equal: skip the lookup for runs.
                if last != Some(p) {
                    last = Some(p);
                    match self.insert(p) {
                        Some(i) => index = i,
                        None => return false,
                    }
                }
                indexes.push(index);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_get_indexes_in_the_order_first_seen() {
        let mut palette = Palette::default();
        palette.reset(3);
        assert_eq!(palette.insert(0xff_0000), Some(0));
        assert_eq!(palette.insert(0x00_ff00), Some(1));
        assert_eq!(palette.insert(0xff_0000), Some(0), "already there");
        assert_eq!(palette.insert(0x00_00ff), Some(2));
        assert_eq!(palette.insert(0x12_3456), None, "full");
        assert_eq!(palette.colours(), &[0xff_0000, 0x00_ff00, 0x00_00ff]);
        assert_eq!(palette.index(0x00_00ff), Some(2));
        assert_eq!(palette.index(0x12_3456), None);
        palette.reset(256);
        assert_eq!(palette.len(), 0);
        assert_eq!(palette.index(0xff_0000), None, "a reset forgets");
    }

    #[test]
    fn collecting_stops_past_the_limit() {
        let frame: Vec<u32> = (0..64 * 64).map(|i| i % 300).collect();
        let mut palette = Palette::default();
        let mut indexes = Vec::new();
        palette.reset(256);
        assert!(!palette.collect(&frame, 64, (0, 0, 64, 64), &mut indexes));
        palette.reset(256);
        indexes.clear();
        assert!(
            palette.collect(&frame, 64, (0, 1, 64, 2), &mut indexes),
            "128 colours"
        );
        assert_eq!(palette.len(), 128);
        assert_eq!(indexes.len(), 128);
        assert_eq!((indexes[0], indexes[127]), (0, 127));
        assert_eq!(palette.colours()[0], 64, "row 1 starts at colour 64");
        // Colliding hashes still find their own slots.
        palette.reset(256);
        for c in (0..256u32).map(|i| i << 22) {
            assert!(palette.insert(c).is_some());
        }
        assert!((0..256u32).all(|i| palette.index(i << 22) == Some(i as u8)));
    }
}
