//! The server's half of the RFB handshake (RFC 6143 7.1-7.3), under one deadline for the
//! whole of it: a viewer that sends its handshake a byte at a time is closed when the
//! deadline passes, not kept as long as each byte comes within a read timeout. Handshakes do
//! not hold viewer slots (the server counts them apart), so slow ones cannot keep a real
//! viewer out.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::auth;
use crate::protocol::{self, PixelFormat, ProtocolError};
use crate::server::Security;

/// How long a viewer may take for its whole handshake.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// A stream's reads and writes, each given only the time left until `deadline`.
struct Timed<'a> {
    stream: &'a mut TcpStream,
    deadline: Instant,
}

impl Timed<'_> {
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the viewer did not finish its handshake in time",
            ));
        }
        Ok(left)
    }

    fn read_exact(&mut self, mut buf: &mut [u8]) -> std::io::Result<()> {
        while !buf.is_empty() {
            let left = self.left()?;
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(buf) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => buf = &mut buf[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the viewer did not finish its handshake in time",
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let left = self.left()?;
        self.stream.set_write_timeout(Some(left))?;
        self.stream.write_all(bytes)
    }
}

fn write_reason(stream: &mut Timed<'_>, reason: &str) -> std::io::Result<()> {
    stream.write_all(&(reason.len() as u32).to_be_bytes())?;
    stream.write_all(reason.as_bytes())
}

/// What a viewer may do, by the password it gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// See, type, point, share the clipboard.
    Full,
    /// See only.
    ViewOnly,
}

/// Version, security and ClientInit, by `deadline`: what the viewer may do.
pub fn greet(
    stream: &mut TcpStream,
    security: &Security,
    deadline: Instant,
) -> Result<Access, ProtocolError> {
    let mut stream = Timed { stream, deadline };
    stream.write_all(b"RFB 003.008\n")?;
    let mut version = [0u8; 12];
    stream.read_exact(&mut version)?;
    let minor = protocol::parse_version(&version)?;

    let wanted: u8 = if security.passwords().is_some() { 2 } else { 1 };
    if minor == 3 {
        stream.write_all(&u32::from(wanted).to_be_bytes())?;
    } else {
        stream.write_all(&[1, wanted])?;
        let mut chosen = [0u8; 1];
        stream.read_exact(&mut chosen)?;
        if chosen[0] != wanted {
            stream.write_all(&1u32.to_be_bytes())?;
            if minor == 8 {
                write_reason(&mut stream, "unsupported security type")?;
            }
            return Err(ProtocolError::BadVersion(format!(
                "security type {} chosen, {wanted} offered",
                chosen[0]
            )));
        }
    }
    let access = match security.passwords() {
        Some((full, view_only)) => {
            let challenge = auth::challenge().map_err(|e| std::io::Error::other(e.to_string()))?;
            stream.write_all(&challenge)?;
            let mut answer = [0u8; auth::CHALLENGE_LEN];
            stream.read_exact(&mut answer)?;
            let access = if auth::verify(full, &challenge, &answer) {
                Access::Full
            } else if view_only.is_some_and(|p| auth::verify(p, &challenge, &answer)) {
                Access::ViewOnly
            } else {
                stream.write_all(&1u32.to_be_bytes())?;
                if minor == 8 {
                    write_reason(&mut stream, "authentication failed")?;
                }
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "wrong password",
                )
                .into());
            };
            stream.write_all(&0u32.to_be_bytes())?;
            access
        }
        None => {
            if minor == 8 {
                stream.write_all(&0u32.to_be_bytes())?;
            }
            Access::Full
        }
    };
    let mut client_init = [0u8; 1];
    // Every viewer shares the desktop, whatever it asks.
    stream.read_exact(&mut client_init)?;
    Ok(access)
}

/// ServerInit: the frame's size, the native pixel format and the desktop's name, by
/// `deadline`.
pub fn server_init(
    stream: &mut TcpStream,
    (width, height): (u32, u32),
    name: &str,
    deadline: Instant,
) -> Result<(), ProtocolError> {
    let mut init = Vec::with_capacity(24 + name.len());
    init.extend_from_slice(&(width as u16).to_be_bytes());
    init.extend_from_slice(&(height as u16).to_be_bytes());
    init.extend_from_slice(&PixelFormat::NATIVE.to_bytes());
    init.extend_from_slice(&(name.len() as u32).to_be_bytes());
    init.extend_from_slice(name.as_bytes());
    Timed { stream, deadline }.write_all(&init)?;
    Ok(())
}
