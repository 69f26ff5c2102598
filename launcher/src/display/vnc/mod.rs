//! The built-in VNC (RFB 3.8, also 3.7 and 3.3) server that shows the guest display.

pub mod auth;
pub mod encoding;
pub mod protocol;
pub mod server;

pub use server::{DEFAULT_MAX_FPS, Security, ServerOptions, serve};
