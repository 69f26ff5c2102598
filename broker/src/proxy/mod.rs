//! The VNC proxy: the launcher handshake with the desktop's password, the browser's half with
//! none, then a relay that knows input from the rest.

pub mod framer;
pub mod handshake;
pub mod pace;
pub mod relay;
