//! The run in lanes: one `cargo test --no-run` builds every test binary, cargo runs the doc
//! tests, then each lane takes the next binary from one queue (longest first, [`plan::order`])
//! and runs it as cargo would, until none is left. Every binary runs, whatever fails. A
//! binary's stdout and stderr are kept and printed whole when it ends, so lanes never mix
//! their lines and the tally reads them as it reads cargo's.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::plan::{self, Binary};
use super::{Outcome, cargo_command, cargo_program, stream, workspace_unless_packages};

/// How long a binary's output may stay open after the binary ended (held by a process it left
/// running) before its lane gives up on the rest and moves on.
const OUTPUT_GRACE: Duration = Duration::from_secs(10);

/// What the doc tests are called among the failures.
const DOC_TESTS: &str = "doc tests (cargo test --doc)";

/// Builds the test binaries `args` select (cargo's, then libtest's after `--`), runs the doc
/// tests, then the binaries in `lanes` lanes; records their times for the next run's order.
pub fn run(root: &Path, args: &[String], lanes: usize, log: &Path) -> Result<Outcome, String> {
    let (cargo_args, test_args) = plan::split_args(args);
    let binaries = build(root, cargo_args)?;
    let mut outcome = Outcome::default();
    // `--doc` cannot be mixed with flags that pick targets, which then leave doc tests out.
    if !plan::selects_targets(cargo_args) && binaries.iter().any(|b| b.doctest) {
        doc_tests(root, args, log, &mut outcome)?;
    }
    let times_file = plan::times_file(root);
    let mut times = plan::parse_times(&std::fs::read_to_string(&times_file).unwrap_or_default());
    let queue = plan::order(binaries, &times);
    let lanes_run = Lanes {
        root,
        test_args,
        log,
        queue: Mutex::new(queue),
    };
    let started = Instant::now();
    let timed = lanes_run.run(lanes, &mut outcome);
    let wall = started.elapsed().as_secs_f64();
    let summed = outcome.walls.values().sum();
    outcome.lanes = Some((lanes, summed, wall));
    times.extend(timed);
    save_times(&times_file, &times);
    if !outcome.failed.is_empty() {
        outcome.failure = Some(format!(
            "{} failed ({}): their output is above",
            outcome.failed.len(),
            outcome.failed.join(", ")
        ));
    }
    Ok(outcome)
}

/// Builds the test binaries without running them, cargo's diagnostics going to our stderr, and
/// returns them as cargo's JSON messages describe them.
fn build(root: &Path, cargo_args: &[String]) -> Result<Vec<Binary>, String> {
    let mut command = cargo_command(root);
    command
        .args([
            "test",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .args(workspace_unless_packages(cargo_args))
        .args(cargo_args)
        .stdout(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run cargo test --no-run: {e}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or("cargo test --no-run has no stdout")?;
    let binaries = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| plan::parse_artifact(&line))
        .collect();
    let status = child
        .wait()
        .map_err(|e| format!("cargo test --no-run did not end: {e}"))?;
    if !status.success() {
        return Err(format!(
            "the tests did not build (cargo test --no-run: {status}): cargo's errors are above"
        ));
    }
    Ok(binaries)
}

/// Runs the doc tests through cargo, before the lanes: the tests call cargo too (tests::bins),
/// and would wait for a cargo holding the build folder's lock.
fn doc_tests(
    root: &Path,
    args: &[String],
    log: &Path,
    outcome: &mut Outcome,
) -> Result<(), String> {
    let (cargo_args, _) = plan::split_args(args);
    let mut command = cargo_command(root);
    command
        .args(["test", "--doc", "--no-fail-fast"])
        .args(workspace_unless_packages(cargo_args))
        .args(args)
        .env(testkit::SKIP_LOG, log);
    let status = stream(command, &mut outcome.tally, "cargo test --doc")?;
    if !status.success() {
        outcome.failed.push(DOC_TESTS.to_string());
    }
    Ok(())
}

/// Rewrites the times file; a run that cannot only loses the next run's order.
fn save_times(file: &Path, times: &BTreeMap<String, f64>) {
    let saved = file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(file, plan::format_times(times)));
    if let Err(e) = saved {
        eprintln!("verdant-dev: cannot write {}: {e}", file.display());
    }
}

/// The binaries left to run, and what each needs to run them.
struct Lanes<'a> {
    root: &'a Path,
    test_args: &'a [String],
    log: &'a Path,
    queue: Mutex<VecDeque<Binary>>,
}

/// What a lane tells the printing thread.
enum Event {
    /// Lane `lane` started the binary `label`.
    Started { lane: usize, label: String },
    /// A binary ended.
    Ended(Ended),
}

/// A binary that ended, with all it printed.
struct Ended {
    lane: usize,
    binary: Binary,
    output: Vec<u8>,
    /// Its exit status, or why it could not run.
    status: Result<ExitStatus, String>,
    wall: Duration,
}

impl Lanes<'_> {
    /// Runs every binary in the queue, `lanes` at once, printing each as it starts and ends;
    /// returns each binary's wall seconds by its key, where it ran all its tests.
    fn run(&self, lanes: usize, outcome: &mut Outcome) -> Vec<(String, f64)> {
        let total = self.queue.lock().unwrap_or_else(|e| e.into_inner()).len();
        let (events, received) = mpsc::channel();
        let mut timed = Vec::new();
        std::thread::scope(|scope| {
            for lane in 1..=lanes.min(total) {
                let events = events.clone();
                scope.spawn(move || self.lane(lane, &events));
            }
            drop(events);
            let (mut started, mut ended) = (0, 0);
            for event in received {
                match event {
                    Event::Started { lane, label } => {
                        started += 1;
                        println!(
                            "=== [lane {lane}] {label} started ({} running, {} waiting)",
                            started - ended,
                            total - started
                        );
                    }
                    Event::Ended(done) => {
                        ended += 1;
                        timed.extend(self.report(&done, outcome));
                    }
                }
            }
        });
        timed
    }

    /// One lane: takes the next binary and runs it, until the queue is empty.
    fn lane(&self, lane: usize, events: &mpsc::Sender<Event>) {
        let cargo = cargo_program();
        loop {
            let next = self
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            let Some(binary) = next else { return };
            let label = binary.label(self.root);
            let _ = events.send(Event::Started { lane, label });
            let started = Instant::now();
            let (output, status) = match self.spawn(&binary, &cargo) {
                Ok((child, reader)) => collect(child, reader),
                Err(e) => (Vec::new(), Err(e)),
            };
            let wall = started.elapsed();
            let _ = events.send(Event::Ended(Ended {
                lane,
                binary,
                output,
                status,
                wall,
            }));
        }
    }

    /// Starts `binary` as cargo would: in its package's folder, with the variables cargo sets
    /// for it, stdout and stderr on one pipe, whose reading end comes back with it.
    fn spawn(
        &self,
        binary: &Binary,
        cargo: &OsStr,
    ) -> Result<(Child, std::io::PipeReader), String> {
        let dir = binary.package_dir();
        let (reader, writer) = std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
        let mut command = Command::new(&binary.executable);
        ::tests::bins::without_test_environment(&mut command);
        command
            .args(self.test_args)
            .current_dir(dir)
            .env("CARGO", cargo)
            .env("CARGO_MANIFEST_DIR", dir)
            .env("CARGO_PKG_NAME", &binary.package)
            .env(testkit::SKIP_LOG, self.log)
            .stdin(Stdio::null())
            .stdout(
                writer
                    .try_clone()
                    .map_err(|e| format!("cannot share the pipe: {e}"))?,
            )
            .stderr(writer);
        // The command, and with it our copies of the pipe's writing end, goes on return.
        command
            .spawn()
            .map(|child| (child, reader))
            .map_err(|e| format!("cannot run {}: {e}", binary.executable.display()))
    }

    /// Prints an ended binary ([`print_block`]) and takes it into the outcome. Returns its key
    /// and wall seconds where it ran all its tests, for the next run's order.
    fn report(&self, done: &Ended, outcome: &mut Outcome) -> Option<(String, f64)> {
        let label = done.binary.label(self.root);
        let executable = done.binary.executable.strip_prefix(self.root);
        let header = format!(
            "     Running {} ({})",
            done.binary.what(self.root),
            executable.unwrap_or(&done.binary.executable).display()
        );
        print_block(done, &header, &label);
        outcome.tally.line(&header);
        let output = String::from_utf8_lossy(&done.output);
        for line in output.lines() {
            outcome.tally.line(line);
        }
        let seconds = done.wall.as_secs_f64();
        outcome.walls.insert(label.clone(), seconds);
        if !matches!(&done.status, Ok(status) if status.success()) {
            outcome.failed.push(label);
        }
        plan::ran_every_test(&output).then(|| (done.binary.key(), seconds))
    }
}

/// Prints an ended binary as one block: cargo's `Running` line (`header`), its output, and a
/// line with its lane, verdict and wall time.
fn print_block(done: &Ended, header: &str, label: &str) {
    let verdict = match &done.status {
        Ok(status) if status.success() => "ok".to_string(),
        Ok(status) => format!("FAILED ({status})"),
        Err(e) => format!("FAILED: {e}"),
    };
    let seconds = done.wall.as_secs_f64();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{header}");
    let _ = out.write_all(&done.output);
    if !done.output.is_empty() && !done.output.ends_with(b"\n") {
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "=== [lane {}] {label} {verdict} in {seconds:.1} s",
        done.lane
    );
}

/// Reads all `child` prints to `reader` while waiting for it to end; returns the output and
/// its exit status. Output still open [`OUTPUT_GRACE`] after the end (a process it left
/// running holds the pipe) is cut there, with a note saying so.
fn collect(
    mut child: Child,
    mut reader: std::io::PipeReader,
) -> (Vec<u8>, Result<ExitStatus, String>) {
    let output = Arc::new(Mutex::new(Vec::new()));
    let (done, read_all) = mpsc::channel();
    let sink = Arc::clone(&output);
    std::thread::spawn(move || {
        let mut buffer = [0u8; 64 * 1024];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => sink
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&buffer[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = done.send(());
    });
    let status = child.wait().map_err(|e| format!("did not end: {e}"));
    let cut = read_all.recv_timeout(OUTPUT_GRACE).is_err();
    let mut output = std::mem::take(&mut *output.lock().unwrap_or_else(|e| e.into_inner()));
    if cut {
        let note = format!(
            "\n(verdant-dev: the output was still open {} s after the binary ended, held by a \
             process it left running; the rest is not shown)\n",
            OUTPUT_GRACE.as_secs()
        );
        output.extend_from_slice(note.as_bytes());
    }
    (output, status)
}
