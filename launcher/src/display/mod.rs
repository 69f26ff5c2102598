//! The guest display: a linear 32-bit framebuffer in guest memory, which stock kernels drive
//! with `efifb` from the zero page's `screen_info`. The `rfb` crate's VNC server shows it.

pub mod framebuffer;

pub use framebuffer::Framebuffer;
