//! `verdant-dev test`: the README's test command, `cargo test --workspace`, run so that every
//! test binary runs whatever fails (`--no-fail-fast`), ending with the slowest test binaries
//! and a count of the tests that skipped a missing part (with `VERDANT_ALLOW_SKIP=1`; by
//! default a missing part fails instead).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Command;

/// How many of the slowest test binaries the summary lists.
const SLOWEST: usize = 10;

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

/// Runs `cargo test --workspace --no-fail-fast` with `args` after it (without `--workspace`
/// when they name packages), in `root`, echoing its
/// output, then prints the slowest binaries and the skips.
pub fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let log = std::env::temp_dir().join(format!("verdant-skips-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let (reader, writer) = std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    // Run by `cargo run`, this process has the variables Cargo sets for its target; passed on,
    // they would make the tests' own builds (tests::bins) differ from this one and rebuild.
    ::tests::bins::without_test_environment(&mut command);
    command
        .args(["test", "--no-fail-fast"])
        // The whole workspace, unless the arguments name packages.
        .args(
            (!args.iter().any(|a| a == "-p" || a.starts_with("--package")))
                .then_some("--workspace"),
        )
        .args(args)
        .current_dir(root)
        .env(testkit::SKIP_LOG, &log)
        .stdout(
            writer
                .try_clone()
                .map_err(|e| format!("cannot share the pipe: {e}"))?,
        )
        .stderr(writer);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    // Our copies of the pipe's writing end go, so reading ends when cargo's output does.
    drop(command);
    let mut tally = Tally::default();
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(out, "{line}");
        tally.line(&line);
    }
    drop(out);
    let status = child
        .wait()
        .map_err(|e| format!("cargo test did not end: {e}"))?;
    let skipped = skips(&std::fs::read_to_string(&log).unwrap_or_default());
    let _ = std::fs::remove_file(&log);

    println!("\n=== the slowest test binaries (seconds, as libtest timed them)");
    for (seconds, binary) in tally.slowest() {
        println!("{seconds:8.1}  {binary}");
    }
    let total: usize = skipped.values().sum();
    println!(
        "\n=== tests: {} passed, {} failed, {} ignored; {total} skipped a missing part",
        tally.passed, tally.failed, tally.ignored
    );
    for ((kind, why), n) in &skipped {
        println!("  {n} x SKIP ({kind}): {why}");
    }
    if total > 0 {
        println!("  `verdant-dev up` (as root) installs what they miss.");
    }
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo test failed ({status}): the failures are above"
        ))
    }
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
    fn skips_are_counted_by_kind_and_reason() {
        let counted = skips("kvm\tno /dev/kvm\nviewers\tno vncsnapshot\nkvm\tno /dev/kvm\n");
        assert_eq!(counted.len(), 2);
        assert_eq!(counted[&("kvm".into(), "no /dev/kvm".into())], 2);
        assert_eq!(counted[&("viewers".into(), "no vncsnapshot".into())], 1);
    }
}
