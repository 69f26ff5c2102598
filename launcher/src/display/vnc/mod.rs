//! The built-in VNC (RFB 3.8, also 3.7 and 3.3) server that shows the guest display.

pub mod auth;
pub mod clipboard;
pub mod encoding;
pub mod motion;
pub mod protocol;
pub mod server;
pub mod tracker;

pub use server::{DEFAULT_MAX_FPS, Security, ServerOptions, Stats, serve};
