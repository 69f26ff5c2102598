//! Checks of the code's shape, read from the sources: which module of a crate imports which
//! (to find import circles), and how long files are.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The module a source file under a crate's `src/` is: `crate` for `lib.rs` and `main.rs`,
/// `a` for `a.rs` and `a/mod.rs`, `a::b` for `a/b.rs`.
pub fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" {
            parts.push(stem.to_owned());
        }
    }
    if parts.is_empty() || parts == ["lib"] || parts == ["main"] {
        "crate".into()
    } else {
        parts.join("::")
    }
}

/// The code of a file as far as imports go: without comments and without the test module
/// that closes it (`#[cfg(test)] mod tests`), whose `super::*` is the file itself.
fn code_of(source: &str) -> String {
    let source = match source.find("#[cfg(test)]\nmod tests") {
        Some(at) => &source[..at],
        None => source,
    };
    source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path named after `prefix` (`crate::`, `super::` or `child::`) in `code`, as lists of
/// segments; a `{a, b::c}` group gives one path for each entry.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| ident(c) || c == ':') {
            continue; // part of a longer path or name
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for entry in group[..end].split(',') {
                let path: Vec<String> = entry
                    .trim()
                    .split("::")
                    .map(|s| s.trim().to_owned())
                    .take_while(|s| !s.is_empty() && s.chars().all(ident))
                    .collect();
                if !path.is_empty() {
                    found.push(path);
                }
            }
            continue;
        }
        let mut path = Vec::new();
        let mut tail = rest;
        loop {
            let len = tail.find(|c: char| !ident(c)).unwrap_or(tail.len());
            if len == 0 {
                break;
            }
            path.push(tail[..len].to_owned());
            match tail[len..].strip_prefix("::") {
                Some(next) => tail = next,
                None => break,
            }
        }
        found.push(path);
    }
    found
}

/// The modules each module imports (`crate::`, `super::` and child paths, in code and `use`
/// lines alike), from `files`: (module, source).
pub fn imports(files: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    // The longest module named by `base` followed by a prefix of `path`.
    let resolve = |base: &str, path: &[String]| -> String {
        for n in (1..=path.len()).rev() {
            let joined = path[..n].join("::");
            let candidate = if base == "crate" {
                joined
            } else {
                format!("{base}::{joined}")
            };
            if modules.contains(&candidate) {
                return candidate;
            }
        }
        base.to_owned()
    };
    let parent = |module: &str| match module.rsplit_once("::") {
        Some((p, _)) => p.to_owned(),
        None => "crate".to_owned(),
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, source) in files {
        let code = code_of(source);
        let mut targets = BTreeSet::new();
        for path in paths_after(&code, "crate::") {
            targets.insert(resolve("crate", &path));
        }
        for mut path in paths_after(&code, "super::") {
            let mut base = parent(module);
            while path.first().is_some_and(|s| s == "super") {
                path.remove(0);
                base = parent(&base);
            }
            targets.insert(resolve(&base, &path));
        }
        // Children it names directly (`build::Invalid` in `desktop/mod.rs`).
        let children = modules.iter().filter_map(|m| {
            let prefix = if module == "crate" {
                String::new()
            } else {
                format!("{module}::")
            };
            let child = m.strip_prefix(&prefix)?;
            (!child.contains("::") && m != module).then_some((m, child))
        });
        for (full, child) in children {
            if !paths_after(&code, &format!("{child}::")).is_empty() {
                targets.insert(full.clone());
            }
        }
        targets.remove(module);
        graph.insert(module.clone(), targets);
    }
    graph
}

/// An import circle of `graph`, as the modules around it (the first one repeated at the end),
/// if there is one.
pub fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut circle = path[at..].to_vec();
            circle.push(module.to_owned());
            return Some(circle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(m, graph, &mut Vec::new(), &mut done))
}

/// Every `.rs` file under `dir`, with its path relative to `dir`.
pub fn rust_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(folder) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                let relative = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
                files.push((relative, text));
            }
        }
    }
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(module: &str, source: &str) -> (String, String) {
        (module.to_owned(), source.to_owned())
    }

    #[test]
    fn modules_are_named_after_their_files() {
        assert_eq!(module_of(Path::new("lib.rs")), "crate");
        assert_eq!(module_of(Path::new("context.rs")), "context");
        assert_eq!(module_of(Path::new("desktop/mod.rs")), "desktop");
        assert_eq!(module_of(Path::new("desktop/apply.rs")), "desktop::apply");
    }

    #[test]
    fn imports_are_found_in_use_lines_groups_and_code() {
        let files = [
            file("crate", "pub mod a;\npub use a::A;\nfn f() { b::g() }"),
            file("a", "use crate::{b::B, c};\n"),
            file("b", "pub fn g() { crate::c::h(); }\n// crate::a::never\n"),
            file("c", "#[cfg(test)]\nmod tests { use crate::a::X; }"),
            file("c::d", "use super::super::b::B;\nuse super::E;"),
        ];
        let graph = imports(&files);
        let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
        assert_eq!(graph["crate"], set(&["a", "b"]));
        assert_eq!(graph["a"], set(&["b", "c"]));
        assert_eq!(graph["b"], set(&["c"]), "comments do not count");
        assert_eq!(graph["c"], set(&[]), "nor the test module");
        assert_eq!(graph["c::d"], set(&["b", "c"]));
        assert_eq!(circle(&graph), None);
    }

    #[test]
    fn a_circle_is_found_and_named() {
        let files = [
            file("controller", "use crate::desktop::apply::FailureRecord;"),
            file("desktop", "pub mod apply;\nfn r() { apply::apply() }"),
            file("desktop::apply", "use crate::controller::Context;"),
        ];
        let found = circle(&imports(&files)).expect("a circle");
        assert_eq!(found.first(), found.last());
        assert!(found.contains(&"controller".to_owned()), "{found:?}");
        assert!(found.contains(&"desktop::apply".to_owned()), "{found:?}");
    }
}
