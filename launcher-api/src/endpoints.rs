//! Where a launcher pod is reached: its ports and HTTP paths.

/// The HTTP port in a launcher pod (`/healthz`, `/readyz`; `/console` to the pod itself only).
pub const HTTP_PORT: u16 = 8080;
/// The VNC port in a launcher pod, which the broker connects to.
pub const VNC_PORT: u16 = 5900;
/// The container port name of [`HTTP_PORT`], which the probes use.
pub const HTTP_PORT_NAME: &str = "http";
/// The container port name of [`VNC_PORT`].
pub const VNC_PORT_NAME: &str = "vnc";
/// Liveness: the launcher process answers.
pub const HEALTHZ: &str = "/healthz";
/// Readiness: the VM runs and its display is live (the session can be used).
pub const READYZ: &str = "/readyz";
/// The last 64 KiB of the guest's serial console, to the pod itself only (loopback).
pub const CONSOLE: &str = "/console";

/// `IP:PORT` listening on every address at `port`.
pub fn any_address(port: u16) -> String {
    format!("0.0.0.0:{port}")
}
