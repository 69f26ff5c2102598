//! The workspace's binaries, for tests and benchmarks that run them as processes: built on
//! first use with the same profile as the running test (a no-op when fresh), then found in
//! the target folder.
//!
//! All of the workspace's binaries are built at once, with `--workspace`: Cargo turns on a
//! dependency's features by the packages a command selects, so `-p broker` alone resolves
//! hyper, ring and the kube stack differently from a `--workspace` test or benchmark build
//! and compiles them all again (minutes in release on two cores). With `--workspace`, the
//! build reuses what `cargo test --workspace` or `cargo bench --workspace` compiled.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// Whether this process has built the binaries yet.
static BUILT: Mutex<bool> = Mutex::new(false);

/// The path of the workspace's binary `name` (`verdant-broker`, say), built if needed.
/// Panics, with cargo's words, when it cannot be built or is not one of the workspace's.
pub fn binary(name: &str) -> PathBuf {
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps")
        .to_owned();
    if !*built {
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--locked", "--workspace", "--bins"]);
        if release {
            cmd.arg("--release");
        }
        let output = cmd.output().expect("cargo runs");
        assert!(
            output.status.success(),
            "cargo build --workspace --bins failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        *built = true;
    }
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing after `cargo build --workspace --bins`: not one of the workspace's binaries",
        path.display()
    );
    path
}
