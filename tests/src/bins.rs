//! The workspace's binaries, for tests that run them as processes: built on first use with
//! the same profile as the running test (a no-op when fresh), then found in the target folder.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);

/// The path of binary `name` of package `package`, built if needed. Panics, with cargo's
/// words, when it cannot be built.
pub fn binary(package: &str, name: &str) -> PathBuf {
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get_or_insert_with(HashMap::new).get(name) {
        return path.clone();
    }
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps")
        .to_owned();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", package, "--bin", name]);
    if release {
        cmd.arg("--release");
    }
    let output = cmd.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo build -p {package} --bin {name} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing after the build",
        path.display()
    );
    built
        .get_or_insert_with(HashMap::new)
        .insert(name.to_owned(), path.clone());
    path
}
