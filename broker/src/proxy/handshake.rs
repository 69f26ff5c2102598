//! The two halves of the RFB handshake the broker terminates: it authenticates to the
//! launcher with the desktop's password, and offers the browser no security of its own (the
//! browser was authenticated by its session and connect token). After both, bytes flow
//! unchanged, starting with the browser's ClientInit.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The version the broker speaks on both sides.
pub const VERSION: &[u8; 12] = b"RFB 003.008\n";
/// Security type None.
pub const SECURITY_NONE: u8 = 1;
/// Security type VNC Authentication.
pub const SECURITY_VNC: u8 = 2;
/// How long the launcher may take to answer each step.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest failure reason read from a launcher.
const MAX_REASON: u32 = 4096;

/// Why the launcher handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The connection failed, closed or timed out.
    #[error("connection to the launcher: {0}")]
    Io(#[from] std::io::Error),
    /// The launcher does not speak RFB 3.8.
    #[error("the launcher speaks {0:?}, not RFB 3.8")]
    Version(String),
    /// The launcher refused the connection, with its reason.
    #[error("the launcher refused the connection: {0}")]
    Refused(String),
    /// The launcher offers no security type the broker can use.
    #[error("the launcher offers security types {0:?}; the broker needs VNC authentication (2)")]
    NoSecurity(Vec<u8>),
    /// The launcher asks for a password and the desktop's Secret has none.
    #[error("the launcher asks for a password and the desktop's Secret has none")]
    NoPassword,
    /// The password was refused.
    #[error("the launcher refused the desktop's password: {0}")]
    AuthFailed(String),
}

async fn step<T>(
    what: &'static str,
    future: impl Future<Output = std::io::Result<T>>,
) -> Result<T, HandshakeError> {
    match tokio::time::timeout(STEP_TIMEOUT, future).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(HandshakeError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no {what} from the launcher within {} s",
                STEP_TIMEOUT.as_secs()
            ),
        ))),
    }
}

async fn read_reason<S: AsyncRead + Unpin>(stream: &mut S) -> Result<String, HandshakeError> {
    let len = step("reason length", stream.read_u32()).await?;
    let mut reason = vec![0; len.min(MAX_REASON) as usize];
    step("reason", stream.read_exact(&mut reason)).await?;
    Ok(String::from_utf8_lossy(&reason).into_owned())
}

/// Opens the RFB session with the launcher up to (not including) ClientInit, answering VNC
/// authentication with `password`. A launcher that offers only None (a development setup
/// without a display password) is used without one.
pub async fn launcher<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    password: Option<&[u8]>,
) -> Result<(), HandshakeError> {
    let mut version = [0u8; 12];
    step("version", stream.read_exact(&mut version)).await?;
    if &version[..8] != b"RFB 003." || rfb::protocol::parse_version(&version).ok() != Some(8) {
        return Err(HandshakeError::Version(
            String::from_utf8_lossy(&version).trim_end().to_owned(),
        ));
    }
    stream.write_all(VERSION).await?;
    let count = step("security types", stream.read_u8()).await?;
    if count == 0 {
        return Err(HandshakeError::Refused(read_reason(stream).await?));
    }
    let mut types = vec![0u8; usize::from(count)];
    step("security types", stream.read_exact(&mut types)).await?;
    if types.contains(&SECURITY_VNC) {
        let password = password.ok_or(HandshakeError::NoPassword)?;
        stream.write_all(&[SECURITY_VNC]).await?;
        let mut challenge = [0u8; rfb::auth::CHALLENGE_LEN];
        step("challenge", stream.read_exact(&mut challenge)).await?;
        stream
            .write_all(&rfb::auth::response(password, &challenge))
            .await?;
    } else if types.contains(&SECURITY_NONE) {
        stream.write_all(&[SECURITY_NONE]).await?;
    } else {
        return Err(HandshakeError::NoSecurity(types));
    }
    match step("security result", stream.read_u32()).await? {
        0 => Ok(()),
        _ => Err(HandshakeError::AuthFailed(read_reason(stream).await?)),
    }
}

/// What the broker says to the browser first: its version.
pub fn browser_greeting() -> &'static [u8] {
    VERSION
}

/// The security types offered to the browser (one: None).
pub const BROWSER_SECURITY_TYPES: [u8; 2] = [1, SECURITY_NONE];
/// SecurityResult OK.
pub const SECURITY_OK: [u8; 4] = [0; 4];

/// Checks the browser's version line: RFB 3.8 (or later, spoken as 3.8).
pub fn browser_version(version: &[u8; 12]) -> Result<(), String> {
    match rfb::protocol::parse_version(version) {
        Ok(8) => Ok(()),
        _ => Err(format!(
            "the viewer speaks {:?}; the broker speaks RFB 3.8",
            String::from_utf8_lossy(version).trim_end()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use rfb::{MemoryFrame, Security, ServerOptions};

    fn server(security: Security) -> std::net::SocketAddr {
        let frame = Arc::new(MemoryFrame::new(64, 48));
        let (addr, _) = rfb::serve(
            "127.0.0.1:0".parse().unwrap(),
            frame,
            ServerOptions::new("test", security),
        )
        .unwrap();
        addr
    }

    async fn server_init(stream: &mut tokio::net::TcpStream) -> (u16, u16) {
        stream.write_all(&[1]).await.unwrap();
        let w = stream.read_u16().await.unwrap();
        let h = stream.read_u16().await.unwrap();
        (w, h)
    }

    #[tokio::test]
    async fn the_broker_authenticates_to_a_real_rfb_server() {
        let addr = server(Security::Password(b"secret-password".to_vec()));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        launcher(&mut stream, Some(b"secret-password"))
            .await
            .unwrap();
        assert_eq!(server_init(&mut stream).await, (64, 48));

        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let err = launcher(&mut stream, Some(b"wrong")).await.unwrap_err();
        assert!(matches!(err, HandshakeError::AuthFailed(_)), "{err}");

        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let err = launcher(&mut stream, None).await.unwrap_err();
        assert!(matches!(err, HandshakeError::NoPassword), "{err}");
    }

    #[tokio::test]
    async fn a_server_without_security_needs_no_password() {
        let addr = server(Security::None);
        for password in [None, Some(&b"unused"[..])] {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            launcher(&mut stream, password).await.unwrap();
            assert_eq!(server_init(&mut stream).await, (64, 48));
        }
    }

    #[test]
    fn browsers_must_speak_3_8() {
        assert!(browser_version(b"RFB 003.008\n").is_ok());
        assert!(browser_version(b"RFB 003.003\n").is_err());
        assert!(browser_version(b"HTTP/1.1 200").is_err());
    }
}
