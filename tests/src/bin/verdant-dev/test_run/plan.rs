//! What a run in lanes runs and in which order, as pure functions of cargo's arguments and
//! output: which arguments are cargo's and which libtest's, which test binaries the build made
//! (from `--message-format=json` lines), and the order that starts the longest first, by each
//! binary's wall time in the last run (`target/verdant-dev/test-times.tsv`).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The package whose integration tests start the control plane, a node or a browser: the
/// slow ones, so they go first when no earlier run timed them.
const SLOW_PACKAGE: &str = "tests";

/// Cargo's flags that pick targets; `--doc` cannot be mixed with any of them.
const TARGET_FLAGS: [&str; 11] = [
    "--lib",
    "--bin",
    "--bins",
    "--test",
    "--tests",
    "--bench",
    "--benches",
    "--example",
    "--examples",
    "--all-targets",
    "--doc",
];

/// One test binary the build made, as cargo's compiler-artifact message describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Binary {
    /// The executable (`target/debug/deps/desktop-0123abcd`).
    pub executable: PathBuf,
    /// The target's name (`desktop`).
    pub name: String,
    /// The target's kinds (`test`, `lib`, `bin`, ...).
    pub kind: Vec<String>,
    /// The target's root source file.
    pub src_path: PathBuf,
    /// The package's Cargo.toml.
    pub manifest_path: PathBuf,
    /// The package's name, as far as its id says.
    pub package: String,
    /// Whether the target has doc tests (a library's).
    pub doctest: bool,
}

impl Binary {
    /// The name the times file knows it by: package and target, without hash or kind
    /// (`tests/desktop`).
    pub fn key(&self) -> String {
        format!("{}/{}", self.package, self.name)
    }

    /// The package's folder, where cargo runs the binary.
    pub fn package_dir(&self) -> &Path {
        self.manifest_path.parent().unwrap_or(Path::new("."))
    }

    /// What cargo's `Running` line says of it, with the source path relative to `root`
    /// (`tests/tests/desktop/main.rs`, or `unittests operator/src/lib.rs`).
    pub fn what(&self, root: &Path) -> String {
        let src = self.src_path.strip_prefix(root).unwrap_or(&self.src_path);
        let unit = self
            .kind
            .iter()
            .any(|k| !matches!(k.as_str(), "test" | "bench"));
        let prefix = if unit { "unittests " } else { "" };
        format!("{prefix}{}", src.display())
    }

    /// How the run names it, the way the tally does: `what [binary]`.
    pub fn label(&self, root: &Path) -> String {
        let file = self
            .executable
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("");
        let binary = file.rsplit_once('-').map_or(file, |(name, _)| name);
        format!("{} [{binary}]", self.what(root))
    }
}

/// `args` split at the first `--`: cargo's arguments, then libtest's.
pub fn split_args(args: &[String]) -> (&[String], &[String]) {
    match args.iter().position(|a| a == "--") {
        Some(at) => (&args[..at], &args[at + 1..]),
        None => (args, &[]),
    }
}

/// Whether cargo's arguments name packages (else the run takes the whole workspace).
pub fn names_packages(cargo_args: &[String]) -> bool {
    cargo_args
        .iter()
        .any(|a| a == "-p" || a.starts_with("--package"))
}

/// Whether cargo's arguments pick targets (`--lib`, `--test NAME`, `--doc`, ...).
pub fn selects_targets(cargo_args: &[String]) -> bool {
    cargo_args.iter().any(|a| {
        let flag = a.split_once('=').map_or(a.as_str(), |(flag, _)| flag);
        TARGET_FLAGS.contains(&flag)
    })
}

/// Whether the arguments ask for what only cargo's own run does: doc tests alone (`--doc`),
/// or a build without a run (`--no-run`).
pub fn wants_cargo_itself(cargo_args: &[String]) -> bool {
    cargo_args.iter().any(|a| a == "--doc" || a == "--no-run")
}

/// The test binary a line of `cargo test --no-run --message-format=json` announces, if it
/// announces one: a compiler artifact built for testing, with an executable.
pub fn parse_artifact(line: &str) -> Option<Binary> {
    let message: Value = serde_json::from_str(line).ok()?;
    if message["reason"] != "compiler-artifact" || message["profile"]["test"] != true {
        return None;
    }
    let target = &message["target"];
    let text = |value: &Value| value.as_str().map(str::to_string);
    Some(Binary {
        executable: text(&message["executable"])?.into(),
        name: text(&target["name"])?,
        kind: target["kind"].as_array()?.iter().filter_map(text).collect(),
        src_path: text(&target["src_path"])?.into(),
        manifest_path: text(&message["manifest_path"])?.into(),
        package: package_name(message["package_id"].as_str().unwrap_or("")),
        doctest: target["doctest"] == true,
    })
}

/// A package's name from its id: `path+file:///w/rfb#0.1.0` (the folder's name),
/// `path+file:///w/x#rfb@0.1.0`, or cargo's older `rfb 0.1.0 (path+file:///w/rfb)`.
fn package_name(id: &str) -> String {
    if let Some((url, fragment)) = id.rsplit_once('#') {
        match fragment.split_once('@') {
            Some((name, _)) => name,
            None => url.rsplit('/').next().unwrap_or(url),
        }
    } else {
        id.split_whitespace().next().unwrap_or(id)
    }
    .to_string()
}

/// The binaries in the order the lanes take them, longest first: those no earlier run timed
/// (the `tests` package's integration tests before the rest), then the others by their last
/// wall time, longest first.
pub fn order(mut binaries: Vec<Binary>, times: &BTreeMap<String, f64>) -> VecDeque<Binary> {
    let rank = |b: &Binary| match times.get(&b.key()) {
        None if b.package == SLOW_PACKAGE && b.kind.iter().any(|k| k == "test") => (0, 0.0),
        None => (1, 0.0),
        Some(seconds) => (2, -seconds),
    };
    binaries.sort_by(|a, b| {
        let (a, b) = (rank(a), rank(b));
        a.0.cmp(&b.0).then(a.1.total_cmp(&b.1))
    });
    binaries.into()
}

/// Whether a binary's output says it ran all its tests (libtest's `0 filtered out`), so that
/// its time is one for the next run's order: a filtered run's is not.
pub fn ran_every_test(output: &str) -> bool {
    let mut results = output
        .lines()
        .filter_map(|line| line.trim().strip_prefix("test result: "))
        .peekable();
    results.peek().is_some() && results.all(|result| result.contains(" 0 filtered out"))
}

/// The file that keeps each binary's wall time in the last run, under the target folder.
pub fn times_file(root: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), |dir| root.join(dir));
    target.join("verdant-dev").join("test-times.tsv")
}

/// The times file's entries (`seconds<TAB>key` lines); lines it cannot read are left out.
pub fn parse_times(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter_map(|line| {
            let (seconds, key) = line.split_once('\t')?;
            let seconds = seconds.trim().parse::<f64>().ok()?;
            (seconds.is_finite() && !key.is_empty()).then(|| (key.to_string(), seconds))
        })
        .collect()
}

/// The times file's text for `times`, longest first.
pub fn format_times(times: &BTreeMap<String, f64>) -> String {
    let mut entries: Vec<(&String, &f64)> = times.iter().collect();
    entries.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
    entries
        .into_iter()
        .map(|(key, seconds)| format!("{seconds:.1}\t{key}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    fn binary(package: &str, name: &str, kind: &str) -> Binary {
        Binary {
            executable: format!("/w/target/debug/deps/{name}-0123abcd").into(),
            name: name.into(),
            kind: vec![kind.into()],
            src_path: format!("/w/{package}/tests/{name}.rs").into(),
            manifest_path: format!("/w/{package}/Cargo.toml").into(),
            package: package.into(),
            doctest: kind == "lib",
        }
    }

    #[test]
    fn arguments_split_at_the_first_double_dash() {
        let args = strings(&["--locked", "-p", "rfb", "--", "zrle", "--", "x"]);
        let (cargo, libtest) = split_args(&args);
        assert_eq!(cargo, strings(&["--locked", "-p", "rfb"]));
        assert_eq!(libtest, strings(&["zrle", "--", "x"]));
        let args = strings(&["--locked"]);
        assert_eq!(split_args(&args), (&args[..], &[][..]));
        assert!(names_packages(&strings(&["--package=rfb"])));
        assert!(!names_packages(&strings(&["--locked"])));
    }

    #[test]
    fn target_flags_are_told_apart_from_other_flags() {
        for flags in [
            &["--lib"][..],
            &["-p", "tests", "--test", "docs"],
            &["--test=docs"],
            &["--all-targets"],
            &["--doc"],
            &["--benches"],
        ] {
            assert!(selects_targets(&strings(flags)), "{flags:?}");
        }
        for flags in [
            &["--locked", "-p", "tests"][..],
            &["--release"],
            &["--testing"],
        ] {
            assert!(!selects_targets(&strings(flags)), "{flags:?}");
        }
        assert!(wants_cargo_itself(&strings(&["--no-run"])));
        assert!(wants_cargo_itself(&strings(&["-p", "rfb", "--doc"])));
        assert!(!wants_cargo_itself(&strings(&["--lib"])));
    }

    #[test]
    fn only_test_artifacts_with_executables_are_binaries() {
        let test = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/rfb#0.1.0","manifest_path":"/w/rfb/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"view_only","src_path":"/w/rfb/tests/view_only.rs","edition":"2024","doc":false,"doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":"line-tables-only","debug_assertions":true,"overflow_checks":true,"test":true},"features":[],"filenames":["/w/target/debug/deps/view_only-467b"],"executable":"/w/target/debug/deps/view_only-467b","fresh":true}"#;
        assert_eq!(
            parse_artifact(test),
            Some(Binary {
                executable: "/w/target/debug/deps/view_only-467b".into(),
                name: "view_only".into(),
                kind: vec!["test".into()],
                src_path: "/w/rfb/tests/view_only.rs".into(),
                manifest_path: "/w/rfb/Cargo.toml".into(),
                package: "rfb".into(),
                doctest: false,
            })
        );
        // The same binary built for running, not testing (an example, or a bin for
        // CARGO_BIN_EXE_*), is no test binary; nor is a library, which has no executable.
        let not_for_tests = test.replace(r#""test":true}"#, r#""test":false}"#);
        assert_eq!(parse_artifact(&not_for_tests), None);
        let library = test.replace(
            r#""executable":"/w/target/debug/deps/view_only-467b""#,
            r#""executable":null"#,
        );
        assert_eq!(parse_artifact(&library), None);
        assert_eq!(
            parse_artifact(r#"{"reason":"build-finished","success":true}"#),
            None
        );
        assert_eq!(parse_artifact("not json"), None);
    }

    #[test]
    fn package_names_come_from_every_form_of_id() {
        assert_eq!(package_name("path+file:///w/rfb#0.1.0"), "rfb");
        assert_eq!(package_name("path+file:///w/vnc#rfb@0.1.0"), "rfb");
        assert_eq!(package_name("rfb 0.1.0 (path+file:///w/rfb)"), "rfb");
    }

    #[test]
    fn the_untimed_go_first_then_the_longest() {
        let binaries = vec![
            binary("rfb", "rfb", "lib"),
            binary("tests", "docs", "test"),
            binary("operator", "contract", "test"),
            binary("tests", "desktop", "test"),
            binary("tests", "pool", "test"),
            binary("tests", "tests", "lib"),
        ];
        let times = parse_times("3.0\trfb/rfb\n110.0\ttests/desktop\n40.5\ttests/docs\n");
        let keys: Vec<String> = order(binaries, &times).iter().map(Binary::key).collect();
        assert_eq!(
            keys,
            [
                "tests/pool",
                "operator/contract",
                "tests/tests",
                "tests/desktop",
                "tests/docs",
                "rfb/rfb",
            ]
        );
    }

    #[test]
    fn only_a_run_of_every_test_is_timed() {
        let result = |filtered: u32| {
            format!(
                "test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; {filtered} filtered out; finished in 4.67s\n"
            )
        };
        assert!(ran_every_test(&format!("running 2 tests\n{}", result(0))));
        assert!(!ran_every_test(&result(28)));
        assert!(!ran_every_test(&format!("{}{}", result(0), result(10))));
        // A binary that crashed, or only listed its tests, says nothing of its time.
        assert!(!ran_every_test(
            "running 2 tests\nerror: test failed, to rerun pass `--lib`"
        ));
        assert!(!ran_every_test("5 tests, 0 benchmarks"));
    }

    #[test]
    fn the_times_file_reads_back_what_was_written() {
        let times: BTreeMap<String, f64> = [("tests/desktop", 110.24), ("rfb/rfb", 0.5)]
            .into_iter()
            .map(|(k, s)| (k.to_string(), s))
            .collect();
        let text = format_times(&times);
        assert_eq!(text, "110.2\ttests/desktop\n0.5\trfb/rfb\n");
        let read = parse_times(&format!("{text}garbage\nNaN\tx\n1.0\t\n"));
        assert_eq!(read.len(), 2);
        assert!((read["tests/desktop"] - 110.2).abs() < 1e-9);
        assert!((read["rfb/rfb"] - 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_binary_is_named_as_cargo_names_it() {
        let root = Path::new("/w");
        assert_eq!(
            binary("tests", "docs", "test").label(root),
            "tests/tests/docs.rs [docs]"
        );
        let mut lib = binary("rfb", "rfb", "lib");
        lib.src_path = "/w/rfb/src/lib.rs".into();
        assert_eq!(lib.label(root), "unittests rfb/src/lib.rs [rfb]");
        assert_eq!(lib.package_dir(), Path::new("/w/rfb"));
        assert_eq!(lib.key(), "rfb/rfb");
    }
}
