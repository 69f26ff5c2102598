//! The demo desktop guest, built with the launcher and embedded in it: a tiny guest that draws a
//! desktop-like screen, for the README, `verdant-dev up`, tests and benchmarks.

use std::path::PathBuf;

use launcher_api::{DisplayConfig, LauncherConfig};

/// The demo guest's ELF image (empty when the launcher was built without gcc and ld).
pub const DEMO_GUEST: &[u8] = include_bytes!(env!("VERDANT_DEMO_GUEST"));

/// The display the demo gets unless told otherwise.
pub const DEMO_DISPLAY: DisplayConfig = DisplayConfig {
    width: 1280,
    height: 800,
};

/// Whether `path` is a temporary copy made by [`demo_config`].
pub fn is_demo_file(path: &std::path::Path) -> bool {
    path.parent() == Some(std::env::temp_dir().as_path())
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("verdant-demo-"))
}

/// Writes the demo guest to a file of its own (the loader reads kernels from files) and returns
/// a config that boots it: 64 MiB, one vCPU, a 1280x800 display.
pub fn demo_config() -> Result<LauncherConfig, String> {
    if DEMO_GUEST.is_empty() {
        return Err(
            "this launcher was built without its demo guest (no gcc/ld at build time)".into(),
        );
    }
    let path: PathBuf =
        std::env::temp_dir().join(format!("verdant-demo-{}.elf", std::process::id()));
    std::fs::write(&path, DEMO_GUEST)
        .map_err(|e| format!("cannot write the demo guest to {}: {e}", path.display()))?;
    Ok(LauncherConfig {
        memory: "64Mi".into(),
        display: Some(DEMO_DISPLAY),
        ..LauncherConfig::new(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_guest_is_embedded_when_the_toolchain_exists() {
        if env!("VERDANT_TEST_GUESTS").is_empty() {
            testkit::skip(testkit::KVM, "built without gcc/ld, so no demo guest");
            return;
        }
        assert_eq!(&DEMO_GUEST[..4], b"\x7fELF");
        let config = demo_config().unwrap();
        assert_eq!(std::fs::read(&config.kernel).unwrap(), DEMO_GUEST);
        assert!(is_demo_file(&config.kernel));
        assert!(!is_demo_file(std::path::Path::new("/boot/vmlinuz")));
        let _ = std::fs::remove_file(&config.kernel);
    }
}
