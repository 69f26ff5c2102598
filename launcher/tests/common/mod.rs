//! What the launcher's integration tests share.

use std::path::PathBuf;

/// The built test guest `file` (e.g. `hello.elf`), or `None` when the guests were not built or
/// `/dev/kvm` cannot be opened: the test skips, saying why, or fails where KVM is required
/// (`testkit::skip`).
pub fn guest_file(file: &str) -> Option<PathBuf> {
    let dir = env!("VERDANT_TEST_GUESTS");
    if dir.is_empty() {
        testkit::skip(
            testkit::KVM,
            "the test guests were not built (no gcc/ld at build time)",
        );
        return None;
    }
    if let Err(why) = testkit::kvm_usable() {
        testkit::skip(testkit::KVM, why);
        return None;
    }
    Some(PathBuf::from(dir).join(file))
}

/// The ELF test guest `name`.
#[allow(dead_code)] // not every test binary uses every helper
pub fn guest(name: &str) -> Option<PathBuf> {
    guest_file(&format!("{name}.elf"))
}

/// Reads `child`'s stderr until a line contains `needle`; keeps draining it afterwards, so the
/// child never blocks on a full pipe. Panics after `limit`.
#[allow(dead_code)] // not every test binary uses every helper
pub fn wait_for_line(
    child: &mut std::process::Child,
    needle: &str,
    limit: std::time::Duration,
) -> String {
    use std::io::BufRead;
    let stderr = std::io::BufReader::new(child.stderr.take().expect("stderr is piped"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => panic!("no line with {needle:?} on stderr within {limit:?}"),
        }
    }
}
