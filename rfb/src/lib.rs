//! Verdant's VNC server: RFB 3.8 (also 3.7 and 3.3), as RFC 6143 and the community extensions
//! describe it, for one shared desktop and many viewers.
//!
//! The server shows a [`FrameSource`] and sends viewers' keys and pointer to an [`InputSink`];
//! it knows nothing else of what is behind them (in the launcher, the guest's framebuffer and
//! its PS/2 devices). [`serve`] starts it.
//!
//! - [`protocol`]: the wire format, parsed with a bound on every length;
//! - [`auth`]: VNC authentication;
//! - [`encoding`]: Raw, ZRLE and Tight encoders, and negotiation;
//! - [`tiles`], [`tracker`], [`motion`]: finding what changed (in 64x64 tiles) and what moved;
//! - [`clipboard`]: Latin-1 cut text and the Extended Clipboard (UTF-8);
//! - [`server`]: the listener and one reader and one writer thread a viewer;
//! - [`client`]: a small client with a checked decoder, for tests and benchmarks.

pub mod auth;
pub mod client;
pub mod clipboard;
pub mod encoding;
pub mod frame;
pub mod handshake;
pub mod motion;
pub mod protocol;
pub mod server;
pub mod tiles;
pub mod tracker;

pub use frame::{FrameSource, InputSink, MemoryFrame};
pub use server::{DEFAULT_MAX_FPS, Security, ServerOptions, Stats, serve};
