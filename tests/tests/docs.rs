//! The README and `docs/` against the code, where a fact is mechanical: the README stays short,
//! every relative link and anchor leads somewhere, every repository path named in backticks
//! exists, the commands the README gives run (`--help` of each `verdant-dev` subcommand, the
//! packages and test targets of each `cargo test`, the files, pool, category and namespace the
//! `kubectl` lines name), every test binary is in the table of what tests need, and the
//! architecture picture is what Graphviz makes of its source.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use tests::chart::root;

/// The README a newcomer reads in five minutes.
const README_LINES: usize = 150;

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// README.md and every Markdown file in docs/, as paths relative to the root.
fn documents() -> Vec<String> {
    let mut docs = vec!["README.md".to_string()];
    let mut more: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    more.sort();
    assert!(more.len() >= 5, "docs/ holds only {more:?}");
    docs.extend(more);
    docs
}

/// The targets of Markdown links and images, `[text](target)`.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            found.push(rest[..end].to_string());
        }
    }
    found
}

/// GitHub's anchor for a heading: lower case, spaces to hyphens, other punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut found = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            found.insert(slug(line.trim_start_matches('#')));
        }
    }
    found
}

/// The lines of the document's fenced `sh` blocks.
fn shell_lines(text: &str) -> Vec<String> {
    let mut in_sh = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_sh = line.trim() == "```sh";
        } else if in_sh {
            let command = line.split(" #").next().unwrap_or("").trim();
            if !command.is_empty() {
                lines.push(command.to_string());
            }
        }
    }
    lines
}

/// Where a path named in the docs lives: itself, or for `NAME.rs` a test target's
/// `NAME/main.rs`.
fn exists(path: &Path) -> bool {
    path.exists()
        || path.extension().is_some_and(|e| e == "rs")
            && path.with_extension("").join("main.rs").exists()
}

#[test]
fn the_readme_is_short_enough_to_read_in_five_minutes() {
    let lines = read("README.md").lines().count();
    assert!(
        lines <= README_LINES,
        "README.md has {lines} lines, over {README_LINES}: move reference to docs/"
    );
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_leads_somewhere() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = read(&doc);
        let folder = Path::new(&doc).parent().unwrap_or(Path::new(""));
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                PathBuf::from(&doc)
            } else {
                folder.join(path)
            };
            if !root().join(&target).exists() {
                broken.push(format!("{doc}: {link} (no {})", target.display()));
                continue;
            }
            if !anchor.is_empty() {
                let target_text = std::fs::read_to_string(root().join(&target)).unwrap();
                if !anchors(&target_text).contains(anchor) {
                    broken.push(format!("{doc}: {link} (no heading #{anchor})"));
                }
            }
        }
    }
    assert!(checked >= 15, "only {checked} links: is the parser right?");
    assert!(broken.is_empty(), "links that lead nowhere: {broken:#?}");
}

#[test]
fn every_repository_path_the_docs_name_exists() {
    let tops = [
        "assignment/",
        "broker/",
        "charts/",
        "crds/",
        "deploy/",
        "docs/",
        "images/",
        "launcher/",
        "launcher-api/",
        "operator/",
        "rfb/",
        "testkit/",
        "tests/",
        ".ci/",
    ];
    let mut missing = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = read(&doc);
        for (i, quoted) in text.split('`').enumerate() {
            // Odd pieces are inside backticks; a path has no spaces, globs, braces or fields.
            let name = quoted.trim_end_matches(['.', ',', ':']);
            if i % 2 == 0
                || !tops.iter().any(|t| name.starts_with(t))
                || name.contains([' ', '*', '{', '<', '$', '='])
            {
                continue;
            }
            checked += 1;
            if !exists(&root().join(name)) {
                missing.push(format!("{doc}: `{name}`"));
            }
        }
    }
    assert!(checked >= 50, "only {checked} paths: is the parser right?");
    assert!(
        missing.is_empty(),
        "paths the docs name that are not here: {missing:#?}"
    );
}

/// Each workspace package's name and folder.
fn packages() -> Vec<(String, PathBuf)> {
    let manifest = read("Cargo.toml");
    let members = manifest
        .split("members")
        .nth(1)
        .and_then(|m| m.split(']').next())
        .expect("the workspace lists its members");
    members
        .split('"')
        .skip(1)
        .step_by(2)
        .map(|folder| {
            let cargo = read(&format!("{folder}/Cargo.toml"));
            let name = cargo
                .lines()
                .find_map(|l| l.strip_prefix("name = \"")?.strip_suffix('"'))
                .unwrap_or_else(|| panic!("{folder}/Cargo.toml names no package"))
                .to_string();
            (name, root().join(folder))
        })
        .collect()
}

/// The integration-test targets of the package in `folder`: `tests/NAME.rs` and
/// `tests/NAME/main.rs`.
fn test_targets(folder: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(folder.join("tests")) else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let name = path.file_stem()?.to_str()?.to_string();
            let is_target = if path.is_dir() {
                path.join("main.rs").exists()
            } else {
                path.extension().is_some_and(|x| x == "rs")
            };
            is_target.then_some(name)
        })
        .collect()
}

#[test]
fn the_cargo_commands_in_the_docs_name_packages_and_test_targets_that_exist() {
    let packages = packages();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for doc in ["README.md", "docs/development.md", "docs/benchmarks.md"] {
        for (i, quoted) in read(doc).split('`').enumerate() {
            if i % 2 == 0 || !quoted.starts_with("cargo ") {
                continue;
            }
            let words: Vec<&str> = quoted.split_whitespace().collect();
            let after = |flag: &str| {
                words
                    .iter()
                    .position(|w| *w == flag)
                    .and_then(|i| words.get(i + 1).copied())
            };
            let Some(package) = after("-p") else {
                continue;
            };
            checked += 1;
            let Some((_, folder)) = packages.iter().find(|(name, _)| name == package) else {
                wrong.push(format!("{doc}: `{quoted}`: no package {package}"));
                continue;
            };
            if let Some(test) = after("--test")
                && !test_targets(folder).contains(test)
            {
                wrong.push(format!("{doc}: `{quoted}`: {package} has no test {test}"));
            }
            if let Some(bench) = after("--bench")
                && !exists(&folder.join("benches").join(format!("{bench}.rs")))
            {
                wrong.push(format!("{doc}: `{quoted}`: {package} has no bench {bench}"));
            }
        }
    }
    assert!(
        checked >= 10,
        "only {checked} cargo commands: is the parser right?"
    );
    assert!(
        wrong.is_empty(),
        "cargo commands that cannot run: {wrong:#?}"
    );
}

#[test]
fn every_test_binary_is_in_the_table_of_what_tests_need() {
    let development = read("docs/development.md");
    let table = development
        .split("## Which tests need what")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/development.md has the section 'Which tests need what'");
    let mut absent = Vec::new();
    for (package, folder) in packages() {
        let relative = folder.strip_prefix(root()).unwrap().display().to_string();
        if table.contains(&format!("`{relative}/tests/*`")) {
            continue;
        }
        for test in test_targets(&folder) {
            let named = [".rs", ",", "}"]
                .iter()
                .any(|end| table.contains(&format!("{test}{end}")));
            if !named {
                absent.push(format!("{package}: {test}"));
            }
        }
    }
    assert!(
        absent.is_empty(),
        "test binaries docs/development.md does not say the needs of: {absent:?}"
    );
}

#[test]
fn the_readme_commands_run() {
    let readme = read("README.md");
    let lines = shell_lines(&readme);
    assert!(lines.len() >= 6, "the README's sh blocks: {lines:?}");
    let verdant_dev = tests::bins::binary("verdant-dev");
    let mut checked = 0;
    for line in &lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [
                "cargo",
                "run",
                "-p",
                "tests",
                "--bin",
                "verdant-dev",
                "--",
                sub,
            ] => {
                let out = Command::new(&verdant_dev)
                    .args([sub, "--help"])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "`{line}`: verdant-dev has no subcommand {sub}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            ["export", kubeconfig] => {
                let path = kubeconfig.trim_start_matches("KUBECONFIG=");
                let help = Command::new(&verdant_dev).arg("--help").output().unwrap();
                let help = String::from_utf8_lossy(&help.stdout).replace('\n', " ");
                let dir = path.trim_end_matches("/controlplane/kubeconfig");
                assert!(
                    help.contains(dir),
                    "`{line}`: verdant-dev's state folder is not {dir}: {help}"
                );
            }
            ["kubectl", "get", "verdant"] => {
                for crd in ["crds/desktop.yaml", "crds/desktoppool.yaml"] {
                    let text = read(crd);
                    let categories = text.split("categories:").nth(1).unwrap_or("");
                    assert!(
                        categories.lines().take(3).any(|l| l.trim() == "- verdant"),
                        "`{line}`: {crd} is not in category verdant"
                    );
                }
            }
            ["kubectl", "get", "desktops", "-n", namespace, "-w"] => {
                assert_eq!(
                    *namespace,
                    tests::product::DEMO_NAMESPACE,
                    "`{line}`: the demo pool lives elsewhere"
                );
            }
            ["kubectl", "apply", "-f", path] => {
                assert!(root().join(path).is_dir(), "`{line}`: no {path}");
            }
            ["kubectl", "scale", target, replicas] => {
                let pool = target.strip_prefix("desktoppool/").expect("a pool");
                assert!(replicas.starts_with("--replicas="), "`{line}`");
                let named = std::fs::read_dir(root().join("crds/examples"))
                    .unwrap()
                    .flatten()
                    .map(|e| std::fs::read_to_string(e.path()).unwrap())
                    .any(|y| {
                        y.contains("kind: DesktopPool") && y.contains(&format!("name: {pool}\n"))
                    });
                assert!(named, "`{line}`: no example pool {pool} in crds/examples");
            }
            _ => panic!("`{line}`: the README shows a command this test does not know; teach it"),
        }
        checked += 1;
    }
    assert_eq!(checked, lines.len());
}

#[test]
fn the_architecture_picture_is_what_graphviz_makes_of_its_source() {
    let out = match Command::new("dot")
        .args(["-Tsvg", "docs/architecture.dot"])
        .current_dir(root())
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            testkit::skip(
                testkit::TOOLS,
                format!("Graphviz's dot cannot run ({e}): Debian package graphviz"),
            );
            return;
        }
    };
    assert!(
        out.status.success(),
        "dot refused docs/architecture.dot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = read("docs/architecture.svg");
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "docs/architecture.svg is not what docs/architecture.dot draws: run \
         `dot -Tsvg docs/architecture.dot -o docs/architecture.svg`"
    );
}
