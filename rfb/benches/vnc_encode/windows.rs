//! What the desktop shows: the wallpaper, the panel, and each window's pixels (decorations
//! included). Colours and layouts follow common desktop themes, so encoders meet the usual mix:
//! flat areas, gradients, anti-aliased text and a noisy photo.

use crate::canvas::{Canvas, Rect, Rng, hash01, mix, shade, value_noise};
use crate::code::{CodeGen, highlight};
use crate::font;

/// Height of a window's title bar, the top border included.
const TITLE: u32 = 29;
/// The editor's line height.
const LINE: u32 = 15;
/// Which of the editor's lines is retyped (0-based).
const TYPED_LINE: usize = 14;

/// A window frame: border, title bar with title and buttons; the rest filled with `background`.
fn frame(width: u32, height: u32, title: &str, active: bool, background: u32) -> Canvas {
    let mut c = Canvas::new(width, height, background);
    let (top, bottom) = if active {
        (0xe9e9ed, 0xd4d4da)
    } else {
        (0xf3f3f5, 0xe9e9ec)
    };
    c.vgradient(0, 0, width, TITLE, top, bottom);
    c.fill(0, TITLE as i32 - 1, width, 1, 0xc4c4ca);
    let text_x = (width as i32 - title.len() as i32 * font::ADVANCE as i32) / 2;
    c.text(text_x, 11, title, if active { 0x2a2a2e } else { 0x808086 });
    let buttons = if active {
        [0xff5f57, 0xfebc2e, 0x28c840]
    } else {
        [0xd0d0d5; 3]
    };
    for (k, &colour) in buttons.iter().enumerate() {
        c.disc(15.0 + k as f32 * 20.0, 14.5, 6.0, colour);
    }
    c.outline(
        0,
        0,
        width,
        height,
        if active { 0x8e8e96 } else { 0xa8a8b0 },
    );
    c
}

/// A smooth diagonal gradient with a warm glow, and four labelled icons down the left.
pub fn wallpaper(width: u32, height: u32) -> Canvas {
    let mut c = Canvas::new(width, height, 0);
    let span = width as f32 * 0.6 + height as f32;
    for y in 0..height {
        for x in 0..width {
            let t = (x as f32 * 0.6 + y as f32) / span;
            let base = if t < 0.55 {
                mix(0x0f2742, 0x2d6f8e, t / 0.55)
            } else {
                mix(0x2d6f8e, 0xd8a05a, (t - 0.55) / 0.45)
            };
            let d = (x as f32 - 1500.0).hypot(y as f32 - 250.0) / 700.0;
            let glow = (1.0 - d).max(0.0).powi(2) * 0.35;
            c.pixels[(y * width + x) as usize] = mix(base, 0xf6dcae, glow);
        }
    }
    let icons = [
        ("Home", 0x4a90d9),
        ("Documents", 0xf2c14e),
        ("Projects", 0x6cc070),
        ("Trash", 0x9aa0a8),
    ];
    for (k, &(label, colour)) in icons.iter().enumerate() {
        let (x, y) = (36, 28 + k as i32 * 92);
        c.rounded(x, y, 48, 48, 8.0, colour);
        c.rounded(x + 8, y + 10, 32, 6, 3.0, shade(colour, 40));
        let lx = x + 24 - label.len() as i32 * 3;
        c.text(lx + 1, y + 57, label, 0x101418);
        c.text(lx, y + 56, label, 0xffffff);
    }
    c
}

/// The panel: start button, launchers, one button per window in `tasks`, the tray. The clock
/// is drawn on a copy of it.
pub fn panel(width: u32, height: u32, tasks: &[&str]) -> Canvas {
    let mut c = Canvas::new(width, height, 0);
    c.vgradient(0, 0, width, height, 0x30323a, 0x1e1f25);
    c.fill(0, 0, width, 1, 0x4a4c56);
    c.rounded(6, 4, 28, 28, 7.0, 0x3d7eff);
    c.text(18, 14, "V", 0xffffff);
    let launchers = [0xe95420, 0x4caf50, 0x2196f3, 0x9c27b0, 0xffc107];
    for (k, &colour) in launchers.iter().enumerate() {
        let x = 46 + k as i32 * 32;
        c.rounded(x, 6, 24, 24, 5.0, colour);
        c.disc(x as f32 + 12.0, 18.0, 5.0, shade(colour, 70));
    }
    for (k, title) in tasks.iter().enumerate() {
        let x = 220 + k as i32 * 190;
        let active = k + 1 == tasks.len();
        c.rounded(x, 4, 182, 28, 5.0, if active { 0x545763 } else { 0x3a3c45 });
        c.rounded(x + 8, 11, 14, 14, 3.0, launchers[k % launchers.len()]);
        let label: String = title.chars().take(24).collect();
        c.text(x + 30, 14, &label, 0xe6e6ea);
        if active {
            c.fill(x + 8, 30, 166, 2, 0x3d7eff);
        }
    }
    for k in 0..3 {
        let x = 1720 + k * 26;
        c.rounded(x, 11, 16, 14, 3.0, 0xbfc3cc);
        c.fill(x + 4, 16, 8, 4, 0x30323a);
    }
    c.fill(1806, 8, 1, 20, 0x4a4c56);
    c
}

/// The editor's layout, to retype its line.
pub struct Editor {
    /// The typed line's band, in window coordinates.
    line: Rect,
    /// Where "Ln, Col" is shown in the status bar.
    position: Rect,
    /// Where text starts on a line.
    text_x: i32,
}

impl Editor {
    /// Replaces the typed line with `text`; returns what changed, in window coordinates.
    pub fn retype(&self, c: &mut Canvas, text: &str) -> Vec<Rect> {
        let (x, y, w, h) = self.line;
        c.fill(x as i32, y as i32, w, h, 0xfff8d8);
        highlight(c, self.text_x, y as i32 + 3, text);
        self.draw_position(c, text.len() + 1);
        vec![self.line, self.position]
    }

    fn draw_position(&self, c: &mut Canvas, column: usize) {
        let (x, y, w, h) = self.position;
        c.fill(x as i32, y as i32, w, h, 0x2f6fd6);
        let label = format!("Ln {}, Col {column}", TYPED_LINE + 1);
        c.text(x as i32 + 10, y as i32 + 8, &label, 0xffffff);
    }
}

/// A code editor full of syntax-coloured source, with a line highlighted for typing.
pub fn editor(width: u32, height: u32, rng: &mut Rng) -> (Editor, Canvas) {
    let title = "encoding.rs - ~/src/verdant/launcher/src/display/vnc - Editor";
    let mut c = frame(width, height, title, false, 0xffffff);
    let inner = width - 2;
    let menu_y = TITLE as i32;
    c.fill(1, menu_y, inner, 22, 0xf5f5f7);
    let menu = "File   Edit   Selection   View   Go   Run   Terminal   Help";
    c.text(10, menu_y + 7, menu, 0x3a3a3e);
    c.fill(1, menu_y + 21, inner, 1, 0xdedee2);

    let status_y = height as i32 - 23;
    c.fill(1, status_y, inner, 22, 0x2f6fd6);
    let right = "Spaces: 4    UTF-8    LF    Rust";
    let right_x = width as i32 - 12 - right.len() as i32 * font::ADVANCE as i32;
    c.text(right_x, status_y + 8, right, 0xffffff);

    let top = menu_y + 22;
    let (gutter, bar_x) = (49, width as i32 - 14);
    let body = (status_y - top) as u32;
    c.fill(1, top, gutter as u32 - 1, body, 0xf4f4f6);
    c.fill(gutter, top, 1, body, 0xe2e2e6);
    c.fill(bar_x, top, 13, body, 0xf3f3f5);
    c.rounded(bar_x + 3, top + 40, 7, 120, 3.5, 0xc2c2c8);

    let editor = Editor {
        line: (
            gutter as u32 + 1,
            (top + 1 + TYPED_LINE as i32 * LINE as i32) as u32,
            (bar_x - gutter - 1) as u32,
            LINE,
        ),
        position: (1, status_y as u32, 150, 22),
        text_x: gutter + 10,
    };
    let mut code = CodeGen::default();
    let lines = (status_y - top - 4) / LINE as i32;
    for n in 0..lines as usize {
        let y = top + 4 + n as i32 * LINE as i32;
        let text = code.line(rng);
        if n == TYPED_LINE {
            editor.retype(&mut c, &text);
        } else {
            highlight(&mut c, editor.text_x, y, &text);
        }
        let number = if n == TYPED_LINE { 0x3a3a3e } else { 0xa0a0a8 };
        c.text(8, y, &format!("{:>6}", n + 1), number);
    }
    (editor, c)
}

/// A terminal that has been used for a while: prompts, compiler output, listings.
pub fn terminal(width: u32, height: u32, rng: &mut Rng) -> Canvas {
    let mut c = frame(
        width,
        height,
        "user@verdant: ~/src/verdant",
        false,
        0x1c1e24,
    );
    let rows = ((height - TITLE - 12) / 14) as usize;
    let prompt = |command: &str| {
        vec![
            ("user@verdant".to_string(), 0x8ae234),
            (":".into(), 0xd3d7cf),
            ("~/src/verdant".into(), 0x729fcf),
            ("$ ".into(), 0xd3d7cf),
            (command.to_string(), 0xeeeeec),
        ]
    };
    let crates = [
        "libc",
        "serde",
        "flate2",
        "zlib-rs",
        "kvm-ioctls",
        "vm-memory",
        "thiserror",
        "x11rb",
    ];
    let dirs = ["arch", "boot", "devices", "display", "vstate"];
    let files = [
        "config.rs",
        "demo.rs",
        "doctor.rs",
        "http.rs",
        "lib.rs",
        "machine.rs",
    ];
    let mut lines: Vec<Vec<(String, u32)>> = Vec::new();
    while lines.len() < rows * 2 {
        match rng.below(3) {
            0 => {
                lines.push(prompt("cargo build --release -p launcher"));
                for _ in 0..3 + rng.below(5) {
                    let name = rng.pick(&crates);
                    let version = format!(" {name} v0.{}.{}", rng.below(30), rng.below(12));
                    lines.push(vec![("   Compiling".into(), 0x8ae234), (version, 0xd3d7cf)]);
                }
                let seconds = format!(
                    " `release` profile [optimized] target(s) in {}.{:02}s",
                    20 + rng.below(40),
                    rng.below(100)
                );
                lines.push(vec![("    Finished".into(), 0x8ae234), (seconds, 0xd3d7cf)]);
            }
            1 => {
                lines.push(prompt("ls -la launcher/src"));
                for _ in 0..4 + rng.below(6) {
                    let (name, colour, mode) = if rng.below(3) == 0 {
                        (rng.pick(&dirs), 0x729fcf, "drwxr-xr-x  2")
                    } else {
                        (rng.pick(&files), 0xd3d7cf, "-rw-r--r--  1")
                    };
                    let size = 1000 + rng.below(30000);
                    let meta =
                        format!("{mode} user user {size:>6} Nov 25 17:{:02} ", rng.below(60));
                    lines.push(vec![(meta, 0xd3d7cf), (name.to_string(), colour)]);
                }
            }
            _ => {
                lines.push(prompt("git status --short"));
                for _ in 0..2 + rng.below(4) {
                    let path = format!(" M launcher/src/{}", rng.pick(&files));
                    lines.push(vec![(path, 0xef2929)]);
                }
            }
        }
    }
    let shown = &lines[lines.len() - (rows - 1)..];
    let (mut y, mut pen) = (TITLE as i32 + 6, 8);
    for line in shown.iter().chain([&prompt("")]) {
        pen = 8;
        for (text, colour) in line {
            pen = c.text(pen, y, text, *colour);
        }
        y += 14;
    }
    // The cursor after the last prompt.
    c.fill(pen, y - 16, 6, 12, 0xd3d7cf);
    c
}

/// Fractal value noise: four octaves, 0.0..1.0.
fn fbm(x: f32, y: f32, scale: f32, seed: u32) -> f32 {
    [0.5, 0.25, 0.125, 0.125]
        .iter()
        .enumerate()
        .map(|(k, weight)| weight * value_noise(x, y, scale / (1 << k) as f32, seed + k as u32))
        .sum()
}

/// A landscape photo: sky with clouds and a sun, mountains, a meadow, and sensor noise, so that
/// hardly two neighbouring pixels are alike.
fn photo(width: u32, height: u32) -> Canvas {
    let mut c = Canvas::new(width, height, 0);
    let mut rng = Rng::new(0x9407_0402);
    for y in 0..height {
        for x in 0..width {
            let (fx, fy) = (x as f32, y as f32);
            let ridge = 110.0
                + 140.0 * (value_noise(fx, 0.0, 90.0, 1) - 0.5)
                + 36.0 * (value_noise(fx, 0.0, 25.0, 2) - 0.5)
                + 10.0 * (value_noise(fx, 0.0, 7.0, 3) - 0.5);
            let foothills = 185.0 + 40.0 * (value_noise(fx, 0.0, 60.0, 4) - 0.5);
            let colour = if fy < ridge {
                let sky = mix(0x3b6fb6, 0xd7e6f2, fy / ridge);
                let clouds = ((fbm(fx, fy * 2.2, 60.0, 10) - 0.5) * 3.0).clamp(0.0, 0.9);
                let d = (fx - 310.0).hypot(fy - 58.0);
                let glow = (1.0 - d / 70.0).max(0.0).powi(2) * 0.6;
                let lit = mix(mix(sky, 0xffffff, clouds), 0xffe9b0, glow);
                mix(lit, 0xfff6d8, (16.5 - d).clamp(0.0, 1.0))
            } else if fy < foothills {
                let depth = (fy - ridge) / (foothills - ridge).max(1.0);
                let rock = mix(0x6a7890, 0x3e4a5e, fbm(fx, fy, 12.0, 20));
                mix(rock, 0x2e3a2e, depth * 0.4)
            } else {
                let t = (fy - foothills) / (height as f32 - foothills);
                let grass = mix(0x8fb04a, 0x3f6a22, fbm(fx, fy, 20.0, 30));
                if hash01(x as i32, y as i32, 40) > 0.995 {
                    0xf2e14c
                } else {
                    mix(grass, 0x2c4a18, t * 0.6)
                }
            };
            // Sensor noise, each channel on its own.
            let mut noisy = 0;
            for shift in [16, 8, 0] {
                let channel = ((colour >> shift) & 0xff) as i32 + rng.below(13) as i32 - 6;
                noisy |= (channel.clamp(0, 255) as u32) << shift;
            }
            c.pixels[(y * width + x) as usize] = noisy;
        }
    }
    c
}

/// A photo viewer showing a 400x300 photo over a caption bar.
pub fn photo_viewer(width: u32, height: u32) -> Canvas {
    let mut c = frame(width, height, "IMG_2041.JPG - Photos", false, 0x2b2b2b);
    let photo_height = 300;
    c.blit(1, TITLE as i32, &photo(width - 2, photo_height));
    let caption_y = TITLE as i32 + photo_height as i32;
    c.fill(
        1,
        caption_y,
        width - 2,
        height - 1 - caption_y as u32,
        0xececee,
    );
    c.text(
        8,
        caption_y + 8,
        "IMG_2041.JPG   400 x 300   100%",
        0x4a4a50,
    );
    c
}

/// A file manager: toolbar, sidebar of places, a grid of folders and files, a status bar.
pub fn file_manager(width: u32, height: u32) -> Canvas {
    let mut c = frame(width, height, "Documents - Files", true, 0xffffff);
    let top = TITLE as i32;
    c.vgradient(1, top, width - 2, 36, 0xf8f8fa, 0xebebef);
    c.fill(1, top + 36, width - 2, 1, 0xd4d4da);
    for (k, label) in ["<", ">"].iter().enumerate() {
        let x = 10 + k as i32 * 34;
        c.rounded(x, top + 6, 28, 24, 5.0, 0xdcdce2);
        c.text(x + 11, top + 14, label, 0x3a3a40);
    }
    c.rounded(83, top + 5, 332, 26, 6.0, 0xc8c8d0);
    c.rounded(84, top + 6, 330, 24, 5.0, 0xffffff);
    c.text(96, top + 14, "Home  >  Documents  >  Projects", 0x3a3a40);
    let search_x = width as i32 - 170;
    c.rounded(search_x, top + 5, 160, 26, 6.0, 0xc8c8d0);
    c.rounded(search_x + 1, top + 6, 158, 24, 5.0, 0xffffff);
    c.text(search_x + 10, top + 14, "Search", 0xa0a0a8);

    let body = top + 37;
    let status_y = height as i32 - 23;
    c.fill(1, body, 150, (status_y - body) as u32, 0xf0f0f3);
    c.fill(151, body, 1, (status_y - body) as u32, 0xdcdce2);
    let places = [
        "Recent",
        "Home",
        "Desktop",
        "Documents",
        "Downloads",
        "Music",
        "Pictures",
        "Videos",
        "Trash",
        "",
        "Disk (512 GB)",
        "Network",
    ];
    for (k, place) in places.iter().enumerate() {
        let y = body + 12 + k as i32 * 22;
        let selected = *place == "Documents";
        if selected {
            c.rounded(6, y - 6, 140, 20, 4.0, 0x3d7eff);
        }
        if !place.is_empty() {
            let colour = if selected { 0xffffff } else { 0x38383e };
            c.rounded(
                14,
                y,
                10,
                9,
                2.0,
                if selected { 0xffffff } else { 0x8a8a92 },
            );
            c.text(32, y + 1, place, colour);
        }
    }

    let items = [
        ("Projects", 0),
        ("Invoices", 0),
        ("Photos 2024", 0),
        ("Notes", 0),
        ("report-q3.pdf", 0xd9412b),
        ("budget.ods", 0x2e9e4f),
        ("todo.txt", 0x8a8a92),
        ("slides.odp", 0xe8862a),
        ("logo.png", 0x7b4fd1),
        ("notes.md", 0x8a8a92),
        ("contract.pdf", 0xd9412b),
        ("backup.tar.gz", 0x9a7b4f),
        ("draft-v2.odt", 0x2f6fd6),
        ("screen.png", 0x7b4fd1),
    ];
    for (k, &(name, band)) in items.iter().enumerate() {
        let (cx, y) = (
            164 + 43 + (k % 5) as i32 * 86,
            body + 10 + (k / 5) as i32 * 90,
        );
        if k == 4 || k == 6 {
            c.rounded(cx - 41, y, 82, 64, 6.0, 0xdbe7fb);
        }
        if band == 0 {
            c.rounded(cx - 20, y + 8, 16, 8, 3.0, 0xe0a82e);
            c.rounded(cx - 20, y + 12, 40, 30, 4.0, 0xf2c14e);
            c.fill(cx - 18, y + 20, 36, 1, 0xe7b545);
        } else {
            c.fill(cx - 15, y + 4, 30, 38, 0xffffff);
            c.outline(cx - 15, y + 4, 30, 38, 0xb4b4bc);
            for l in 0..4 {
                c.fill(cx - 10, y + 10 + l * 4, 20, 1, 0xc8c8d0);
            }
            c.fill(cx - 14, y + 30, 28, 10, band);
        }
        let label: String = name.chars().take(13).collect();
        c.text(cx - label.len() as i32 * 3, y + 50, &label, 0x2a2a30);
    }
    c.fill(1, status_y, width - 2, 22, 0xf4f4f6);
    c.fill(1, status_y, width - 2, 1, 0xdcdce2);
    c.text(10, status_y + 8, "14 items, 2 selected (3.1 MB)", 0x5a5a60);
    c
}
