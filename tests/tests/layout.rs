//! The shape of the code, as #11 set it and CI keeps it: the operator links no VMM code, its
//! modules import one way, and no file under a `src`, `tests` or `benches` folder grows past
//! 600 lines.

use std::path::{Path, PathBuf};
use std::process::Command;

use tests::layout::{circle, imports, module_of, rust_files};

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// The normal (not dev or build) dependencies of `package`, from `cargo tree`.
fn dependencies(package: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "-p", package])
        .current_dir(root())
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_operator_and_the_assignment_crate_link_no_vmm_code() {
    let vmm = [
        "kvm-ioctls",
        "kvm-bindings",
        "vm-memory",
        "linux-loader",
        "flate2",
        "launcher",
        "rfb",
    ];
    for (package, also_not) in [
        ("operator", &[][..]),
        // The broker will link the assignment crate: it must bring no controller either.
        ("assignment", &["operator"][..]),
        ("launcher-api", &["kube", "operator"][..]),
    ] {
        let deps = dependencies(package);
        assert!(
            deps.iter().any(|d| d == package),
            "cargo tree -p {package} lists {deps:?}"
        );
        for crate_ in vmm.iter().chain(also_not) {
            assert!(
                !deps.iter().any(|d| d == crate_),
                "{package} links {crate_}: {deps:?}"
            );
        }
    }
}

#[test]
fn no_module_of_the_operator_imports_one_that_imports_it_back() {
    let src = root().join("operator/src");
    let files: Vec<(String, String)> = rust_files(&src)
        .into_iter()
        .filter(|(path, _)| path != Path::new("main.rs"))
        .map(|(path, text)| (module_of(&path), text))
        .collect();
    assert!(files.len() > 10, "read {} modules", files.len());
    let graph = imports(&files);
    let edges: usize = graph.values().map(|targets| targets.len()).sum();
    println!(
        "operator: {} modules, {edges} imports between them",
        graph.len()
    );
    if let Some(circle) = circle(&graph) {
        panic!("an import circle: {}", circle.join(" -> "));
    }
    // The shared context imports nothing but the leaves it holds.
    let context = &graph["context"];
    assert!(
        context.iter().all(|m| m == "metrics" || m == "options"),
        "context.rs imports {context:?}"
    );
}

#[test]
fn no_file_under_a_src_tests_or_benches_folder_is_longer_than_600_lines() {
    let mut long = Vec::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(root()).unwrap().flatten() {
        for folder in ["src", "tests", "benches"] {
            let dir = entry.path().join(folder);
            if !dir.is_dir() {
                continue;
            }
            for (path, text) in rust_files(&dir) {
                checked += 1;
                let lines = text.lines().count();
                if lines > 600 {
                    long.push(format!("{}: {lines}", dir.join(path).display()));
                }
            }
        }
    }
    assert!(checked > 150, "read only {checked} files");
    assert!(long.is_empty(), "past 600 lines: {long:?}");
}
