//! The guest display: a linear 32-bit framebuffer in guest memory, which stock kernels drive
//! with `efifb` from the zero page's `screen_info`, and the VNC server that shows it.

pub mod framebuffer;
pub mod vnc;

pub use framebuffer::Framebuffer;
