//! A deterministic 1920x1080 desktop, the kind a VDI user looks at all day: a gradient
//! wallpaper with icons, a panel with a clock, a photo viewer, a terminal, a text editor and a
//! file manager on top; and the scenarios that change it (a full frame, a typed line, a moved
//! window), each step giving the new image and the rectangles that changed.

use crate::canvas::{Canvas, Rect, Rng, mix};
use crate::{code, windows};

/// Screen width.
pub const WIDTH: u32 = 1920;
/// Screen height.
pub const HEIGHT: u32 = 1080;
/// Height of the panel along the bottom edge.
const PANEL_HEIGHT: u32 = 36;
/// The clock's area within the panel.
const CLOCK: Rect = (1816, 3, 96, 30);
/// How far a window's shadow reaches, and its offset down and to the right.
const SHADOW_REACH: f32 = 10.0;
const SHADOW_OFFSET: (i32, i32) = (2, 4);
/// The two places the file manager moves between.
const MOVER_AT: [(u32, u32); 2] = [(760, 430), (800, 460)];

/// What changes between frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// The whole frame is requested; the clock ticks between requests.
    Full,
    /// A ~40-character line of the editor is retyped.
    TypedLine,
    /// A 600x400 window moves by (40, 30) and back.
    MovedWindow,
}

impl Scenario {
    /// Every scenario, in the order they run.
    pub const ALL: [Scenario; 3] = [Scenario::Full, Scenario::TypedLine, Scenario::MovedWindow];

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Full => "full frame",
            Scenario::TypedLine => "typed line",
            Scenario::MovedWindow => "moved window",
        }
    }

    /// Whether a viewer asks for it with an incremental update request.
    pub fn incremental(self) -> bool {
        self != Scenario::Full
    }
}

/// A window on screen: its position and its pixels, decorations included.
struct Window {
    x: u32,
    y: u32,
    canvas: Canvas,
}

impl Window {
    /// What the window and its shadow cover, clipped to the screen.
    fn bounds(&self) -> Rect {
        let reach = SHADOW_REACH as i32;
        let left = (self.x as i32 + SHADOW_OFFSET.0 - reach).max(0) as u32;
        let top = (self.y as i32 + SHADOW_OFFSET.1 - reach).max(0) as u32;
        let right = (self.x + self.canvas.width + SHADOW_OFFSET.0 as u32 + reach as u32).min(WIDTH);
        let bottom =
            (self.y + self.canvas.height + SHADOW_OFFSET.1 as u32 + reach as u32).min(HEIGHT);
        (left, top, right - left, bottom - top)
    }

    /// The opacity of this window's shadow at screen pixel (x, y) outside the window.
    fn shadow(&self, x: u32, y: u32) -> f32 {
        let (left, top) = (
            self.x as f32 + SHADOW_OFFSET.0 as f32,
            self.y as f32 + SHADOW_OFFSET.1 as f32,
        );
        let (right, bottom) = (
            left + self.canvas.width as f32,
            top + self.canvas.height as f32,
        );
        let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
        let dx = (left - px).max(px - right).max(0.0);
        let dy = (top - py).max(py - bottom).max(0.0);
        let d = dx.hypot(dy);
        if d >= SHADOW_REACH {
            0.0
        } else {
            0.3 * (1.0 - d / SHADOW_REACH).powi(2)
        }
    }
}

/// The desktop: its layers, and the composed frame viewers should see.
pub struct Desktop {
    /// The frame, rows top to bottom, 0x00RRGGBB.
    pub pixels: Vec<u32>,
    wallpaper: Canvas,
    panel: Canvas,
    /// The panel as drawn before the clock, to redraw the clock on.
    panel_base: Canvas,
    /// Bottom to top: photo viewer, terminal, editor, file manager.
    windows: Vec<Window>,
    editor: windows::Editor,
    /// The typed line's current text.
    typed: String,
}

/// Index of the editor in `Desktop::windows`.
const EDITOR: usize = 2;
/// Index of the file manager, the window that moves.
const MOVER: usize = 3;

impl Desktop {
    /// The desktop as it first appears.
    pub fn new() -> Self {
        let mut rng = Rng::new(0x5eed_de5c);
        let wallpaper = windows::wallpaper(WIDTH, HEIGHT);
        let panel_base = windows::panel(
            WIDTH,
            PANEL_HEIGHT,
            &[
                "IMG_2041.JPG - Photos",
                "user@verdant: ~/src/verdant",
                "encoding.rs - Editor",
                "Documents - Files",
            ],
        );
        let (editor, editor_canvas) = windows::editor(920, 640, &mut rng);
        let windows = vec![
            Window {
                x: 1380,
                y: 100,
                canvas: windows::photo_viewer(402, 352),
            },
            Window {
                x: 40,
                y: 500,
                canvas: windows::terminal(820, 520, &mut rng),
            },
            Window {
                x: 400,
                y: 56,
                canvas: editor_canvas,
            },
            Window {
                x: MOVER_AT[0].0,
                y: MOVER_AT[0].1,
                canvas: windows::file_manager(600, 400),
            },
        ];
        let mut desktop = Desktop {
            pixels: vec![0; (WIDTH * HEIGHT) as usize],
            wallpaper,
            panel: Canvas::new(WIDTH, PANEL_HEIGHT, 0),
            panel_base,
            windows,
            editor,
            typed: String::new(),
        };
        desktop.set_clock(7);
        desktop.compose((0, 0, WIDTH, HEIGHT));
        desktop
    }

    /// Makes step `i` of `scenario`; returns the rectangles that changed.
    pub fn step(&mut self, scenario: Scenario, i: usize) -> Vec<Rect> {
        let damage = match scenario {
            Scenario::Full => {
                self.set_clock(8 + i as u32);
                let (x, y, w, h) = CLOCK;
                vec![(x, HEIGHT - PANEL_HEIGHT + y, w, h)]
            }
            Scenario::TypedLine => {
                let mut rng = Rng::new(0x7e47 + i as u64);
                let mut text = code::typed_line(&mut rng);
                while text == self.typed {
                    text = code::typed_line(&mut rng);
                }
                let window = &mut self.windows[EDITOR];
                let changed = self.editor.retype(&mut window.canvas, &text);
                self.typed = text;
                changed
                    .into_iter()
                    .map(|(x, y, w, h)| (window.x + x, window.y + y, w, h))
                    .collect()
            }
            Scenario::MovedWindow => {
                let before = self.windows[MOVER].bounds();
                let (x, y) = MOVER_AT[(i + 1) % 2];
                (self.windows[MOVER].x, self.windows[MOVER].y) = (x, y);
                vec![union(before, self.windows[MOVER].bounds())]
            }
        };
        for &rect in &damage {
            self.compose(rect);
        }
        damage
    }

    /// Redraws the panel's clock showing `seconds` past 10:42.
    fn set_clock(&mut self, seconds: u32) {
        self.panel.pixels.clone_from(&self.panel_base.pixels);
        let (x, y, _, _) = CLOCK;
        let time = format!("10:{:02}:{:02}", 42 + seconds / 60 % 18, seconds % 60);
        self.panel
            .text(x as i32 + 24, y as i32 + 4, &time, 0xe8e8ec);
        self.panel
            .text(x as i32 + 18, y as i32 + 17, "Tue 25 Nov", 0xb4b6c0);
    }

    /// Recomputes the frame inside `rect` from the layers.
    fn compose(&mut self, rect: Rect) {
        let (x0, y0, w, h) = rect;
        let panel_top = HEIGHT - PANEL_HEIGHT;
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                let colour = if y >= panel_top {
                    self.panel.get(x, y - panel_top)
                } else {
                    let mut colour = self.wallpaper.get(x, y);
                    for window in &self.windows {
                        let inside = x >= window.x
                            && y >= window.y
                            && x < window.x + window.canvas.width
                            && y < window.y + window.canvas.height;
                        if inside {
                            colour = window.canvas.get(x - window.x, y - window.y);
                        } else {
                            let shadow = window.shadow(x, y);
                            if shadow > 0.0 {
                                colour = mix(colour, 0, shadow);
                            }
                        }
                    }
                    colour
                };
                self.pixels[(y * WIDTH + x) as usize] = colour;
            }
        }
    }
}

/// The smallest rectangle holding both `a` and `b`.
fn union(a: Rect, b: Rect) -> Rect {
    let (left, top) = (a.0.min(b.0), a.1.min(b.1));
    let (right, bottom) = ((a.0 + a.2).max(b.0 + b.2), (a.1 + a.3).max(b.1 + b.3));
    (left, top, right - left, bottom - top)
}
