//! What the end-to-end tests on a real node share (their environment is
//! `Env::builder(ns).node(NodeKind::Real)`, see [`crate::env`]): how long a node may take,
//! whether the demo guest runs here, and the third-party viewer the tests look with.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// How long a real node may take to start a desktop's pod and boot its guest.
pub const LIMIT: Duration = Duration::from_secs(180);

/// Why the demo guest cannot run here, if it cannot: `/dev/kvm` is not usable, or the
/// launcher was built without it.
pub fn demo_guest_missing() -> Option<String> {
    if let Err(why) = testkit::kvm_usable() {
        return Some(why);
    }
    launcher::demo::DEMO_GUEST
        .is_empty()
        .then(|| "the launcher was built without its demo guest (no gcc/ld)".to_owned())
}

/// Whether the demo guest can run here; when not, says so loudly (a failure where KVM is
/// required, as in CI).
pub fn demo_guest_runs() -> bool {
    match demo_guest_missing() {
        None => true,
        Some(why) => {
            testkit::skip(testkit::KVM, why);
            false
        }
    }
}

/// A capture of a VNC desktop by vncsnapshot (a viewer we did not write), decoded: RGB bytes,
/// width and height. `Ok(None)` when vncsnapshot is not installed.
pub fn vncsnapshot(
    addr: std::net::SocketAddr,
    password: &[u8],
    dir: &Path,
) -> Result<Option<(Vec<u8>, u16, u16)>, String> {
    let passwd = dir.join("vnc.passwd");
    std::fs::write(&passwd, rfb::auth::obfuscated_password_file(password))
        .map_err(|e| e.to_string())?;
    let out = dir.join("capture.jpg");
    let result = Command::new("vncsnapshot")
        .args(["-quiet", "-quality", "100", "-nojpeg", "-encodings", "raw"])
        .arg("-passwd")
        .arg(&passwd)
        .arg(format!("{}::{}", addr.ip(), addr.port()))
        .arg(&out)
        .output();
    let result = match result {
        Ok(result) => result,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if !result.status.success() {
        return Err(format!("vncsnapshot failed: {}", text(&result)));
    }
    let file = std::fs::File::open(&out).map_err(|e| e.to_string())?;
    let mut decoder = jpeg_decoder::Decoder::new(std::io::BufReader::new(file));
    let pixels = decoder.decode().map_err(|e| e.to_string())?;
    let info = decoder.info().ok_or("no JPEG info")?;
    Ok(Some((pixels, info.width, info.height)))
}

/// Whether RGB `actual` is within JPEG's error of `expected` (0xRRGGBB).
pub fn close(actual: &[u8], expected: u32) -> bool {
    let want = expected.to_be_bytes();
    actual
        .iter()
        .zip(&want[1..])
        .all(|(&a, &w)| a.abs_diff(w) <= 12)
}

/// A command's stdout and stderr, for messages.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
