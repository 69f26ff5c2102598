//! The frame every viewer encodes from. It is re-read from guest memory at most once a frame
//! interval however many viewers ask (only the rows the guest wrote, where KVM logs dirty
//! pages); each 64x64 tile carries the generation in which it last changed, so a viewer finds
//! what changed since it last looked without a copy of its own, and what moved in the last
//! change is found once for every viewer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::motion::{Move, find_moves};
use crate::display::Framebuffer;

/// Side of the square tiles changes are tracked in.
pub const TILE: u32 = 64;

/// A rectangle: x, y, width, height.
pub type Rect = (u32, u32, u32, u32);

/// What a viewer gets from [`FrameTracker::look`].
#[derive(Default)]
pub struct Look {
    /// The frame, as 0xRRGGBB pixels, `width` a row.
    pub frame: Arc<Vec<u32>>,
    /// Its generation: pass it to the next look.
    pub generation: u64,
    /// Parts that moved, to be copied from what the viewer has, first.
    pub copies: Vec<Move>,
    /// What else changed after the generation the viewer passed, as few rectangles.
    pub changed: Vec<Rect>,
}

struct State {
    frame: Arc<Vec<u32>>,
    /// The frame of the generation before, for finding what moved; kept current row by row.
    previous: Vec<u32>,
    /// Where the rows that changed in the last refresh start (they differ in `previous`).
    last_rows: Vec<usize>,
    /// Per tile, row by row: the generation it last changed in.
    tile_generations: Vec<u64>,
    /// Per tile: the generation it changed in before that.
    tile_previous: Vec<u64>,
    /// Per tile: what its last change touched.
    tile_boxes: Vec<Bounds>,
    /// Bumped whenever the frame changes; 0 before the first read.
    generation: u64,
    /// What moved from the previous generation to this one.
    moves: Vec<Move>,
    read_at: Option<Instant>,
}

/// The shared, tile-tracked copy of the guest's frame.
pub struct FrameTracker {
    width: u32,
    height: u32,
    state: Mutex<State>,
}

impl FrameTracker {
    /// A tracker for a `width` x `height` frame; the first look reads it.
    pub fn new(width: u32, height: u32) -> Self {
        let tiles = (width.div_ceil(TILE) * height.div_ceil(TILE)) as usize;
        Self {
            width,
            height,
            state: Mutex::new(State {
                frame: Arc::new(vec![0; (width * height) as usize]),
                previous: vec![0; (width * height) as usize],
                last_rows: Vec::new(),
                tile_generations: vec![0; tiles],
                tile_previous: vec![0; tiles],
                tile_boxes: vec![Bounds::EMPTY; tiles],
                generation: 0,
                moves: Vec::new(),
                read_at: None,
            }),
        }
    }

    /// The frame, re-read from `fb` if the copy is older than `max_age`, and what changed
    /// since generation `since` (everything for 0). With `copy_rect`, parts that moved since
    /// the generation just before this one come as copies.
    pub fn look(&self, fb: &Framebuffer, max_age: Duration, since: u64, copy_rect: bool) -> Look {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.read_at.is_none_or(|at| at.elapsed() >= max_age) {
            self.read(&mut state, fb);
        }
        let tiles_x = self.width.div_ceil(TILE);
        // A tile that changed once since `since` sends what that change touched; one that
        // changed more often, all of itself.
        let mut changed: Vec<Bounds> = (0..state.tile_generations.len())
            .map(|t| {
                if since != 0 && state.tile_generations[t] <= since {
                    Bounds::EMPTY
                } else if since != 0 && state.tile_previous[t] <= since {
                    state.tile_boxes[t]
                } else {
                    self.whole_tile(t)
                }
            })
            .collect();
        // Moves copy from the previous generation: only a viewer that has it can take them.
        let copies = if copy_rect && since != 0 && since + 1 == state.generation {
            state.moves.clone()
        } else {
            Vec::new()
        };
        for m in &copies {
            let (x, y, w, h) = m.dest;
            for ty in (y..y + h).step_by(TILE as usize) {
                for tx in (x..x + w).step_by(TILE as usize) {
                    changed[(ty / TILE * tiles_x + tx / TILE) as usize] = Bounds::EMPTY;
                }
            }
        }
        Look {
            frame: Arc::clone(&state.frame),
            generation: state.generation,
            copies,
            changed: join(&changed, tiles_x),
        }
    }

    /// The bounds of all of tile `t`.
    fn whole_tile(&self, t: usize) -> Bounds {
        tile_bounds(t, self.width, self.height)
    }

    /// Reads the framebuffer now; whether it changed.
    pub fn refresh(&self, fb: &Framebuffer) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let before = state.generation;
        self.read(&mut state, fb);
        state.generation != before
    }

    /// Reads the framebuffer; if it changed, makes a new generation of the copy, stamps the
    /// tiles that changed and finds what moved.
    fn read(&self, state: &mut State, fb: &Framebuffer) {
        state.read_at = Some(Instant::now());
        let first = state.generation == 0;
        // The log is taken before reading, so a write after this shows in the next one. The
        // first read takes every row whatever the log says.
        let written = fb.written_rows().filter(|_| !first);
        if written.as_ref().is_some_and(|rows| !rows.contains(&true)) {
            return;
        }
        let tiles_x = self.width.div_ceil(TILE) as usize;
        let width = self.width as usize;
        let mut tiles: Vec<Bounds> = if first {
            (0..state.tile_generations.len())
                .map(|t| self.whole_tile(t))
                .collect()
        } else {
            vec![Bounds::EMPTY; state.tile_generations.len()]
        };
        // Rows that changed, and their new pixels, one after another.
        let (mut rows, mut pixels) = (Vec::new(), Vec::new());
        let mut bytes = vec![0u8; fb.stride()];
        let mut row = vec![0u32; width];
        for y in 0..self.height {
            if written.as_ref().is_some_and(|rows| !rows[y as usize]) {
                continue;
            }
            if !fb.read_row(y, &mut bytes) {
                bytes.fill(0);
            }
            for (pixel, b) in row.iter_mut().zip(bytes.chunks_exact(4)) {
                *pixel = u32::from_le_bytes([b[0], b[1], b[2], 0]);
            }
            let start = y as usize * width;
            let old = &state.frame[start..start + width];
            if old != row.as_slice() {
                let first_tile = (y / TILE) as usize * tiles_x;
                mark_changes(old, &row, y, &mut tiles[first_tile..first_tile + tiles_x]);
                rows.push(start);
                pixels.extend_from_slice(&row);
            }
        }
        if rows.is_empty() && !first {
            return;
        }
        // `previous` becomes this frame before the change: the rows the last change touched
        // catch up, then the rows this one touches are saved before they are overwritten.
        // Copy-on-write: a viewer still encoding the frame keeps its copy (it is rarely held).
        let State {
            frame,
            previous,
            last_rows,
            ..
        } = &mut *state;
        for &start in last_rows.iter().chain(&rows) {
            previous[start..start + width].copy_from_slice(&frame[start..start + width]);
        }
        let frame = Arc::make_mut(frame);
        for (start, new) in rows.iter().zip(pixels.chunks_exact(width)) {
            frame[*start..*start + width].copy_from_slice(new);
        }
        *last_rows = rows;
        state.generation += 1;
        for (t, bounds) in tiles.iter().enumerate() {
            if !bounds.is_empty() {
                state.tile_previous[t] = state.tile_generations[t];
                state.tile_generations[t] = state.generation;
                state.tile_boxes[t] = *bounds;
            }
        }
        let flags: Vec<bool> = tiles.iter().map(|b| !b.is_empty()).collect();
        state.moves = if first {
            Vec::new()
        } else {
            find_moves(
                &state.previous,
                &state.frame,
                self.width,
                self.height,
                &flags,
            )
        };
    }
}

/// The part of a tile that changed: pixels x0..x1, rows y0..y1 (frame coordinates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Left.
    pub x0: u32,
    /// Top.
    pub y0: u32,
    /// Right, exclusive.
    pub x1: u32,
    /// Bottom, exclusive.
    pub y1: u32,
}

impl Bounds {
    /// Nothing.
    pub const EMPTY: Bounds = Bounds {
        x0: u32::MAX,
        y0: u32::MAX,
        x1: 0,
        y1: 0,
    };

    /// Whether nothing is inside.
    pub fn is_empty(&self) -> bool {
        self.x0 >= self.x1 || self.y0 >= self.y1
    }

    /// The smallest bounds holding both.
    pub fn union(self, other: Bounds) -> Bounds {
        Bounds {
            x0: self.x0.min(other.x0),
            y0: self.y0.min(other.y0),
            x1: self.x1.max(other.x1),
            y1: self.y1.max(other.y1),
        }
    }
}

/// Grows, per tile column, the bounds in `changed` by the pixels where row `y` now differs
/// from `old`.
fn mark_changes(old: &[u32], now: &[u32], y: u32, changed: &mut [Bounds]) {
    for (t, ((bounds, old), now)) in changed
        .iter_mut()
        .zip(old.chunks(TILE as usize))
        .zip(now.chunks(TILE as usize))
        .enumerate()
    {
        if old != now {
            let differs = |(a, b): (&u32, &u32)| a != b;
            let first = old.iter().zip(now).position(differs).unwrap_or(0);
            let last = old.iter().zip(now).rposition(differs).unwrap_or(0);
            let base = t as u32 * TILE;
            *bounds = bounds.union(Bounds {
                x0: base + first as u32,
                y0: y,
                x1: base + last as u32 + 1,
                y1: y + 1,
            });
        }
    }
}

/// Joins what changed in each tile (row by row, `tiles_x` a row) into few rectangles: the
/// changed tiles next to each other in a tile row become one rectangle around their changes,
/// and equal rectangles stacked on each other become one.
pub fn join(changed: &[Bounds], tiles_x: u32) -> Vec<Rect> {
    let mut rects: Vec<Rect> = Vec::new();
    // Rectangles that reached the previous tile row and may grow down.
    let mut open: Vec<usize> = Vec::new();
    for row in changed.chunks(tiles_x as usize) {
        let mut still_open = Vec::new();
        let mut tiles = row.iter().peekable();
        while let Some(bounds) = tiles.next() {
            if bounds.is_empty() {
                continue;
            }
            let mut run = *bounds;
            while let Some(next) = tiles.next_if(|b| !b.is_empty()) {
                run = run.union(*next);
            }
            let (x, y, w, h) = (run.x0, run.y0, run.x1 - run.x0, run.y1 - run.y0);
            match open
                .iter()
                .find(|&&i| rects[i].0 == x && rects[i].2 == w && rects[i].1 + rects[i].3 == y)
            {
                Some(&i) => {
                    rects[i].3 += h;
                    still_open.push(i);
                }
                None => {
                    still_open.push(rects.len());
                    rects.push((x, y, w, h));
                }
            }
        }
        open = still_open;
    }
    rects
}

/// Joins changed tiles (`changed`, one flag a tile, row by row, `tiles_x` a row, of a
/// `width` x `height` frame) into rectangles, as [`join`] does.
pub fn coalesce(changed: &[bool], tiles_x: u32, width: u32, height: u32) -> Vec<Rect> {
    let bounds: Vec<Bounds> = changed
        .iter()
        .enumerate()
        .map(|(t, &hit)| {
            if hit {
                tile_bounds(t, width, height)
            } else {
                Bounds::EMPTY
            }
        })
        .collect();
    join(&bounds, tiles_x)
}

/// All of tile `t` (row by row) of a `width` x `height` frame, cut at the frame's edges.
fn tile_bounds(t: usize, width: u32, height: u32) -> Bounds {
    let tiles_x = width.div_ceil(TILE) as usize;
    let (x, y) = ((t % tiles_x) as u32 * TILE, (t / tiles_x) as u32 * TILE);
    Bounds {
        x0: x,
        y0: y,
        x1: (x + TILE).min(width),
        y1: (y + TILE).min(height),
    }
}

/// The rectangles an incremental update sends when `before` became `now` (`width` x `height`).
pub fn changed_rects(before: &[u32], now: &[u32], width: u32, height: u32) -> Vec<Rect> {
    let tiles_x = width.div_ceil(TILE);
    let mut changed = vec![Bounds::EMPTY; (tiles_x * height.div_ceil(TILE)) as usize];
    for y in 0..height {
        let start = (y * width) as usize;
        let first = (y / TILE * tiles_x) as usize;
        mark_changes(
            &before[start..start + width as usize],
            &now[start..start + width as usize],
            y,
            &mut changed[first..first + tiles_x as usize],
        );
    }
    join(&changed, tiles_x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::layout::FRAMEBUFFER_START;
    use launcher_api::DisplayConfig;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    #[test]
    fn changed_tiles_join_into_few_rectangles() {
        let (w, h) = (300, 200);
        let before = vec![0u32; (w * h) as usize];
        let mut now = before.clone();
        assert!(changed_rects(&before, &now, w, h).is_empty());
        now[(199 * w + 299) as usize] = 1; // in the bottom-right corner tile, cut short
        assert_eq!(changed_rects(&before, &now, w, h), vec![(299, 199, 1, 1)]);
        // Changes in neighbouring tiles join, per tile row; one apart stays apart.
        for (x, y) in [(10, 10), (70, 12), (10, 70), (70, 70), (200, 10)] {
            now[(y * w + x) as usize] = 2;
        }
        assert_eq!(
            changed_rects(&before, &now, w, h),
            vec![
                (10, 10, 61, 3),
                (200, 10, 1, 1),
                (10, 70, 61, 1),
                (299, 199, 1, 1)
            ]
        );
        // Rows of equal width stacked on each other join: everything is one rectangle.
        let all = vec![3u32; (w * h) as usize];
        assert_eq!(changed_rects(&before, &all, w, h), vec![(0, 0, w, h)]);
    }

    /// A `w` x `h` framebuffer in plain memory, and that memory to draw in as a guest would.
    fn framebuffer(w: u32, h: u32) -> (GuestMemoryMmap, Framebuffer) {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(
            GuestAddress(FRAMEBUFFER_START),
            (w * h * 4) as usize,
        )])
        .unwrap();
        let display = DisplayConfig {
            width: w,
            height: h,
        };
        (mem.clone(), Framebuffer::new(mem, display))
    }

    #[test]
    fn viewers_see_what_changed_since_they_last_looked() {
        let (w, h) = (130u32, 70u32);
        let (mem, fb) = framebuffer(w, h);
        let tracker = FrameTracker::new(w, h);
        let first = tracker.look(&fb, Duration::ZERO, 0, false);
        assert_eq!(
            first.changed,
            vec![(0, 0, w, h)],
            "a first look gets everything"
        );
        let nothing = tracker.look(&fb, Duration::ZERO, first.generation, false);
        assert!(nothing.changed.is_empty());
        // The guest draws one pixel, with junk in the reserved byte.
        let at = FRAMEBUFFER_START + u64::from(65 * w + 129) * 4;
        mem.write_obj(0xff12_3456u32, GuestAddress(at)).unwrap();
        let cached = tracker.look(&fb, Duration::from_secs(3600), nothing.generation, false);
        assert!(cached.changed.is_empty(), "a fresh copy is not read again");
        let after = tracker.look(&fb, Duration::ZERO, nothing.generation, false);
        assert_eq!(after.changed, vec![(129, 65, 1, 1)], "just the pixel");
        assert_eq!(after.frame[(65 * w + 129) as usize], 0x12_3456);
        // The old frame stays as it was for whoever still holds it.
        assert_eq!(first.frame[(65 * w + 129) as usize], 0);
        // A second change to the same tile: a viewer that missed both gets the whole tile
        // (cut at the frame's edge); one that saw the first, only the second.
        let at = FRAMEBUFFER_START + u64::from(64 * w + 128) * 4;
        mem.write_obj(0x00ab_cdefu32, GuestAddress(at)).unwrap();
        let again = tracker.look(&fb, Duration::ZERO, after.generation, false);
        assert_eq!(again.changed, vec![(128, 64, 1, 1)]);
        let slow = tracker.look(&fb, Duration::ZERO, nothing.generation, false);
        assert_eq!(slow.changed, vec![(128, 64, 2, 6)]);
    }

    #[test]
    fn a_viewer_one_generation_behind_gets_what_moved_as_copies() {
        let (w, h) = (640u32, 480u32);
        let (mem, fb) = framebuffer(w, h);
        let draw = |left: u32| {
            let mut bytes = Vec::with_capacity((w * h * 4) as usize);
            for y in 0..h {
                for x in 0..w {
                    let inside = (left..left + 300).contains(&x) && (100..340).contains(&y);
                    let colour = if inside {
                        (((x - left) * 7 % 256) << 16)
                            | ((y * 3 % 256) << 8)
                            | ((x - left + y) % 256)
                    } else {
                        0x30_6090
                    };
                    bytes.extend_from_slice(&colour.to_le_bytes());
                }
            }
            mem.write_slice(&bytes, GuestAddress(FRAMEBUFFER_START))
                .unwrap();
        };
        let tracker = FrameTracker::new(w, h);
        draw(100);
        let before = tracker.look(&fb, Duration::ZERO, 0, true);
        assert!(
            before.copies.is_empty(),
            "a whole frame has nothing to copy from"
        );
        draw(164); // the window moves right by one tile
        let moved = tracker.look(&fb, Duration::ZERO, before.generation, true);
        assert!(!moved.copies.is_empty());
        for m in &moved.copies {
            assert_eq!((m.source.0 + 64, m.source.1), (m.dest.0, m.dest.1), "{m:?}");
        }
        // What is copied is not also sent.
        for m in &moved.copies {
            assert!(
                moved.changed.iter().all(|c| !overlap(*c, m.dest)),
                "{moved:?}",
                moved = moved.changed
            );
        }
        // A viewer without CopyRect, or one further behind, gets pixels only.
        let plain = tracker.look(&fb, Duration::ZERO, before.generation, false);
        assert!(plain.copies.is_empty());
        draw(100);
        let behind = tracker.look(&fb, Duration::ZERO, before.generation, true);
        assert!(behind.copies.is_empty(), "its frame is two generations old");
    }

    fn overlap(a: Rect, b: Rect) -> bool {
        a.0 < b.0 + b.2 && b.0 < a.0 + a.2 && a.1 < b.1 + b.3 && b.1 < a.1 + a.3
    }
}
