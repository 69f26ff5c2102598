//! What the launcher's integration tests share.

use std::path::PathBuf;

/// The built test guest `file` (e.g. `hello.elf`), or `None`, after printing why the test
/// skips, when the guests were not built or `/dev/kvm` cannot be opened.
pub fn guest_file(file: &str) -> Option<PathBuf> {
    let dir = env!("VERDANT_TEST_GUESTS");
    if dir.is_empty() {
        eprintln!("SKIP: the test guests were not built (no gcc/ld at build time)");
        return None;
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        eprintln!("SKIP: /dev/kvm is not usable here: {e}");
        return None;
    }
    Some(PathBuf::from(dir).join(file))
}

/// The ELF test guest `name`.
#[allow(dead_code)] // not every test binary uses every helper
pub fn guest(name: &str) -> Option<PathBuf> {
    guest_file(&format!("{name}.elf"))
}
