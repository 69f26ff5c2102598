//! SIGTERM: the launcher asks the guest to shut down (Ctrl+Alt+Del on the i8042 keyboard),
//! waits the grace period, and stops it hard after that or on a second signal.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::guest;

/// Starts the launcher on `guest` and waits until the guest has printed its first line.
fn start(guest: &std::path::Path, grace: &str) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdant-launcher"))
        .args([
            "run",
            "--kernel",
            guest.to_str().unwrap(),
            "--memory",
            "32Mi",
        ])
        .args(["--shutdown-grace", grace])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("launcher starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).expect("the guest prints");
    assert!(!line.is_empty(), "the guest printed nothing");
    (child, stdout)
}

fn signal(child: &Child) {
    // SAFETY: kill() on our own child's pid with a valid signal.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
}

fn wait(child: &mut Child, limit: Duration) -> (i32, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code().unwrap_or(-1), start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "launcher still runs after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_lets_a_listening_guest_shut_down_cleanly() {
    let Some(kernel) = guest("ctrlaltdel") else {
        return;
    };
    let (mut child, mut stdout) = start(&kernel, "30");
    signal(&child);
    let (code, _) = wait(&mut child, Duration::from_secs(30));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(
        rest, "ctrl-alt-del\n",
        "the guest saw Ctrl+Alt+Del; stderr: {stderr}"
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("the guest shut down on request"),
        "{stderr}"
    );
}

#[test]
fn a_deaf_guest_is_stopped_after_the_grace_period() {
    let Some(kernel) = guest("idle") else { return };
    let (mut child, _stdout) = start(&kernel, "1");
    signal(&child);
    let (code, took) = wait(&mut child, Duration::from_secs(30));
    assert_eq!(code, 5);
    assert!(
        took >= Duration::from_secs(1),
        "stopped after {took:?}, before the grace period"
    );
}

#[test]
fn a_second_signal_stops_at_once() {
    let Some(kernel) = guest("idle") else { return };
    let (mut child, _stdout) = start(&kernel, "3600");
    signal(&child);
    std::thread::sleep(Duration::from_millis(200));
    signal(&child);
    // Well inside the hour of grace: the second signal cut it short.
    let (code, _) = wait(&mut child, Duration::from_secs(60));
    assert_eq!(code, 5);
}
