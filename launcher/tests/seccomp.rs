//! The launcher's confinement, for real. A child process applies the launcher's own profile
//! (`launcher::sandbox`), writes (allowed), then makes a forbidden call and is killed by the
//! kernel with SIGSYS; in log mode the same call goes through. And `verdant-launcher run`
//! itself runs confined on every thread, including those started after the filter went on
//! (the vCPU, a VNC viewer's two threads), serving viewers and probes and stopping on SIGTERM.
//!
//! No libtest harness (`harness = false` in Cargo.toml): the child has to drop its capabilities
//! while it is the only thread, as the launcher does (capabilities belong to threads), and
//! libtest runs every test on a thread of its own. `main` runs the tests; arguments that do
//! not start with `-` filter them by name, as with libtest.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use launcher::sandbox::{PROFILE, ProcessConfinement, Sandbox, SeccompMode};

/// Set in the child: which mode it confines itself with.
const CHILD: &str = "VERDANT_SECCOMP_TEST_CHILD";
/// `CapEff`/`CapPrm` with nothing in them.
const NO_CAPABILITIES: &str = "0000000000000000";

fn main() -> ExitCode {
    if let Ok(mode) = std::env::var(CHILD) {
        return child(&mode);
    }
    let tests: [(&str, fn()); 4] = [
        (
            "a_forbidden_call_kills_the_process_and_allowed_calls_work",
            a_forbidden_call_kills_the_process_and_allowed_calls_work,
        ),
        (
            "log_mode_lets_a_forbidden_call_through",
            log_mode_lets_a_forbidden_call_through,
        ),
        (
            "the_launcher_runs_confined_on_every_thread",
            the_launcher_runs_confined_on_every_thread,
        ),
        (
            "doctor_reports_the_profile_run_would_apply",
            doctor_reports_the_profile_run_would_apply,
        ),
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let ok = std::panic::catch_unwind(test).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!("\ntest result: {verdict}. {passed} passed; {failed} failed\n");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The child: drops its capabilities, starts a thread, confines itself (TSYNC must cover that
/// thread), says so on stdout, and once stdin says "go" has the thread create a socket.
fn child(mode: &str) -> ExitCode {
    let mode = match mode {
        "enforce" => SeccompMode::Enforce,
        "log" => SeccompMode::Log,
        _ => return ExitCode::from(2),
    };
    let sandbox = Sandbox::drop_capabilities(false).expect("capabilities drop");
    let (go, wait) = mpsc::channel::<()>();
    let (done, result) = mpsc::channel::<i32>();
    let thread = std::thread::spawn(move || {
        if wait.recv().is_ok() {
            // SAFETY: socket() takes integers only; the descriptor, if any, lives until exit.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            let _ = done.send(fd);
        }
    });
    let confinement = sandbox.apply_seccomp(mode).expect("seccomp applies");
    say(&format!("confined: {confinement}"));
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let _ = go.send(());
    let fd = result.recv().unwrap_or(-1);
    say(&format!("socket returned {fd}"));
    let _ = thread.join();
    ExitCode::SUCCESS
}

/// One line to stdout: a `write`, which the profile allows.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Starts this test binary as a child confined in `mode`; returns it and its stdout.
fn spawn_child(mode: &str) -> (Child, BufReader<std::process::ChildStdout>) {
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .env(CHILD, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the child starts");
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    (child, stdout)
}

/// `/proc/<pid>/status` and that of each of its threads: (name, text).
fn statuses(pid: u32) -> Vec<(String, String)> {
    let mut all = vec![(
        "process".to_owned(),
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status"),
    )];
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let text = std::fs::read_to_string(task.expect("task").path().join("status"));
        // A thread may end between listing and reading.
        if let Ok(text) = text {
            let name = field(&text, "Name").unwrap_or_default();
            all.push((name, text));
        }
    }
    all
}

fn field(status: &str, name: &str) -> Option<String> {
    status.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim().to_owned())
    })
}

/// Every status in `all` shows a seccomp filter (or none, when `filtered` is false),
/// `no_new_privs`, and no effective or permitted capability.
fn assert_confined(all: &[(String, String)], filtered: bool) {
    for (name, text) in all {
        let seen = ProcessConfinement::parse(text);
        let wanted = ProcessConfinement {
            seccomp: Some(if filtered { 2 } else { 0 }),
            no_new_privs: Some(true),
            cap_eff: Some(NO_CAPABILITIES.into()),
        };
        assert_eq!(seen, wanted, "{name}: {}", seen.describe());
        assert_eq!(
            field(text, "CapPrm").as_deref(),
            Some(NO_CAPABILITIES),
            "{name}"
        );
        assert_eq!(
            field(text, "CapAmb").as_deref(),
            Some(NO_CAPABILITIES),
            "{name}"
        );
    }
}

/// Whether this process may clear the bounding set (it runs as root, or with CAP_SETPCAP).
fn may_clear_bounding_set() -> bool {
    /// `CAP_SETPCAP`'s bit (linux/capability.h).
    const CAP_SETPCAP: u32 = 8;
    let own = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    field(&own, "CapEff")
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SETPCAP) != 0)
}

fn a_forbidden_call_kills_the_process_and_allowed_calls_work() {
    let (mut child, mut stdout) = spawn_child("enforce");
    let mut line = String::new();
    stdout.read_line(&mut line).expect("the child writes");
    let expected = format!("confined: seccomp: profile {PROFILE} enforced (");
    assert!(line.starts_with(&expected), "{line:?}");
    assert!(line.contains("forbidden -> kill process"), "{line:?}");

    let all = statuses(child.id());
    assert!(
        all.len() >= 3,
        "the process, its main thread and the helper"
    );
    assert_confined(&all, true);
    if may_clear_bounding_set() {
        assert_eq!(field(&all[0].1, "CapBnd").as_deref(), Some(NO_CAPABILITIES));
    }

    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(b"go\n").expect("the child reads");
    let status = child.wait().expect("the child ends");
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    assert_eq!(
        status.signal(),
        Some(libc::SIGSYS),
        "socket() should have killed the child: {status:?}, it wrote {rest:?}"
    );
    assert!(
        rest.is_empty(),
        "nothing runs after the violation: {rest:?}"
    );
}

fn log_mode_lets_a_forbidden_call_through() {
    let (mut child, mut stdout) = spawn_child("log");
    let mut line = String::new();
    stdout.read_line(&mut line).expect("the child writes");
    assert!(
        line.contains(&format!("profile {PROFILE} in log mode")),
        "{line:?}"
    );
    assert_confined(&statuses(child.id()), true);
    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(b"go\n").expect("the child reads");
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    let status = child.wait().expect("the child ends");
    assert!(status.success(), "{status:?}: {rest:?}");
    let fd: i32 = rest
        .trim()
        .strip_prefix("socket returned ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1);
    assert!(fd >= 0, "the logged call went through: {rest:?}");
}

/// A `verdant-launcher run` of the demo guest; its stderr lines arrive on the receiver.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(kernel: &std::path::Path, seccomp_env: Option<&str>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_verdant-launcher"));
        command
            .args(["run", "--kernel"])
            .arg(kernel)
            .args(["--memory", "64Mi", "--display", "640x480"])
            .args([
                "--http",
                "127.0.0.1:0",
                "--vnc",
                "127.0.0.1:0",
                "--vnc-no-auth",
            ])
            .args(["--shutdown-grace", "1"])
            .env_remove(SeccompMode::ENV)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(mode) = seccomp_env {
            command.env(SeccompMode::ENV, mode);
        }
        let mut child = command.spawn().expect("the launcher starts");
        let stderr = BufReader::new(child.stderr.take().expect("piped"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines }
    }

    /// The stderr lines up to and including the first that contains `needle`.
    fn lines_until(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(_) => panic!("no line with {needle:?} within 60 s; stderr: {seen:#?}"),
            }
        }
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill() on our own child's pid with a valid signal.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let exited = || self.child.try_wait().expect("wait");
        testkit::within_blocking(Duration::from_secs(30), exited).unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!("the launcher still runs 30 s after SIGTERM");
        })
    }
}

/// The address after `marker` in the line of `lines` that has it.
fn address(lines: &[String], marker: &str) -> SocketAddr {
    lines
        .iter()
        .find_map(|l| l.split(marker).nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no {marker:?} address in {lines:#?}"))
}

/// The status code of a GET of `path` from the launcher's endpoints at `addr`.
fn get(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\n\r\n").expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn the_launcher_runs_confined_on_every_thread() {
    let Some(kernel) = common::guest("demo") else {
        return;
    };
    let launcher = Running::start(&kernel, None);
    let lines = launcher.lines_until("seccomp:");
    let http = address(&lines, "http://");
    let vnc = address(&lines, "serving VNC on ");
    let line = lines.last().cloned().unwrap_or_default();
    let expected = format!("verdant-launcher: seccomp: profile {PROFILE} enforced (");
    assert!(line.starts_with(&expected), "{line}");
    assert!(
        line.ends_with("forbidden -> kill process); capabilities: all dropped, no_new_privs set")
            || line.contains("capabilities: none held"),
        "{line}"
    );

    // The guest runs and draws under the filter; a viewer connects (two new threads) and gets
    // the whole frame.
    testkit::eventually_blocking("/readyz to turn ready", Duration::from_secs(60), || {
        (get(http, "/readyz") == 200).then_some(())
    });
    let mut viewer =
        rfb::client::Client::connect(vnc, None, rfb::client::RAW).expect("a viewer connects");
    viewer
        .update(false, Duration::from_secs(30))
        .expect("a whole frame");
    let all = statuses(launcher.child.id());
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    for thread in [
        "vcpu0",
        "vnc-viewer",
        "vnc-reader",
        "http",
        "vnc",
        "vnc-frames",
    ] {
        assert!(names.contains(&thread), "no {thread} thread in {names:?}");
    }
    assert_confined(&all, true);
    drop(viewer);
    assert_eq!(get(http, "/healthz"), 200, "alive after the viewer left");
    let status = launcher.stop();
    assert_eq!(
        status.signal(),
        None,
        "the launcher was killed by signal {:?} (31: a system call outside the profile; \
         `dmesg | grep type=1326` names it)",
        status.signal()
    );
    // The demo guest answers Ctrl+Alt+Del by powering off.
    assert_eq!(status.code(), Some(0), "{status:?}");

    // Off, from the environment: no filter, a loud warning, capabilities dropped all the same.
    let launcher = Running::start(&kernel, Some("off"));
    let lines = launcher.lines_until("seccomp");
    let line = lines.last().cloned().unwrap_or_default();
    assert!(line.contains("WARNING: seccomp is OFF"), "{line}");
    assert_confined(&statuses(launcher.child.id()), false);
    // Stopped before the guest listens to the keyboard, it is stopped hard (5), else 0.
    let status = launcher.stop();
    assert!(matches!(status.code(), Some(0 | 5)), "{status:?}");
}

fn doctor_reports_the_profile_run_would_apply() {
    let out = Command::new(env!("CARGO_BIN_EXE_verdant-launcher"))
        .args(["doctor", "--json"])
        .env(SeccompMode::ENV, "log")
        .output()
        .expect("doctor runs");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("doctor --json prints JSON");
    let sandbox = &report["sandbox"];
    assert_eq!(sandbox["profile"], PROFILE, "{sandbox:#}");
    assert_eq!(sandbox["mode"], "log", "{sandbox:#}");
    assert!(sandbox["compile_error"].is_null(), "{sandbox:#}");
    let allowed = sandbox["syscalls_allowed"].as_u64().unwrap_or(0);
    assert!((20..200).contains(&allowed), "{sandbox:#}");
    // The doctor itself runs unconfined.
    assert_eq!(sandbox["process"]["seccomp"], 0, "{sandbox:#}");
    let checks = report["checks"].as_array().expect("checks");
    let profile = checks
        .iter()
        .find(|c| c["name"] == "seccomp profile of run")
        .expect("a check of the profile");
    let detail = profile["detail"].as_str().unwrap_or_default();
    assert!(
        profile["ok"] == true && detail.contains("forbidden -> allowed and logged"),
        "{profile:#}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_verdant-launcher"))
        .arg("doctor")
        .env(SeccompMode::ENV, "sometimes")
        .output()
        .expect("doctor runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[FAIL] seccomp profile of run") && text.contains("VERDANT_SECCOMP"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1), "a run would fail: {text}");
}
