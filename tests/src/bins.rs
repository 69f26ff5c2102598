//! The workspace's binaries, for tests and benchmarks that run them as processes: built on
//! first use with the same profile as the running test (a no-op when fresh), then found in
//! the target folder.
//!
//! All of the workspace's binaries are built at once, with `--workspace`: Cargo turns on a
//! dependency's features by the packages a command selects, so `-p broker` alone resolves
//! hyper, ring and the kube stack differently from a `--workspace` test or benchmark build
//! and compiles them all again (minutes in release on two cores). With `--workspace`, the
//! build reuses what `cargo test --workspace` or `cargo bench --workspace` compiled.
//!
//! The build also runs without the variables Cargo sets for the running test
//! (`CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`, ...): build scripts such as ring's declare
//! `rerun-if-env-changed` on those names, and Cargo compares them with its own environment,
//! so inheriting them would make it run those scripts, and compile all that depends on them,
//! again.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// Whether this process has built the binaries yet.
static BUILT: Mutex<bool> = Mutex::new(false);

/// The path of the workspace's binary `name` (`verdant-broker`, say), built if needed.
/// Panics, with cargo's words, when it cannot be built or is not one of the workspace's.
pub fn binary(name: &str) -> PathBuf {
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    // target/<profile>/deps/<test binary>, or target/<profile>/<binary> (verdant-dev).
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe.parent().expect("the binary lives in a folder");
    let profile_dir = if dir.ends_with("deps") {
        dir.parent().expect("deps lives in target/<profile>")
    } else {
        dir
    }
    .to_owned();
    if !*built {
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--locked", "--workspace", "--bins"]);
        without_test_environment(&mut cmd);
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

/// Removes from `cmd`'s environment the variables Cargo set for the running test, so that a
/// Cargo build `cmd` runs (itself or through a script) reuses what a shell's build compiled.
pub fn without_test_environment(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_for_the_running_target) {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Whether Cargo sets variable `name` for the target it runs (rather than the user setting it
/// to configure Cargo, such as `CARGO_HOME` or `CARGO_TARGET_DIR`).
fn set_for_the_running_target(name: &str) -> bool {
    const CONFIGURATION: [&str; 9] = [
        "CARGO_HOME",
        "CARGO_TARGET_DIR",
        "CARGO_INCREMENTAL",
        "CARGO_BUILD_",
        "CARGO_PROFILE_",
        "CARGO_NET_",
        "CARGO_REGISTRIES_",
        "CARGO_HTTP_",
        "CARGO_TERM_",
    ];
    name == "OUT_DIR"
        || (name.starts_with("CARGO_") && !CONFIGURATION.iter().any(|c| name.starts_with(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_cargo_sets_for_a_test_is_dropped() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_BIN_EXE_verdant-dev",
            "OUT_DIR",
        ] {
            assert!(set_for_the_running_target(name), "{name}");
        }
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_INCREMENTAL",
            "CARGO_PROFILE_DEV_DEBUG",
            "PATH",
        ] {
            assert!(!set_for_the_running_target(name), "{name}");
        }
    }
}
