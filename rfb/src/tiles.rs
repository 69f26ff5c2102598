//! The 64x64 tiles changes are tracked in, and joining changed tiles into few rectangles.

/// Side of the square tiles changes are tracked in.
pub const TILE: u32 = 64;

/// A rectangle: x, y, width, height.
pub type Rect = (u32, u32, u32, u32);

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

/// The smallest rectangle holding both `a` and `b`; an empty one adds nothing.
pub fn enclose(a: Rect, b: Rect) -> Rect {
    let empty = |r: Rect| r.2 == 0 || r.3 == 0;
    match (empty(a), empty(b)) {
        (true, _) => b,
        (_, true) => a,
        _ => {
            let (x0, y0) = (a.0.min(b.0), a.1.min(b.1));
            let (x1, y1) = ((a.0 + a.2).max(b.0 + b.2), (a.1 + a.3).max(b.1 + b.3));
            (x0, y0, x1 - x0, y1 - y0)
        }
    }
}

/// Grows, per tile column, the bounds in `changed` by the pixels where row `y` now differs
/// from `old`.
pub fn mark_changes(old: &[u32], now: &[u32], y: u32, changed: &mut [Bounds]) {
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
pub fn tile_bounds(t: usize, width: u32, height: u32) -> Bounds {
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

    #[test]
    fn enclose_holds_both_and_ignores_empty_rectangles() {
        assert_eq!(enclose((0, 0, 64, 64), (100, 10, 5, 5)), (0, 0, 105, 64));
        assert_eq!(enclose((10, 10, 0, 5), (3, 4, 5, 6)), (3, 4, 5, 6));
        assert_eq!(enclose((3, 4, 5, 6), (0, 0, 7, 0)), (3, 4, 5, 6));
    }

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
}
