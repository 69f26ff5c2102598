//! Finding what moved between two frames (a window dragged, a page scrolled), so viewers get
//! a CopyRect from pixels they already have instead of the pixels again. A dumb framebuffer
//! says nothing about motion, so it is guessed: a few distinctive pieces of the changed area
//! are looked up in the old frame nearby, and a guessed shift counts where whole 64x64 tiles
//! of the new frame equal the old frame shifted.

use crate::tiles::{Rect, TILE, coalesce};

/// How far a piece is looked for, in pixels, each way.
const REACH: i64 = 192;
/// Pixels in a probe: long enough to be distinctive.
const PROBE: usize = 24;
/// Probes tried in one changed area.
const PROBES: usize = 6;
/// Shifts tried for one probe.
const SHIFTS_A_PROBE: usize = 4;
/// Changed areas smaller than this many tiles are not worth a search.
const MIN_TILES: u32 = 4;

/// A part of the new frame that is the old frame shifted: copy `source` (its top-left) to
/// `dest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    /// Where the pixels go.
    pub dest: Rect,
    /// Top-left of where they come from, in the old frame.
    pub source: (u32, u32),
}

/// Moves that explain changed tiles (`changed`, one flag a tile, row by row) of `new` against
/// `old`, both `width` x `height`. Applied in order, each move's source is still intact.
pub fn find_moves(
    old: &[u32],
    new: &[u32],
    width: u32,
    height: u32,
    changed: &[bool],
) -> Vec<Move> {
    let tiles_x = width.div_ceil(TILE);
    let mut moves: Vec<Move> = Vec::new();
    for area in coalesce(changed, tiles_x, width, height) {
        if area.2 * area.3 < MIN_TILES * TILE * TILE {
            continue;
        }
        let Some((dx, dy, tiles)) = best_shift(old, new, width, height, area) else {
            continue;
        };
        for dest in coalesce(&tiles, area.2.div_ceil(TILE), area.2, area.3) {
            let dest = (dest.0 + area.0, dest.1 + area.1, dest.2, dest.3);
            let source = (
                (i64::from(dest.0) - dx) as u32,
                (i64::from(dest.1) - dy) as u32,
            );
            // A later copy must not read what an earlier one wrote.
            let clobbered = moves
                .iter()
                .any(|m| overlaps((source.0, source.1, dest.2, dest.3), m.dest));
            if !clobbered {
                moves.push(Move { dest, source });
            }
        }
    }
    moves
}

fn overlaps(a: Rect, b: Rect) -> bool {
    a.0 < b.0 + b.2 && b.0 < a.0 + a.2 && a.1 < b.1 + b.3 && b.1 < a.1 + a.3
}

/// The shift (dx, dy: new = old moved by it) that explains the most whole tiles of `area`, with
/// those tiles (flags, row by row, over the area's own tile grid); none if no shift explains
/// at least two.
fn best_shift(
    old: &[u32],
    new: &[u32],
    width: u32,
    height: u32,
    area: Rect,
) -> Option<(i64, i64, Vec<bool>)> {
    let mut best: Option<(i64, i64, Vec<bool>, usize)> = None;
    let mut tried: Vec<(i64, i64)> = Vec::new();
    let shifts = probes(new, width, area)
        .into_iter()
        .flat_map(|at| locate(old, new, width, height, at));
    for (dx, dy) in shifts {
        if tried.contains(&(dx, dy)) {
            continue;
        }
        tried.push((dx, dy));
        let tiles = matching_tiles(old, new, width, height, area, (dx, dy));
        let count = tiles.iter().filter(|&&t| t).count();
        if count >= 2 && best.as_ref().is_none_or(|b| count > b.3) {
            best = Some((dx, dy, tiles, count));
        }
    }
    best.map(|(dx, dy, tiles, _)| (dx, dy, tiles))
}

/// Up to [`PROBES`] places in `area` of `new` where the next [`PROBE`] pixels are not all one
/// colour, spread over the area's height.
fn probes(new: &[u32], width: u32, area: Rect) -> Vec<(u32, u32)> {
    let (x, y, w, h) = area;
    let mut found = Vec::new();
    if (w as usize) < PROBE {
        return found;
    }
    // Places on a ladder of 24 steps, visited in a scrambled order so that the first ones
    // found spread over the whole area.
    const STEPS: u32 = 24;
    for i in 0..STEPS {
        if found.len() == PROBES {
            break;
        }
        let row = y + h * (2 * (i * 5 % STEPS) + 1) / (2 * STEPS);
        let column = x + (w - PROBE as u32) * (i * 7 % STEPS) / (STEPS - 1);
        let start = (row * width + column) as usize;
        let piece = &new[start..start + PROBE];
        if piece.iter().any(|&p| p != piece[0]) {
            found.push((column, row));
        }
    }
    found
}

/// Where the probe at `at` in `new` sits in `old` within [`REACH`], as shifts from there to
/// here: the nearest few other than none (repeating content matches in several places).
fn locate(old: &[u32], new: &[u32], width: u32, height: u32, at: (u32, u32)) -> Vec<(i64, i64)> {
    let (px, py) = (i64::from(at.0), i64::from(at.1));
    let start = (at.1 * width + at.0) as usize;
    let piece = &new[start..start + PROBE];
    let mut shifts: Vec<(i64, i64)> = Vec::new();
    let rows = (py - REACH).max(0)..=(py + REACH).min(i64::from(height) - 1);
    let columns = (px - REACH).max(0)..=(px + REACH).min(i64::from(width) - PROBE as i64);
    for oy in rows {
        let row = &old[(oy * i64::from(width)) as usize..][..width as usize];
        for ox in columns.clone() {
            let ox = ox as usize;
            if row[ox] == piece[0] && row[ox..ox + PROBE] == *piece {
                let shift = (px - ox as i64, py - oy);
                if shift != (0, 0) {
                    shifts.push(shift);
                }
            }
        }
    }
    shifts.sort_by_key(|s| s.0.abs() + s.1.abs());
    shifts.truncate(SHIFTS_A_PROBE);
    shifts
}

/// Which whole tiles of `area` in `new` equal `old` shifted by `shift` (sources inside the
/// frame).
fn matching_tiles(
    old: &[u32],
    new: &[u32],
    width: u32,
    height: u32,
    area: Rect,
    (dx, dy): (i64, i64),
) -> Vec<bool> {
    let (x, y, w, h) = area;
    let mut tiles = Vec::new();
    for ty in (y..y + h).step_by(TILE as usize) {
        for tx in (x..x + w).step_by(TILE as usize) {
            let (tw, th) = (TILE.min(x + w - tx), TILE.min(y + h - ty));
            let (sx, sy) = (i64::from(tx) - dx, i64::from(ty) - dy);
            let inside = sx >= 0
                && sy >= 0
                && sx + i64::from(tw) <= i64::from(width)
                && sy + i64::from(th) <= i64::from(height);
            tiles.push(
                inside
                    && (0..th).all(|r| {
                        let to = ((ty + r) * width + tx) as usize;
                        let from = ((sy as u32 + r) * width + sx as u32) as usize;
                        new[to..to + tw as usize] == old[from..from + tw as usize]
                    }),
            );
        }
    }
    tiles
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiles::changed_rects;

    /// A busy background (every pixel distinct enough) with a patterned window at (wx, wy).
    fn scene(width: u32, height: u32, window: (u32, u32)) -> Vec<u32> {
        let mut frame: Vec<u32> = (0..width * height)
            .map(|i| ((i % width * 3) << 12) | ((i / width * 5) % 4096))
            .collect();
        for y in 0..300u32 {
            for x in 0..400u32 {
                // Text-like: dark marks at scattered places on a light background.
                let mut hash = x.wrapping_mul(0x9e37_79b1) ^ y.wrapping_mul(0x85eb_ca6b);
                hash ^= hash >> 15;
                hash = hash.wrapping_mul(0x2c1b_3c6d) >> 28;
                let colour = if hash < 5 {
                    0x10_2030
                } else {
                    0xf0_e0d0 + y % 3
                };
                frame[((window.1 + y) * width + window.0 + x) as usize] = colour;
            }
        }
        frame
    }

    fn flags(old: &[u32], new: &[u32], width: u32, height: u32) -> Vec<bool> {
        let tiles_x = width.div_ceil(TILE);
        let mut flags = vec![false; (tiles_x * height.div_ceil(TILE)) as usize];
        for (x, y, w, h) in changed_rects(old, new, width, height) {
            for ty in (y..y + h).step_by(TILE as usize) {
                for tx in (x..x + w).step_by(TILE as usize) {
                    flags[(ty / TILE * tiles_x + tx / TILE) as usize] = true;
                }
            }
        }
        flags
    }

    /// Applies the moves to `client` (what a viewer holds) the way a viewer does.
    fn apply(client: &mut [u32], width: u32, moves: &[Move]) {
        for m in moves {
            let (x, y, w, h) = m.dest;
            let copy: Vec<u32> = (0..h)
                .flat_map(|r| {
                    let from = ((m.source.1 + r) * width + m.source.0) as usize;
                    client[from..from + w as usize].to_vec()
                })
                .collect();
            for r in 0..h {
                let to = ((y + r) * width + x) as usize;
                client[to..to + w as usize]
                    .copy_from_slice(&copy[(r * w) as usize..][..w as usize]);
            }
        }
    }

    #[test]
    fn a_dragged_window_becomes_copies_that_reproduce_it() {
        let (w, h) = (1024, 768);
        let old = scene(w, h, (200, 150));
        let new = scene(w, h, (240, 180));
        let f = flags(&old, &new, w, h);
        let area = coalesce(&f, w.div_ceil(TILE), w, h);
        eprintln!("areas {area:?}");
        for a in &area {
            for p in probes(&new, w, *a) {
                eprintln!("probe {p:?} -> {:?}", locate(&old, &new, w, h, p));
            }
        }
        let moves = find_moves(&old, &new, w, h, &f);
        assert!(!moves.is_empty(), "the move is found");
        let copied: u32 = moves.iter().map(|m| m.dest.2 * m.dest.3).sum();
        assert!(copied >= 4 * TILE * TILE, "{moves:?}");
        // Every copied pixel is right.
        let mut client = old.clone();
        apply(&mut client, w, &moves);
        for m in &moves {
            let (x, y, mw, mh) = m.dest;
            for r in y..y + mh {
                let row = (r * w + x) as usize;
                assert_eq!(client[row..row + mw as usize], new[row..row + mw as usize]);
            }
        }
    }

    #[test]
    fn a_scrolled_page_is_one_copy_and_nothing_moves_when_nothing_did() {
        let (w, h) = (640, 480);
        let old: Vec<u32> = (0..w * h)
            .map(|i: u32| (i / w).wrapping_mul(2_654_435_761) ^ (i % w))
            .collect();
        // Scroll up by 70 rows: rows 70.. move to 0..; new content at the bottom.
        let mut new = old.clone();
        new.copy_within((70 * w) as usize.., 0);
        for p in &mut new[((h - 70) * w) as usize..] {
            *p = 0x12_3456;
        }
        let moves = find_moves(&old, &new, w, h, &flags(&old, &new, w, h));
        assert!(
            moves
                .iter()
                .all(|m| m.source.1 == m.dest.1 + 70 && m.source.0 == m.dest.0)
        );
        let mut client = old.clone();
        apply(&mut client, w, &moves);
        let copied: u32 = moves.iter().map(|m| m.dest.2 * m.dest.3).sum();
        assert!(copied >= w * 320, "most of the page is copied: {moves:?}");
        for m in &moves {
            let (x, y, mw, mh) = m.dest;
            for r in y..y + mh {
                let row = (r * w + x) as usize;
                assert_eq!(client[row..row + mw as usize], new[row..row + mw as usize]);
            }
        }
        // Different content that moved nowhere.
        let other: Vec<u32> = old.iter().map(|p| p ^ 0x5a5a5a).collect();
        assert!(find_moves(&old, &other, w, h, &flags(&old, &other, w, h)).is_empty());
    }
}
