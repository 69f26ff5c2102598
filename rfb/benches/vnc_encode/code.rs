//! Source code for the editor: generated a line at a time from templates, and drawn coloured
//! the way editors colour Rust.

use crate::canvas::{Canvas, Rng};

/// Draws a line of code at (x, y) coloured the way editors colour Rust.
pub fn highlight(c: &mut Canvas, x: i32, y: i32, line: &str) {
    const KEYWORDS: [&str; 16] = [
        "fn", "let", "mut", "if", "else", "for", "in", "match", "return", "impl", "pub", "use",
        "self", "struct", "while", "as",
    ];
    let chars: Vec<char> = line.chars().collect();
    let word = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    let (mut i, mut pen) = (0, x);
    while i < chars.len() {
        let (len, colour) = if chars[i] == '/' && chars.get(i + 1) == Some(&'/') {
            (chars.len() - i, 0x8a8f98)
        } else if chars[i] == '"' {
            let end = chars[i + 1..].iter().position(|&c| c == '"');
            (end.map_or(chars.len() - i, |p| p + 2), 0x067d17)
        } else if word(&chars[i]) {
            let len = chars[i..].iter().take_while(|c| word(c)).count();
            let text: String = chars[i..i + len].iter().collect();
            let colour = if KEYWORDS.contains(&text.as_str()) {
                0x0033b3
            } else if chars[i].is_ascii_digit() {
                0x1750eb
            } else if chars[i].is_ascii_uppercase() {
                0x008080
            } else if chars.get(i + len) == Some(&'(') {
                0x00627a
            } else {
                0x1e1e22
            };
            (len, colour)
        } else {
            (1, 0x1e1e22)
        };
        let token: String = chars[i..i + len].iter().collect();
        pen = c.text(pen, y, &token, colour);
        i += len;
    }
}

/// Identifiers the templates' {a} draws from.
const IDENTS: [&str; 20] = [
    "frame", "width", "height", "rect", "tile", "pixels", "stride", "palette", "count", "offset",
    "encoder", "stream", "buffer", "row", "column", "colour", "delta", "level", "total", "index",
];
/// Types for {T}.
const TYPES: [&str; 10] = [
    "Frame", "Rect", "Tile", "Palette", "Encoder", "Stream", "Buffer", "Viewer", "Update", "Region",
];
/// Comment and message words for {w}.
const WORDS: [&str; 10] = [
    "the tile is solid",
    "send the palette first",
    "one zlib stream per viewer",
    "rows are padded to a byte",
    "skip unchanged tiles",
    "fall back to raw pixels",
    "runs longer than 255 continue",
    "flush so the viewer can decode",
    "the client asked for this",
    "keep the window for later",
];
/// One-line statements.
const STATEMENTS: [&str; 9] = [
    "let {a} = {a}.{a}({a}, {n});",
    "{a}.push({a} * {n} + {a});",
    "// {w}",
    "return Err(Error::{T}(\"{w}\"));",
    "let mut {a}: Vec<{T}> = Vec::with_capacity({n});",
    "self.{a} += {a} as u64;",
    "println!(\"{w}: {}\", {a});",
    "let {a} = {T}::new({a}, {a});",
    "{a}[{a}] = {a}.wrapping_add({n});",
];
/// Lines that open a block inside a function.
const BLOCKS: [&str; 4] = [
    "for {a} in 0..{n} {",
    "if {a}.len() > {n} {",
    "match {a} {",
    "while {a} < {a} {",
];
/// Lines that open an item: a function or an impl.
const ITEMS: [&str; 3] = [
    "pub fn {a}(&mut self, {a}: &{T}, {a}: u32) -> Result<{T}, Error> {",
    "fn {a}({a}: &[u32], {a}: {T}) -> Option<{T}> {",
    "impl {T} for {T} {",
];

/// Fills a template's {a} (identifier), {T} (type), {n} (number) and {w} (words).
fn fill(template: &str, rng: &mut Rng) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        let slot = rest.get(..3).unwrap_or("");
        match slot {
            "{a}" => out.push_str(rng.pick(&IDENTS)),
            "{T}" => out.push_str(rng.pick(&TYPES)),
            "{n}" => out.push_str(&rng.below(4096).to_string()),
            "{w}" => out.push_str(rng.pick(&WORDS)),
            _ => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
                continue;
            }
        }
        rest = &rest[3..];
    }
    out
}

/// Generates plausible source, one line at a time, with blocks opened and closed.
#[derive(Default)]
pub struct CodeGen {
    depth: usize,
}

impl CodeGen {
    /// The next line.
    pub fn line(&mut self, rng: &mut Rng) -> String {
        let indent = |depth: usize| " ".repeat(4 * depth);
        if self.depth == 0 {
            self.depth = 1;
            return fill(rng.pick(&ITEMS), rng);
        }
        match rng.below(20) {
            0..=10 => indent(self.depth) + &fill(rng.pick(&STATEMENTS), rng),
            11..=13 if self.depth < 4 => {
                self.depth += 1;
                indent(self.depth - 1) + &fill(rng.pick(&BLOCKS), rng)
            }
            11..=18 => {
                self.depth -= 1;
                indent(self.depth) + "}"
            }
            _ => String::new(),
        }
    }
}

/// An indented statement of about 40 characters, as someone would type it.
pub fn typed_line(rng: &mut Rng) -> String {
    let mut line = String::new();
    for _ in 0..100 {
        line = format!("    {}", fill(rng.pick(&STATEMENTS), rng));
        if (34..=46).contains(&line.len()) {
            break;
        }
    }
    line.truncate(46);
    line
}
