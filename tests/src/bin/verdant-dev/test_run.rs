//! `verdant-dev test`: the README's test command, `cargo test --workspace` (with any cargo
//! arguments, and libtest's after `--`), run so that every test binary runs whatever fails,
//! ending with the slowest test binaries and a count of the tests that skipped a missing part
//! (with `VERDANT_ALLOW_SKIP=1`; by default a missing part fails instead).
//!
//! Most test binaries spend their time waiting on a control plane, timers or a VM, not on the
//! CPU, so the binaries run in lanes ([`lanes`]): `VERDANT_TEST_LANES` of them at once
//! (default 2), longest first by the last run's times, each binary's output printed whole when
//! it ends. The doc tests run first, through cargo. With one lane, or with `--doc` or
//! `--no-run`, it is cargo's own sequential run, `cargo test --no-fail-fast`.

mod lanes;
mod plan;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitStatus};

/// How many of the slowest test binaries the summary lists.
const SLOWEST: usize = 10;

/// The environment variable that says how many test binaries run at once.
const LANES_VAR: &str = "VERDANT_TEST_LANES";

/// Lanes when [`LANES_VAR`] is unset: two binaries, mostly waiting, keep two cores busy.
const DEFAULT_LANES: usize = 2;

/// What the run's output said, read as it went by.
#[derive(Debug, Default, PartialEq)]
pub struct Tally {
    /// The test binary running now, as cargo names it (`tests/docs.rs [docs]`).
    current: String,
    /// Each finished binary's seconds, as libtest printed them.
    pub times: Vec<(f64, String)>,
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Tally {
    /// Takes in one line of cargo's or libtest's output.
    pub fn line(&mut self, line: &str) {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Running ") {
            // `Running tests/docs.rs (target/debug/deps/docs-0123abcd)`
            let (what, path) = rest.split_once(" (").unwrap_or((rest, ""));
            let file = Path::new(path.trim_end_matches(')'))
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or("");
            let binary = file.rsplit_once('-').map_or(file, |(name, _)| name);
            self.current = format!("{what} [{binary}]");
        } else if let Some(crate_name) = line.strip_prefix("Doc-tests ") {
            self.current = format!("doc-tests [{crate_name}]");
        } else if let Some(result) = line.strip_prefix("test result: ") {
            let words: Vec<&str> = result.split_whitespace().collect();
            for pair in words.windows(2) {
                let n = pair[0].parse::<u64>().unwrap_or(0);
                match pair[1].trim_end_matches([';', ',']) {
                    "passed" => self.passed += n,
                    "failed" => self.failed += n,
                    "ignored" => self.ignored += n,
                    _ => {}
                }
            }
            if let Some(seconds) = result
                .rsplit_once("finished in ")
                .and_then(|(_, s)| s.trim_end_matches('s').parse::<f64>().ok())
            {
                self.times.push((seconds, self.current.clone()));
            }
        }
    }

    /// The slowest binaries, slowest first.
    pub fn slowest(&self) -> Vec<(f64, String)> {
        let mut times = self.times.clone();
        times.sort_by(|a, b| b.0.total_cmp(&a.0));
        times.truncate(SLOWEST);
        times
    }
}

/// The skips the log holds, by kind and reason, counted.
pub fn skips(log: &str) -> BTreeMap<(String, String), usize> {
    let mut counted = BTreeMap::new();
    for line in log.lines().filter(|l| !l.is_empty()) {
        let (kind, why) = line.split_once('\t').unwrap_or(("?", line));
        *counted
            .entry((kind.to_string(), why.to_string()))
            .or_insert(0) += 1;
    }
    counted
}

/// What a run found, for its closing summary.
#[derive(Debug, Default)]
struct Outcome {
    tally: Tally,
    /// Each binary a lane ran: its wall seconds, by its name in the tally.
    walls: BTreeMap<String, f64>,
    /// What failed in a run in lanes (binaries, the doc tests), by name.
    failed: Vec<String>,
    /// For a run in lanes: the lanes, the binaries' seconds summed, and the lanes' wall seconds.
    lanes: Option<(usize, f64, f64)>,
    /// Why the run failed, if it did.
    failure: Option<String>,
}

impl Outcome {
    /// Prints the closing summary: the slowest binaries, the lanes' gain, what failed, the
    /// totals and the skips.
    fn print(&self, skipped: &BTreeMap<(String, String), usize>) {
        self.print_slowest();
        if let Some((lanes, summed, wall)) = self.lanes {
            println!(
                "\nlanes: {lanes}; test binaries' time summed {summed:.1} s over {wall:.1} s wall"
            );
        }
        if !self.failed.is_empty() {
            println!("\n=== failed ({})", self.failed.len());
            for name in &self.failed {
                println!("  {name}");
            }
        }
        let total: usize = skipped.values().sum();
        println!(
            "\n=== tests: {} passed, {} failed, {} ignored; {total} skipped a missing part",
            self.tally.passed, self.tally.failed, self.tally.ignored
        );
        for ((kind, why), n) in skipped {
            println!("  {n} x SKIP ({kind}): {why}");
        }
        if total > 0 {
            println!("  `verdant-dev up` (as root) installs what they miss.");
        }
    }

    /// The slowest binaries, with each one's wall time in its lane where lanes ran it.
    fn print_slowest(&self) {
        if self.lanes.is_none() {
            println!("\n=== the slowest test binaries (seconds, as libtest timed them)");
            for (seconds, binary) in self.tally.slowest() {
                println!("{seconds:8.1}  {binary}");
            }
            return;
        }
        println!(
            "\n=== the slowest test binaries (seconds, as libtest timed them; wall seconds in their lane)"
        );
        for (seconds, binary) in self.tally.slowest() {
            let wall = self
                .walls
                .get(&binary)
                .map_or_else(|| "-".to_string(), |wall| format!("{wall:.1}"));
            println!("{seconds:8.1} {wall:>8}  {binary}");
        }
    }
}

/// The lanes [`LANES_VAR`]'s value asks for: a positive whole number, or [`DEFAULT_LANES`]
/// when unset or empty.
fn lanes_from(value: Option<&str>) -> Result<usize, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(DEFAULT_LANES),
        Some(value) => value.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
            format!(
                "{LANES_VAR}={value:?}: it takes a positive whole number, how many test \
                 binaries run at once (default {DEFAULT_LANES}; 1 is cargo test's own sequential run)"
            )
        }),
    }
}

/// The cargo running this process, else the one on `PATH`.
fn cargo_program() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// A cargo command run in `root`.
fn cargo_command(root: &Path) -> Command {
    let mut command = Command::new(cargo_program());
    // Run by `cargo run`, this process has the variables Cargo sets for its target; passed on,
    // they would make the tests' own builds (tests::bins) differ from this one and rebuild.
    ::tests::bins::without_test_environment(&mut command);
    command.current_dir(root);
    command
}

/// `--workspace`, unless the arguments name packages.
fn workspace_unless_packages(args: &[String]) -> Option<&'static str> {
    (!plan::names_packages(args)).then_some("--workspace")
}

/// Runs `command` (`what` names it in errors) with its stdout and stderr on one pipe, echoing
/// each line and taking it into `tally`, until it ends.
fn stream(mut command: Command, tally: &mut Tally, what: &str) -> Result<ExitStatus, String> {
    let (reader, writer) = std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
    command
        .stdout(
            writer
                .try_clone()
                .map_err(|e| format!("cannot share the pipe: {e}"))?,
        )
        .stderr(writer);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    // Our copies of the pipe's writing end go, so reading ends when cargo's output does.
    drop(command);
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(out, "{line}");
        tally.line(&line);
    }
    drop(out);
    child.wait().map_err(|e| format!("{what} did not end: {e}"))
}

/// Cargo's own sequential run: `cargo test --workspace --no-fail-fast` with `args` after it
/// (without `--workspace` when they name packages).
fn sequential(root: &Path, args: &[String], log: &Path) -> Result<Outcome, String> {
    let mut command = cargo_command(root);
    command
        .args(["test", "--no-fail-fast"])
        .args(workspace_unless_packages(args))
        .args(args)
        .env(testkit::SKIP_LOG, log);
    let mut outcome = Outcome::default();
    let status = stream(command, &mut outcome.tally, "cargo test")?;
    if !status.success() {
        outcome.failure = Some(format!(
            "cargo test failed ({status}): the failures are above"
        ));
    }
    Ok(outcome)
}

/// Runs the tests of the workspace (or of the packages `args` name) with `args` (cargo's, then
/// libtest's after `--`), in `root`, in lanes or through cargo alone ([`LANES_VAR`]), echoing
/// their output, then prints the slowest binaries and the skips.
pub fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let value = std::env::var_os(LANES_VAR).map(|v| v.to_string_lossy().into_owned());
    let lanes = lanes_from(value.as_deref())?;
    let log = std::env::temp_dir().join(format!("verdant-skips-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let (cargo_args, _) = plan::split_args(args);
    let outcome = if lanes == 1 || plan::wants_cargo_itself(cargo_args) {
        sequential(root, args, &log)
    } else {
        lanes::run(root, args, lanes, &log)
    };
    let skipped = skips(&std::fs::read_to_string(&log).unwrap_or_default());
    let _ = std::fs::remove_file(&log);
    let outcome = outcome?;
    outcome.print(&skipped);
    outcome.failure.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_follows_binaries_and_results() {
        let mut tally = Tally::default();
        for line in [
            "     Running unittests src/lib.rs (target/debug/deps/operator-1a2b3c)",
            "test result: ok. 120 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 1.50s",
            "     Running tests/docs.rs (target/debug/deps/docs-9f8e7d)",
            "test result: FAILED. 6 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 34.76s",
            "   Doc-tests rfb",
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
        ] {
            tally.line(line);
        }
        assert_eq!((tally.passed, tally.failed, tally.ignored), (126, 1, 2));
        assert_eq!(
            tally.slowest(),
            vec![
                (34.76, "tests/docs.rs [docs]".to_string()),
                (1.5, "unittests src/lib.rs [operator]".to_string()),
                (0.0, "doc-tests [rfb]".to_string()),
            ]
        );
    }

    #[test]
    fn lanes_are_a_positive_whole_number() {
        assert_eq!(lanes_from(None), Ok(DEFAULT_LANES));
        assert_eq!(lanes_from(Some(" ")), Ok(DEFAULT_LANES));
        assert_eq!(lanes_from(Some("1")), Ok(1));
        assert_eq!(lanes_from(Some(" 4 ")), Ok(4));
        for bad in ["0", "-1", "x", "2.5"] {
            let error = lanes_from(Some(bad)).unwrap_err();
            assert!(error.starts_with(LANES_VAR), "{error}");
            assert!(error.contains("positive whole number"), "{error}");
        }
    }

    #[test]
    fn skips_are_counted_by_kind_and_reason() {
        let counted = skips("kvm\tno /dev/kvm\nviewers\tno vncsnapshot\nkvm\tno /dev/kvm\n");
        assert_eq!(counted.len(), 2);
        assert_eq!(counted[&("kvm".into(), "no /dev/kvm".into())], 2);
        assert_eq!(counted[&("viewers".into(), "no vncsnapshot".into())], 1);
    }
}
