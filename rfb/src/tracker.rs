//! The frame every viewer encodes from. It is re-read from guest memory at most once a frame
//! interval however many viewers ask (only the rows the guest wrote, where KVM logs dirty
//! pages); each 64x64 tile carries the generation in which it last changed, so a viewer finds
//! what changed since it last looked without a copy of its own, and what moved in the last
//! change is found once for every viewer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::frame::FrameSource;
use crate::motion::{Move, find_moves};
use crate::tiles::{Bounds, Rect, TILE, join, mark_changes, tile_bounds};

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

/// One viewer's question to [`FrameTracker::look`].
pub struct Ask<'a> {
    /// The generation the viewer has (0: none).
    pub since: u64,
    /// Whether the viewer has the region as of `since` and wants what changed (an
    /// incremental FramebufferUpdateRequest), or wants all of it.
    pub incremental: bool,
    /// The region asked for, answered to whole tiles (RFB allows more than was asked).
    pub region: Rect,
    /// Whether the viewer takes CopyRect.
    pub copy_rect: bool,
    /// Per tile, the viewer's own: it changed while outside the regions asked for, so the
    /// viewer is owed all of it when next it asks. Sized by the first look.
    pub owed: &'a mut Vec<bool>,
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

    /// The frame, re-read from `fb` if the copy is older than `max_age`, and what `ask` is
    /// owed of it: within the region asked for (to whole tiles), what changed since the
    /// generation the viewer has (everything for 0, or for a request that is not
    /// incremental), and any tile it is owed from before. Tiles outside the region that
    /// changed become owed, for when the viewer next asks for them. Parts that moved since the
    /// generation just before this one come as copies, to a viewer that takes them, asks for
    /// the whole frame and is owed nothing.
    pub fn look(&self, fb: &dyn FrameSource, max_age: Duration, ask: Ask<'_>) -> Look {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.read_at.is_none_or(|at| at.elapsed() >= max_age) {
            self.read(&mut state, fb);
        }
        let tiles = state.tile_generations.len();
        let tiles_x = self.width.div_ceil(TILE);
        let tiles_y = self.height.div_ceil(TILE);
        ask.owed.resize(tiles, false);
        let (x, y, w, h) = ask.region;
        // The tiles the region touches: columns cx0..cx1, rows cy0..cy1.
        let (cx0, cx1) = (x / TILE, x.saturating_add(w).div_ceil(TILE).min(tiles_x));
        let (cy0, cy1) = (y / TILE, y.saturating_add(h).div_ceil(TILE).min(tiles_y));
        let whole_frame = w > 0 && h > 0 && (cx0, cy0, cx1, cy1) == (0, 0, tiles_x, tiles_y);
        let owed_before = ask.owed.contains(&true);
        let since = ask.since;
        // A tile that changed once since `since` sends what that change touched; one that
        // changed more often, all of itself.
        let mut changed: Vec<Bounds> = (0..tiles)
            .map(|t| {
                let changes = if since != 0 && state.tile_generations[t] <= since {
                    Bounds::EMPTY
                } else if since != 0 && state.tile_previous[t] <= since {
                    state.tile_boxes[t]
                } else {
                    self.whole_tile(t)
                };
                let (tx, ty) = (t as u32 % tiles_x, t as u32 / tiles_x);
                let asked = (cx0..cx1).contains(&tx) && (cy0..cy1).contains(&ty);
                if !asked {
                    ask.owed[t] |= !changes.is_empty();
                    Bounds::EMPTY
                } else if !ask.incremental || std::mem::take(&mut ask.owed[t]) {
                    self.whole_tile(t)
                } else {
                    changes
                }
            })
            .collect();
        // Moves copy from the previous generation: only a viewer that has all of it can take
        // them.
        let copies = if ask.copy_rect
            && ask.incremental
            && whole_frame
            && !owed_before
            && since != 0
            && since + 1 == state.generation
        {
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
    pub fn refresh(&self, fb: &dyn FrameSource) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let before = state.generation;
        self.read(&mut state, fb);
        state.generation != before
    }

    /// Reads the framebuffer; if it changed, makes a new generation of the copy, stamps the
    /// tiles that changed and finds what moved.
    fn read(&self, state: &mut State, fb: &dyn FrameSource) {
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
        let mut bytes = vec![0u8; self.width as usize * 4];
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::MemoryFrame;

    #[test]
    fn viewers_see_what_changed_since_they_last_looked() {
        let (w, h) = (130u32, 70u32);
        let fb = MemoryFrame::new(w, h);
        let tracker = FrameTracker::new(w, h);
        let first = look_all(&tracker, &fb, Duration::ZERO, 0, false);
        assert_eq!(
            first.changed,
            vec![(0, 0, w, h)],
            "a first look gets everything"
        );
        let nothing = look_all(&tracker, &fb, Duration::ZERO, first.generation, false);
        assert!(nothing.changed.is_empty());
        // The guest draws one pixel, with junk in the reserved byte.
        fb.set(129, 65, 0xff12_3456);
        let cached = look_all(
            &tracker,
            &fb,
            Duration::from_secs(3600),
            nothing.generation,
            false,
        );
        assert!(cached.changed.is_empty(), "a fresh copy is not read again");
        let after = look_all(&tracker, &fb, Duration::ZERO, nothing.generation, false);
        assert_eq!(after.changed, vec![(129, 65, 1, 1)], "just the pixel");
        assert_eq!(after.frame[(65 * w + 129) as usize], 0x12_3456);
        // The old frame stays as it was for whoever still holds it.
        assert_eq!(first.frame[(65 * w + 129) as usize], 0);
        // A second change to the same tile: a viewer that missed both gets the whole tile
        // (cut at the frame's edge); one that saw the first, only the second.
        fb.set(128, 64, 0x00ab_cdef);
        let again = look_all(&tracker, &fb, Duration::ZERO, after.generation, false);
        assert_eq!(again.changed, vec![(128, 64, 1, 1)]);
        let slow = look_all(&tracker, &fb, Duration::ZERO, nothing.generation, false);
        assert_eq!(slow.changed, vec![(128, 64, 2, 6)]);
    }

    #[test]
    fn a_viewer_one_generation_behind_gets_what_moved_as_copies() {
        let (w, h) = (640u32, 480u32);
        let fb = MemoryFrame::new(w, h);
        let draw = |left: u32| {
            let mut pixels = Vec::with_capacity((w * h) as usize);
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
                    pixels.push(colour);
                }
            }
            fb.draw_all(&pixels);
        };
        let tracker = FrameTracker::new(w, h);
        draw(100);
        let before = look_all(&tracker, &fb, Duration::ZERO, 0, true);
        assert!(
            before.copies.is_empty(),
            "a whole frame has nothing to copy from"
        );
        draw(164); // the window moves right by one tile
        let moved = look_all(&tracker, &fb, Duration::ZERO, before.generation, true);
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
        let plain = look_all(&tracker, &fb, Duration::ZERO, before.generation, false);
        assert!(plain.copies.is_empty());
        draw(100);
        let behind = look_all(&tracker, &fb, Duration::ZERO, before.generation, true);
        assert!(behind.copies.is_empty(), "its frame is two generations old");
    }

    /// An incremental look at the whole frame, owing nothing before.
    fn look_all(
        tracker: &FrameTracker,
        fb: &MemoryFrame,
        max_age: Duration,
        since: u64,
        copy_rect: bool,
    ) -> Look {
        let ask = Ask {
            since,
            incremental: true,
            region: (0, 0, u32::MAX, u32::MAX),
            copy_rect,
            owed: &mut Vec::new(),
        };
        tracker.look(fb, max_age, ask)
    }

    #[test]
    fn a_region_request_is_answered_to_whole_tiles_and_the_rest_is_owed() {
        let (w, h) = (200u32, 130u32); // 4 x 3 tiles, the last column and row cut short
        let fb = MemoryFrame::new(w, h);
        let tracker = FrameTracker::new(w, h);
        let mut owed = Vec::new();
        let ask = |since, incremental, region, owed: &mut Vec<bool>| {
            let ask = Ask {
                since,
                incremental,
                region,
                copy_rect: true,
                owed,
            };
            tracker.look(&fb, Duration::ZERO, ask)
        };
        // A first, non-incremental request for 10x10 at (70, 5): all of tile (1, 0).
        let first = ask(0, false, (70, 5, 10, 10), &mut owed);
        assert_eq!(first.changed, vec![(64, 0, 64, 64)]);
        assert_eq!(
            owed.iter().filter(|&&o| o).count(),
            11,
            "every other tile is owed"
        );
        // The same request again, non-incremental: the same tile, nothing more.
        let again = ask(first.generation, false, (70, 5, 10, 10), &mut owed);
        assert_eq!(again.changed, vec![(64, 0, 64, 64)]);
        // Incremental for that region: nothing changed in it, so nothing.
        let quiet = ask(first.generation, true, (70, 5, 10, 10), &mut owed);
        assert!(quiet.changed.is_empty() && quiet.copies.is_empty());
        // The guest draws in tile (3, 2) and in the asked tile: an incremental request for the
        // region gets only its own change; the other becomes owed.
        fb.set(199, 129, 0x00ff_0000);
        fb.set(100, 10, 0x0000_ff00);
        let mine = ask(first.generation, true, (70, 5, 10, 10), &mut owed);
        assert_eq!(mine.changed, vec![(100, 10, 1, 1)]);
        // An incremental request for the whole frame: every owed tile, whole, and no copies
        // (the viewer lacks what they would copy from).
        let rest = ask(mine.generation, true, (0, 0, w, h), &mut owed);
        assert!(rest.copies.is_empty());
        let area: u32 = rest.changed.iter().map(|r| r.2 * r.3).sum();
        assert_eq!(area, w * h - 64 * 64, "all but the tile already sent");
        assert!(!owed.contains(&true), "nothing is owed after that");
        let none = ask(rest.generation, true, (0, 0, w, h), &mut owed);
        assert!(none.changed.is_empty());
        // A region outside the frame, or an empty one, asks for nothing.
        assert!(
            ask(0, false, (500, 500, 10, 10), &mut owed)
                .changed
                .is_empty()
        );
        assert!(ask(0, false, (0, 0, 0, 10), &mut owed).changed.is_empty());
    }

    fn overlap(a: Rect, b: Rect) -> bool {
        a.0 < b.0 + b.2 && b.0 < a.0 + a.2 && a.1 < b.1 + b.3 && b.1 < a.1 + a.3
    }
}
